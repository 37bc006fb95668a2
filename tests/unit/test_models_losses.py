"""Pixel-side losses and Hungarian matching: golden values, brute force, perfect predictions, descent."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from sparrow.models.hungarian import hungarian_match, match_cost_matrix
from sparrow.models.losses import (
    DETR_LOSS_WEIGHTS,
    bag_of_words_loss,
    box_l1_giou_loss,
    detr_losses,
    dice_loss,
    mask_bce_loss,
    proposal_ranking_loss,
    proposal_selection_loss,
    sigmoid_focal_loss,
)
from sparrow.models.proposer import ProposerOutput


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    """Small ops on 2 shared cores: more intra-op threads only add contention (10x slower under load)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_mask_bce_golden_values() -> None:
    logits = torch.zeros(2, 1, 4, 4)
    targets = torch.ones(2, 1, 4, 4)
    assert mask_bce_loss(logits, targets).item() == pytest.approx(math.log(2), abs=1e-6)
    perfect = torch.where(targets > 0, 30.0, -30.0)
    assert mask_bce_loss(perfect, targets).item() < 1e-10
    with pytest.raises(ValueError, match="shape"):
        mask_bce_loss(logits, targets[:, :, :2])


def test_dice_golden_values() -> None:
    targets = torch.zeros(2, 1, 2, 2)
    targets[:, 0, 0, :] = 1.0  # 2 of 4 pixels
    perfect = torch.where(targets > 0, 40.0, -40.0)
    assert dice_loss(perfect, targets).item() == pytest.approx(0.0, abs=1e-6)
    # P = 0.5 everywhere: 1 - (2 * 1 + 1) / (2 + 2 + 1) = 0.4
    assert dice_loss(torch.zeros(2, 1, 2, 2), targets).item() == pytest.approx(0.4, abs=1e-6)
    # the mean over masks: a perfect mask (0) and a P = 0.5 mask (0.4)
    mixed = torch.stack([perfect[0], torch.zeros(1, 2, 2)])
    assert dice_loss(mixed, targets).item() == pytest.approx(0.2, abs=1e-6)


def test_box_l1_and_giou_golden_values() -> None:
    pred = torch.tensor([[0.25, 0.25, 0.1, 0.1], [0.5, 0.5, 0.2, 0.2]])
    same = box_l1_giou_loss(pred, pred)
    assert same["box_l1"].item() == pytest.approx(0.0, abs=1e-7)
    assert same["box_giou"].item() == pytest.approx(0.0, abs=1e-6)
    # two disjoint 0.1-boxes whose hull is 0.1 x 0.3: IoU 0, GIoU = -(0.03 - 0.02) / 0.03 = -1/3
    a = torch.tensor([[0.25, 0.25, 0.1, 0.1]])
    b = torch.tensor([[0.45, 0.25, 0.1, 0.1]])
    losses = box_l1_giou_loss(a, b)
    assert losses["box_l1"].item() == pytest.approx(0.2, abs=1e-6)
    assert losses["box_giou"].item() == pytest.approx(1 + 1 / 3, abs=1e-5)
    empty = box_l1_giou_loss(torch.zeros(0, 4), torch.zeros(0, 4))
    assert empty["box_l1"].item() == 0.0 and empty["box_giou"].item() == 0.0


def test_proposal_selection_labels_use_the_iou_threshold() -> None:
    target = torch.tensor([[0.5, 0.5, 0.2, 0.2]])
    # IoU 1, IoU 0.25 / 0.55 shifted boxes, and a disjoint one
    proposals = torch.tensor(
        [[[0.5, 0.5, 0.2, 0.2], [0.62, 0.5, 0.2, 0.2], [0.55, 0.5, 0.2, 0.2], [0.1, 0.1, 0.1, 0.1]]]
    )
    scores = torch.tensor([[2.0, -1.0, 0.5, -3.0]])
    # IoUs: 1, 0.08 / 0.32 = 0.25 (< 0.3), 0.15 / 0.25 = 0.6, 0 -> labels 1, 0, 1, 0
    expected = torch.nn.functional.binary_cross_entropy_with_logits(
        scores, torch.tensor([[1.0, 0.0, 1.0, 0.0]])
    )
    assert proposal_selection_loss(scores, proposals, target).item() == pytest.approx(
        expected.item(), abs=1e-6
    )
    strict = torch.nn.functional.binary_cross_entropy_with_logits(
        scores, torch.tensor([[1.0, 0.0, 0.0, 0.0]])
    )
    assert proposal_selection_loss(scores, proposals, target, pos_iou=0.7).item() == pytest.approx(
        strict.item(), abs=1e-6
    )
    with pytest.raises(ValueError, match="expected"):
        proposal_selection_loss(scores, proposals[:, :3], target)


def test_proposal_ranking_golden_values() -> None:
    target = torch.tensor([[0.5, 0.5, 0.2, 0.2], [0.5, 0.5, 0.2, 0.2]])
    row = [[0.5, 0.5, 0.2, 0.2], [0.62, 0.5, 0.2, 0.2], [0.55, 0.5, 0.2, 0.2], [0.1, 0.1, 0.1, 0.1]]
    proposals = torch.tensor([row, row])
    scores = torch.tensor([[2.0, -1.0, 0.5, -3.0], [0.0, 0.0, 0.0, 0.0]], requires_grad=True)
    # IoUs 1, 0.25, 0.6, 0: positives at 0.5 are proposals 0 and 2
    p = scores.detach().softmax(dim=1)
    expected = -(p[:, 0] + p[:, 2]).log().mean()
    loss = proposal_ranking_loss(scores, proposals, target)
    assert loss.item() == pytest.approx(expected.item(), abs=1e-6)
    assert loss.item() == pytest.approx(-0.5 * (math.log(float(p[0, 0] + p[0, 2])) + math.log(0.5)), abs=1e-6)
    # Only proposal 0 at 0.7; lowering every score together changes nothing (unlike the BCE)
    strict = proposal_ranking_loss(scores, proposals, target, pos_iou=0.7)
    shifted = proposal_ranking_loss(scores - 5.0, proposals, target, pos_iou=0.7)
    assert strict.item() == pytest.approx(shifted.item(), abs=1e-5)
    loss.backward()
    assert scores.grad[1, 1] > 0 and scores.grad[1, 0] < 0  # pushes the other object down, the target up


def test_proposal_ranking_skips_rows_without_a_positive() -> None:
    target = torch.tensor([[0.5, 0.5, 0.2, 0.2], [0.9, 0.9, 0.05, 0.05]])
    proposals = torch.tensor([[[0.5, 0.5, 0.2, 0.2], [0.1, 0.1, 0.1, 0.1]]] * 2)
    scores = torch.tensor([[1.0, 0.0], [3.0, -2.0]], requires_grad=True)
    loss = proposal_ranking_loss(scores, proposals, target)
    assert loss.item() == pytest.approx(math.log(1 + math.exp(-1.0)), abs=1e-6)  # row 0 alone
    none = proposal_ranking_loss(scores[1:], proposals[1:], target[1:])
    assert none.item() == 0.0 and none.requires_grad
    with pytest.raises(ValueError, match="expected"):
        proposal_ranking_loss(scores, proposals[:, :1], target)


def test_bag_of_words_golden_values() -> None:
    logits = torch.tensor(
        [[0.0, 0.0, 0.0, 0.0], [2.0, 0.0, -1.0, 1.0], [5.0, 1.0, 1.0, 1.0]], requires_grad=True
    )
    words = torch.tensor([[True, False, False, False], [True, False, False, True], [False] * 4])
    loss = bag_of_words_loss(logits, words)
    # row 0: -log(1/4); row 1: -(log p0 + log p3) / 2; row 2 (empty bag) is skipped
    p1 = logits.detach()[1].softmax(dim=0)
    expected = (math.log(4.0) - 0.5 * (math.log(float(p1[0])) + math.log(float(p1[3])))) / 2
    assert loss.item() == pytest.approx(expected, abs=1e-6)
    loss.backward()
    # d/dlogits = (softmax - bag / |bag|) / rows: mass moves to the bag, evenly
    target = torch.tensor([[1.0, 0.0, 0.0, 0.0], [0.5, 0.0, 0.0, 0.5]])
    expected_grad = (logits.detach()[:2].softmax(dim=1) - target) / 2
    assert torch.allclose(logits.grad[:2], expected_grad, atol=1e-6)
    assert logits.grad[2].abs().sum() == 0
    empty = bag_of_words_loss(logits, torch.zeros_like(words))
    assert empty.item() == 0.0 and empty.requires_grad
    with pytest.raises(ValueError, match="differ in shape"):
        bag_of_words_loss(logits, words[:, :2])


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 6), st.integers(2, 12), st.integers(0, 2**31 - 1))
def test_bag_of_words_is_minimal_at_the_uniform_bag(n: int, v: int, seed: int) -> None:
    """For any bag, the loss is at least log |bag|, reached by logits that are uniform on the bag."""
    generator = torch.Generator().manual_seed(seed)
    words = torch.rand(n, v, generator=generator) < 0.4
    words[:, 0] = True
    logits = torch.randn(n, v, generator=generator)
    floor = words.float().sum(dim=1).log().mean().item()
    assert bag_of_words_loss(logits, words).item() >= floor - 1e-5
    ideal = torch.where(words, 0.0, -1e4)
    assert bag_of_words_loss(ideal, words).item() == pytest.approx(floor, abs=1e-4)


def test_focal_loss_golden_value() -> None:
    # p = 0.5, target 1: alpha * (1 - p)^2 * log 2; target 0: (1 - alpha) * p^2 * log 2
    values = sigmoid_focal_loss(torch.zeros(2), torch.tensor([1.0, 0.0]))
    assert values[0].item() == pytest.approx(0.25 * 0.25 * math.log(2), abs=1e-7)
    assert values[1].item() == pytest.approx(0.75 * 0.25 * math.log(2), abs=1e-7)


def _boxes(draw_floats: list[float], n: int) -> torch.Tensor:
    raw = torch.tensor(draw_floats[: n * 4], dtype=torch.float32).view(n, 4)
    return torch.cat([0.2 + 0.6 * raw[:, :2], 0.05 + 0.4 * raw[:, 2:]], dim=1)


@settings(max_examples=40, deadline=None)
@given(
    q=st.integers(1, 5),
    g=st.integers(0, 5),
    values=st.lists(st.floats(0.0, 1.0, allow_nan=False), min_size=45, max_size=45),
)
def test_hungarian_matching_equals_brute_force(q: int, g: int, values: list[float]) -> None:
    pred = _boxes(values, q)
    gt = _boxes(values[20:], g)
    logits = torch.tensor(values[40 : 40 + q]) * 8 - 4
    pred_index, gt_index = hungarian_match(pred, logits, gt)
    m = min(q, g)
    assert len(pred_index) == len(gt_index) == m
    assert len(set(pred_index.tolist())) == m and len(set(gt_index.tolist())) == m
    assert pred_index.tolist() == sorted(pred_index.tolist())
    if m == 0:
        return
    cost = match_cost_matrix(pred, logits, gt).numpy()
    ours = cost[pred_index.numpy(), gt_index.numpy()].sum()
    if q >= g:  # assign every ground truth to a distinct proposal
        best = min(cost[list(rows), list(range(g))].sum() for rows in itertools.permutations(range(q), g))
    else:  # assign every proposal to a distinct ground truth
        best = min(cost[list(range(q)), list(cols)].sum() for cols in itertools.permutations(range(g), q))
    assert ours == pytest.approx(best, abs=1e-4)


def test_match_cost_components() -> None:
    pred = torch.tensor([[0.5, 0.5, 0.2, 0.2]])
    gt = torch.tensor([[0.5, 0.5, 0.2, 0.2], [0.8, 0.8, 0.1, 0.1]])
    logits = torch.tensor([0.0])
    focal_diff = 0.25 * 0.25 * math.log(2) - 0.75 * 0.25 * math.log(2)
    cost = match_cost_matrix(pred, logits, gt, cost_class=1.0, cost_box=0.0, cost_giou=0.0)
    assert np.allclose(cost.numpy(), focal_diff, atol=1e-6)
    cost = match_cost_matrix(pred, logits, gt, cost_class=0.0, cost_box=1.0, cost_giou=0.0)
    assert cost[0, 0].item() == pytest.approx(0.0, abs=1e-6) and cost[0, 1].item() == pytest.approx(
        0.8, abs=1e-6
    )
    cost = match_cost_matrix(pred, logits, gt, cost_class=0.0, cost_box=0.0, cost_giou=1.0)
    assert cost[0, 0].item() == pytest.approx(-1.0, abs=1e-6)


def test_detr_losses_vanish_for_a_perfect_prediction() -> None:
    gt = [torch.tensor([[0.3, 0.3, 0.2, 0.2], [0.7, 0.6, 0.3, 0.4]]), torch.zeros(0, 4)]
    boxes = torch.rand(2, 5, 4) * 0.3 + 0.2
    boxes[0, 1] = gt[0][0]
    boxes[0, 3] = gt[0][1]
    logits = torch.full((2, 5), -30.0)
    logits[0, 1] = logits[0, 3] = 30.0
    losses = detr_losses(ProposerOutput(boxes=boxes, logits=logits, features=torch.zeros(2, 5, 8)), gt)
    assert set(losses) == {"det_class", "det_l1", "det_giou"}
    for name, value in losses.items():
        assert value.item() < 1e-6, name
    # a wrong class score alone shows up in det_class only
    logits[0, 1] = -30.0
    losses = detr_losses(ProposerOutput(boxes=boxes, logits=logits, features=torch.zeros(2, 5, 8)), gt)
    assert losses["det_class"].item() > 1.0 and losses["det_l1"].item() < 1e-6


def test_detr_losses_without_any_ground_truth_push_scores_down() -> None:
    logits = torch.zeros(1, 4, requires_grad=True)
    out = ProposerOutput(
        boxes=torch.full((1, 4, 4), 0.5, requires_grad=True), logits=logits, features=torch.zeros(1, 4, 8)
    )
    losses = detr_losses(out, [torch.zeros(0, 4)])
    assert losses["det_l1"].item() == 0.0 and losses["det_giou"].item() == 0.0
    losses["det_class"].backward()
    assert (logits.grad > 0).all()
    with pytest.raises(ValueError, match="target"):
        detr_losses(out, [])


def test_detr_losses_decrease_under_optimisation() -> None:
    torch.manual_seed(0)
    gt = [torch.tensor([[0.3, 0.3, 0.2, 0.2], [0.7, 0.6, 0.3, 0.4]])]
    box_logits = torch.randn(1, 6, 4, requires_grad=True)
    logits = torch.zeros(1, 6, requires_grad=True)
    optimizer = torch.optim.Adam([box_logits, logits], lr=0.05)
    totals = []
    for _ in range(60):
        out = ProposerOutput(boxes=box_logits.sigmoid(), logits=logits, features=torch.zeros(1, 6, 8))
        losses = detr_losses(out, gt)
        total = sum(DETR_LOSS_WEIGHTS[k] * v for k, v in losses.items())
        totals.append(total.item())
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
    assert totals[-1] < 0.2 * totals[0]
    assert all(later <= earlier * 1.05 for earlier, later in zip(totals[::10], totals[10::10], strict=False))
