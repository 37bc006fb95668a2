"""FiltrationHead: shapes, selection, refinement, gradients and a quick learning test."""

from __future__ import annotations

import pytest
import torch

from sparrow.models.filtration import FiltrationHead
from sparrow.models.losses import box_l1_giou_loss, proposal_selection_loss
from sparrow.models.proposer import ProposerOutput


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    """Small ops on 2 shared cores: more intra-op threads only add contention (10x slower under load)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _proposals(n: int = 2, q: int = 6, dim: int = 16, seed: int = 0) -> ProposerOutput:
    g = torch.Generator().manual_seed(seed)
    centres = 0.2 + 0.6 * torch.rand(n, q, 2, generator=g)
    sizes = 0.1 + 0.2 * torch.rand(n, q, 2, generator=g)
    return ProposerOutput(
        boxes=torch.cat([centres, sizes], dim=-1),
        logits=torch.randn(n, q, generator=g),
        features=torch.randn(n, q, dim, generator=g),
    )


def test_shapes_selection_and_initial_refinement() -> None:
    torch.manual_seed(0)
    head = FiltrationHead(query_dim=24, proposal_dim=16, hidden_dim=32)
    proposals = _proposals()
    out = head(torch.randn(2, 24), proposals)
    assert out.scores.shape == (2, 6)
    assert out.refined_boxes.shape == (2, 6, 4)
    assert out.selected.shape == (2,) and out.selected.dtype == torch.int64
    assert torch.equal(out.selected, out.scores.argmax(1))
    assert torch.equal(out.selected_boxes, out.refined_boxes[torch.arange(2), out.selected])
    # the refinement starts at zero: refined boxes are the proposals
    assert torch.allclose(out.refined_boxes, proposals.boxes, atol=1e-5)
    plain = FiltrationHead(query_dim=24, proposal_dim=16, hidden_dim=32, refine=False)
    assert plain.refine_head is None
    assert plain(torch.randn(2, 24), proposals).refined_boxes is proposals.boxes
    with pytest.raises(ValueError, match="rows"):
        head(torch.randn(3, 24), proposals)
    with pytest.raises(ValueError):
        FiltrationHead(query_dim=24, proposal_dim=16, hidden_dim=30)


def test_losses_reach_every_parameter_and_the_query() -> None:
    torch.manual_seed(0)
    head = FiltrationHead(query_dim=24, proposal_dim=16, hidden_dim=32)
    proposals = _proposals()
    target = proposals.boxes[:, 2] + torch.tensor([0.02, -0.01, 0.03, 0.0])
    optimizer = torch.optim.SGD(head.parameters(), lr=0.1)
    for _ in range(2):  # the refinement's last layer starts at zero; the layers below need one step
        query = torch.randn(2, 24, requires_grad=True)
        optimizer.zero_grad()
        out = head(query, proposals)
        boxes = box_l1_giou_loss(out.refined_boxes[:, 2], target)
        loss = (
            proposal_selection_loss(out.scores, proposals.boxes, target) + boxes["box_l1"] + boxes["box_giou"]
        )
        loss.backward()
        optimizer.step()
    assert query.grad is not None and query.grad.abs().sum() > 0
    for name, param in head.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, name


def test_head_learns_to_pick_the_queried_proposal() -> None:
    """Queries are noisy linear codes of one proposal's features; the head learns to pick it."""
    torch.manual_seed(0)
    head = FiltrationHead(query_dim=16, proposal_dim=16, hidden_dim=32)
    mixing = torch.randn(16, 16)
    optimizer = torch.optim.AdamW(head.parameters(), lr=3e-3)

    def batch(seed: int) -> tuple[torch.Tensor, ProposerOutput, torch.Tensor]:
        proposals = _proposals(n=16, q=8, seed=seed)
        pick = torch.randint(0, 8, (16,), generator=torch.Generator().manual_seed(seed))
        chosen = proposals.features[torch.arange(16), pick]
        return chosen @ mixing + 0.05 * torch.randn(16, 16), proposals, pick

    for step in range(150):
        query, proposals, pick = batch(step)
        out = head(query, proposals)
        loss = torch.nn.functional.cross_entropy(out.scores, pick)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    query, proposals, pick = batch(10_000)
    with torch.no_grad():
        accuracy = (head(query, proposals).selected == pick).float().mean()
    assert accuracy >= 0.75, accuracy
