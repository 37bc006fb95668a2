"""Hungarian matching of DETR proposals to ground-truth boxes (Deformable-DETR costs).

The cost of assigning proposal ``i`` to ground truth ``j`` is
``cost_class * C_focal[i] + cost_box * L1(b_i, g_j) + cost_giou * (-GIoU(b_i, g_j))`` where
``C_focal = alpha (1 - p)^gamma (-log p) - (1 - alpha) p^gamma (-log(1 - p))`` is the focal-loss
difference between calling the proposal an object and calling it background, ``L1`` is over the four
normalised ``cxcywh`` coordinates and GIoU is over ``xyxy``. The assignment minimising the total cost
comes from :func:`scipy.optimize.linear_sum_assignment`.
"""

from __future__ import annotations

import torch
from scipy.optimize import linear_sum_assignment
from torch import Tensor

from sparrow.structures.boxes import box_convert, generalized_box_iou

FOCAL_ALPHA = 0.25
FOCAL_GAMMA = 2.0


def match_cost_matrix(
    pred_boxes: Tensor,
    pred_logits: Tensor,
    gt_boxes: Tensor,
    *,
    cost_class: float = 2.0,
    cost_box: float = 5.0,
    cost_giou: float = 2.0,
) -> Tensor:
    """Matching costs of ``Q`` proposals against ``G`` ground-truth boxes.

    Args:
        pred_boxes: ``(Q, 4)`` normalised ``cxcywh``.
        pred_logits: ``(Q,)`` objectness logits.
        gt_boxes: ``(G, 4)`` normalised ``cxcywh``.

    Returns:
        ``(Q, G)`` float32 cost matrix (no gradient).
    """
    with torch.no_grad():
        prob = pred_logits.float().sigmoid()
        eps = 1e-8
        pos = FOCAL_ALPHA * (1 - prob) ** FOCAL_GAMMA * -(prob + eps).log()
        neg = (1 - FOCAL_ALPHA) * prob**FOCAL_GAMMA * -(1 - prob + eps).log()
        pred, gt = pred_boxes.float(), gt_boxes.float()
        l1 = torch.cdist(pred, gt, p=1)
        giou = generalized_box_iou(box_convert(pred, "cxcywh", "xyxy"), box_convert(gt, "cxcywh", "xyxy"))
        return cost_class * (pos - neg)[:, None] + cost_box * l1 - cost_giou * giou


def hungarian_match(
    pred_boxes: Tensor,
    pred_logits: Tensor,
    gt_boxes: Tensor,
    *,
    cost_class: float = 2.0,
    cost_box: float = 5.0,
    cost_giou: float = 2.0,
) -> tuple[Tensor, Tensor]:
    """Optimal one-to-one assignment of proposals to ground-truth boxes for one image.

    Args:
        pred_boxes: ``(Q, 4)`` normalised ``cxcywh``.
        pred_logits: ``(Q,)`` objectness logits.
        gt_boxes: ``(G, 4)`` normalised ``cxcywh``.

    Returns:
        ``(pred_index, gt_index)``, two int64 tensors of length ``min(Q, G)`` on ``pred_boxes``'s
        device, sorted by ``pred_index``: proposal ``pred_index[m]`` is matched to ``gt_index[m]``.
    """
    device = pred_boxes.device
    if pred_boxes.shape[0] == 0 or gt_boxes.shape[0] == 0:
        empty = torch.zeros(0, dtype=torch.int64, device=device)
        return empty, empty.clone()
    cost = match_cost_matrix(
        pred_boxes, pred_logits, gt_boxes, cost_class=cost_class, cost_box=cost_box, cost_giou=cost_giou
    )
    rows, cols = linear_sum_assignment(cost.cpu().numpy())
    return (
        torch.as_tensor(rows, dtype=torch.int64, device=device),
        torch.as_tensor(cols, dtype=torch.int64, device=device),
    )
