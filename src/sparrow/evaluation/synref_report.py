"""SynRef diagnostic report: MeViS J&F, first-frame J, identity switches and J&F per difficulty tag.

Input: a SynRef split in the MeViS layout (``meta_expressions.json`` + ``mask_dict.json``; each
expression has ``anno_id`` and ``tags``, each video an ``objects`` map ``{obj_id: anno_id}``) and
predictions ``<results>/<video>/<exp_id>/<frame>.png`` (any non-zero grey is foreground), exactly what
``sparrow eval mevis`` reads. The numbers, all fractions:

- ``J``, ``F``, ``JF``: the MeViS protocol (:mod:`.mevis`), value for value; ``n_expressions`` counts
  the expressions in its means (all but the ``dropped`` ones).
- ``first_frame_J``: mean over expressions of J on the expression's **first visible frame** -- the first
  listed frame where the ground truth of its targets (the OR of its anno_ids) is non-empty. It measures
  initialisation: a system that starts on the wrong object (or on nothing) and recovers later keeps a
  high J but a low first-frame J. Expressions whose targets are never visible are left out of this mean
  (``n_first_frame`` counts the others); so are the expressions MeViS drops, while an expression whose
  ``<results>/<video>`` folder is missing scores 0 (an empty prediction), as MeViS scores it.
- ``id_switch_rate``, ``IDF1``, ``HOTA``: the identity protocol (:mod:`.identity`) on the same folders.
- ``per_tag``: for each tag of :data:`SYNREF_TAGS` (in that order), then ``untagged``, the mean J&F
  over the MeViS-counted expressions carrying it, and their number (an expression with several tags
  counts under each; ``untagged`` holds those with no or an empty ``tags`` list; an empty mean is NaN).
  A tag outside that list is a :class:`~sparrow.errors.DataFormatError`.

``strict=True`` passes through to both protocols: any missing or unreadable prediction raises
:class:`~sparrow.errors.EvaluationError` naming the file.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any

from sparrow.errors import DataFormatError, EvaluationError
from sparrow.evaluation.expressions import (
    ExpressionFailure,
    ExpressionKey,
    ExpressionSpec,
    GroundTruth,
    ObjectSource,
    expression_frames,
    load_ground_truth,
    mean_or_nan,
    results_folder,
)
from sparrow.evaluation.identity import IdentityResult, evaluate_identity
from sparrow.evaluation.jf import boundary_radius, jaccard_pair, prepare_mask
from sparrow.evaluation.mevis import MEVIS_PROBE, ExpressionScore, MevisResult, evaluate_expressions
from sparrow.evaluation.parallel import parallel_map

__all__ = [
    "SYNREF_TAGS",
    "UNTAGGED",
    "FirstFrameScore",
    "SynrefReport",
    "TagScore",
    "evaluate_synref",
    "first_visible_frame",
]

# The difficulty tags SynRef writes (``sparrow.data.synref.checker.TAG_ORDER``; evaluation does not import
# ``data``, a test keeps the two equal).
SYNREF_TAGS = ("occluded", "reappears", "crosses_lookalike", "late_appearance", "motion_only", "multi_object")
UNTAGGED = "untagged"


@dataclass(frozen=True)
class FirstFrameScore(ExpressionKey):
    """J on one expression's first visible frame.

    ``frame`` is that frame's name (``None``: the targets are never visible); ``J`` is NaN when the
    expression is left out of ``first_frame_J`` (never visible, or dropped by MeViS).
    """

    frame: str | None
    J: float

    @property
    def counted(self) -> bool:
        return not math.isnan(self.J)


@dataclass(frozen=True)
class TagScore:
    """Mean J&F, J and F (fractions; NaN when ``n_expressions`` is 0) over the expressions with ``tag``."""

    tag: str
    JF: float
    J: float
    F: float
    n_expressions: int

    def to_json_dict(self) -> dict[str, Any]:
        return {"J&F": self.JF, "J": self.J, "F": self.F, "n_expressions": self.n_expressions}


@dataclass(frozen=True)
class SynrefReport:
    """The SynRef diagnostic numbers (module docstring); ``mevis`` and ``identity`` keep the full results."""

    JF: float
    J: float
    F: float
    first_frame_J: float
    id_switch_rate: float
    IDF1: float
    HOTA: float
    per_tag: tuple[TagScore, ...]
    n_expressions: int
    n_first_frame: int
    first_frames: tuple[FirstFrameScore, ...]
    tags: dict[str, tuple[str, ...]]  # "video/exp_id" -> its tags
    mevis: MevisResult
    identity: IdentityResult

    @property
    def dropped(self) -> list[str]:
        return self.mevis.dropped

    @property
    def missing_videos(self) -> list[str]:
        return self.mevis.missing_videos

    def tag(self, name: str) -> TagScore:
        """The :class:`TagScore` of tag ``name`` (or ``untagged``)."""
        for score in self.per_tag:
            if score.tag == name:
                return score
        raise KeyError(name)

    def to_json_dict(self) -> dict[str, Any]:
        identity = {e.key: e for e in self.identity.expressions}
        per_expression = {}
        for score, first in zip(self.mevis.expressions, self.first_frames, strict=True):
            entry = score.to_json_dict()
            entry["tags"] = list(self.tags[score.key])
            entry["first_visible_frame"] = first.frame
            entry["first_frame_J"] = first.J
            entry["id_switch_rate"] = identity[score.key].rate
            per_expression[score.key] = entry
        return {
            "J&F": self.JF,
            "J": self.J,
            "F": self.F,
            "first_frame_J": self.first_frame_J,
            "id_switch_rate": self.id_switch_rate,
            "IDF1": self.IDF1,
            "HOTA": self.HOTA,
            "n_expressions": self.n_expressions,
            "n_first_frame_expressions": self.n_first_frame,
            "dropped": self.dropped,
            "missing_videos": self.missing_videos,
            "identity_failed": [e.key for e in self.identity.expressions if e.status != "ok"],
            "per_tag": {t.tag: t.to_json_dict() for t in self.per_tag},
            "tracking": self.identity.tracking,
            "per_expression": per_expression,
        }

    def print_table(self, console: Any = None, *, decimals: int = 4) -> None:
        """Two rich tables (fractions, ``decimals`` places): the summary, then J&F per tag."""
        from rich.console import Console

        from sparrow.evaluation.report import print_table

        console = console or Console()
        print_table(
            "SynRef",
            ("J&F", "J", "F", "first-frame J", "id-switch rate", "IDF1", "HOTA"),
            [[self.JF, self.J, self.F, self.first_frame_J, self.id_switch_rate, self.IDF1, self.HOTA]],
            decimals=decimals,
            console=console,
        )
        print_table(
            "SynRef J&F per tag",
            ("tag", "J&F", "J", "F", "expressions"),
            [[t.tag, t.JF, t.J, t.F, t.n_expressions] for t in self.per_tag],
            decimals=decimals,
            console=console,
        )
        if self.dropped or self.missing_videos:
            console.print(
                f"[yellow]{self.n_expressions} expressions scored; {len(self.dropped)} dropped (unreadable "
                f"frames, as MeViS loses them); {len(self.missing_videos)} videos missing (scored 0). "
                "Use --strict to fail instead.[/]"
            )


def first_visible_frame(targets: Sequence[ObjectSource], n_frames: int) -> int | None:
    """Position of the first of ``n_frames`` frames where some target's mask is non-empty, else ``None``."""
    for t in range(n_frames):
        for src in targets:
            mask = src.frame(t)
            if mask is not None and mask.any():
                return t
    return None


@dataclass(frozen=True)
class _FirstFrameJob:
    spec: ExpressionSpec
    status: str  # the expression's MeViS outcome: ok, missing_video or dropped


def _first_frame(job: _FirstFrameJob) -> FirstFrameScore:
    spec = job.spec
    t0 = first_visible_frame(spec.targets, len(spec.frames))
    if t0 is None:
        return FirstFrameScore(spec.video, spec.exp_id, None, math.nan)
    frame = spec.frames[t0]
    if job.status == "dropped":
        return FirstFrameScore(spec.video, spec.exp_id, frame, math.nan)
    if job.status == "missing_video":
        return FirstFrameScore(spec.video, spec.exp_id, frame, 0.0)
    try:
        _, gt, pred, _ = next(islice(expression_frames(spec), t0, None))
    except ExpressionFailure as fail:  # MeViS read every frame a moment ago
        raise EvaluationError(
            f"expression {spec.key}: {fail.message} (the file changed during the evaluation)",
            path=fail.path,
            fix="do not write into the results folder while it is being evaluated",
        ) from None
    radius = boundary_radius(gt.shape)
    j = jaccard_pair(prepare_mask(gt, radius=radius), prepare_mask(pred, radius=radius))
    return FirstFrameScore(spec.video, spec.exp_id, frame, j)


def _expression_tags(gt: GroundTruth, video: str, exp_id: str, exp: dict[str, Any]) -> tuple[str, ...]:
    """The expression's ``tags`` (none when the key is absent), checked against :data:`SYNREF_TAGS`."""
    tags = exp.get("tags", [])
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise DataFormatError(
            f"expression {video}/{exp_id}: 'tags' must be a list of strings, got {tags!r}",
            path=gt.meta_path,
        )
    unknown = [t for t in tags if t not in SYNREF_TAGS]
    if unknown:
        raise DataFormatError(
            f"expression {video}/{exp_id} has unknown tags {unknown}; known: {', '.join(SYNREF_TAGS)}",
            path=gt.meta_path,
            fix="evaluate a split written by this version of sparrow's SynRef generator",
        )
    return tuple(tags)


def _tag_scores(scores: Sequence[ExpressionScore], tags: dict[str, tuple[str, ...]]) -> tuple[TagScore, ...]:
    out = []
    for tag in (*SYNREF_TAGS, UNTAGGED):
        chosen = [
            s for s in scores if s.counted and (tag in tags[s.key] if tag != UNTAGGED else not tags[s.key])
        ]
        j = mean_or_nan([s.J for s in chosen])
        f = mean_or_nan([s.F for s in chosen])
        out.append(TagScore(tag, (j + f) / 2, j, f, len(chosen)))
    return tuple(out)


def evaluate_synref(
    gt_dir: str | Path,
    results_dir: str | Path,
    *,
    workers: int | None = 1,
    strict: bool = False,
) -> SynrefReport:
    """The SynRef diagnostic report (module docstring) of ``results_dir`` against the split ``gt_dir``.

    Args:
        gt_dir: SynRef split folder holding ``meta_expressions.json`` and ``mask_dict.json``.
        results_dir: ``<video>/<exp_id>/<frame>.png`` grey predictions (non-zero = foreground), at the
            ground-truth size.
        workers: processes (``None`` = all cores; ``1`` in-process).
        strict: raise instead of scoring missing videos 0 / dropping or leaving out expressions with
            missing or unreadable frames.

    Raises:
        DataFormatError: missing or malformed ground truth (no ``mask_dict.json``, unknown tags).
        EvaluationError: no results folder, no expressions, or (``strict``) a missing prediction.
    """
    gt = load_ground_truth(gt_dir)
    if gt.mask_dict is None:
        raise DataFormatError(
            "the SynRef report needs mask_dict.json (every object's masks)",
            path=gt.meta_path.parent,
            fix="pass a SynRef split folder (sparrow data synref writes mask_dict.json)",
        )
    results = results_folder(results_dir)
    tags: dict[str, tuple[str, ...]] = {}
    specs = []
    for video, exp_id, exp in gt.expressions():
        tags[f"{video}/{exp_id}"] = _expression_tags(gt, video, exp_id, exp)
        specs.append(
            ExpressionSpec(video, exp_id, gt.frames(video), gt.targets(video, exp_id), results, MEVIS_PROBE)
        )
    # MeViS on the already parsed ground truth: evaluate_mevis is load_ground_truth + this call.
    mevis = evaluate_expressions(
        gt, results, probe=MEVIS_PROBE, workers=workers, strict=strict, title="SynRef (MeViS J&F)"
    )
    jobs = [_FirstFrameJob(spec, s.status) for spec, s in zip(specs, mevis.expressions, strict=True)]
    first = tuple(parallel_map(_first_frame, jobs, workers=workers, description="SynRef first frames"))
    identity = evaluate_identity(gt_dir, results, workers=workers, strict=strict)
    counted = [s.J for s in first if s.counted]
    return SynrefReport(
        JF=mevis.JF,
        J=mevis.J,
        F=mevis.F,
        first_frame_J=mean_or_nan(counted),
        id_switch_rate=identity.id_switch_rate,
        IDF1=float(identity.tracking["IDF1"]),
        HOTA=float(identity.tracking["HOTA"]),
        per_tag=_tag_scores(mevis.expressions, tags),
        n_expressions=sum(s.counted for s in mevis.expressions),
        n_first_frame=len(counted),
        first_frames=first,
        tags=tags,
        mevis=mevis,
        identity=identity,
    )
