"""Shared machinery of the per-expression protocols (MeViS, Ref-DAVIS per-expression, ReVOS, identity).

Ground truth layouts (METRICS.md §2.1-2.4):

- ``meta_expressions.json``: ``{"videos": {<video>: {"expressions": {<exp_id>: {"exp": str,
  "anno_id": [int, ...] | "obj_id": ...}}, "frames": [<frame name>, ...]}}}``.
- masks either in ``mask_dict.json`` (``{str(anno_id): [per-frame COCO RLE or null]}``, indexed by the
  position in ``frames``; MeViS, ReVOS) or, when there is no ``mask_dict.json``, in palette PNGs
  ``Annotations/<video>/<frame>.png`` holding object ids, selected by the expression's ``obj_id``
  (Ref-YouTube-VOS, Ref-DAVIS as converted by ReferFormer).

Predictions: ``<results>/<video>/<exp_id>/<frame>.png`` read with ``cv2.imread(..., GRAYSCALE)``
(:func:`sparrow.io.read_gray_png` semantics: a palette PNG becomes luminance); any non-zero grey value is
foreground for J and F. The frame size comes from a *probe* frame (MeViS hard-codes ``00000``, ReVOS uses
the first listed frame). The GT of a frame is the **uint8 sum** of its objects' masks.

A frame that cannot be read, or whose size differs from the probe, makes the whole expression fail
(:class:`ExpressionFailure`); each protocol decides what a failure means (dropped, scored 0, or an error in
strict mode). A missing ``<results>/<video>`` folder is reported separately (:class:`MissingVideo`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sparrow.errors import DataFormatError, EvaluationError
from sparrow.io.mask_files import read_gray_png, read_index_png
from sparrow.structures.masks import rle_decode

__all__ = [
    "ExpressionFailure",
    "ExpressionSpec",
    "GroundTruth",
    "LabelPngSource",
    "MissingVideo",
    "RleSource",
    "as_list",
    "expression_frames",
    "failure_error",
    "load_ground_truth",
    "load_json",
    "mean_or_nan",
    "read_prediction",
]


class ExpressionFailure(Exception):
    """An expression's files cannot be scored (missing/unreadable frame, size mismatch)."""

    def __init__(self, message: str, path: Path) -> None:
        super().__init__(f"{path}: {message}")
        self.message = message
        self.path = path


class MissingVideo(ExpressionFailure):
    """The whole ``<results>/<video>`` folder is missing."""


@dataclass(frozen=True)
class RleSource:
    """One annotated object as per-frame COCO RLEs (``None`` = not present); ``origin`` names it."""

    rles: tuple[Any, ...]
    origin: str

    def frame(self, t: int) -> np.ndarray | None:
        """0/1 uint8 ``(h, w)`` mask of frame position ``t``, or ``None`` when absent."""
        if t >= len(self.rles):
            raise DataFormatError(
                f"{self.origin} has {len(self.rles)} frames but the video lists more",
                fix="regenerate mask_dict.json for this split",
            )
        rle = self.rles[t]
        if not rle:
            return None
        try:
            return rle_decode(rle).view(np.uint8)
        except (ValueError, TypeError, KeyError) as err:
            raise DataFormatError(f"{self.origin}, frame {t}: bad RLE ({err})") from err


@dataclass(frozen=True)
class LabelPngSource:
    """One object as an id ``label`` in per-frame palette PNGs (``paths`` in frame order)."""

    paths: tuple[str, ...]
    label: int

    def frame(self, t: int) -> np.ndarray | None:
        labels = read_index_png(self.paths[t])
        return (labels == self.label).view(np.uint8)


ObjectSource = RleSource | LabelPngSource


def results_folder(results_dir: str | Path) -> Path:
    """``results_dir`` as a path, checked to be a folder (of ``<video>/`` prediction folders).

    Raises:
        EvaluationError: the folder does not exist.
    """
    results = Path(results_dir)
    if not results.is_dir():
        raise EvaluationError(
            "results folder not found", path=results, fix="pass the folder holding <video>/ folders"
        )
    return results


@dataclass(frozen=True)
class ExpressionKey:
    """Names one expression of a split: its ``video`` and its ``exp_id``; ``key`` is ``video/exp_id``."""

    video: str
    exp_id: str

    @property
    def key(self) -> str:
        return f"{self.video}/{self.exp_id}"


@dataclass(frozen=True)
class ExpressionOutcome(ExpressionKey):
    """Base of the per-expression scores: ``status`` is ``ok`` or why the expression was not scored
    (``missing_video``, ``dropped``, ``failed``), ``error`` the message of that failure."""

    status: str = field(default="ok", kw_only=True)
    error: str | None = field(default=None, kw_only=True)

    def outcome_json(self) -> dict[str, Any]:
        """The ``status`` and ``error`` entries of the expression's JSON form."""
        return {"status": self.status, "error": self.error}


@dataclass(frozen=True)
class ExpressionSpec(ExpressionKey):
    """One expression to score. ``targets`` are the objects it refers to; picklable."""

    frames: tuple[str, ...]
    targets: tuple[ObjectSource, ...]
    results_dir: Path
    probe: str | None  # frame name of the size probe; None = the first listed frame

    @property
    def pred_dir(self) -> Path:
        return self.results_dir / self.video / self.exp_id


def _decode_sum(
    sources: Sequence[ObjectSource], t: int, shape: tuple[int, int], pred_path: Path
) -> np.ndarray:
    gt = np.zeros(shape, dtype=np.uint8)
    for src in sources:
        m = src.frame(t)
        if m is None:
            continue
        if m.shape != shape:
            raise ExpressionFailure(
                f"ground truth is {m.shape[1]}x{m.shape[0]} but the prediction is {shape[1]}x{shape[0]}",
                pred_path,
            )
        gt += m
    return gt


def read_prediction(path: Path, shape: tuple[int, int] | None) -> np.ndarray:
    """``cv2.imread(path, GRAYSCALE)`` (:func:`read_gray_png`) as uint8 ``(h, w)``; a missing or unreadable
    file, or a size other than ``shape``, raises :class:`ExpressionFailure`."""
    try:
        pred = read_gray_png(path)
    except DataFormatError:
        raise ExpressionFailure("prediction frame missing or unreadable", path) from None
    if shape is not None and pred.shape != shape:
        raise ExpressionFailure(
            f"prediction is {pred.shape[1]}x{pred.shape[0]}, the probe frame is {shape[1]}x{shape[0]}", path
        )
    return pred


def expression_frames(
    spec: ExpressionSpec, extra: Sequence[ObjectSource] = ()
) -> Iterator[tuple[int, np.ndarray, np.ndarray, list[np.ndarray | None]]]:
    """Yield ``(t, gt, pred, extra_masks)`` for every listed frame, as the official loops read them.

    ``gt`` is the uint8 sum of the targets' masks, ``pred`` the raw uint8 grey prediction, both
    ``(h, w)`` at the probe frame's size; ``extra_masks`` are the 0/1 masks of ``extra`` objects (or
    ``None`` where absent).

    Raises:
        MissingVideo: ``<results>/<video>`` does not exist.
        ExpressionFailure: the probe or a frame is missing/unreadable, or a size differs.
    """
    video_dir = spec.results_dir / spec.video
    if not video_dir.is_dir():
        raise MissingVideo("video folder missing from the results", video_dir)
    probe = spec.probe if spec.probe is not None else spec.frames[0]
    shape = read_prediction(spec.pred_dir / f"{probe}.png", None).shape
    for t, frame in enumerate(spec.frames):
        path = spec.pred_dir / f"{frame}.png"
        gt = _decode_sum(spec.targets, t, shape, path)
        pred = read_prediction(path, shape)
        others: list[np.ndarray | None] = []
        for src in extra:
            m = src.frame(t)
            if m is not None and m.shape != shape:
                raise ExpressionFailure(f"ground truth of another object is {m.shape[1]}x{m.shape[0]}", path)
            others.append(m)
        yield t, gt, pred, others


@dataclass(frozen=True)
class GroundTruth:
    """Parsed ground truth of one split: the videos of ``meta_expressions.json`` and a mask lookup."""

    meta_path: Path
    videos: dict[str, dict[str, Any]]
    mask_dict: dict[str, list[Any]] | None
    annotations_dir: Path | None

    def frames(self, video: str) -> tuple[str, ...]:
        frames = self.videos[video].get("frames")
        if not isinstance(frames, list) or not frames:
            raise DataFormatError(f"video {video!r} has no 'frames' list", path=self.meta_path)
        return tuple(str(f) for f in frames)

    def anno_source(self, anno_id: Any) -> RleSource:
        """The object stored under ``anno_id`` in ``mask_dict.json``."""
        assert self.mask_dict is not None
        key = str(anno_id)
        if key not in self.mask_dict:
            raise DataFormatError(
                f"anno_id {key} is not in mask_dict.json",
                path=self.meta_path,
                fix="use the mask_dict of the same split",
            )
        return RleSource(tuple(self.mask_dict[key]), f"mask_dict.json[{key}]")

    def label_source(self, video: str, label: Any) -> LabelPngSource:
        """Object id ``label`` in ``Annotations/<video>/<frame>.png``."""
        assert self.annotations_dir is not None
        try:
            value = int(label)
        except (TypeError, ValueError) as err:
            raise DataFormatError(
                f"obj_id {label!r} of video {video!r} is not an integer", path=self.meta_path
            ) from err
        paths = tuple(str(self.annotations_dir / video / f"{f}.png") for f in self.frames(video))
        return LabelPngSource(paths, value)

    def targets(self, video: str, exp_id: str) -> tuple[ObjectSource, ...]:
        """The objects an expression refers to: its ``anno_id`` list (mask_dict) or ``obj_id`` (PNGs)."""
        exp = self.videos[video]["expressions"][exp_id]
        if self.mask_dict is not None:
            ids = exp.get("anno_id")
            if ids is None:
                raise DataFormatError(
                    f"expression {video}/{exp_id} has no 'anno_id' but masks come from mask_dict.json",
                    path=self.meta_path,
                )
            return tuple(self.anno_source(a) for a in as_list(ids))
        ids = exp.get("obj_id")
        if ids is None:
            raise DataFormatError(f"expression {video}/{exp_id} has no 'obj_id'", path=self.meta_path)
        return tuple(self.label_source(video, o) for o in as_list(ids))

    def expressions(self) -> Iterator[tuple[str, str, dict[str, Any]]]:
        for video, data in self.videos.items():
            exps = data.get("expressions")
            if not isinstance(exps, Mapping):
                raise DataFormatError(f"video {video!r} has no 'expressions' mapping", path=self.meta_path)
            for exp_id, exp in exps.items():
                yield video, str(exp_id), exp


def as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, (list, tuple)) else [value]


def load_json(path: Path) -> Any:
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except OSError as err:
        raise DataFormatError(f"cannot read ({err.strerror})", path=path, fix="check the path") from err
    except json.JSONDecodeError as err:
        raise DataFormatError(
            f"not valid JSON ({err})", path=path, fix="re-download or regenerate the file"
        ) from err


def load_ground_truth(
    gt_dir: str | Path | None = None,
    *,
    meta: str | Path | None = None,
    mask_dict: str | Path | None = None,
    annotations_dir: str | Path | None = None,
) -> GroundTruth:
    """Load ``meta_expressions.json`` and locate the masks.

    Args:
        gt_dir: split folder holding ``meta_expressions.json`` and ``mask_dict.json`` or ``Annotations/``.
        meta: explicit path of the meta file (default ``gt_dir/meta_expressions.json``).
        mask_dict: explicit ``mask_dict.json`` (default ``gt_dir/mask_dict.json`` if present).
        annotations_dir: explicit palette-PNG folder (default ``gt_dir/Annotations`` when no mask_dict).
    """
    base = Path(gt_dir) if gt_dir is not None else None
    meta_path = Path(meta) if meta is not None else (base / "meta_expressions.json" if base else None)
    if meta_path is None:
        raise EvaluationError("no meta_expressions.json given", fix="pass --gt DIR or --meta FILE")
    if not meta_path.is_file():
        raise DataFormatError(
            "meta_expressions.json not found", path=meta_path, fix="pass the split folder as --gt"
        )
    data = load_json(meta_path)
    if not isinstance(data, Mapping) or not isinstance(data.get("videos"), Mapping):
        raise DataFormatError("expected {'videos': {...}} at the top level", path=meta_path)
    mask_path = Path(mask_dict) if mask_dict is not None else None
    if (
        mask_path is None
        and annotations_dir is None
        and base is not None
        and (base / "mask_dict.json").is_file()
    ):
        mask_path = base / "mask_dict.json"
    masks = None
    ann_dir = None
    if mask_path is not None:
        masks = load_json(mask_path)
        if not isinstance(masks, Mapping):
            raise DataFormatError("expected {anno_id: [per-frame RLE]} at the top level", path=mask_path)
    else:
        ann_dir = (
            Path(annotations_dir) if annotations_dir is not None else (base / "Annotations" if base else None)
        )
        if ann_dir is None or not ann_dir.is_dir():
            raise DataFormatError(
                "no mask_dict.json and no Annotations/ folder of palette PNGs",
                path=base or meta_path,
                fix="put mask_dict.json (MeViS/ReVOS) or Annotations/<video>/<frame>.png next to meta_expressions.json",
            )
    return GroundTruth(meta_path, dict(data["videos"]), dict(masks) if masks is not None else None, ann_dir)


def mean_or_nan(values: Sequence[float]) -> float:
    """``np.mean`` of a list, NaN (without a warning) when it is empty."""
    if not values:
        return math.nan
    return float(np.mean(values))


def failure_error(spec: ExpressionSpec, failure: ExpressionFailure, what: str) -> EvaluationError:
    """The strict-mode error for a failed expression; ``what`` says what the official code does instead."""
    return EvaluationError(
        f"expression {spec.key}: {failure.message} (the official protocol {what})",
        path=failure.path,
        fix="write one PNG per listed frame at the ground-truth size, or drop --strict",
    )
