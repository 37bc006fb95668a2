"""Ref-DAVIS17, with its two protocols named apart -- their numbers are not comparable (METRICS.md §2.3).

(a) **ReferFormer protocol** (ReferFormer, VideoLISA, VideoGLaMM, SPARROW): the predictions of each of the
four annotation sets (annot1 first-frame, annot1 full-video, annot2 first-frame, annot2 full-video) form
a folder of palette PNGs ``<video>/<frame>.png`` with one id per object; each folder is scored with the
DAVIS-2017 **unsupervised** protocol (``Annotations_unsupervised``, all frames, void, Hungarian, at most
20 ids) and the reported J&F is the **mean of the four per-set J&F** (likewise J and F). Accepted folder
names: ``anno_0 .. anno_3`` (ReferFormer) or ``Davis17_annot1``, ``Davis17_annot1_full_video``,
``Davis17_annot2``, ``Davis17_annot2_full_video`` (VideoGLaMM).

(b) **Per-expression protocol** (VISA ``tools/eval_davis17.py``, GLUS, Sa2VA): every expression of the
ReferFormer-converted ``meta_expressions.json`` is scored like a MeViS expression (all frames, no
matching, ``<results>/<video>/<exp_id>/<frame>.png`` grey PNGs, size from ``00000.png``), the GT being
its ``obj_id`` in ``Annotations_unsupervised/480p``; J and F are means over expressions.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sparrow.errors import DataFormatError, EvaluationError
from sparrow.evaluation.davis import DavisResult, evaluate_davis
from sparrow.evaluation.expressions import load_ground_truth
from sparrow.evaluation.mevis import MevisResult, evaluate_expressions
from sparrow.evaluation.statistics import DecayMode

__all__ = [
    "ANNOTATION_SETS",
    "RefDavisReferFormerResult",
    "evaluate_refdavis_per_expression",
    "evaluate_refdavis_referformer",
]

# Folder names of the four annotation sets, in exp_id order (exp_id = 4 * object index + set index).
ANNOTATION_SETS = {
    "referformer": ("anno_0", "anno_1", "anno_2", "anno_3"),
    "videoglamm": (
        "Davis17_annot1",
        "Davis17_annot1_full_video",
        "Davis17_annot2",
        "Davis17_annot2_full_video",
    ),
}


@dataclass(frozen=True)
class RefDavisReferFormerResult:
    """Mean over the four annotation sets of the DAVIS unsupervised numbers (fractions)."""

    J: float
    F: float
    JF: float
    sets: dict[str, DavisResult]

    def per_expression(self) -> dict[str, dict[str, Any]]:
        """``<video>/<exp_id>`` -> J, F, J&F of the GT object in that set, ReferFormer exp_id numbering
        (objects sorted by id as strings, four consecutive exp_ids per object)."""
        out: dict[str, dict[str, Any]] = {}
        for set_index, result in enumerate(self.sets.values()):
            by_video: dict[str, list[int]] = {}
            for obj in result.objects:
                by_video.setdefault(obj.sequence, []).append(obj.gt_object)
            order = {v: sorted(ids, key=str) for v, ids in by_video.items()}
            for obj in result.objects:
                exp_id = 4 * order[obj.sequence].index(obj.gt_object) + set_index
                out[f"{obj.sequence}/{exp_id}"] = {
                    "J&F": (obj.J.mean + obj.F.mean) / 2.0,
                    "J": obj.J.mean,
                    "F": obj.F.mean,
                    "set": set_index,
                    "gt_object": obj.gt_object,
                }
        return dict(sorted(out.items(), key=lambda kv: (kv[0].split("/")[0], int(kv[0].split("/")[1]))))

    def to_json_dict(self) -> dict[str, Any]:
        return {
            "J&F": self.JF,
            "J": self.J,
            "F": self.F,
            "protocol": "referformer",
            "per_set": {name: {k: r.metrics[k] for k in r.metrics} for name, r in self.sets.items()},
            "per_expression": self.per_expression(),
        }

    def print_table(self, console: Any = None) -> None:
        from sparrow.evaluation.report import print_table

        rows = [
            [name, r.metrics["J&F-Mean"], r.metrics["J-Mean"], r.metrics["F-Mean"]]
            for name, r in self.sets.items()
        ]
        rows.append(["mean of 4 sets", self.JF, self.J, self.F])
        print_table(
            "Ref-DAVIS17 (ReferFormer protocol)", ("set", "J&F", "J", "F"), rows, decimals=5, console=console
        )


def _set_folders(results: Path) -> dict[str, Path]:
    for names in ANNOTATION_SETS.values():
        if all((results / n).is_dir() for n in names):
            return {n: results / n for n in names}
    found = sorted(p.name for p in results.iterdir() if p.is_dir()) if results.is_dir() else []
    raise EvaluationError(
        f"the four annotation-set folders are not all there (found: {found[:8]})",
        path=results,
        fix="put the predictions of each set in anno_0..anno_3 (or the VideoGLaMM Davis17_annot* names)",
    )


def evaluate_refdavis_referformer(
    davis_root: str | Path,
    results_dir: str | Path,
    *,
    image_set: str = "val",
    workers: int | None = 1,
    strict: bool = False,
    decay_mode: DecayMode = "official",
) -> RefDavisReferFormerResult:
    """Protocol (a): DAVIS unsupervised on each annotation-set folder, mean of the four J&F."""
    folders = _set_folders(Path(results_dir))
    sets = {
        name: evaluate_davis(
            davis_root,
            folder,
            task="unsupervised",
            image_set=image_set,
            workers=workers,
            strict=strict,
            decay_mode=decay_mode,
        )
        for name, folder in folders.items()
    }
    j = float(np.mean([r.metrics["J-Mean"] for r in sets.values()]))
    f = float(np.mean([r.metrics["F-Mean"] for r in sets.values()]))
    jf = float(np.mean([r.metrics["J&F-Mean"] for r in sets.values()]))
    return RefDavisReferFormerResult(J=j, F=f, JF=jf, sets=sets)


def evaluate_refdavis_per_expression(
    davis_root: str | Path,
    meta: str | Path,
    results_dir: str | Path,
    *,
    resolution: str = "480p",
    workers: int | None = 1,
    strict: bool = False,
) -> MevisResult:
    """Protocol (b): every expression of the ReferFormer ``meta_expressions.json`` scored like MeViS."""
    annotations = Path(davis_root) / "Annotations_unsupervised" / resolution
    if not annotations.is_dir():
        raise DataFormatError(
            "Annotations_unsupervised not found", path=annotations, fix="pass the DAVIS root as --davis-root"
        )
    gt = load_ground_truth(None, meta=meta, annotations_dir=annotations)
    return evaluate_expressions(
        gt, results_dir, workers=workers, strict=strict, title="Ref-DAVIS17 (per-expression protocol)"
    )
