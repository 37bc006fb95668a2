"""Multi-object tracking metrics on masklets: HOTA, CLEAR (MOTA, IDSW, ...) and Identity (IDF1).

Our implementation of the TrackEval definitions (METRICS.md §5.1; cross-checked against the ``trackeval``
package in the tests):

- **HOTA**, for each α in ``0.05, 0.10, ..., 0.95``: per-frame Hungarian matching maximising
  ``A(g, p) · S(g, p)``, with the global alignment ``A = ΣS̃ / (n_g + n_p - ΣS̃)`` and
  ``S̃ = S / (rowsum + colsum - S)``; a matched pair is a TP when ``S >= α``. ``DetA = TP / (TP+FN+FP)``,
  ``AssA = mean over TPs of m / (n_g + n_p - m)`` (m = α-TP frames of the pair), ``HOTA_α = √(DetA·AssA)``,
  HOTA = mean over α. Also DetRe, DetPr, AssRe, AssPr, LocA.
- **CLEAR** (threshold 0.5): per-frame Hungarian on ``1000·[same tracker as last frame] + S`` (pairs
  below 0.5 excluded); an ID switch is a GT matched to a tracker other than the one it was last matched
  to; ``MOTA = (TP - FP - IDSW) / (TP + FN)``, MOTP = mean S of matches, Frag, MT/PT/ML.
- **Identity** (threshold 0.5): one global GT↔tracker assignment maximising the number of frames where the
  pair overlaps with S >= 0.5 (IDTP); ``IDF1 = IDTP / (IDTP + (IDFP + IDFN)/2)``.

Sequences combine by summing counts (HOTA association terms weighted by TP), as TrackEval does.
Similarities are mask IoUs (:meth:`TrackingSequence.from_masks`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import linear_sum_assignment

__all__ = [
    "HOTA_ALPHAS",
    "SequenceBuilder",
    "TrackingCounts",
    "TrackingSequence",
    "combine",
    "evaluate_sequence",
    "tracking_metrics",
]

HOTA_ALPHAS = np.arange(0.05, 0.99, 0.05)
_EPS = np.finfo(float).eps
MATCH_THRESHOLD = 0.5


@dataclass(frozen=True)
class TrackingSequence:
    """Per-frame ids and similarities of one sequence.

    ``gt_ids[t]`` / ``tracker_ids[t]``: int arrays of the ids present at frame t (ids are
    ``0 .. n_gt_ids-1`` and ``0 .. n_tracker_ids-1``); ``similarity[t]``: float64
    ``(len(gt_ids[t]), len(tracker_ids[t]))`` in [0, 1].
    """

    gt_ids: list[np.ndarray]
    tracker_ids: list[np.ndarray]
    similarity: list[np.ndarray]
    n_gt_ids: int
    n_tracker_ids: int

    @property
    def n_gt_dets(self) -> int:
        return int(sum(len(g) for g in self.gt_ids))

    @property
    def n_tracker_dets(self) -> int:
        return int(sum(len(p) for p in self.tracker_ids))

    @classmethod
    def from_masks(
        cls, gt: Mapping[int, Sequence[np.ndarray | None]], tracks: Mapping[int, Sequence[np.ndarray | None]]
    ) -> TrackingSequence:
        """Build from per-frame bool masks ``(H, W)`` (``None`` or empty = absent) of GT objects and tracks.

        Keys are ids ``0 .. n-1``. Similarity = mask IoU.
        """
        builder = SequenceBuilder(len(gt), len(tracks))
        n_frames = max([len(v) for v in gt.values()] + [len(v) for v in tracks.values()] + [0])
        for t in range(n_frames):
            builder.add_frame(
                {k: v[t] if t < len(v) else None for k, v in gt.items()},
                {k: v[t] if t < len(v) else None for k, v in tracks.items()},
            )
        return builder.build()


class SequenceBuilder:
    """Accumulates a :class:`TrackingSequence` frame by frame, so masks need not be kept in memory."""

    def __init__(self, n_gt_ids: int, n_tracker_ids: int) -> None:
        self.n_gt_ids = n_gt_ids
        self.n_tracker_ids = n_tracker_ids
        self._gt: list[np.ndarray] = []
        self._tr: list[np.ndarray] = []
        self._sim: list[np.ndarray] = []

    def add_frame(self, gt: Mapping[int, np.ndarray | None], tracks: Mapping[int, np.ndarray | None]) -> None:
        """Add one frame: bool masks ``(H, W)`` keyed by GT id / tracker id (``None`` or empty = absent)."""
        g_present = [(k, m) for k in sorted(gt) if (m := _present(gt[k])) is not None]
        p_present = [(k, m) for k in sorted(tracks) if (m := _present(tracks[k])) is not None]
        sim = np.zeros((len(g_present), len(p_present)))
        p_areas = [int(np.count_nonzero(pm)) for _, pm in p_present]
        for a, (_, gm) in enumerate(g_present):
            g_area = int(np.count_nonzero(gm))
            for b, (_, pm) in enumerate(p_present):
                inter = int(np.count_nonzero(gm & pm))
                union = g_area + p_areas[b] - inter
                sim[a, b] = inter / union if union else 0.0
        self._gt.append(np.array([k for k, _ in g_present], dtype=np.int64))
        self._tr.append(np.array([k for k, _ in p_present], dtype=np.int64))
        self._sim.append(sim)

    def build(self) -> TrackingSequence:
        return TrackingSequence(self._gt, self._tr, self._sim, self.n_gt_ids, self.n_tracker_ids)


def _present(mask: np.ndarray | None) -> np.ndarray | None:
    if mask is None:
        return None
    m = np.asarray(mask, dtype=bool)
    return m if m.any() else None


@dataclass
class TrackingCounts:
    """Summable counts of one or more sequences (arrays are over :data:`HOTA_ALPHAS`)."""

    hota_tp: np.ndarray = field(default_factory=lambda: np.zeros(len(HOTA_ALPHAS)))
    hota_fn: np.ndarray = field(default_factory=lambda: np.zeros(len(HOTA_ALPHAS)))
    hota_fp: np.ndarray = field(default_factory=lambda: np.zeros(len(HOTA_ALPHAS)))
    ass_a: np.ndarray = field(default_factory=lambda: np.zeros(len(HOTA_ALPHAS)))  # Σ over TPs
    ass_re: np.ndarray = field(default_factory=lambda: np.zeros(len(HOTA_ALPHAS)))
    ass_pr: np.ndarray = field(default_factory=lambda: np.zeros(len(HOTA_ALPHAS)))
    loc: np.ndarray = field(default_factory=lambda: np.zeros(len(HOTA_ALPHAS)))  # Σ S over TPs
    clr_tp: int = 0
    clr_fn: int = 0
    clr_fp: int = 0
    idsw: int = 0
    motp_sum: float = 0.0
    frag: int = 0
    mt: int = 0
    pt: int = 0
    ml: int = 0
    idtp: int = 0
    idfn: int = 0
    idfp: int = 0

    def __add__(self, other: TrackingCounts) -> TrackingCounts:
        return TrackingCounts(**{k: getattr(self, k) + getattr(other, k) for k in self.__dataclass_fields__})


def _one_side_empty(seq: TrackingSequence) -> tuple[int, int] | None:
    """``(missed GT dets, unmatched tracker dets)`` when one side has no detection at all, else None.

    TrackEval's metrics return early in that case: every detection of the other side is an error.
    """
    if seq.n_tracker_dets == 0:
        return seq.n_gt_dets, 0
    if seq.n_gt_dets == 0:
        return 0, seq.n_tracker_dets
    return None


def _hota(seq: TrackingSequence, c: TrackingCounts) -> None:
    if (empty := _one_side_empty(seq)) is not None:
        c.hota_fn += empty[0]
        c.hota_fp += empty[1]
        return
    potential = np.zeros((seq.n_gt_ids, seq.n_tracker_ids))
    gt_count = np.zeros((seq.n_gt_ids, 1))
    tr_count = np.zeros((1, seq.n_tracker_ids))
    for g, p, s in zip(seq.gt_ids, seq.tracker_ids, seq.similarity, strict=True):
        denom = s.sum(0)[None, :] + s.sum(1)[:, None] - s
        soft = np.zeros_like(s)
        ok = denom > _EPS
        soft[ok] = s[ok] / denom[ok]
        potential[g[:, None], p[None, :]] += soft
        gt_count[g] += 1
        tr_count[0, p] += 1
    with np.errstate(invalid="ignore", divide="ignore"):  # ids absent from every frame: 0/0, never used
        alignment = potential / (gt_count + tr_count - potential)
    matches = np.zeros((len(HOTA_ALPHAS), seq.n_gt_ids, seq.n_tracker_ids))
    for g, p, s in zip(seq.gt_ids, seq.tracker_ids, seq.similarity, strict=True):
        if len(g) == 0 or len(p) == 0:
            c.hota_fp += len(p)
            c.hota_fn += len(g)
            continue
        rows, cols = linear_sum_assignment(-(alignment[g[:, None], p[None, :]] * s))
        matched_sim = s[rows, cols]
        for a, alpha in enumerate(HOTA_ALPHAS):
            keep = matched_sim >= alpha - _EPS
            n = int(keep.sum())
            c.hota_tp[a] += n
            c.hota_fn[a] += len(g) - n
            c.hota_fp[a] += len(p) - n
            if n:
                c.loc[a] += matched_sim[keep].sum()
                matches[a, g[rows[keep]], p[cols[keep]]] += 1
    for a in range(len(HOTA_ALPHAS)):
        m = matches[a]
        c.ass_a[a] += np.sum(m * (m / np.maximum(1, gt_count + tr_count - m)))
        c.ass_re[a] += np.sum(m * (m / np.maximum(1, gt_count)))
        c.ass_pr[a] += np.sum(m * (m / np.maximum(1, tr_count)))


def _clear(seq: TrackingSequence, c: TrackingCounts) -> None:
    if (empty := _one_side_empty(seq)) is not None:
        c.clr_fn += empty[0]
        c.clr_fp += empty[1]
        if seq.n_tracker_dets == 0:  # every GT track is mostly lost
            c.ml += seq.n_gt_ids
        return
    n = seq.n_gt_ids
    seen = np.zeros(n)
    matched = np.zeros(n)
    starts = np.zeros(n)
    last_tracker = np.full(n, np.nan)  # last tracker each GT was matched to, ever
    prev_frame_tracker = np.full(n, np.nan)  # tracker matched at the previous frame
    for g, p, s in zip(seq.gt_ids, seq.tracker_ids, seq.similarity, strict=True):
        if len(g) == 0:
            c.clr_fp += len(p)
            continue
        if len(p) == 0:
            c.clr_fn += len(g)
            seen[g] += 1
            continue
        score = 1000.0 * (p[None, :] == prev_frame_tracker[g][:, None]) + s
        score[s < MATCH_THRESHOLD - _EPS] = 0
        rows, cols = linear_sum_assignment(-score)
        ok = score[rows, cols] > _EPS
        rows, cols = rows[ok], cols[ok]
        mg, mp = g[rows], p[cols]
        before = last_tracker[mg]
        c.idsw += int(np.sum(~np.isnan(before) & (mp != before)))
        seen[g] += 1
        matched[mg] += 1
        was_untracked = np.isnan(prev_frame_tracker)
        last_tracker[mg] = mp
        prev_frame_tracker[:] = np.nan
        prev_frame_tracker[mg] = mp
        starts += was_untracked & ~np.isnan(prev_frame_tracker)
        c.clr_tp += len(mg)
        c.clr_fn += len(g) - len(mg)
        c.clr_fp += len(p) - len(mg)
        c.motp_sum += float(s[rows, cols].sum())
    ratio = matched[seen > 0] / seen[seen > 0]
    mt = int(np.sum(ratio > 0.8))
    pt = int(np.sum(ratio >= 0.2)) - mt
    c.mt += mt
    c.pt += pt
    c.ml += n - mt - pt
    c.frag += int(np.sum(starts[starts > 0] - 1))


def _identity(seq: TrackingSequence, c: TrackingCounts) -> None:
    if (empty := _one_side_empty(seq)) is not None:
        c.idfn += empty[0]
        c.idfp += empty[1]
        return
    potential = np.zeros((seq.n_gt_ids, seq.n_tracker_ids))
    for g, p, s in zip(seq.gt_ids, seq.tracker_ids, seq.similarity, strict=True):
        gi, pi = np.nonzero(s >= MATCH_THRESHOLD)
        np.add.at(potential, (g[gi], p[pi]), 1)
    # Minimising IDFN + IDFP = (n_gt_dets - IDTP) + (n_tracker_dets - IDTP) means maximising IDTP.
    rows, cols = linear_sum_assignment(-potential)
    idtp = int(potential[rows, cols].sum())
    c.idtp += idtp
    c.idfn += seq.n_gt_dets - idtp
    c.idfp += seq.n_tracker_dets - idtp


def evaluate_sequence(seq: TrackingSequence) -> TrackingCounts:
    """HOTA, CLEAR and Identity counts of one sequence."""
    c = TrackingCounts()
    _hota(seq, c)
    _clear(seq, c)
    _identity(seq, c)
    return c


def combine(counts: Sequence[TrackingCounts]) -> TrackingCounts:
    """Sum the counts of several sequences."""
    total = TrackingCounts()
    for c in counts:
        total = total + c
    return total


def tracking_metrics(c: TrackingCounts) -> dict[str, float]:
    """Final metric values from (combined) counts: HOTA family, CLEAR family and Identity family."""
    tp = c.hota_tp
    det_re = tp / np.maximum(1, tp + c.hota_fn)
    det_pr = tp / np.maximum(1, tp + c.hota_fp)
    det_a = tp / np.maximum(1, tp + c.hota_fn + c.hota_fp)
    ass_a = c.ass_a / np.maximum(1, tp)
    ass_re = c.ass_re / np.maximum(1, tp)
    ass_pr = c.ass_pr / np.maximum(1, tp)
    loc_a = np.maximum(1e-10, c.loc) / np.maximum(1e-10, tp)
    hota = np.sqrt(det_a * ass_a)
    gt_dets = c.clr_tp + c.clr_fn
    id_total = c.idtp + 0.5 * c.idfp + 0.5 * c.idfn
    return {
        "HOTA": float(np.mean(hota)),
        "DetA": float(np.mean(det_a)),
        "AssA": float(np.mean(ass_a)),
        "DetRe": float(np.mean(det_re)),
        "DetPr": float(np.mean(det_pr)),
        "AssRe": float(np.mean(ass_re)),
        "AssPr": float(np.mean(ass_pr)),
        "LocA": float(np.mean(loc_a)),
        "OWTA": float(np.mean(np.sqrt(det_re * ass_a))),
        "HOTA(0)": float(hota[0]),
        "MOTA": (c.clr_tp - c.clr_fp - c.idsw) / max(1.0, gt_dets),
        "MOTP": c.motp_sum / max(1.0, c.clr_tp),
        "IDSW": int(c.idsw),
        "Frag": int(c.frag),
        "MT": int(c.mt),
        "PT": int(c.pt),
        "ML": int(c.ml),
        "CLR_TP": int(c.clr_tp),
        "CLR_FN": int(c.clr_fn),
        "CLR_FP": int(c.clr_fp),
        "IDF1": c.idtp / max(1.0, id_total),
        "IDR": c.idtp / max(1.0, c.idtp + c.idfn),
        "IDP": c.idtp / max(1.0, c.idtp + c.idfp),
        "IDTP": int(c.idtp),
        "IDFN": int(c.idfn),
        "IDFP": int(c.idfp),
    }
