"""Identity consistency of referring predictions: identity-switch rate and tracking metrics (IDF1, IDSW, HOTA).

Input: the MeViS layout (``meta_expressions.json`` + ``mask_dict.json``; predictions
``<results>/<video>/<exp_id>/<frame>.png``, any non-zero grey = foreground) on videos where **every
object has ground truth**. The objects of a video are listed by the per-video key
``"objects": {"<obj_id>": <anno_id>, ...}`` (written by SynRef); without it, the union of the anno_ids of the
video's expressions is taken as the complete set.

**Identity-switch rate.** For an expression with target objects T (its anno_ids, their masks OR-ed), a frame
is *evaluated* when the prediction is non-empty, and is a *switch* when the prediction overlaps some other
object o ∉ T by more pixels than it overlaps the target: ``max_o |P ∧ G_o| > |P ∧ G_T|`` (ties are not
switches; a prediction on background only is not a switch). The dataset rate is
``Σ switch frames / Σ evaluated frames`` over all expressions (pooled frames; NaN when no frame is
evaluated); each expression also gets its own rate.

**Tracking metrics** (:mod:`.tracking`, TrackEval definitions, mask IoU): one sequence per video. GT tracks:
the objects that are the single target of at least one expression. Tracker tracks: for each such object, the
prediction of the first (meta order) single-object expression referring to it, so a perfect system gives one
track per object. IDSW then counts, per object, changes of the track matched to it (e.g. two referred objects
swapping predictions at a crossing); IDF1 and HOTA's AssA measure how consistently each track stays on one
object. Distractors without an expression are not GT tracks: a track moving onto one shows up as FN + FP
(lower IDF1 / HOTA, no IDSW) and in the identity-switch rate.

Missing prediction folders or frames: the expression is left out (listed in ``failed``) -- there is no
official behaviour to copy; ``strict=True`` raises instead. Size mismatches always raise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sparrow.errors import DataFormatError, EvaluationError
from sparrow.evaluation.expressions import (
    ExpressionFailure,
    ExpressionOutcome,
    RleSource,
    as_list,
    load_ground_truth,
    read_prediction,
    results_folder,
)
from sparrow.evaluation.parallel import parallel_map
from sparrow.evaluation.tracking import (
    SequenceBuilder,
    TrackingCounts,
    combine,
    evaluate_sequence,
    tracking_metrics,
)

__all__ = ["IdentityExpressionScore", "IdentityResult", "evaluate_identity", "is_identity_switch"]


def is_identity_switch(pred: np.ndarray, target: np.ndarray | None, others: list[np.ndarray]) -> bool:
    """True when bool ``pred (H, W)`` overlaps some mask of ``others`` by more pixels than ``target``."""
    on_target = int(np.count_nonzero(pred & target)) if target is not None else 0
    return any(int(np.count_nonzero(pred & o)) > on_target for o in others)


@dataclass(frozen=True)
class IdentityExpressionScore(ExpressionOutcome):
    """Evaluated (non-empty prediction) and switch frame counts of one expression."""

    n_evaluated: int
    n_switch: int

    @property
    def rate(self) -> float:
        return self.n_switch / self.n_evaluated if self.n_evaluated else math.nan

    def to_json_dict(self) -> dict[str, Any]:
        return {
            "id_switch_rate": self.rate,
            "n_evaluated_frames": self.n_evaluated,
            "n_switch_frames": self.n_switch,
            **self.outcome_json(),
        }


@dataclass(frozen=True)
class IdentityResult:
    """Pooled identity-switch rate, tracking metrics over all videos, per-expression counts."""

    id_switch_rate: float
    n_evaluated: int
    n_switch: int
    tracking: dict[str, float]
    n_tracks: int
    expressions: list[IdentityExpressionScore]

    def to_json_dict(self) -> dict[str, Any]:
        return {
            "id_switch_rate": self.id_switch_rate,
            "n_evaluated_frames": self.n_evaluated,
            "n_switch_frames": self.n_switch,
            **self.tracking,
            "n_tracks": self.n_tracks,
            "failed": [e.key for e in self.expressions if e.status != "ok"],
            "per_expression": {e.key: e.to_json_dict() for e in self.expressions},
        }

    def print_table(self, console: Any = None) -> None:
        from sparrow.evaluation.report import print_table

        t = self.tracking
        print_table(
            "Identity consistency",
            ("id_switch_rate", "IDF1", "IDSW", "HOTA", "AssA", "DetA", "MOTA"),
            [[self.id_switch_rate, t["IDF1"], t["IDSW"], t["HOTA"], t["AssA"], t["DetA"], t["MOTA"]]],
            decimals=4,
            console=console,
        )


@dataclass(frozen=True)
class _VideoJob:
    video: str
    frames: tuple[str, ...]
    objects: dict[str, RleSource]  # anno_id -> masks
    expressions: tuple[tuple[str, tuple[str, ...]], ...]  # (exp_id, target anno_ids)
    results_dir: Path
    strict: bool


@dataclass(frozen=True)
class _VideoScores:
    expressions: list[IdentityExpressionScore]
    counts: TrackingCounts
    n_tracks: int


def _missing_files(job: _VideoJob, exp_id: str) -> ExpressionFailure | None:
    exp_dir = job.results_dir / job.video / exp_id
    for frame in job.frames:
        path = exp_dir / f"{frame}.png"
        if not path.is_file():
            return ExpressionFailure("prediction frame missing", path)
    return None


def _evaluate_video(job: _VideoJob) -> _VideoScores:
    readable: list[tuple[str, tuple[str, ...]]] = []
    scores: dict[str, IdentityExpressionScore] = {}
    for exp_id, targets in job.expressions:
        failure = _missing_files(job, exp_id)
        if failure is None:
            readable.append((exp_id, targets))
            continue
        if job.strict:
            raise EvaluationError(
                f"expression {job.video}/{exp_id}: {failure.message}",
                path=failure.path,
                fix="write one PNG per listed frame, or drop --strict to leave the expression out",
            )
        scores[exp_id] = IdentityExpressionScore(job.video, exp_id, 0, 0, status="failed", error=str(failure))

    # One track per object that some single-object expression refers to (the first such expression).
    object_keys = list(job.objects)
    trackers: dict[str, str] = {}
    for exp_id, targets in readable:
        if len(targets) == 1 and targets[0] not in trackers:
            trackers[targets[0]] = exp_id
    tracked = [k for k in object_keys if k in trackers]
    builder = SequenceBuilder(len(tracked), len(tracked))
    counts = {exp_id: [0, 0] for exp_id, _ in readable}

    for t, frame in enumerate(job.frames):
        masks: dict[str, np.ndarray | None] = {}
        shape = None
        for key, src in job.objects.items():
            m = src.frame(t)
            masks[key] = None if m is None else m.view(bool)
            if m is not None:
                shape = m.shape
        preds: dict[str, np.ndarray] = {}
        for exp_id, targets in readable:
            path = job.results_dir / job.video / exp_id / f"{frame}.png"
            try:
                pred = read_prediction(path, shape) != 0
            except ExpressionFailure as fail:
                raise EvaluationError(
                    f"expression {job.video}/{exp_id}: {fail.message}", path=fail.path
                ) from None
            preds[exp_id] = pred
            if not pred.any():
                continue
            target = None
            for key in targets:
                if masks.get(key) is not None:
                    target = masks[key] if target is None else target | masks[key]
            others = [m for key, m in masks.items() if key not in targets and m is not None]
            counts[exp_id][0] += 1
            counts[exp_id][1] += is_identity_switch(pred, target, others)
        builder.add_frame(
            {i: masks[key] for i, key in enumerate(tracked)},
            {i: preds[trackers[key]] for i, key in enumerate(tracked)},
        )
    for exp_id, (n_eval, n_switch) in counts.items():
        scores[exp_id] = IdentityExpressionScore(job.video, exp_id, n_eval, n_switch)
    ordered = [scores[exp_id] for exp_id, _ in job.expressions]
    return _VideoScores(ordered, evaluate_sequence(builder.build()), len(tracked))


def evaluate_identity(
    gt_dir: str | Path | None,
    results_dir: str | Path,
    *,
    meta: str | Path | None = None,
    mask_dict: str | Path | None = None,
    workers: int | None = 1,
    strict: bool = False,
) -> IdentityResult:
    """Identity-switch rate and tracking metrics (module docstring) for a MeViS-layout split."""
    gt = load_ground_truth(gt_dir, meta=meta, mask_dict=mask_dict)
    if gt.mask_dict is None:
        raise DataFormatError("the identity protocol needs mask_dict.json", path=gt.meta_path)
    results = results_folder(results_dir)
    jobs = []
    for video, data in gt.videos.items():
        exps = tuple(
            (str(exp_id), tuple(str(a) for a in as_list(exp.get("anno_id", []))))
            for exp_id, exp in data.get("expressions", {}).items()
        )
        if "objects" in data:
            if not isinstance(data["objects"], dict):
                raise DataFormatError(
                    f"'objects' of video {video!r} must map obj_id to anno_id", path=gt.meta_path
                )
            anno_ids = [str(a) for a in data["objects"].values()]
        else:
            anno_ids = list(dict.fromkeys(a for _, targets in exps for a in targets))
        unknown = {a for _, targets in exps for a in targets} - set(anno_ids)
        if unknown:
            raise DataFormatError(
                f"video {video!r}: expressions refer to anno_ids {sorted(unknown)} missing from 'objects'",
                path=gt.meta_path,
            )
        objects = {a: gt.anno_source(a) for a in anno_ids}
        jobs.append(_VideoJob(video, gt.frames(video), objects, exps, results, strict))
    if not jobs:
        raise EvaluationError("no videos to evaluate", path=gt.meta_path)
    videos = parallel_map(_evaluate_video, jobs, workers=workers, description="identity (videos)")
    expressions = [e for v in videos for e in v.expressions]
    n_eval = sum(e.n_evaluated for e in expressions)
    n_switch = sum(e.n_switch for e in expressions)
    counts = combine([v.counts for v in videos])
    return IdentityResult(
        id_switch_rate=n_switch / n_eval if n_eval else math.nan,
        n_evaluated=n_eval,
        n_switch=n_switch,
        tracking=tracking_metrics(counts),
        n_tracks=sum(v.n_tracks for v in videos),
        expressions=expressions,
    )
