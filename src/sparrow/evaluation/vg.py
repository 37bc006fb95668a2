"""The "visual grounding mIoU" of VideoGLaMM and SPARROW (``eval_grounding.py``; METRICS.md 3.2).

It is a **box** IoU, TubeDETR's ``gt_vIoU`` (spatial only, inside the GT tube):

1. frames: TubeDETR's sampling of the GT tube ``[tube_start, tube_end)`` at **1 fps, at most 40
   frames** (:func:`vg_frames`);
2. frame size: the test transform resizes the shorter side to ``resolution`` (224) with the longer
   side capped (373 for 224), exactly as DETR's ``resize``; GT boxes ``[x, y, w, h]`` become
   ``[x, y, x + w, y + h]``, are clamped to the frame and scaled by ``(new_w / W, new_h / H)``, all in
   float32 like the official tensors;
3. each predicted mask has its 4-connected blobs under ``min_blob`` (20) pixels removed (skimage
   ``remove_small_objects`` with its default connectivity 1) and becomes a box with DETR's
   ``masks_to_boxes``: min/max column and row **indices** (inclusive, no ``+1``); an empty mask gives
   ``(1e8, 1e8, 0, 0)``, whose IoU is 0;
4. per frame box IoU (float32); per video the mean over the sampled frames; the reported ``mIoU`` is
   the mean over videos, per ``qtype`` and overall, with ``gt_vIoU@0.3`` / ``@0.5`` (strictly above).

HC-STVG (v2 val) has no qtype; the official script forces ``"interrogative"``, and so do we.

Predictions -- a JSON object of COCO RLE masks (``sparrow.structures.masks`` format)::

    {"<video_id>": {"<frame_id>": {"size": [h, w], "counts": "<compressed RLE>"}, ...}, ...}

- keys are the annotation's ``video_id`` and the video's own frame numbers (strings); a mask is needed
  for every frame of :func:`vg_frames`, other frames are ignored;
- masks are binary (the model's ``logits > 0`` already applied). A mask may be at the test-transform
  size (what the official model outputs; used as is) or at the original frame size (as ``sparrow``
  writes them; it is resized to the test-transform size with nearest-neighbour, an approximation of
  thresholding the logits at that size). ``resolution=None`` evaluates at the original size instead
  (not the official protocol).

Failures: the official script skips (excludes) a video on any exception. Non-strict mode does the
same for a missing video or frame mask, a mask of another size, or a degenerate GT box, and lists the
video in ``excluded``; ``strict=True`` raises :class:`~sparrow.errors.EvaluationError` naming the
file. Official means accumulate the float32 IoUs in float32 (depending on the numpy version); here the
float32 per-frame IoUs are summed in float64, a difference below 1e-6.

The official pipeline decodes the sampled frames with ffmpeg's ``fps`` filter, which can land a frame
away from the frame numbers of :func:`vg_frames`; that concerns inference, not this metric.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, ClassVar

import cv2
import numpy as np

from sparrow.errors import DataFormatError, EvaluationError
from sparrow.evaluation.stvg import (
    QtypeResult,
    recall_at,
    sequential_mean,
    summarise_by_qtype,
    unknown_predictions,
)
from sparrow.evaluation.stvg_data import StvgVideo, load_stvg_annotations, sample_frame_ids
from sparrow.structures.boxes import box_iou
from sparrow.structures.masks import RLE, rle_decode

__all__ = [
    "VG_THRESHOLDS",
    "VgResult",
    "VgVideoScore",
    "detr_mask_box",
    "evaluate_vg",
    "load_vg_predictions",
    "remove_small_blobs",
    "transform_frame_size",
    "vg_frames",
]

VG_THRESHOLDS = (0.3, 0.5)
EMPTY_MASK_BOX = (1e8, 1e8, 0.0, 0.0)
# TubeDETR / VideoGLaMM ``make_video_transforms``: shorter side -> longest-side cap at test time.
_MAX_SIZE = {
    128: 213,
    224: 373,
    256: 427,
    288: 480,
    320: 533,
    352: 587,
    384: 640,
    416: 693,
    448: 746,
    480: 800,
    800: 1333,
}


def vg_frames(video: StvgVideo, *, fps: float = 1, max_len: int = 40) -> list[int]:
    """Frames the grounding evaluation scores: TubeDETR sampling of the GT tube (1 fps, <= 40 frames)."""
    return sample_frame_ids(
        video.tube_start, video.tube_end, fps=fps, video_fps=video.video_fps, max_len=max_len
    )


def transform_frame_size(width: int, height: int, resolution: int | None) -> tuple[int, int]:
    """``(new_h, new_w)`` of a ``width x height`` frame after the test transform (DETR ``resize``).

    ``resolution=None`` keeps the original size.
    """
    if resolution is None:
        return height, width
    if resolution not in _MAX_SIZE:
        raise ValueError(f"resolution must be one of {sorted(_MAX_SIZE)} or None, got {resolution}")
    size, max_size = resolution, _MAX_SIZE[resolution]
    lo, hi = float(min(width, height)), float(max(width, height))
    if hi / lo * size > max_size:
        size = round(max_size * lo / hi)
    if (width <= height and width == size) or (height <= width and height == size):
        return height, width
    if width < height:
        return int(size * height / width), size
    return size, int(size * width / height)


def remove_small_blobs(mask: np.ndarray, min_size: int) -> np.ndarray:
    """Remove 4-connected foreground blobs with fewer than ``min_size`` pixels from a bool ``(H, W)`` mask.

    Same result as ``skimage.morphology.remove_small_objects(mask, min_size)`` (default connectivity 1).
    """
    m = np.asarray(mask, dtype=bool)
    if min_size <= 0 or not m.any():
        return m.copy()
    _, labels, stats, _ = cv2.connectedComponentsWithStats(m.astype(np.uint8), connectivity=4)
    small = stats[:, cv2.CC_STAT_AREA] < min_size
    small[0] = False  # background
    return m & ~small[labels]


def detr_mask_box(mask: np.ndarray) -> np.ndarray:
    """DETR ``masks_to_boxes`` of one bool ``(H, W)`` mask: float32 ``(4,)`` xyxy of inclusive indices.

    A mask spanning columns ``c0..c1`` gives ``x1 = c0, x2 = c1`` (no ``+1``); empty -> ``(1e8, 1e8, 0, 0)``.
    """
    m = np.asarray(mask, dtype=bool)
    rows, cols = np.flatnonzero(m.any(axis=1)), np.flatnonzero(m.any(axis=0))
    if rows.size == 0:
        return np.asarray(EMPTY_MASK_BOX, dtype=np.float32)
    return np.asarray([cols[0], rows[0], cols[-1], rows[-1]], dtype=np.float32)


def _gt_box_transformed(
    xywh: tuple[float, ...], width: int, height: int, new_size: tuple[int, int]
) -> np.ndarray | None:
    """The official ``prepare`` + ``resize`` of a GT box, float32; ``None`` if degenerate after clamping."""
    b = np.asarray(xywh, dtype=np.float32)
    b[2:] += b[:2]
    b[0::2] = np.clip(b[0::2], 0, width)
    b[1::2] = np.clip(b[1::2], 0, height)
    if not (b[3] > b[1] and b[2] > b[0]):
        return None
    rw, rh = float(new_size[1]) / float(width), float(new_size[0]) / float(height)
    return b * np.asarray([rw, rh, rw, rh], dtype=np.float32)


def load_vg_predictions(path: str | Path) -> dict[str, dict[int, RLE]]:
    """Read ``{"<video_id>": {"<frame_id>": RLE}}`` (see the module docstring).

    Raises:
        DataFormatError: unreadable JSON or entries that are not RLE masks keyed by frame numbers.
    """
    path = Path(path)
    fix = 'write {"<video_id>": {"<frame_id>": {"size": [h, w], "counts": "..."}}}'
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DataFormatError(f"cannot read the predicted masks ({err})", path=path, fix=fix) from err
    if not isinstance(data, Mapping):
        raise DataFormatError("the predictions must be a JSON object keyed by video_id", path=path, fix=fix)
    out: dict[str, dict[int, RLE]] = {}
    for video_id, frames in data.items():
        if not isinstance(frames, Mapping):
            raise DataFormatError(
                f"video {video_id!r}: expected an object of frame masks", path=path, fix=fix
            )
        masks = {}
        for frame, rle in frames.items():
            if (
                not str(frame).isdigit()
                or not isinstance(rle, Mapping)
                or "size" not in rle
                or "counts" not in rle
            ):
                raise DataFormatError(
                    f"video {video_id!r} frame {frame!r}: not an RLE mask", path=path, fix=fix
                )
            masks[int(frame)] = dict(rle)
        out[str(video_id)] = masks
    return out


@dataclass(frozen=True)
class VgVideoScore:
    """Per-video ``gt_viou`` (mean box IoU over ``n_frames`` sampled tube frames) and its ``qtype``."""

    video_id: str
    qtype: str
    gt_viou: float
    n_frames: int


@dataclass(frozen=True)
class _Item:
    video: StvgVideo
    qtype: str
    frames: list[int]
    masks: dict[int, RLE] | None
    resolution: int | None
    min_blob: int


def _score_item(item: _Item) -> VgVideoScore | str:
    video = item.video
    if item.masks is None:
        return "no prediction for this video"
    if video.width <= 0 or video.height <= 0:
        return "the annotation has no width/height for this video"
    new_size = transform_frame_size(video.width, video.height, item.resolution)
    total = 0.0
    for f in item.frames:
        xywh = video.boxes_xywh.get(f)
        if xywh is None:
            return f"no GT box for sampled tube frame {f}"
        gt = _gt_box_transformed(xywh, video.width, video.height, new_size)
        if gt is None:
            return f"degenerate GT box at frame {f}"
        rle = item.masks.get(f)
        if rle is None:
            return f"no predicted mask for frame {f}"
        try:
            mask = rle_decode(rle)
        except (ValueError, TypeError) as err:
            return f"frame {f}: undecodable RLE ({err})"
        if mask.shape == (video.height, video.width) and mask.shape != new_size:
            mask = (
                cv2.resize(mask.astype(np.uint8), (new_size[1], new_size[0]), interpolation=cv2.INTER_NEAREST)
                > 0
            )
        if mask.shape != new_size:
            return f"frame {f}: mask size {mask.shape} is neither the test-transform size {new_size} nor the frame size"
        box = detr_mask_box(remove_small_blobs(mask, item.min_blob))
        total += float(box_iou(box[None], gt[None])[0, 0])
    return VgVideoScore(video.video_id, item.qtype, total / max(len(item.frames), 1), len(item.frames))


def _summary(scores: Sequence[VgVideoScore]) -> dict[str, float | int]:
    values = [s.gt_viou for s in scores]
    out: dict[str, float | int] = {"n_videos": len(values), "mIoU": sequential_mean(values)}
    for r in VG_THRESHOLDS:
        out[f"gt_vIoU@{r}"] = recall_at(values, r)
    return out


@dataclass(frozen=True)
class VgResult(QtypeResult[VgVideoScore]):
    """Grounding mIoU results; summaries hold ``mIoU``, ``gt_vIoU@0.3``, ``gt_vIoU@0.5``, ``n_videos``."""

    benchmark: ClassVar[str] = "vg"
    title: ClassVar[str] = "Grounding mIoU"

    def video_json(self, score: VgVideoScore) -> dict[str, Any]:
        return {"qtype": score.qtype, "gt_vIoU": score.gt_viou, "n_frames": score.n_frames}


def evaluate_vg(
    annotations: str | Path,
    predictions: str | Path | Mapping[str, Mapping[int, RLE]],
    *,
    fps: float = 1,
    max_frames: int = 40,
    resolution: int | None = 224,
    min_blob: int = 20,
    strict: bool = False,
    workers: int | None = None,
) -> VgResult:
    """Score predicted masks with the VideoGLaMM/SPARROW grounding protocol (module docstring).

    Args:
        annotations: VidSTG / HC-STVG processed GT file (:mod:`sparrow.evaluation.stvg_data`).
        predictions: RLE JSON path or the loaded ``{video_id: {frame: RLE}}`` mapping.
        fps, max_frames: tube sampling (official 1 and 40).
        resolution: test-transform shorter side (official 224); ``None`` = original frame size.
        min_blob: blobs smaller than this many pixels are removed (official 20).
        strict: raise instead of excluding failing videos.
        workers: processes (default: all cores).
    """
    from sparrow.evaluation.parallel import parallel_map

    transform_frame_size(1, 1, resolution)  # validates the resolution early
    gt = load_stvg_annotations(annotations)
    pred_path = Path(predictions) if isinstance(predictions, (str, Path)) else None
    if pred_path is not None:
        preds = load_vg_predictions(pred_path)
    else:  # an in-memory mapping: normalise the keys as the JSON reader does
        preds = {str(k): {int(f): r for f, r in v.items()} for k, v in predictions.items()}  # type: ignore[union-attr]
    ignored = unknown_predictions(preds, gt, pred_path, strict=strict)
    items = []
    for v in gt.videos:
        try:
            frames = vg_frames(v, fps=fps, max_len=max_frames)
        except ValueError as err:
            raise DataFormatError(f"video {v.video_id!r}: {err}", path=gt.path, fix="lower --fps") from err
        masks = preds.get(v.video_id)
        qtype = v.qtype if gt.dataset == "vidstg" and v.qtype else "interrogative"
        # Ship only the sampled frames' boxes and masks to the worker processes.
        sampled_boxes = {f: v.boxes_xywh[f] for f in frames if f in v.boxes_xywh}
        items.append(
            _Item(
                replace(v, boxes_xywh=sampled_boxes),
                qtype,
                frames,
                None if masks is None else {f: masks[f] for f in frames if f in masks},
                resolution,
                min_blob,
            )
        )
    outcomes = parallel_map(_score_item, items, workers=workers, description="grounding videos")
    scores: list[VgVideoScore] = []
    excluded: dict[str, str] = {}
    for item, outcome in zip(items, outcomes, strict=True):
        if isinstance(outcome, VgVideoScore):
            scores.append(outcome)
        elif strict:
            raise EvaluationError(
                f"video {item.video.video_id!r}: {outcome}",
                path=pred_path or gt.path,
                fix="predict a mask for every sampled tube frame (sparrow.evaluation.vg.vg_frames)",
            )
        else:
            excluded[item.video.video_id] = outcome
    overall, per_qtype = summarise_by_qtype(scores, _summary)
    return VgResult(
        dataset=gt.dataset,
        overall=overall,
        per_qtype=per_qtype,
        videos=scores,
        excluded=excluded,
        ignored_predictions=ignored,
        settings={
            "fps": fps,
            "max_frames": max_frames,
            "resolution": resolution,
            "min_blob": min_blob,
            "strict": strict,
        },
    )
