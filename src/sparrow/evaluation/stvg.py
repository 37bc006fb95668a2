"""Spatio-temporal video grounding metrics (VidSTG, HC-STVG) as TubeDETR computes them (METRICS.md 3.1).

Ground truth: a processed annotation file, see :mod:`sparrow.evaluation.stvg_data`.

Predictions -- one JSON object keyed by the annotation's ``video_id`` (as a string)::

    {
      "<video_id>": {
        "sted": [start_frame, end_frame_exclusive],
        "boxes": {"<frame_id>": [x1, y1, x2, y2], ...}
      },
      ...
    }

- ``sted`` is the predicted temporal span in the video's own frame numbers, end **exclusive**, like the
  GT tube ``[tube_start_frame, tube_end_frame)``.
- ``boxes`` maps a frame number (string key) to one box, ``xyxy`` in absolute pixels of the original
  frame. A box is needed for **every sampled frame inside the GT tube**, also those outside the
  predicted ``sted`` (they enter ``gt_vIoU``); boxes of other frames are ignored. The sampled frames
  are :func:`stvg_frames` (TubeDETR: 5 fps, at most 200 frames, over the whole clip).

Per video, with GT ``[gs, ge)`` and prediction ``[ps, pe)``:

- ``tIoU = (min(ge, pe) - max(gs, ps)) / ((ge - gs) + (pe - ps) - intersection)``, 0 when they do not
  overlap (continuous arithmetic on frame numbers);
- ``vIoU = sum of box IoUs over sampled GT frames inside [max(gs, ps), min(ge, pe)) / number of
  sampled frames inside [min(gs, ps), max(ge, pe))``;
- ``gt_vIoU`` = mean box IoU over the sampled GT frames (the spatial score as if the span were known);
- box IoU without ``+1`` (torchvision convention); ``vIoU@R`` / ``gt_vIoU@R`` are the fractions of
  videos with a value **strictly above** R.

Dataset numbers are plain means over videos, overall and per ``qtype`` (VidSTG reports declarative and
interrogative separately; HC-STVG has no qtype). Means are summed sequentially in annotation order.

Missing predictions: TubeDETR raises when a video or a GT-frame box is missing. With ``strict=True``
we raise :class:`~sparrow.errors.EvaluationError` naming the prediction file, the video and the frame.
Otherwise the video is **excluded** from every mean (as VideoGLaMM's grounding script does with any
failing video), and listed in ``excluded`` with the reason. Predictions for videos that are not in
the annotation are ignored (listed in ``ignored_predictions``; an error with ``strict``).

One difference: a box pair whose union is 0 (two degenerate boxes) has IoU 0 here; TubeDETR divides
0/0 and gets NaN, which poisons its means.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Generic, Protocol, TypeVar

import numpy as np

from sparrow.data.formats.stvg import StvgPrediction
from sparrow.errors import DataFormatError, EvaluationError
from sparrow.evaluation.stvg_data import StvgAnnotations, StvgVideo, load_stvg_annotations, sample_frame_ids
from sparrow.structures.boxes import box_iou

__all__ = [
    "STVG_THRESHOLDS",
    "QtypeResult",
    "StvgPrediction",
    "StvgResult",
    "StvgVideoScore",
    "evaluate_stvg",
    "load_stvg_predictions",
    "print_summary_table",
    "recall_at",
    "sequential_mean",
    "stvg_frames",
    "summarise_by_qtype",
    "temporal_iou",
    "unknown_predictions",
]

STVG_THRESHOLDS = (0.3, 0.5)
"""IoU thresholds of vIoU@R and gt_vIoU@R (strict ``>``)."""


def _pred_error(path: Path, message: str) -> DataFormatError:
    return DataFormatError(
        message,
        path=path,
        fix='write {"<video_id>": {"sted": [start, end_exclusive], "boxes": {"<frame>": [x1, y1, x2, y2]}}}',
    )


def _numbers(value: Any, n: int) -> bool:
    return (
        isinstance(value, (list, tuple))
        and len(value) == n
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
    )


def load_stvg_predictions(path: str | Path) -> dict[str, StvgPrediction]:
    """Read a predictions file in the layout of the module docstring.

    Raises:
        DataFormatError: unreadable JSON or an entry that does not follow the layout.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise _pred_error(path, f"cannot read the predictions ({err})") from err
    if not isinstance(data, Mapping):
        raise _pred_error(path, "the predictions must be a JSON object keyed by video_id")
    out = {}
    for video_id, entry in data.items():
        if not isinstance(entry, Mapping) or not _numbers(entry.get("sted"), 2):
            raise _pred_error(path, f"video {video_id!r}: 'sted' must be [start, end_exclusive]")
        boxes_raw = entry.get("boxes", {})
        if not isinstance(boxes_raw, Mapping):
            raise _pred_error(path, f"video {video_id!r}: 'boxes' must map frame numbers to boxes")
        boxes = {}
        for frame, box in boxes_raw.items():
            if not _numbers(box, 4) or not str(frame).lstrip("-").isdigit():
                raise _pred_error(path, f"video {video_id!r} frame {frame!r}: a box must be [x1, y1, x2, y2]")
            boxes[int(frame)] = (box[0], box[1], box[2], box[3])
        out[str(video_id)] = StvgPrediction(sted=(entry["sted"][0], entry["sted"][1]), boxes=boxes)
    return out


def temporal_iou(gt_sted: Sequence[float], pred_sted: Sequence[float]) -> float:
    """TubeDETR's temporal IoU of two ``[start, end_exclusive)`` spans (0 if they do not overlap)."""
    max_start = max(gt_sted[0], pred_sted[0])
    min_end = min(gt_sted[1], pred_sted[1])
    if min_end <= max_start:
        return 0.0
    inter = min_end - max_start
    return inter / ((gt_sted[1] - gt_sted[0]) + (pred_sted[1] - pred_sted[0]) - inter)


def stvg_frames(video: StvgVideo, *, fps: float = 5, max_len: int = 200) -> list[int]:
    """The frames TubeDETR samples from the clip of ``video`` (frame numbers)."""
    return sample_frame_ids(
        video.clip_start, video.clip_end, fps=fps, video_fps=video.video_fps, max_len=max_len
    )


@dataclass(frozen=True)
class StvgVideoScore:
    """Per-video scores: ``tiou``, ``viou``, ``gt_viou`` (fractions) and the video's ``qtype``."""

    video_id: str
    qtype: str | None
    tiou: float
    viou: float
    gt_viou: float


@dataclass(frozen=True)
class _Item:
    video: StvgVideo
    pred: StvgPrediction | None
    fps: float
    max_len: int


@dataclass(frozen=True)
class _Failure:
    video_id: str
    reason: str
    gt_side: bool = False  # a problem of the annotation (always an error), not of the prediction


def _score_item(item: _Item) -> StvgVideoScore | _Failure:
    video, pred = item.video, item.pred
    if pred is None:
        return _Failure(video.video_id, "no prediction for this video")
    try:
        frame_ids = stvg_frames(video, fps=item.fps, max_len=item.max_len)
    except ValueError as err:
        return _Failure(video.video_id, f"cannot sample frames ({err}); lower --fps", gt_side=True)
    gs, ge = video.tube_start, video.tube_end
    ps, pe = pred.sted
    max_start, min_end = max(gs, ps), min(ge, pe)
    min_start, max_end = min(gs, ps), max(ge, pe)
    n_union = sum(1 for f in frame_ids if min_start <= f < max_end)
    viou = gt_viou = 0.0
    n_gt = 0
    for f in frame_ids:
        if not gs <= f < ge:
            continue
        gt_box = video.gt_box_xyxy(f)
        if gt_box is None:
            return _Failure(video.video_id, f"no GT box for sampled tube frame {f}", gt_side=True)
        box = pred.boxes.get(f)
        if box is None:
            return _Failure(video.video_id, f"no predicted box for GT frame {f}")
        iou = float(
            box_iou(np.asarray([box], dtype=np.float64), np.asarray([gt_box], dtype=np.float64))[0, 0]
        )
        if max_start <= f < min_end:
            viou += iou
        gt_viou += iou
        n_gt += 1
    return StvgVideoScore(
        video_id=video.video_id,
        qtype=video.qtype,
        tiou=temporal_iou((gs, ge), (ps, pe)),
        viou=viou / max(n_union, 1),
        gt_viou=gt_viou / max(n_gt, 1),
    )


def recall_at(values: Sequence[float], threshold: float) -> float:
    """Fraction of ``values`` strictly above ``threshold`` (0.0 for no values)."""
    return sum(1 for v in values if v > threshold) / len(values) if values else 0.0


def sequential_mean(values: Sequence[float]) -> float:
    """Mean summed left to right, as the official loops accumulate (0.0 for no values)."""
    total = 0.0
    for v in values:  # sequential, like the official accumulation
        total += v
    return total / len(values) if values else 0.0


def _summary(scores: Sequence[StvgVideoScore]) -> dict[str, float | int]:
    tiou = [s.tiou for s in scores]
    viou = [s.viou for s in scores]
    gt = [s.gt_viou for s in scores]
    out: dict[str, float | int] = {
        "n_videos": len(scores),
        "m_tIoU": sequential_mean(tiou),
        "m_vIoU": sequential_mean(viou),
    }
    for r in STVG_THRESHOLDS:
        out[f"vIoU@{r}"] = recall_at(viou, r)
    out["gt_vIoU"] = sequential_mean(gt)
    for r in STVG_THRESHOLDS:
        out[f"gt_vIoU@{r}"] = recall_at(gt, r)
    return out


def print_summary_table(
    title: str,
    overall: Mapping[str, float | int],
    per_qtype: Mapping[str, Mapping[str, float | int]],
    n_excluded: int,
    console: Any = None,
) -> None:
    """Print summaries as a table: a row per metric, a column per qtype plus ``all``; 4 decimals."""
    from rich.console import Console

    from sparrow.evaluation.report import print_table

    console = console or Console()
    columns = [*sorted(per_qtype), "all"]
    summaries = [*(per_qtype[q] for q in sorted(per_qtype)), overall]
    rows = [[key, *(s[key] for s in summaries)] for key in overall]
    print_table(title, ["metric", *columns], rows, decimals=4, console=console)
    if n_excluded:
        console.print(f"[yellow]{n_excluded} video(s) excluded (see --json 'excluded')[/]")


S = TypeVar("S", bound="_QtypeScore")


class _QtypeScore(Protocol):
    video_id: str
    qtype: str | None


def summarise_by_qtype(
    scores: Sequence[S], summary: Callable[[Sequence[S]], dict[str, float | int]]
) -> tuple[dict[str, float | int], dict[str, dict[str, float | int]]]:
    """``(overall, per_qtype)``: ``summary`` of all ``scores`` and of each (sorted, non-None) qtype."""
    qtypes = sorted({s.qtype for s in scores if s.qtype is not None})
    return summary(scores), {q: summary([s for s in scores if s.qtype == q]) for q in qtypes}


def unknown_predictions(
    predictions: Iterable[str], gt: StvgAnnotations, pred_path: Path | None, *, strict: bool
) -> list[str]:
    """Sorted prediction keys that are not a video of ``gt`` (ignored; an error with ``strict``).

    Raises:
        EvaluationError: (``strict``) some prediction names a video the annotation does not hold.
    """
    known = {v.video_id for v in gt.videos}
    ignored = sorted(k for k in predictions if k not in known)
    if ignored and strict:
        raise EvaluationError(
            f"{len(ignored)} prediction(s) for videos not in {gt.path.name}, e.g. {ignored[0]!r}",
            path=pred_path,
            fix="evaluate against the annotation file the predictions were made for",
        )
    return ignored


@dataclass(frozen=True)
class QtypeResult(Generic[S]):
    """Results of a benchmark reported per ``qtype``: ``overall`` and ``per_qtype`` summaries (metric
    name -> value, plus ``n_videos``), per-video scores and what was left out.

    Subclasses name the ``benchmark`` (JSON) and the table ``title`` and give a video's JSON form.
    """

    benchmark: ClassVar[str]
    title: ClassVar[str]

    dataset: str
    overall: dict[str, float | int]
    per_qtype: dict[str, dict[str, float | int]]
    videos: list[S]
    excluded: dict[str, str]
    ignored_predictions: list[str]
    settings: dict[str, Any] = field(default_factory=dict)

    def video_json(self, score: S) -> dict[str, Any]:
        """The ``per_video`` entry of one score."""
        raise NotImplementedError

    def to_json_dict(self) -> dict[str, Any]:
        """Full-precision JSON form: the overall metrics at the top level, then ``per_qtype``,
        ``settings``, ``excluded``, ``ignored_predictions`` and ``per_video``."""
        return {
            "benchmark": f"{self.benchmark}/{self.dataset}",
            **self.overall,
            "per_qtype": self.per_qtype,
            "settings": self.settings,
            "excluded": self.excluded,
            "ignored_predictions": self.ignored_predictions,
            "per_video": {s.video_id: self.video_json(s) for s in self.videos},
        }

    def print_table(self, console: Any = None) -> None:
        """Rich table with the official display rounding (4 decimals): a column per qtype and ``all``."""
        print_summary_table(
            f"{self.title} ({self.dataset})", self.overall, self.per_qtype, len(self.excluded), console
        )


@dataclass(frozen=True)
class StvgResult(QtypeResult[StvgVideoScore]):
    """STVG results; summaries hold ``m_tIoU``, ``m_vIoU``, ``vIoU@R``, ``gt_vIoU``, ``gt_vIoU@R``,
    ``n_videos`` (JSON keys ``vIoU@0.3``, ``vIoU@0.5``, ...)."""

    benchmark: ClassVar[str] = "stvg"
    title: ClassVar[str] = "STVG"

    def video_json(self, score: StvgVideoScore) -> dict[str, Any]:
        return {"qtype": score.qtype, "tIoU": score.tiou, "vIoU": score.viou, "gt_vIoU": score.gt_viou}


def evaluate_stvg(
    annotations: str | Path,
    predictions: str | Path | Mapping[str, StvgPrediction],
    *,
    fps: float = 5,
    video_max_len: int = 200,
    strict: bool = False,
    workers: int | None = None,
) -> StvgResult:
    """Score STVG predictions against a VidSTG / HC-STVG processed annotation file.

    Args:
        annotations: the processed GT file (see :mod:`sparrow.evaluation.stvg_data`).
        predictions: a predictions JSON path (layout in the module docstring) or the loaded mapping.
        fps, video_max_len: TubeDETR's sampling (defaults 5 and 200).
        strict: raise instead of excluding videos with missing predictions.
        workers: processes (default: all cores; 1 runs in-process).

    Raises:
        DataFormatError: malformed files, or GT boxes missing for a sampled tube frame.
        EvaluationError: (``strict``) a missing video or frame prediction, or a prediction for an
            unknown video.
    """
    from sparrow.evaluation.parallel import parallel_map

    gt = load_stvg_annotations(annotations)
    pred_path = Path(predictions) if isinstance(predictions, (str, Path)) else None
    preds = load_stvg_predictions(pred_path) if pred_path is not None else dict(predictions)  # type: ignore[arg-type]
    ignored = unknown_predictions(preds, gt, pred_path, strict=strict)
    items = [_Item(v, preds.get(v.video_id), fps, video_max_len) for v in gt.videos]
    outcomes = parallel_map(_score_item, items, workers=workers, description="STVG videos")
    scores: list[StvgVideoScore] = []
    excluded: dict[str, str] = {}
    for outcome in outcomes:
        if isinstance(outcome, StvgVideoScore):
            scores.append(outcome)
            continue
        if outcome.gt_side:
            raise DataFormatError(
                f"video {outcome.video_id!r}: {outcome.reason}",
                path=gt.path,
                fix="use the TubeDETR-processed annotation file (a box for every tube frame)",
            )
        if strict:
            raise EvaluationError(
                f"video {outcome.video_id!r}: {outcome.reason}",
                path=pred_path,
                fix="predict every GT video, with a box for every sampled frame inside the GT tube",
            )
        excluded[outcome.video_id] = outcome.reason
    overall, per_qtype = summarise_by_qtype(scores, _summary)
    return StvgResult(
        dataset=gt.dataset,
        overall=overall,
        per_qtype=per_qtype,
        videos=scores,
        excluded=excluded,
        ignored_predictions=ignored,
        settings={"fps": fps, "video_max_len": video_max_len, "strict": strict},
    )
