"""MeViS J&F, per expression, as ``tools/eval_mevis.py`` computes it (METRICS.md §2.1).

For every (video, exp_id) of ``meta_expressions.json``: GT = uint8 sum of the RLEs of all its anno_ids
(or of its ``obj_id`` labels in ``Annotations/`` palette PNGs -- the Ref-YouTube-VOS / ReferFormer
layout); prediction = ``cv2`` grey PNG, non-zero is foreground; the frame size comes from
``<exp_id>/00000.png``; J and F per frame over **all** listed frames, averaged per expression; final
``J`` and ``F`` are the means over expressions and ``J&F = (J + F) / 2`` (fractions).

Failures, as in the official script: a missing ``<results>/<video>`` folder scores the expression
[0, 0]; any other unreadable/missing frame or size mismatch makes the official worker die, so the
expression **drops out of the average** (listed in ``dropped``). ``strict=True`` raises
:class:`~sparrow.errors.EvaluationError` naming the file in both cases.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sparrow.errors import EvaluationError
from sparrow.evaluation.expressions import (
    ExpressionFailure,
    ExpressionOutcome,
    ExpressionSpec,
    GroundTruth,
    MissingVideo,
    expression_frames,
    failure_error,
    load_ground_truth,
    mean_or_nan,
    results_folder,
)
from sparrow.evaluation.jf import boundary_radius, f_pair, jaccard_pair, prepare_mask
from sparrow.evaluation.parallel import parallel_map

__all__ = ["ExpressionScore", "MevisResult", "evaluate_expressions", "evaluate_mevis", "expression_jf"]

MEVIS_PROBE = "00000"


@dataclass(frozen=True)
class ExpressionScore(ExpressionOutcome):
    """J and F of one expression (fractions). ``status``: ``ok``, ``missing_video`` (scored 0) or
    ``dropped`` (excluded from the means, as the official script loses it); ``error`` says why."""

    J: float
    F: float
    n_frames: int

    @property
    def counted(self) -> bool:
        return self.status != "dropped"

    def to_json_dict(self) -> dict[str, Any]:
        return {
            "J&F": (self.J + self.F) / 2.0,
            "J": self.J,
            "F": self.F,
            "n_frames": self.n_frames,
            **self.outcome_json(),
        }


@dataclass(frozen=True)
class MevisResult:
    """Dataset J, F, J&F (fractions, full precision) and every expression's score in meta order."""

    J: float
    F: float
    JF: float
    expressions: list[ExpressionScore]
    title: str = "MeViS"

    @property
    def dropped(self) -> list[str]:
        return [e.key for e in self.expressions if e.status == "dropped"]

    @property
    def missing_videos(self) -> list[str]:
        return sorted({e.video for e in self.expressions if e.status == "missing_video"})

    def to_json_dict(self) -> dict[str, Any]:
        return {
            "J&F": self.JF,
            "J": self.J,
            "F": self.F,
            "n_expressions": sum(e.counted for e in self.expressions),
            "dropped": self.dropped,
            "missing_videos": self.missing_videos,
            "per_expression": {e.key: e.to_json_dict() for e in self.expressions},
        }

    def print_table(self, console: Any = None, *, decimals: int = 4, scale: float = 1.0) -> None:
        from sparrow.evaluation.report import print_table

        n = sum(e.counted for e in self.expressions)
        print_table(
            self.title,
            ("J&F", "J", "F"),
            [[self.JF, self.J, self.F]],
            decimals=decimals,
            scale=scale,
            console=console,
        )
        if self.dropped or self.missing_videos:
            from rich.console import Console

            (console or Console(stderr=True)).print(
                f"[yellow]{n} expressions scored; {len(self.dropped)} dropped (unreadable frames, as the official "
                f"script loses them); {len(self.missing_videos)} videos missing (scored 0). Use --strict to fail instead.[/]"
            )


def expression_jf(spec: ExpressionSpec) -> tuple[float, float, int]:
    """Mean J and mean F over all listed frames of one expression, and the frame count.

    Raises :class:`~sparrow.evaluation.expressions.ExpressionFailure` (or ``MissingVideo``).
    """
    j: list[float] = []
    f: list[float] = []
    radius = None
    for _, gt, pred, _ in expression_frames(spec):
        if radius is None:
            radius = boundary_radius(gt.shape)
        g = prepare_mask(gt, radius=radius)
        p = prepare_mask(pred, radius=radius)
        j.append(jaccard_pair(g, p))
        f.append(f_pair(g, p))
    return float(np.array(j).mean()), float(np.array(f).mean()), len(j)


@dataclass(frozen=True)
class _Job:
    spec: ExpressionSpec
    strict: bool


def _score(job: _Job) -> ExpressionScore:
    spec = job.spec
    try:
        j, f, n = expression_jf(spec)
    except MissingVideo as miss:
        if job.strict:
            raise failure_error(spec, miss, "scores it 0") from None
        return ExpressionScore(
            spec.video, spec.exp_id, 0.0, 0.0, 0, status="missing_video", error=miss.message
        )
    except ExpressionFailure as fail:
        if job.strict:
            raise failure_error(spec, fail, "silently drops it from the average") from None
        return ExpressionScore(
            spec.video, spec.exp_id, math.nan, math.nan, 0, status="dropped", error=str(fail)
        )
    return ExpressionScore(spec.video, spec.exp_id, j, f, n)


def evaluate_expressions(
    gt: GroundTruth,
    results_dir: str | Path,
    *,
    probe: str | None = MEVIS_PROBE,
    workers: int | None = 1,
    strict: bool = False,
    title: str = "MeViS",
) -> MevisResult:
    """Score every expression of ``gt`` against ``results_dir/<video>/<exp_id>/<frame>.png``.

    ``probe`` is the frame name whose PNG gives the size (``None`` = each video's first frame).
    """
    results = results_folder(results_dir)
    jobs = [
        _Job(
            ExpressionSpec(video, exp_id, gt.frames(video), gt.targets(video, exp_id), results, probe), strict
        )
        for video, exp_id, _ in gt.expressions()
    ]
    if not jobs:
        raise EvaluationError("no expressions to evaluate", path=gt.meta_path)
    scores = parallel_map(_score, jobs, workers=workers, description=f"{title} expressions")
    counted = [s for s in scores if s.counted]
    j = mean_or_nan([s.J for s in counted])
    f = mean_or_nan([s.F for s in counted])
    return MevisResult(J=j, F=f, JF=(j + f) / 2, expressions=scores, title=title)


def evaluate_mevis(
    gt_dir: str | Path | None,
    results_dir: str | Path,
    *,
    meta: str | Path | None = None,
    mask_dict: str | Path | None = None,
    annotations_dir: str | Path | None = None,
    workers: int | None = 1,
    strict: bool = False,
) -> MevisResult:
    """MeViS protocol on a split folder (``meta_expressions.json`` + ``mask_dict.json`` or ``Annotations/``).

    Args:
        gt_dir: split folder (e.g. ``mevis/valid_u``); the explicit paths below override its contents.
        results_dir: ``<video>/<exp_id>/<frame>.png`` predictions (any non-zero grey is foreground).
        meta, mask_dict, annotations_dir: explicit ground-truth files (see :func:`load_ground_truth`).
        workers: processes (``None`` = all cores).
        strict: raise instead of scoring missing videos 0 / dropping unreadable expressions.
    """
    gt = load_ground_truth(gt_dir, meta=meta, mask_dict=mask_dict, annotations_dir=annotations_dir)
    return evaluate_expressions(gt, results_dir, probe=MEVIS_PROBE, workers=workers, strict=strict)
