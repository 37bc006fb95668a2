"""The straightforward full-frame J/F algorithm, step by step as METRICS.md §1.1-1.2 describes it.

This is the yardstick for :mod:`.jf`: the tests require the fast implementation to give identical
values, and ``benchmarks/eval_speed.py`` reports the speed ratio between the two. It is not used by the
protocols.
"""

from __future__ import annotations

import cv2
import numpy as np

from sparrow.evaluation.jf import DEFAULT_BOUND_TH, boundary_radius, disk

__all__ = ["reference_f", "reference_j", "reference_seg2bmap"]


def reference_seg2bmap(seg: np.ndarray) -> np.ndarray:
    """Boundary map with explicit east / south / south-east neighbour images and the three overrides."""
    s = np.asarray(seg).astype(bool)
    e = np.zeros_like(s)
    so = np.zeros_like(s)
    se = np.zeros_like(s)
    e[:, :-1] = s[:, 1:]
    so[:-1, :] = s[1:, :]
    se[:-1, :-1] = s[1:, 1:]
    b = (s ^ e) | (s ^ so) | (s ^ se)
    b[-1, :] = s[-1, :] ^ e[-1, :]
    b[:, -1] = s[:, -1] ^ so[:, -1]
    b[-1, -1] = False
    return b


def reference_j(gt: np.ndarray, pred: np.ndarray, void: np.ndarray | None = None) -> float:
    """J of one ``(H, W)`` frame: intersection over union outside void, 1 for an empty union."""
    a, b = np.asarray(gt).astype(bool), np.asarray(pred).astype(bool)
    keep = np.ones_like(a) if void is None else ~np.asarray(void).astype(bool)
    inter = int(np.sum((a & b) & keep))
    union = int(np.sum((a | b) & keep))
    return 1.0 if union == 0 else inter / union


def reference_f(
    gt: np.ndarray, pred: np.ndarray, void: np.ndarray | None = None, *, bound_th: float = DEFAULT_BOUND_TH
) -> float:
    """F of one ``(H, W)`` frame: full-frame boundaries, full-frame ``cv2.dilate`` with the disk."""
    a, b = np.asarray(gt).astype(bool), np.asarray(pred).astype(bool)
    keep = np.ones_like(a) if void is None else ~np.asarray(void).astype(bool)
    kernel = disk(boundary_radius(a.shape, bound_th))
    fg_b = reference_seg2bmap(b & keep)
    gt_b = reference_seg2bmap(a & keep)
    fg_dil = cv2.dilate(fg_b.astype(np.uint8), kernel)
    gt_dil = cv2.dilate(gt_b.astype(np.uint8), kernel)
    n_fg, n_gt = int(fg_b.sum()), int(gt_b.sum())
    if n_fg == 0 and n_gt > 0:
        precision, recall = 1.0, 0.0
    elif n_fg > 0 and n_gt == 0:
        precision, recall = 0.0, 1.0
    elif n_fg == 0 and n_gt == 0:
        precision, recall = 1.0, 1.0
    else:
        precision = int(np.sum(fg_b * gt_dil)) / float(n_fg)
        recall = int(np.sum(gt_b * fg_dil)) / float(n_gt)
    if precision + recall == 0:
        return 0.0
    return 2 * precision * recall / (precision + recall)
