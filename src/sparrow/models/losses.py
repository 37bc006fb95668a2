"""SPARROW's pixel-side losses: masks, boxes, proposal selection and the proposer's DETR losses,
and the filtration query's bag-of-words reconstruction.

Every function returns unweighted scalar terms; the training recipe weights them (paper defaults:
mask BCE 2.0, Dice 0.5, proposal BCE 1.0 (the listwise ``proposal_rank`` is
ours, weight 0 by default); proposer focal 2, L1 5, GIoU 2 -- :data:`DETR_LOSS_WEIGHTS`).
Boxes are normalised ``cxcywh``; GIoU goes through :mod:`sparrow.structures.boxes`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from sparrow.models.hungarian import FOCAL_ALPHA, FOCAL_GAMMA, hungarian_match
from sparrow.models.proposer import ProposerOutput
from sparrow.structures.boxes import box_convert, box_iou, generalized_box_iou

DETR_LOSS_WEIGHTS = {"det_class": 2.0, "det_l1": 5.0, "det_giou": 2.0}
DETR_MATCH_COSTS = {"class": 2.0, "box": 5.0, "giou": 2.0}


def _check_same_shape(logits: Tensor, targets: Tensor) -> None:
    if logits.shape != targets.shape:
        raise ValueError(f"logits {tuple(logits.shape)} and targets {tuple(targets.shape)} differ in shape")


def mask_bce_loss(logits: Tensor, targets: Tensor) -> Tensor:
    """Binary cross-entropy of mask logits ``(N, ...)`` against float targets in ``{0, 1}``, mean over
    every pixel of every mask."""
    _check_same_shape(logits, targets)
    return F.binary_cross_entropy_with_logits(logits.float(), targets.float())


def dice_loss(logits: Tensor, targets: Tensor, smooth: float = 1.0) -> Tensor:
    """Soft Dice loss ``1 - (2 |P T| + s) / (|P| + |T| + s)`` per mask, mean over the ``N`` masks.

    ``logits`` and ``targets`` are ``(N, ...)``; ``P = sigmoid(logits)``; ``s = smooth``.
    """
    _check_same_shape(logits, targets)
    prob = logits.float().sigmoid().flatten(1)
    target = targets.float().flatten(1)
    numerator = 2 * (prob * target).sum(1) + smooth
    denominator = prob.sum(1) + target.sum(1) + smooth
    return (1 - numerator / denominator).mean()


def _paired_giou(pred: Tensor, target: Tensor) -> Tensor:
    """GIoU of ``pred[i]`` with ``target[i]`` for ``(N, 4)`` ``cxcywh`` boxes -> ``(N,)``."""
    giou = generalized_box_iou(box_convert(pred, "cxcywh", "xyxy"), box_convert(target, "cxcywh", "xyxy"))
    return giou.diagonal()


def box_l1_giou_loss(pred: Tensor, target: Tensor) -> dict[str, Tensor]:
    """Box regression losses of ``pred`` against ``target`` (both ``(N, 4)`` normalised ``cxcywh``).

    Returns:
        ``{"box_l1": mean over boxes of the summed |coordinate error|, "box_giou": mean of 1 - GIoU}``
        (both 0 for ``N = 0``).
    """
    _check_same_shape(pred, target)
    if pred.shape[0] == 0:
        zero = pred.sum() * 0
        return {"box_l1": zero, "box_giou": zero}
    pred, target = pred.float(), target.float()
    return {
        "box_l1": (pred - target).abs().sum(-1).mean(),
        "box_giou": (1 - _paired_giou(pred, target)).mean(),
    }


def _proposal_target_iou(proposal_boxes: Tensor, target_boxes: Tensor, n: int, q: int) -> Tensor:
    """``(N, Q)`` IoU of every proposal with its row's target (no gradient); checks the shapes."""
    if proposal_boxes.shape != (n, q, 4) or target_boxes.shape != (n, 4):
        raise ValueError(
            f"expected proposal_boxes ({n}, {q}, 4) and target_boxes ({n}, 4), got "
            f"{tuple(proposal_boxes.shape)} and {tuple(target_boxes.shape)}"
        )
    with torch.no_grad():
        props = box_convert(proposal_boxes.float(), "cxcywh", "xyxy")
        targets = box_convert(target_boxes.float(), "cxcywh", "xyxy")
        return torch.stack([box_iou(props[i], targets[i : i + 1])[:, 0] for i in range(n)]).reshape(n, q)


def proposal_selection_loss(
    scores: Tensor, proposal_boxes: Tensor, target_boxes: Tensor, pos_iou: float = 0.3
) -> Tensor:
    """BCE of filtration scores against "this proposal covers the target" labels.

    Args:
        scores: ``(N, Q)`` logits.
        proposal_boxes: ``(N, Q, 4)`` normalised ``cxcywh``.
        target_boxes: ``(N, 4)`` normalised ``cxcywh``, one target per image.
        pos_iou: a proposal is positive when its IoU with the target is ``>= pos_iou`` (the
            authors' code uses 0.3).

    Returns:
        Scalar mean BCE over all ``N * Q`` proposals.
    """
    n, q = scores.shape
    labels = (_proposal_target_iou(proposal_boxes, target_boxes, n, q) >= pos_iou).float()
    return F.binary_cross_entropy_with_logits(scores.float(), labels)


def proposal_ranking_loss(
    scores: Tensor, proposal_boxes: Tensor, target_boxes: Tensor, pos_iou: float = 0.5
) -> Tensor:
    """Listwise cross-entropy of the filtration scores: the softmax over a row's ``Q`` proposals
    should put its mass on the proposals that cover the target,
    ``-log(sum_{pos} softmax(scores)) = logsumexp(scores) - logsumexp(scores[pos])``.

    Unlike the per-proposal BCE, which a head can lower by scoring every proposal down, this term
    only falls when the target's proposals outrank the other objects of the same frame: it trains the
    choice itself.

    Args:
        scores: ``(N, Q)`` logits.
        proposal_boxes: ``(N, Q, 4)`` normalised ``cxcywh``.
        target_boxes: ``(N, 4)`` normalised ``cxcywh``, one target per image.
        pos_iou: a proposal is positive when its IoU with the target is ``>= pos_iou``.

    Returns:
        Scalar mean over the rows with at least one positive (``0``, still attached to ``scores``,
        when no row has one).
    """
    n, q = scores.shape
    positive = _proposal_target_iou(proposal_boxes, target_boxes, n, q) >= pos_iou
    rows = positive.any(dim=1)
    if not bool(rows.any()):
        return scores.sum() * 0.0
    logits = scores.float()[rows]
    on_target = logits.masked_fill(~positive[rows], float("-inf"))
    return (logits.logsumexp(dim=1) - on_target.logsumexp(dim=1)).mean()


def bag_of_words_loss(logits: Tensor, words: Tensor) -> Tensor:
    """Cross-entropy of word logits against a bag of words: each row's softmax over the vocabulary
    should spread its mass evenly over the row's words, ``-mean_{w in bag} log softmax(logits)_w``.

    Args:
        logits: ``(N, V)`` logits over a vocabulary of ``V`` tokens.
        words: ``(N, V)`` bool, which tokens are in each row's bag.

    Returns:
        Scalar mean over the rows with a non-empty bag (``0``, still attached to ``logits``, when
        every bag is empty).
    """
    _check_same_shape(logits, words)
    rows = words.any(dim=1)
    if not bool(rows.any()):
        return logits.sum() * 0.0
    bags = words[rows].float()
    log_probs = logits.float()[rows].log_softmax(dim=1)
    return (-(log_probs * bags).sum(dim=1) / bags.sum(dim=1)).mean()


def sigmoid_focal_loss(
    logits: Tensor, targets: Tensor, alpha: float = FOCAL_ALPHA, gamma: float = FOCAL_GAMMA
) -> Tensor:
    """Element-wise focal loss of logits against float targets in ``{0, 1}`` (same shape, no reduction)."""
    prob = logits.sigmoid()
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_t = prob * targets + (1 - prob) * (1 - targets)
    alpha_t = alpha * targets + (1 - alpha) * (1 - targets)
    return alpha_t * (1 - p_t) ** gamma * ce


def detr_losses(
    out: ProposerOutput, targets: list[Tensor], *, weights: dict[str, float] | None = None
) -> dict[str, Tensor]:
    """DETR set losses of the proposer after Hungarian matching (Deformable-DETR conventions).

    Args:
        out: proposals for ``N`` images (``boxes (N, Q, 4)``, ``logits (N, Q)``).
        targets: ``N`` tensors ``(G_i, 4)`` of normalised ``cxcywh`` ground-truth boxes (``G_i`` may be 0).
        weights: matching costs ``{"class", "box", "giou"}`` (default :data:`DETR_MATCH_COSTS`:
            2, 5, 2). The returned terms are NOT weighted; weight them with
            :data:`DETR_LOSS_WEIGHTS` (focal 2, L1 5, GIoU 2).

    Returns:
        ``{"det_class": focal loss summed over all queries, "det_l1": summed L1 of matched boxes,
        "det_giou": summed 1 - GIoU of matched boxes}``, each divided by the number of ground-truth
        boxes in the batch (at least 1). With ``out.encoder`` (query selection) each term also holds
        the same loss of the per-cell proposals, matched on their own (two-stage Deformable DETR).
    """
    costs = {**DETR_MATCH_COSTS, **(weights or {})}
    losses = _set_losses(out, targets, costs)
    if out.encoder is not None:
        cells = _set_losses(out.encoder, targets, costs)
        losses = {name: value + cells[name] for name, value in losses.items()}
    return losses


def _set_losses(out: ProposerOutput, targets: list[Tensor], costs: dict[str, float]) -> dict[str, Tensor]:
    """:func:`detr_losses` of one set of proposals (no encoder term)."""
    if len(targets) != out.boxes.shape[0]:
        raise ValueError(f"{len(targets)} target lists for {out.boxes.shape[0]} images")
    logits = out.logits.float()
    labels = torch.zeros_like(logits)
    matched_pred: list[Tensor] = []
    matched_gt: list[Tensor] = []
    for i, gt in enumerate(targets):
        gt = gt.to(out.boxes.device)
        pred_index, gt_index = hungarian_match(
            out.boxes[i].detach(),
            logits[i].detach(),
            gt,
            cost_class=costs["class"],
            cost_box=costs["box"],
            cost_giou=costs["giou"],
        )
        labels[i, pred_index] = 1.0
        matched_pred.append(out.boxes[i, pred_index].float())
        matched_gt.append(gt[gt_index].float())
    num_boxes = max(sum(int(t.shape[0]) for t in targets), 1)
    pred = torch.cat(matched_pred)
    gt = torch.cat(matched_gt)
    det_class = sigmoid_focal_loss(logits, labels).sum() / num_boxes
    if pred.shape[0] == 0:
        zero = out.boxes.sum() * 0
        return {"det_class": det_class, "det_l1": zero, "det_giou": zero}
    return {
        "det_class": det_class,
        "det_l1": (pred - gt).abs().sum() / num_boxes,
        "det_giou": (1 - _paired_giou(pred, gt)).sum() / num_boxes,
    }
