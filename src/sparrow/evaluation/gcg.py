"""Video GCG evaluation (VideoGLaMM / SPARROW protocol, ``specs/METRICS.md`` 4.1-4.4).

Input layout -- VideoGLaMM's per-sample artefacts (``eval_gcg_infer.py``), one folder per sample
named by its index (``000000``, ``000001``, ...; any all-digit name, sorted numerically)::

    <gt>/<idx>/res.json              {"gt_text": str, "gt_phrases": [str, ...], "gt_text_cleaned": str}
    <gt>/<idx>/gt_masks_<k>/mask_<t>.png      k = 0..len(gt_phrases)-1, t = 0..T-1
    <results>/<idx>/res.json         {"pred_text": str, "pred_phrases": [str, ...], "pred_text_cleaned": str}
    <results>/<idx>/pred_masks_<k>/mask_<t>.png
    (optional) <gt or results>/<idx>/img_frames/frame_<t>.jpg

- Masks are PNGs, any non-zero pixel is foreground (VideoGLaMM writes uint8 0/255); all masks of a
  sample must have the same size. Object ``k`` is the stack of its ``T`` frames.
- ``*_phrases`` and ``*_text_cleaned`` are optional: when absent they are derived from ``*_text``
  with :func:`sparrow.evaluation.captions.clean_caption` (what ``eval_gcg_infer.py`` stored). When
  present they are used as stored, as the official metrics script does.
- ``T`` is the number of ``img_frames/*.jpg`` files when that folder exists (the official count);
  otherwise the number of consecutive ``mask_<t>.png`` files from ``t = 0`` in ``gt_masks_0`` (or in
  ``pred_masks_0`` when there is no GT object). Masks are loaded for ``k in range(len(phrases))`` and
  ``t in range(T)``; extra folders or frames are ignored, as officially.
- ``--results`` may be the same folder as ``--gt`` (VideoGLaMM writes both into one ``res.json``).
  Either folder may also be the one holding ``video_gcg/`` (VideoGLaMM's ``--vis_save_path``).

Failures and strictness:

- A sample whose masks cannot be loaded (missing folder or frame, unreadable PNG, different sizes)
  scores mIoU 0 and recall TP 0 (its GT phrases still count as positives) and is left out of AP50;
  in the official code the whole sample sits in one ``try``. Its captions are still scored.
- A GT folder without ``res.json`` is skipped. A missing prediction (no ``res.json`` or no
  ``pred_*`` keys in it) is scored as an empty prediction: no phrases, no masks, caption ``""``.
- ``strict=True`` turns each of these into an error that names the file. Malformed JSON is always
  an error.
- ``compat=True`` copies the official control flow instead: one ``try`` per sample, so a failure
  also scores the caption as ``""``, and a failure inside the recall step (e.g. the text similarity
  raising) appends a second mIoU entry of 0.0 and counts the GT phrases twice (the double count of
  section 4.2). Text similarities are then computed for every pair up front, as officially.

Metrics: ``mIoU`` (mean of the per-sample greedy mIoU), ``recall`` (micro: total TP / total GT
phrases), ``AP50`` (see :func:`sparrow.evaluation.gcg_metrics.mask_ap50`; VideoGLaMM reports no AP,
GLaMM does for images), the caption metrics of :mod:`sparrow.evaluation.captions` on the cleaned
captions, and ``CLAIR`` with the chosen :class:`~sparrow.evaluation.clair.Judge` (mean of per-sample
scores). The text similarity and the judge used are part of the result.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from sparrow.errors import DataFormatError, EvaluationError
from sparrow.evaluation.captions import MAX_CAPTION_CHARS, CaptionScores, caption_metrics, clean_caption
from sparrow.evaluation.clair import Judge, clair_score
from sparrow.evaluation.gcg_metrics import (
    PackedVolume,
    greedy_miou,
    mask_ap50,
    match_phrases,
    pack_volume,
    volume_iou_matrix,
)
from sparrow.evaluation.text_similarity import TextSimilarity, TokenCosineSimilarity
from sparrow.io.mask_files import read_index_png
from sparrow.structures.masks import RLE, rle_encode

__all__ = [
    "GcgResult",
    "GcgSampleScore",
    "GcgSide",
    "evaluate_gcg",
    "gcg_samples_root",
    "list_gcg_samples",
    "read_gcg_side",
]

_RES = "res.json"


@dataclass(frozen=True)
class GcgSide:
    """One side (``"gt"`` or ``"pred"``) of a sample's ``res.json``: cleaned caption and phrases."""

    text_cleaned: str
    phrases: list[str]


def gcg_samples_root(root: str | Path) -> Path:
    """``root``, or ``root/video_gcg`` when ``root`` has no sample folder but that subfolder (VideoGLaMM's
    ``--vis_save_path`` layout)."""
    root = Path(root)
    if not root.is_dir():
        raise DataFormatError(
            "GCG folder not found", path=root, fix="pass the folder holding the <idx:06d>/ sample folders"
        )
    has_samples = any(p.is_dir() and p.name.isdigit() for p in root.iterdir())
    return root / "video_gcg" if not has_samples and (root / "video_gcg").is_dir() else root


def list_gcg_samples(root: str | Path) -> list[Path]:
    """Sample folders (all-digit names) under ``root`` (see :func:`gcg_samples_root`), sorted by index."""
    root = gcg_samples_root(root)
    return sorted((p for p in root.iterdir() if p.is_dir() and p.name.isdigit()), key=lambda p: int(p.name))


def _load_res(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DataFormatError(
            f"cannot read res.json ({err})", path=path, fix="re-run the GCG inference for this sample"
        ) from err
    if not isinstance(data, dict):
        raise DataFormatError(
            "res.json must hold a JSON object", path=path, fix="see the layout in sparrow.evaluation.gcg"
        )
    return data


def read_gcg_side(res: dict[str, Any], prefix: str, path: Path) -> GcgSide | None:
    """The ``gt`` or ``pred`` side of a parsed ``res.json``; ``None`` when it has none of its keys.

    Raises:
        DataFormatError: a key has the wrong type, or the text is missing while a derived key is missing.
    """
    text = res.get(f"{prefix}_text")
    cleaned = res.get(f"{prefix}_text_cleaned")
    phrases = res.get(f"{prefix}_phrases")
    if text is None and cleaned is None and phrases is None:
        return None
    fix = f"write {prefix}_text (str) and {prefix}_phrases (list of str), see sparrow.evaluation.gcg"
    for key, value in ((f"{prefix}_text", text), (f"{prefix}_text_cleaned", cleaned)):
        if value is not None and not isinstance(value, str):
            raise DataFormatError(f"{key} must be a string", path=path, fix=fix)
    if phrases is not None and not (isinstance(phrases, list) and all(isinstance(p, str) for p in phrases)):
        raise DataFormatError(f"{prefix}_phrases must be a list of strings", path=path, fix=fix)
    if cleaned is None or phrases is None:
        if text is None:
            raise DataFormatError(f"{prefix}_text is missing", path=path, fix=fix)
        derived = clean_caption(text)
        cleaned = derived.text if cleaned is None else cleaned
        phrases = derived.phrases if phrases is None else phrases
    return GcgSide(text_cleaned=cleaned, phrases=list(phrases))


# --------------------------------------------------------------------------------------------------
# Mask loading (runs in worker processes)


@dataclass(frozen=True)
class _MaskJob:
    name: str
    gt_dir: Path
    pred_dir: Path | None
    n_gt: int
    n_pred: int


@dataclass
class _MaskOutcome:
    iou_pred_gt: np.ndarray | None = None  # (n_pred, n_gt)
    gt_rles: list[RLE] = field(default_factory=list)
    pred_rles: list[RLE] = field(default_factory=list)
    error: str | None = None
    error_path: Path | None = None


class _LoadFailure(Exception):
    def __init__(self, message: str, path: Path) -> None:
        super().__init__(message)
        self.path = path


def _frame_count(job: _MaskJob) -> int:
    for folder in (job.gt_dir, job.pred_dir):
        frames = folder / "img_frames" if folder is not None else None
        if frames is not None and frames.is_dir():
            return sum(1 for f in frames.iterdir() if f.name.endswith(".jpg"))
    if job.n_gt:
        first = job.gt_dir / "gt_masks_0"
    elif job.n_pred and job.pred_dir is not None:
        first = job.pred_dir / "pred_masks_0"
    else:
        return 0
    t = 0
    while (first / f"mask_{t}.png").is_file():
        t += 1
    if t == 0:
        raise _LoadFailure("no frames: neither img_frames/ nor mask_0.png", first / "mask_0.png")
    return t


def _load_object(folder: Path, n_frames: int) -> np.ndarray:
    frames = []
    for t in range(n_frames):
        path = folder / f"mask_{t}.png"
        if not path.is_file():
            raise _LoadFailure("mask file missing", path)
        try:
            frames.append(read_index_png(path) != 0)
        except DataFormatError as err:
            raise _LoadFailure(err.message, path) from err
        if frames[-1].shape != frames[0].shape:
            raise _LoadFailure(f"mask size {frames[-1].shape} differs from frame 0's {frames[0].shape}", path)
    return np.stack(frames) if frames else np.zeros((0, 0, 0), dtype=bool)


def _load_masks(job: _MaskJob) -> _MaskOutcome:
    try:
        n_frames = _frame_count(job)
        sides: dict[str, tuple[list[PackedVolume], list[RLE]]] = {}
        for prefix, base, count in (("gt", job.gt_dir, job.n_gt), ("pred", job.pred_dir, job.n_pred)):
            packed: list[PackedVolume] = []
            rles: list[RLE] = []  # (T*H, W) stacks for AP50; zero-frame objects cannot enter COCOeval
            for k in range(count):
                assert base is not None  # n_pred > 0 only when there is a prediction folder
                volume = _load_object(base / f"{prefix}_masks_{k}", n_frames)
                packed.append(pack_volume(volume))
                if volume.size:
                    rles.append(rle_encode(volume.reshape(-1, volume.shape[-1])))
            sides[prefix] = (packed, rles)
        try:
            iou = volume_iou_matrix(sides["pred"][0], sides["gt"][0])
        except ValueError as err:
            raise _LoadFailure(
                f"{err} (all masks of a sample must have one size)", job.pred_dir or job.gt_dir
            ) from err
    except _LoadFailure as err:
        return _MaskOutcome(error=str(err), error_path=err.path)
    return _MaskOutcome(iou_pred_gt=iou, gt_rles=sides["gt"][1], pred_rles=sides["pred"][1])


# --------------------------------------------------------------------------------------------------
# Results


@dataclass(frozen=True)
class GcgSampleScore:
    """Per-sample outcome: ``miou`` (``None`` for a failed sample, which counts 0), matched phrases
    ``tp`` out of ``n_gt``, ``clair`` (``None`` without a judge) and the failure reason if any."""

    name: str
    miou: float | None
    tp: int
    n_gt: int
    n_pred: int
    clair: float | None
    failure: str | None


@dataclass(frozen=True)
class GcgResult:
    """Video GCG metrics (fractions) and what produced them. ``None`` = not computed."""

    miou: float
    recall: float
    ap50: float
    captions: CaptionScores | None
    clair: float | None
    text_similarity: str
    judge: str | None
    compat: bool
    samples: list[GcgSampleScore]
    skipped: list[str]
    missing_predictions: list[str]
    notes: list[str] = field(default_factory=list)

    def metrics(self) -> dict[str, float | None]:
        """The headline numbers, keyed as in ``--json``."""
        out: dict[str, float | None] = {"mIoU": self.miou, "recall": self.recall, "AP50": self.ap50}
        caps = self.captions.as_dict() if self.captions is not None else {}
        for key in ("METEOR", "CIDEr", "BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "ROUGE-L"):
            out[key] = caps.get(key)
        out["CLAIR"] = self.clair
        return out

    def to_json_dict(self) -> dict[str, Any]:
        """Full-precision JSON form: headline metrics, names of the text similarity and judge, samples."""
        return {
            "benchmark": "video-gcg",
            **self.metrics(),
            "text_similarity": self.text_similarity,
            "judge": self.judge,
            "compat": self.compat,
            "n_samples": len(self.samples),
            "failed": {s.name: s.failure for s in self.samples if s.failure is not None},
            "skipped": self.skipped,
            "missing_predictions": self.missing_predictions,
            "notes": self.notes,
            "per_sample": {
                s.name: {"mIoU": s.miou, "tp": s.tp, "n_gt": s.n_gt, "n_pred": s.n_pred, "CLAIR": s.clair}
                for s in self.samples
            },
        }

    def print_table(self, console: Any = None) -> None:
        """Rich table with the official display rounding (3 decimals)."""
        from rich.console import Console

        from sparrow.evaluation.report import print_table

        console = console or Console()
        rows = [[k, "-" if v is None else v] for k, v in self.metrics().items()]
        print_table(
            f"Video GCG ({len(self.samples)} samples)", ["metric", "value"], rows, decimals=3, console=console
        )
        console.print(f"text similarity: {self.text_similarity}", highlight=False)
        console.print(f"CLAIR judge: {self.judge or 'none (CLAIR not computed)'}", highlight=False)
        for note in self.notes:
            console.print(f"[yellow]note:[/] {note}", highlight=False)
        failed = sum(1 for s in self.samples if s.failure is not None)
        if failed or self.skipped or self.missing_predictions:
            console.print(
                f"[yellow]{failed} failed sample(s), {len(self.skipped)} skipped GT folder(s), "
                f"{len(self.missing_predictions)} missing prediction(s); see --json for names[/]"
            )


# --------------------------------------------------------------------------------------------------
# Evaluation


@dataclass(frozen=True)
class _Sample:
    name: str
    gt_dir: Path
    pred_dir: Path | None
    gt: GcgSide
    pred: GcgSide


def _collect(gt_root: Path, results_root: Path, strict: bool) -> tuple[list[_Sample], list[str], list[str]]:
    samples, skipped, missing = [], [], []
    gt_root, results_root = gcg_samples_root(gt_root), gcg_samples_root(results_root)
    folders = list_gcg_samples(gt_root)
    if not folders:
        raise DataFormatError(
            "no sample folders (all-digit names such as 000000/)",
            path=gt_root,
            fix="pass the folder holding the <idx:06d>/ sample folders",
        )
    for folder in folders:
        res_path = folder / _RES
        if not res_path.is_file():
            if strict:
                raise DataFormatError(
                    "GT sample without res.json",
                    path=res_path,
                    fix="remove the folder or re-create its res.json",
                )
            skipped.append(folder.name)
            continue
        gt = read_gcg_side(_load_res(res_path), "gt", res_path)
        if gt is None:
            raise DataFormatError(
                "res.json has no gt_* keys", path=res_path, fix="write gt_text and gt_phrases"
            )
        pred_dir = results_root / folder.name
        pred_path = pred_dir / _RES
        pred = read_gcg_side(_load_res(pred_path), "pred", pred_path) if pred_path.is_file() else None
        if pred is None:
            if strict:
                raise DataFormatError(
                    "no prediction (res.json with pred_* keys) for this sample",
                    path=pred_path,
                    fix="re-run the inference for this sample",
                )
            missing.append(folder.name)
            pred, pred_dir = GcgSide(text_cleaned="", phrases=[]), None
        samples.append(_Sample(folder.name, folder, pred_dir, gt, pred))
    return samples, skipped, missing


def evaluate_gcg(
    gt_root: str | Path,
    results_root: str | Path | None = None,
    *,
    text_similarity: TextSimilarity | None = None,
    judge: Judge | None = None,
    captions: bool = True,
    compat: bool = False,
    strict: bool = False,
    workers: int | None = None,
) -> GcgResult:
    """Evaluate video GCG predictions laid out as described in the module docstring.

    Args:
        gt_root: folder of ``<idx>/`` sample folders with the GT ``res.json`` and ``gt_masks_<k>/``.
        results_root: folder of ``<idx>/`` folders with the predicted ``res.json`` and
            ``pred_masks_<k>/``; ``None`` means the same folder as ``gt_root``.
        text_similarity: recall text gate; default :class:`TokenCosineSimilarity` (NOT parity; pass
            :class:`~sparrow.evaluation.text_similarity.BertMeanPoolSimilarity` for parity).
        judge: CLAIR judge; ``None`` skips CLAIR.
        captions: compute BLEU/METEOR/ROUGE-L/CIDEr (needs Java); when Java is missing they are
            skipped with ``captions=None`` in the result, or an error is raised in ``strict`` mode.
        compat: official control flow (see the module docstring).
        strict: raise :class:`~sparrow.errors.DataFormatError` naming the file instead of scoring
            failures as 0 / skipping.
        workers: processes for loading masks (default: all cores).
    """
    from sparrow.evaluation.captions import java_available
    from sparrow.evaluation.parallel import parallel_map

    gt_root = Path(gt_root)
    results_root = gt_root if results_root is None else Path(results_root)
    sim = text_similarity or TokenCosineSimilarity()
    samples, skipped, missing = _collect(gt_root, results_root, strict)
    notes: list[str] = []
    if captions and not java_available():
        if strict:
            raise EvaluationError(
                "caption metrics need Java and no `java` is on PATH",
                fix="install a JRE or pass --no-captions",
            )
        notes.append("caption metrics skipped: no `java` on PATH")
        captions = False

    jobs = [_MaskJob(s.name, s.gt_dir, s.pred_dir, len(s.gt.phrases), len(s.pred.phrases)) for s in samples]
    outcomes = parallel_map(_load_masks, jobs, workers=workers, description="GCG masks")

    mious: list[float] = []
    tp_total = positives = 0
    references: list[str] = []
    predictions: list[str] = []
    ap_samples: list[tuple[list[RLE], list[RLE]]] = []
    scores: list[GcgSampleScore] = []
    for sample, outcome in zip(samples, outcomes, strict=True):
        gt, pred = sample.gt, sample.pred
        failure = None if outcome.error is None else f"{outcome.error}: {outcome.error_path}"
        if outcome.error is not None and strict:
            raise DataFormatError(
                outcome.error,
                path=outcome.error_path,
                fix="re-export the masks of this sample (layout in sparrow.evaluation.gcg)",
            )
        miou: float | None = None
        tp = 0
        caption = pred.text_cleaned
        if failure is None:
            assert outcome.iou_pred_gt is not None
            miou = greedy_miou(outcome.iou_pred_gt)
            mious.append(miou)
            positives += len(gt.phrases)
            ap_samples.append((outcome.gt_rles, outcome.pred_rles))
            iou_gt_pred = outcome.iou_pred_gt.T

            def pair_sim(i: int, j: int, g: GcgSide = gt, p: GcgSide = pred) -> float:
                return sim(g.phrases[i], p.phrases[j])

            if compat:
                try:
                    tp = len(match_phrases(iou_gt_pred, pair_sim, eager=True))
                except Exception as err:  # official: one try per sample -> double count
                    failure = f"recall step failed: {type(err).__name__}: {err}"
                    mious.append(0.0)
                    positives += len(gt.phrases)
                    caption = ""
            else:
                tp = len(match_phrases(iou_gt_pred, pair_sim))
        else:
            mious.append(0.0)
            positives += len(gt.phrases)
            if compat:
                caption = ""
        tp_total += tp
        references.append(gt.text_cleaned)
        predictions.append(caption)
        scores.append(
            GcgSampleScore(sample.name, miou, tp, len(gt.phrases), len(pred.phrases), None, failure)
        )

    caption_scores = caption_metrics(references, predictions) if captions and samples else None
    clair_mean: float | None = None
    if judge is not None and samples:
        from rich.progress import track

        total = 0.0
        pairs = list(enumerate(zip(references, predictions, strict=True)))
        for i, (ref, hyp) in track(pairs, description="CLAIR", transient=True):
            value = clair_score([hyp[:MAX_CAPTION_CHARS]], [ref[:MAX_CAPTION_CHARS]], judge).score
            scores[i] = replace(scores[i], clair=value)
            total += value
        clair_mean = total / len(references)

    return GcgResult(
        miou=float(np.mean(mious)) if mious else 0.0,
        recall=tp_total / positives if positives > 0 else 0.0,
        ap50=mask_ap50(ap_samples),
        captions=caption_scores,
        clair=clair_mean,
        text_similarity=sim.name,
        judge=None if judge is None else judge.name,
        compat=compat,
        samples=scores,
        skipped=skipped,
        missing_predictions=missing,
        notes=notes,
    )
