"""The GCG mask metrics as pure functions: greedy mIoU, recall with early stop, volume IoU, AP50.

``specs/METRICS.md`` 4.1 (GLaMM, images) and 4.2 (VideoGLaMM / SPARROW, videos):

- :func:`greedy_miou` -- on the (predictions x GT) IoU matrix, repeatedly take the global maximum
  (first in row-major order on ties) while it is > 0, record it and delete its row and column; the
  sample's score is the mean of the recorded values, 0.0 if none. Unmatched predictions and GT are
  not penalised.
- :func:`match_phrases` -- on the (GT x predictions) IoU matrix, repeatedly take the argmax pair;
  **stop completely** as soon as its IoU < 0.5 or its text similarity < 0.5 (the loop never goes on
  to the next-best pair); otherwise count it and zero its row and column.
- :func:`volume_iou_matrix` -- a video object is the stack of its T frame masks and the IoU is the
  spatio-temporal volume IoU ``sum_t |A_t & B_t| / sum_t |A_t | B_t|``; an empty union gives 1.0
  (SPARROW's rule; VideoGLaMM divides 0/0).
- :func:`mask_ap50` -- pycocotools ``COCOeval(iouType="segm")`` with every prediction scored 1.0,
  ``catIds=[1]``, ``stats[1]`` (AP at IoU 0.5, all areas, 100 detections). Scores tie, so COCOeval's
  stable sort keeps the input order (sample order, then phrase order) and **AP depends on it**.
  A video object enters COCOeval as one 2-D mask of its frames stacked vertically (``(T*H, W)``), so
  the IoU COCOeval computes is exactly the volume IoU; for one-frame samples this is GLaMM's image AP50.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Callable, Sequence

import numpy as np

from sparrow.structures.masks import RLE, rle_area, rle_to_box

__all__ = ["PackedVolume", "greedy_miou", "mask_ap50", "match_phrases", "pack_volume", "volume_iou_matrix"]


def greedy_miou(iou_pred_gt: np.ndarray) -> float:
    """Greedy one-to-one mIoU of one sample from its ``(n_pred, n_gt)`` IoU matrix (float)."""
    m = np.asarray(iou_pred_gt, dtype=np.float64)
    if m.ndim != 2:
        raise ValueError(f"expected an (n_pred, n_gt) matrix, got shape {m.shape}")
    picked: list[float] = []
    while m.size > 0 and np.max(m) > 0:
        i, j = np.unravel_index(np.argmax(m), m.shape)
        picked.append(float(m[i, j]))
        m = np.delete(np.delete(m, i, axis=0), j, axis=1)
    return float(np.mean(picked)) if picked else 0.0


def match_phrases(
    iou_gt_pred: np.ndarray,
    similarity: Callable[[int, int], float],
    *,
    iou_threshold: float = 0.5,
    text_threshold: float = 0.5,
    eager: bool = False,
) -> list[tuple[int, int]]:
    """GCG recall matching of one sample with the official early stop.

    Args:
        iou_gt_pred: ``(n_gt, n_pred)`` mask IoU matrix.
        similarity: ``similarity(i, j)`` = text similarity of GT phrase ``i`` and predicted phrase ``j``.
        iou_threshold, text_threshold: both in ``(0, 1]`` (official 0.5 and 0.5).
        eager: compute the similarity of every pair first, as the official code does (so a failing
            similarity fails the sample even for pairs never consulted); otherwise only the pairs the
            loop reaches are computed -- the matches are the same.

    Returns:
        The matched ``(gt_index, pred_index)`` pairs in match order; their count is the sample's TP.
    """
    if not (0 < iou_threshold <= 1 and 0 < text_threshold <= 1):
        raise ValueError("thresholds must lie in (0, 1]")
    ious = np.array(iou_gt_pred, dtype=np.float64, copy=True)
    if ious.ndim != 2:
        raise ValueError(f"expected an (n_gt, n_pred) matrix, got shape {ious.shape}")
    sims = (
        np.array(
            [[similarity(i, j) for j in range(ious.shape[1])] for i in range(ious.shape[0])], dtype=np.float64
        )
        if eager
        else None
    )
    matches: list[tuple[int, int]] = []
    while ious.size > 0:
        i, j = (int(x) for x in np.unravel_index(np.argmax(ious), ious.shape))
        # A zeroed (already used) pair has IoU 0 < threshold, so its similarity is never needed.
        if ious[i, j] < iou_threshold:
            break
        sim = sims[i, j] if sims is not None else similarity(i, j)
        if sim < text_threshold:
            break
        matches.append((i, j))
        ious[i, :] = 0
        ious[:, j] = 0
        if sims is not None:
            sims[i, :] = 0
            sims[:, j] = 0
    return matches


PackedVolume = tuple[tuple[int, ...], int, np.ndarray]
"""A mask volume as ``(shape, foreground count, np.packbits of the flattened bool array)``."""


def pack_volume(volume: np.ndarray) -> PackedVolume:
    """Pack a bool mask volume ``(T, H, W)`` (or any shape) for :func:`volume_iou_matrix`."""
    v = np.asarray(volume, dtype=bool)
    return (tuple(v.shape), int(np.count_nonzero(v)), np.packbits(v.ravel()))


def volume_iou_matrix(rows: Sequence[PackedVolume], cols: Sequence[PackedVolume]) -> np.ndarray:
    """Pairwise volume IoU ``(len(rows), len(cols))`` float64; an empty union gives 1.0 (SPARROW).

    Raises:
        ValueError: two volumes of different shapes (the official code fails on them too).
    """
    out = np.zeros((len(rows), len(cols)), dtype=np.float64)
    for i, (shape_a, area_a, bits_a) in enumerate(rows):
        for j, (shape_b, area_b, bits_b) in enumerate(cols):
            if shape_a != shape_b:
                raise ValueError(f"mask volumes of different shapes: {shape_a} vs {shape_b}")
            inter = int(np.bitwise_count(np.bitwise_and(bits_a, bits_b)).sum())
            union = area_a + area_b - inter
            out[i, j] = 1.0 if union == 0 else inter / union
    return out


def mask_ap50(samples: Sequence[tuple[Sequence[RLE], Sequence[RLE]]]) -> float:
    """GLaMM's mask AP50 through pycocotools ``COCOeval``; every prediction has score 1.0.

    Args:
        samples: per sample, ``(gt_masks, pred_masks)`` as COCO RLEs (2-D; a video object is its
            ``(T*H, W)`` vertical stack). The order of samples and of predictions inside a sample is
            the tie-break order.

    Returns:
        ``stats[1]`` of COCOeval: AP at IoU 0.5 (``-1.0`` when there is no GT object at all, as
        COCOeval reports; ``0.0`` when there are GT objects but no prediction).
    """
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    images, gt_anns, dt_anns = [], [], []
    for image_id, (gts, preds) in enumerate(samples):
        size = next((r["size"] for r in [*gts, *preds]), [1, 1])
        images.append({"id": image_id, "height": int(size[0]), "width": int(size[1])})
        for rle in gts:
            gt_anns.append(
                {
                    "id": len(gt_anns) + 1,  # COCOeval treats id 0 as "unmatched"
                    "image_id": image_id,
                    "category_id": 1,
                    "segmentation": rle,
                    "area": float(rle_area(rle)),
                    "bbox": _xywh(rle),
                    "iscrowd": 0,
                }
            )
        for rle in preds:
            dt_anns.append({"image_id": image_id, "category_id": 1, "segmentation": rle, "score": 1.0})
    if not gt_anns:
        return -1.0
    if not dt_anns:
        return 0.0
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = {
            "images": images,
            "annotations": gt_anns,
            "categories": [{"id": 1, "name": "object"}],
        }
        coco_gt.createIndex()
        coco_dt = coco_gt.loadRes(dt_anns)
        evaluator = COCOeval(coco_gt, coco_dt, "segm")
        evaluator.params.catIds = [1]
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return float(evaluator.stats[1])


def _xywh(rle: RLE) -> list[float]:
    x1, y1, x2, y2 = (float(v) for v in rle_to_box(rle))
    return [x1, y1, x2 - x1, y2 - y1]
