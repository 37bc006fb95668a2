"""ReVOS (VISA): J, F, accuracy A and robustness R per expression; referring / reasoning / overall
(METRICS.md §2.4, VISA ``tools/eval_revos.py`` + ``tools/metrics.py``).

Per expression (same reading as MeViS, but the size probe is the first listed frame):

- ``J``, ``F``: means over all listed frames (non-zero grey = foreground).
- ``A = mean_t mean_pixels(gt == pred)`` on raw values (GT 0/1/2..., prediction grey 0..255).
- ``R = mean_t max(1 - neg_t / (pos_t + 1e-6), 0)``, ``pos_t`` = pixels of the video's union-foreground
  mask, ``neg_t = Σ (1 - gt)·pred`` in **uint8** arithmetic (wrapping, like the official code).

``r_weight`` says which prediction values A and R see: ``"png_gray"`` (official, default) uses the stored
grey value, so each false-positive pixel of a 0/255 PNG weighs 255; ``"binary"`` uses 0/1 (Sa2VA's
reading of RLE predictions). The two are not comparable.

Aggregation (official): each expression stores ``round(100·x, 2)`` of J, F, A, R and of (J+F)/2 (numpy
rounding of a float64); "referring" = mean over ``type_id == 0``, "reason" = mean over ``type_id == 1``,
``JF_subset = (J_subset + F_subset) / 2``; "overall" = mean of the two subsets. ``type_id == 2``
expressions are excluded. Numbers are therefore **percentages**.

Failures: a missing ``<results>/<video>`` folder or any unreadable frame / size mismatch scores the
expression [0, 0, 0, 0] (the official ``except``); ``strict=True`` raises instead.

Foreground: ``mask_dict_foreground.json`` (``{video: {"masks_rle": [...]}}``) if given or found next to
``mask_dict.json``; otherwise computed the way ``generate_foreground_mask.py`` builds it (the OR of every
anno_id used by any expression of the video).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from sparrow.errors import DataFormatError, EvaluationError
from sparrow.evaluation.expressions import (
    ExpressionFailure,
    ExpressionOutcome,
    ExpressionSpec,
    GroundTruth,
    MissingVideo,
    RleSource,
    as_list,
    expression_frames,
    failure_error,
    load_ground_truth,
    load_json,
    mean_or_nan,
    results_folder,
)
from sparrow.evaluation.jf import boundary_radius, f_pair, jaccard_pair, prepare_mask
from sparrow.evaluation.parallel import parallel_map
from sparrow.structures.masks import rle_decode

__all__ = [
    "RWeight",
    "RevosExpressionScore",
    "RevosResult",
    "evaluate_revos",
    "revos_accuracy",
    "revos_robustness",
]

RWeight = Literal["png_gray", "binary"]
SUBSETS = {"referring": 0, "reason": 1}
EXCLUDED_TYPE = 2


def revos_accuracy(gt: np.ndarray, pred: np.ndarray) -> float:
    """Per-frame accuracy: fraction of pixels where the raw uint8 values are equal (``(h, w)`` each)."""
    return np.count_nonzero(gt == pred) / gt.size


def revos_robustness(gt: np.ndarray, pred: np.ndarray, foreground: np.ndarray) -> float:
    """Per-frame robustness ``max(1 - neg / (pos + 1e-6), 0)``, uint8 ``(h, w)`` arrays, uint8 wrapping."""
    neg = ((np.uint8(1) - gt) * pred).sum()
    pos = foreground.sum()
    return float(max(1 - neg / (pos + 1e-6), 0.0))


def _official_round(value: float) -> float:
    """``round(np.float64(x), 2)`` as numpy rounds (scale, rint, unscale) -- not Python's decimal round."""
    return float(np.round(np.float64(value), 2))


@dataclass(frozen=True)
class RevosExpressionScore(ExpressionOutcome):
    """Raw fractions ``j, f, a, r`` and the official rounded percentages of one expression."""

    type_id: int
    j: float
    f: float
    a: float
    r: float
    n_frames: int

    @property
    def rounded(self) -> dict[str, float]:
        """The official per-expression values: ``round(100·x, 2)``."""
        return {
            "J": _official_round(100 * self.j),
            "F": _official_round(100 * self.f),
            "JF": _official_round(100 * (self.j + self.f) / 2),
            "A": _official_round(100 * self.a),
            "R": _official_round(100 * self.r),
        }

    def to_json_dict(self) -> dict[str, Any]:
        rounded = self.rounded
        return {
            "J&F": rounded["JF"],
            "J": rounded["J"],
            "F": rounded["F"],
            "A": rounded["A"],
            "R": rounded["R"],
            "raw": {"J": self.j, "F": self.f, "A": self.a, "R": self.r},
            "type_id": self.type_id,
            "n_frames": self.n_frames,
            **self.outcome_json(),
        }


@dataclass(frozen=True)
class RevosResult:
    """Subset and overall numbers in percent (official), and every expression's score."""

    subsets: dict[str, dict[str, float]]  # referring / reason / overall -> J, F, A, R, JF
    expressions: list[RevosExpressionScore]
    r_weight: str

    def to_json_dict(self) -> dict[str, Any]:
        overall = self.subsets["overall"]
        return {
            "J&F": overall["JF"],
            "J": overall["J"],
            "F": overall["F"],
            "A": overall["A"],
            "R": overall["R"],
            "scale": "percent",
            "r_weight": self.r_weight,
            **{name: dict(values) for name, values in self.subsets.items()},
            "failed": [e.key for e in self.expressions if e.status != "ok"],
            "per_expression": {e.key: e.to_json_dict() for e in self.expressions},
        }

    def print_table(self, console: Any = None) -> None:
        from sparrow.evaluation.report import print_table

        cols = ("J", "F", "JF", "A", "R")
        rows = [[name, *(self.subsets[name][c] for c in cols)] for name in ("referring", "reason", "overall")]
        print_table(
            f"ReVOS (percent, r_weight={self.r_weight})", ("subset", *cols), rows, decimals=2, console=console
        )
        failed = [e for e in self.expressions if e.status != "ok"]
        if failed:
            from rich.console import Console

            (console or Console(stderr=True)).print(
                f"[yellow]{len(failed)} expressions could not be read and scored 0 (official behaviour; --strict fails instead).[/]"
            )


@dataclass(frozen=True)
class _ForegroundRles:
    """The video's union-foreground as stored in ``mask_dict_foreground.json`` (per-frame RLE)."""

    rles: tuple[Any, ...]

    def frame(self, t: int) -> np.ndarray:
        rle = self.rles[t] if t < len(self.rles) else None
        if not rle:
            raise ExpressionFailure(f"no foreground RLE for frame {t}", Path("mask_dict_foreground.json"))
        if isinstance(rle, list):  # several RLEs decode to (h, w, n) officially, then summed
            return np.sum([rle_decode(r) for r in rle], axis=0).astype(np.uint8)
        return rle_decode(rle).astype(np.uint8)


@dataclass(frozen=True)
class _ForegroundUnion:
    """The OR of every annotated object of the video (``generate_foreground_mask.py``)."""

    members: tuple[RleSource, ...]

    def frame(self, t: int) -> np.ndarray | None:
        out = None
        for src in self.members:
            m = src.frame(t)
            if m is not None:
                out = m.copy() if out is None else out | m
        return out


@dataclass(frozen=True)
class _Job:
    spec: ExpressionSpec
    type_id: int
    foreground: _ForegroundRles | _ForegroundUnion
    r_weight: str
    strict: bool


def _score_frames(job: _Job) -> tuple[float, float, float, float, int]:
    j, f, a, r = [], [], [], []
    radius = None
    for t, gt, pred, _ in expression_frames(job.spec):
        if radius is None:
            radius = boundary_radius(gt.shape)
        fg = job.foreground.frame(t)
        if fg is None:
            fg = np.zeros_like(gt)
        elif fg.shape != gt.shape:
            raise ExpressionFailure("foreground mask size differs from the prediction", job.spec.pred_dir)
        g = prepare_mask(gt, radius=radius)
        p = prepare_mask(pred, radius=radius)
        j.append(jaccard_pair(g, p))
        f.append(f_pair(g, p))
        weighted = pred if job.r_weight == "png_gray" else (pred != 0).view(np.uint8)
        a.append(revos_accuracy(gt, weighted))
        r.append(revos_robustness(gt, weighted, fg))
    return (
        float(np.array(j).mean()),
        float(np.array(f).mean()),
        float(np.array(a).mean()),
        float(np.array(r).mean()),
        len(j),
    )


def _score(job: _Job) -> RevosExpressionScore:
    spec = job.spec
    try:
        j, f, a, r, n = _score_frames(job)
    except ExpressionFailure as fail:
        if job.strict:
            raise failure_error(spec, fail, "scores it 0") from None
        status = "missing_video" if isinstance(fail, MissingVideo) else "failed"
        return RevosExpressionScore(
            spec.video, spec.exp_id, job.type_id, 0.0, 0.0, 0.0, 0.0, 0, status=status, error=str(fail)
        )
    return RevosExpressionScore(spec.video, spec.exp_id, job.type_id, j, f, a, r, n)


def _foregrounds(gt: GroundTruth, path: Path | None) -> dict[str, _ForegroundRles | _ForegroundUnion]:
    if path is not None:
        data = load_json(path)
        out: dict[str, _ForegroundRles | _ForegroundUnion] = {}
        for video in gt.videos:
            entry = data.get(video) if isinstance(data, dict) else None
            if not isinstance(entry, dict) or "masks_rle" not in entry:
                raise DataFormatError(f"no 'masks_rle' for video {video!r}", path=path)
            out[video] = _ForegroundRles(tuple(entry["masks_rle"]))
        return out
    union_ids: dict[str, list[str]] = {}
    for video, _, exp in gt.expressions():
        ids = union_ids.setdefault(video, [])
        for a in as_list(exp.get("anno_id", [])):
            if str(a) not in ids:
                ids.append(str(a))
    return {
        video: _ForegroundUnion(tuple(gt.anno_source(a) for a in ids)) for video, ids in union_ids.items()
    }


def _subset_means(scores: list[RevosExpressionScore]) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for name, type_id in SUBSETS.items():
        rows = [s.rounded for s in scores if s.type_id == type_id]
        means = {k: mean_or_nan([row[k] for row in rows]) for k in ("J", "F", "A", "R")}
        means["JF"] = (means["J"] + means["F"]) / 2
        out[name] = means
    out["overall"] = {k: (out["referring"][k] + out["reason"][k]) / 2 for k in ("J", "F", "A", "R", "JF")}
    return out


def evaluate_revos(
    gt_dir: str | Path | None,
    results_dir: str | Path,
    *,
    meta: str | Path | None = None,
    mask_dict: str | Path | None = None,
    foreground: str | Path | None = None,
    r_weight: RWeight = "png_gray",
    workers: int | None = 1,
    strict: bool = False,
) -> RevosResult:
    """ReVOS protocol (module docstring). ``gt_dir`` holds ``meta_expressions_valid_.json`` (or pass
    ``meta``), ``mask_dict.json`` and optionally ``mask_dict_foreground.json``."""
    if r_weight not in ("png_gray", "binary"):
        raise EvaluationError(f"unknown r_weight {r_weight!r}", fix="use png_gray (official) or binary")
    base = Path(gt_dir) if gt_dir is not None else None
    if meta is None and base is not None and not (base / "meta_expressions.json").is_file():
        meta = base / "meta_expressions_valid_.json"
    gt = load_ground_truth(base, meta=meta, mask_dict=mask_dict)
    if gt.mask_dict is None:
        raise DataFormatError("ReVOS needs mask_dict.json", path=base or gt.meta_path, fix="pass --mask-dict")
    fg_path = Path(foreground) if foreground is not None else None
    if fg_path is None and base is not None and (base / "mask_dict_foreground.json").is_file():
        fg_path = base / "mask_dict_foreground.json"
    fgs = _foregrounds(gt, fg_path)
    results = results_folder(results_dir)
    jobs = []
    for video, exp_id, exp in gt.expressions():
        if "type_id" not in exp:
            raise DataFormatError(f"expression {video}/{exp_id} has no 'type_id'", path=gt.meta_path)
        type_id = int(exp["type_id"])
        spec = ExpressionSpec(video, exp_id, gt.frames(video), gt.targets(video, exp_id), results, None)
        jobs.append(_Job(spec, type_id, fgs[video], r_weight, strict))
    scores = parallel_map(_score, jobs, workers=workers, description="ReVOS expressions")
    kept = [s for s in scores if s.type_id != EXCLUDED_TYPE]
    return RevosResult(_subset_means(kept), scores, r_weight)
