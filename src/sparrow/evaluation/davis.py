"""DAVIS-2017 J&F, semi-supervised and unsupervised, as davis2017-evaluation computes it (METRICS.md §1.4).

Layout read (``resolution`` = ``480p`` by default)::

    ROOT/ImageSets/2017/<set>.txt            sequence names (2019 for unsupervised test-dev/-challenge)
    ROOT/Annotations/480p/<seq>/<frame>.png  semi-supervised GT (palette indices, 255 = void)
    ROOT/Annotations_unsupervised/480p/...   unsupervised GT
    ROOT/JPEGImages/480p/<seq>/*.jpg         optional here; if present, its frame count is checked
    RESULTS/<seq>/<frame>.png                predictions: palette (or L) PNGs of object ids

Reading follows the official code: GT and predictions through PIL as palette indices
(:func:`sparrow.io.read_index_png`); GT 255 is void (then 0); the number of GT objects is the largest id
in the first frame; the number of predicted objects is the largest id over the frames read.

- **semi-supervised**: first and last frames dropped; no void; prediction id k scored against GT id k;
  ids above the GT object count abort (as in the official code).
- **unsupervised**: all frames; void used for J and F; at most 20 predicted ids; Hungarian matching on
  ``(mean_t J + mean_t F) / 2``; the per-object names ``<seq>_<i>`` follow the matched *proposal* order
  (the official quirk), each entry also records which GT object and proposal it is.

Global numbers: mean over all objects of all sequences of each per-object statistic; ``J&F-Mean`` is
``(J-Mean + F-Mean) / 2``. Unlike the official script, nothing is cached in the results folder.

``strict=True`` turns the official silent behaviours into :class:`~sparrow.errors.EvaluationError`:
GT object ids that first appear after frame 0 (ignored officially) and GT objects that no prediction
frame contains (scored as empty masks officially). Missing files, size mismatches and too many ids
always raise (the official code aborts).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from sparrow.errors import DataFormatError, EvaluationError
from sparrow.evaluation.jf import boundary_radius, f_pair, jaccard_pair, jf_pairwise, prepare_mask
from sparrow.evaluation.parallel import parallel_map
from sparrow.evaluation.statistics import DecayMode, Statistics, db_statistics
from sparrow.io.mask_files import read_index_png

__all__ = [
    "DAVIS_METRICS",
    "DavisObjectScore",
    "DavisResult",
    "DavisTask",
    "evaluate_davis",
]

DavisTask = Literal["semi-supervised", "unsupervised"]
VOID_LABEL = 255
MAX_PROPOSALS = 20
DAVIS_METRICS = ("J&F-Mean", "J-Mean", "J-Recall", "J-Decay", "F-Mean", "F-Recall", "F-Decay")


@dataclass(frozen=True)
class DavisObjectScore:
    """Statistics of one scored object: ``name`` is ``<seq>_<i>`` (official naming).

    ``gt_object`` is the GT id it was scored against; ``proposal`` the predicted id (equal to
    ``gt_object`` in semi-supervised mode). ``j`` and ``f`` are the per-frame series, float64 ``(T,)``.
    """

    name: str
    sequence: str
    gt_object: int
    proposal: int
    J: Statistics
    F: Statistics
    j: np.ndarray = field(repr=False)
    f: np.ndarray = field(repr=False)

    def to_json_dict(self) -> dict[str, Any]:
        return {
            "J&F-Mean": (self.J.mean + self.F.mean) / 2.0,
            "J-Mean": self.J.mean,
            "J-Recall": self.J.recall,
            "J-Decay": self.J.decay,
            "F-Mean": self.F.mean,
            "F-Recall": self.F.recall,
            "F-Decay": self.F.decay,
            "sequence": self.sequence,
            "gt_object": self.gt_object,
            "proposal": self.proposal,
            "n_frames": len(self.j),
        }


@dataclass(frozen=True)
class DavisResult:
    """Global DAVIS numbers (fractions, full precision) and the per-object scores in official order."""

    task: str
    image_set: str
    metrics: dict[str, float]
    objects: list[DavisObjectScore]

    @property
    def jf_mean(self) -> float:
        return self.metrics["J&F-Mean"]

    def to_json_dict(self) -> dict[str, Any]:
        """Official CSV column names at top level, ``per_object`` keyed ``<seq>_<i>``."""
        out: dict[str, Any] = dict(self.metrics)
        out["per_object"] = {o.name: o.to_json_dict() for o in self.objects}
        out["config"] = {"task": self.task, "set": self.image_set}
        return out

    def print_table(self, console: Any = None, *, per_object: bool = True) -> None:
        """Global table (and the per-object J/F means) with the official 3 decimals."""
        from sparrow.evaluation.report import print_table

        print_table(
            f"DAVIS-2017 {self.task} ({self.image_set}) -- global",
            DAVIS_METRICS,
            [[self.metrics[k] for k in DAVIS_METRICS]],
            decimals=3,
            console=console,
        )
        if per_object:
            print_table(
                "per object",
                ("Sequence", "J-Mean", "F-Mean"),
                [[o.name, o.J.mean, o.F.mean] for o in self.objects],
                decimals=3,
                console=console,
            )


@dataclass(frozen=True)
class _SequenceJob:
    sequence: str
    gt_dir: Path
    results_dir: Path
    images_dir: Path
    task: str
    strict: bool


@dataclass(frozen=True)
class _SequenceScores:
    sequence: str
    # (gt_object, proposal, J series, F series) in official output order
    objects: list[tuple[int, int, np.ndarray, np.ndarray]]


def _frame_names(job: _SequenceJob) -> list[str]:
    seq_dir = job.gt_dir / job.sequence
    if not seq_dir.is_dir():
        raise DataFormatError(
            f"annotation folder of sequence {job.sequence!r} not found",
            path=seq_dir,
            fix="check --davis-root and that the sequence list matches the Annotations folder",
        )
    names = sorted(p.stem for p in seq_dir.glob("*.png"))
    if not names:
        raise DataFormatError("no annotation PNGs in this folder", path=seq_dir, fix="check the DAVIS layout")
    img_dir = job.images_dir / job.sequence
    if img_dir.is_dir():
        n_images = len(list(img_dir.glob("*.jpg")))
        if n_images > len(names):
            raise DataFormatError(
                f"{n_images} images but only {len(names)} annotation PNGs for sequence {job.sequence!r}",
                path=seq_dir,
                fix="every frame of JPEGImages needs its annotation PNG (the official code fails here too)",
            )
    return names


def _read_prediction(job: _SequenceJob, frame: str, shape: tuple[int, ...]) -> np.ndarray:
    path = job.results_dir / job.sequence / f"{frame}.png"
    if not path.is_file():
        raise EvaluationError(
            f"prediction of frame {frame} of sequence {job.sequence!r} is missing",
            path=path,
            fix="write one palette PNG per annotated frame, named like the annotation (the official code exits here)",
        )
    pred = read_index_png(path, convert=False)
    if pred.shape != shape:
        raise EvaluationError(
            f"prediction is {pred.shape[1]}x{pred.shape[0]} but the annotation is {shape[1]}x{shape[0]}",
            path=path,
            fix="save predictions at the annotation resolution",
        )
    return pred


def _read_gt(job: _SequenceJob, frames: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """GT ids ``(T, H, W)`` uint8 (void set to 0) and void ``(T, H, W)`` bool."""
    first = read_index_png(job.gt_dir / job.sequence / f"{frames[0]}.png", convert=False)
    labels = np.empty((len(frames), *first.shape), dtype=np.uint8)
    for t, frame in enumerate(frames):
        path = job.gt_dir / job.sequence / f"{frame}.png"
        lab = first if t == 0 else read_index_png(path, convert=False)
        if lab.shape != first.shape:
            raise DataFormatError(
                f"annotation size {lab.shape} differs from frame 0 {first.shape}", path=path
            )
        labels[t] = lab
    void = labels == VOID_LABEL
    labels[void] = 0
    return labels, void


def _check_gt_objects(job: _SequenceJob, labels: np.ndarray, frames: Sequence[str], n_objects: int) -> None:
    if not job.strict:
        return
    for t, frame in enumerate(frames):
        top = int(labels[t].max())
        if top > n_objects:
            raise EvaluationError(
                f"object id {top} appears in frame {frame} but frame 0 has only {n_objects} objects; "
                "the official protocol ignores it",
                path=job.gt_dir / job.sequence / f"{frame}.png",
                fix="drop --strict to follow the official protocol, or fix the annotation",
            )


def _ids_present(labels: np.ndarray) -> list[int]:
    """Non-zero ids of a uint8 id map."""
    return [int(i) for i in np.flatnonzero(np.bincount(labels.ravel(), minlength=256)) if i]


def _check_missing_objects(job: _SequenceJob, n_gt: int, present: set[int]) -> None:
    if not job.strict:
        return
    missing = [k for k in range(1, n_gt + 1) if k not in present]
    if missing:
        raise EvaluationError(
            f"object id(s) {missing} of sequence {job.sequence!r} appear in no prediction frame "
            "(the official protocol scores them as empty masks)",
            path=job.results_dir / job.sequence,
            fix="drop --strict to score missing objects as empty, or check the predicted ids",
        )


def _evaluate_semisupervised(job: _SequenceJob) -> _SequenceScores:
    frames = _frame_names(job)
    labels, _ = _read_gt(job, frames)
    n_gt = int(labels[0].max())
    _check_gt_objects(job, labels, frames, n_gt)
    eval_frames = frames[1:-1]
    radius = boundary_radius(labels.shape[1:])
    j = np.zeros((n_gt, len(eval_frames)))
    f = np.zeros((n_gt, len(eval_frames)))
    present: set[int] = set()
    for t, frame in enumerate(eval_frames, start=1):
        pred = _read_prediction(job, frame, labels.shape[1:])
        top = int(pred.max())
        if top > n_gt:
            raise EvaluationError(
                f"prediction holds object id {top} but sequence {job.sequence!r} has {n_gt} objects "
                "(the official code exits here)",
                path=job.results_dir / job.sequence / f"{frame}.png",
                fix="predict only the object ids of the first annotation frame; save palette PNGs, not 0/255 masks",
            )
        if job.strict:
            present.update(_ids_present(pred))
        for k in range(1, n_gt + 1):
            g = prepare_mask(labels[t] == k, radius=radius)
            p = prepare_mask(pred == k, radius=radius)
            j[k - 1, t - 1] = jaccard_pair(g, p)
            f[k - 1, t - 1] = f_pair(g, p)
    _check_missing_objects(job, n_gt, present)
    return _SequenceScores(job.sequence, [(k, k, j[k - 1], f[k - 1]) for k in range(1, n_gt + 1)])


def _evaluate_unsupervised(job: _SequenceJob) -> _SequenceScores:
    frames = _frame_names(job)
    labels, void = _read_gt(job, frames)
    n_gt = int(labels[0].max())
    _check_gt_objects(job, labels, frames, n_gt)
    preds = [_read_prediction(job, frame, labels.shape[1:]) for frame in frames]
    present: set[int] = set()
    for pred in preds:
        present.update(_ids_present(pred))
    n_pred = max(present, default=0)
    if n_pred > MAX_PROPOSALS:
        raise EvaluationError(
            f"predictions of sequence {job.sequence!r} hold id {n_pred}, above the {MAX_PROPOSALS} proposals "
            "allowed (the official code exits here)",
            path=job.results_dir / job.sequence,
            fix="keep at most 20 proposals; save palette PNGs of ids, not 0/255 masks",
        )
    _check_missing_objects(job, n_gt, present)
    n_rows = max(n_pred, n_gt)  # fewer proposals than objects: zero-padded
    radius = boundary_radius(labels.shape[1:])
    j = np.zeros((n_rows, n_gt, len(frames)))
    f = np.zeros((n_rows, n_gt, len(frames)))
    for t, pred in enumerate(preds):
        gts = [prepare_mask(labels[t] == k, void[t], radius=radius) for k in range(1, n_gt + 1)]
        props = [prepare_mask(pred == k, void[t], radius=radius) for k in range(1, n_rows + 1)]
        j[:, :, t], f[:, :, t] = jf_pairwise(gts, props)
    from scipy.optimize import linear_sum_assignment

    all_metrics = (np.mean(j, axis=2) + np.mean(f, axis=2)) / 2
    rows, cols = linear_sum_assignment(-all_metrics)
    return _SequenceScores(
        job.sequence, [(int(c) + 1, int(r) + 1, j[r, c], f[r, c]) for r, c in zip(rows, cols, strict=True)]
    )


def _evaluate_sequence(job: _SequenceJob) -> _SequenceScores:
    if job.task == "semi-supervised":
        return _evaluate_semisupervised(job)
    return _evaluate_unsupervised(job)


def _sequence_names(root: Path, task: str, image_set: str) -> list[str]:
    year = "2019" if task == "unsupervised" and image_set in ("test-dev", "test-challenge") else "2017"
    path = root / "ImageSets" / year / f"{image_set}.txt"
    if not path.is_file():
        raise DataFormatError(
            f"sequence list for set {image_set!r} not found",
            path=path,
            fix="pass the DAVIS root (with ImageSets/) as --davis-root and an existing --set",
        )
    names = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    if not names:
        raise DataFormatError("sequence list is empty", path=path)
    return names


def evaluate_davis(
    davis_root: str | Path,
    results_dir: str | Path,
    *,
    task: DavisTask = "semi-supervised",
    image_set: str = "val",
    resolution: str = "480p",
    sequences: Sequence[str] | None = None,
    workers: int | None = 1,
    strict: bool = False,
    decay_mode: DecayMode = "official",
) -> DavisResult:
    """Evaluate a DAVIS-2017 results folder (see the module docstring for layout and rules).

    Args:
        davis_root: DAVIS root with ``ImageSets/``, ``Annotations[_unsupervised]/<resolution>/``.
        results_dir: folder of ``<seq>/<frame>.png`` palette PNGs.
        task: ``"semi-supervised"`` or ``"unsupervised"``.
        image_set: name of the list in ``ImageSets/<year>/`` (``train``, ``val``, ``test-dev`` ...).
        sequences: evaluate only these sequences (default: the whole set, in list order).
        workers: processes (``None`` = all cores, 1 = in-process).
        strict: raise instead of the official silent behaviours (module docstring).
        decay_mode: ``"official"`` (uint8 bin wrap for >= 257 frames) or ``"corrected"``.
    """
    if task not in ("semi-supervised", "unsupervised"):
        raise EvaluationError(f"unknown DAVIS task {task!r}", fix="use semi-supervised or unsupervised")
    root, results = Path(davis_root), Path(results_dir)
    if not results.is_dir():
        raise EvaluationError(
            "results folder not found", path=results, fix="pass the folder holding <seq>/ folders"
        )
    gt_dir = root / ("Annotations" if task == "semi-supervised" else "Annotations_unsupervised") / resolution
    if not gt_dir.is_dir():
        raise DataFormatError(
            f"annotations for the {task} task not found",
            path=gt_dir,
            fix="check --davis-root and the resolution",
        )
    names = list(sequences) if sequences is not None else _sequence_names(root, task, image_set)
    jobs = [
        _SequenceJob(seq, gt_dir, results, root / "JPEGImages" / resolution, task, strict) for seq in names
    ]
    scores = parallel_map(_evaluate_sequence, jobs, workers=workers, description=f"DAVIS {task}")
    objects: list[DavisObjectScore] = []
    for seq in scores:
        for i, (gt_obj, proposal, j, f) in enumerate(seq.objects):
            objects.append(
                DavisObjectScore(
                    name=f"{seq.sequence}_{i + 1}",
                    sequence=seq.sequence,
                    gt_object=gt_obj,
                    proposal=proposal,
                    J=db_statistics(j, decay_mode=decay_mode),
                    F=db_statistics(f, decay_mode=decay_mode),
                    j=j,
                    f=f,
                )
            )
    if not objects:
        raise EvaluationError(
            "no GT objects found in the evaluated sequences",
            path=gt_dir,
            fix="check the annotations and --set",
        )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=RuntimeWarning)
        jm = np.mean([o.J.mean for o in objects])
        fm = np.mean([o.F.mean for o in objects])
        metrics = {
            "J&F-Mean": float((jm + fm) / 2.0),
            "J-Mean": float(jm),
            "J-Recall": float(np.mean([o.J.recall for o in objects])),
            "J-Decay": float(np.mean([o.J.decay for o in objects])),
            "F-Mean": float(fm),
            "F-Recall": float(np.mean([o.F.recall for o in objects])),
            "F-Decay": float(np.mean([o.F.decay for o in objects])),
        }
    return DavisResult(task=task, image_set=image_set, metrics=metrics, objects=objects)
