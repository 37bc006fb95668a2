"""FiltrationHead: shapes, selection, refinement, gradients and a quick learning test."""

from __future__ import annotations

import pytest
import torch

from sparrow.models.filtration import FINE_CROP_SIZES, FiltrationHead, fine_crops, roi_crops
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


def test_roi_crops_sample_the_box_bilinearly() -> None:
    """On maps equal to the normalised x / y pixel centres, the crop samples sit on a grid over the box."""
    size = 8
    centres = (torch.arange(size, dtype=torch.float32) + 0.5) / size
    maps = torch.stack([centres.expand(size, size), centres[:, None].expand(size, size)])[
        None
    ]  # (1, 2, 8, 8)
    boxes = torch.tensor([[[0.5, 0.5, 0.5, 0.5], [0.4, 0.6, 0.2, 0.4]]])  # (1, 2, 4) cxcywh
    crops = roi_crops(maps, boxes, 2).reshape(1, 2, 2, 2, 2)  # (N, Q, C, rows, cols)
    torch.testing.assert_close(crops[0, 0, 0], torch.tensor([[0.375, 0.625], [0.375, 0.625]]))
    torch.testing.assert_close(crops[0, 0, 1], torch.tensor([[0.375, 0.375], [0.625, 0.625]]))
    torch.testing.assert_close(crops[0, 1, 0, 0], torch.tensor([0.35, 0.45]))
    torch.testing.assert_close(crops[0, 1, 1, :, 0], torch.tensor([0.5, 0.7]))
    assert roi_crops(maps.expand(3, -1, -1, -1), boxes.expand(3, -1, -1), 4).shape == (3, 2, 2 * 16)


def _fine_maps(n: int, seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(n, 3, 16, 16, generator=g), torch.randn(n, 5, 8, 8, generator=g)]


def test_fine_features_describe_the_proposals() -> None:
    torch.manual_seed(0)
    head = FiltrationHead(query_dim=24, proposal_dim=16, hidden_dim=32, fine_channels=(3, 5))
    assert head.fine_proj.layers[0].in_features == 3 * FINE_CROP_SIZES[0] ** 2 + 5 * FINE_CROP_SIZES[1] ** 2
    proposals = _proposals()
    query = torch.randn(2, 24)
    maps = _fine_maps(2)
    out = head(query, proposals, fine_crops(maps, proposals.boxes))
    assert out.scores.shape == (2, 6)
    changed = head(query, proposals, fine_crops([maps[0] + 1.0, maps[1]], proposals.boxes))
    assert not torch.allclose(out.scores, changed.scores)  # the scores read the maps
    out.scores.sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in head.fine_proj.parameters())
    with pytest.raises(ValueError, match="fine-map crops"):
        head(query, proposals)
    with pytest.raises(ValueError, match="fine-map crops"):
        head(query, proposals, fine_crops([maps[1], maps[0]], proposals.boxes))
    with pytest.raises(ValueError, match="fine_channels"):
        FiltrationHead(query_dim=24, proposal_dim=16, hidden_dim=32, fine_channels=(3,))
    plain = FiltrationHead(query_dim=24, proposal_dim=16, hidden_dim=32)
    assert plain.fine_proj is None
    torch.testing.assert_close(
        plain(query, proposals, fine_crops(maps, proposals.boxes)).scores, plain(query, proposals).scores
    )


def test_fine_features_let_the_head_pick_by_appearance() -> None:
    """The query names the colour (one of 3 channels lit) of one proposal's region; the proposals'
    own features are noise. With the fine maps the head learns to pick it; without them it cannot."""

    def batch(seed: int) -> tuple[torch.Tensor, ProposerOutput, torch.Tensor | None, torch.Tensor]:
        g = torch.Generator().manual_seed(seed)
        n, q = 16, 3
        cells = torch.randperm(16, generator=g)[:q]  # distinct cells of a 4x4 layout, one per proposal
        centres = torch.stack([(cells % 4 + 0.5) / 4, (cells // 4 + 0.5) / 4], dim=-1)
        boxes = torch.cat([centres, torch.full((q, 2), 0.2)], dim=-1).expand(n, q, 4)
        colours = torch.stack([torch.randperm(3, generator=g) for _ in range(n)])  # (n, q) distinct
        image = torch.zeros(n, 3, 16, 16)
        for i in range(n):
            for j in range(q):
                r, c = int(cells[j] // 4) * 4, int(cells[j] % 4) * 4
                image[i, colours[i, j], r : r + 4, c : c + 4] = 1.0
        pick = torch.randint(0, q, (n,), generator=g)
        query = torch.nn.functional.one_hot(colours[torch.arange(n), pick], 3).float()
        proposals = ProposerOutput(
            boxes=boxes, logits=torch.zeros(n, q), features=torch.randn(n, q, 16, generator=g)
        )
        return query, proposals, fine_crops([image, torch.zeros(n, 3, 8, 8)], boxes), pick

    accuracy = {}
    for fine in (True, False):
        torch.manual_seed(0)
        head = FiltrationHead(3, 16, 32, refine=False, fine_channels=(3, 3) if fine else ())
        optimizer = torch.optim.AdamW(head.parameters(), lr=3e-3)
        for step in range(150):
            query, proposals, maps, pick = batch(step)
            loss = torch.nn.functional.cross_entropy(head(query, proposals, maps).scores, pick)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        with torch.no_grad():
            query, proposals, maps, pick = batch(10_000)
            accuracy[fine] = float((head(query, proposals, maps).selected == pick).float().mean())
    assert accuracy[True] >= 0.9 and accuracy[False] <= 0.6, accuracy
