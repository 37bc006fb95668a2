"""Proposer: shapes, positional encodings, gradients from the DETR losses, and a quick learning test."""

from __future__ import annotations

import math

import pytest
import torch

from sparrow.models.losses import DETR_LOSS_WEIGHTS, detr_losses
from sparrow.models.proposer import (
    MLP,
    Proposer,
    ProposerOutput,
    box_sine_embedding,
    inverse_sigmoid,
    sine_position_encoding_2d,
)
from sparrow.structures.boxes import box_convert, box_iou


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    """Small ops on 2 shared cores: more intra-op threads only add contention (10x slower under load)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_sine_position_encoding_values() -> None:
    pos = sine_position_encoding_2d(2, 3, 8)
    assert pos.shape == (6, 8)
    # cell (row 1, col 2) -> index 5; first row feature is sin(2 pi (1 + 0.5) / 2), first column
    # feature is sin(2 pi (2 + 0.5) / 3)
    assert pos[5, 0].item() == pytest.approx(math.sin(2 * math.pi * 1.5 / 2), abs=1e-6)
    assert pos[5, 1].item() == pytest.approx(math.cos(2 * math.pi * 1.5 / 2), abs=1e-6)
    assert pos[5, 4].item() == pytest.approx(math.sin(2 * math.pi * 2.5 / 3), abs=1e-6)
    # second frequency pair uses temperature ** (1 / 2) for dim / 2 = 4 features per axis
    assert pos[5, 2].item() == pytest.approx(math.sin(2 * math.pi * 1.5 / 2 / 100.0), abs=1e-6)
    assert len({tuple(row.tolist()) for row in pos}) == 6  # every cell is distinct
    with pytest.raises(ValueError):
        sine_position_encoding_2d(2, 2, 6)


def test_box_embedding_and_inverse_sigmoid() -> None:
    boxes = torch.rand(5, 7, 4)
    assert box_sine_embedding(boxes, 32).shape == (5, 7, 32)
    with pytest.raises(ValueError):
        box_sine_embedding(boxes, 12)
    x = torch.tensor([0.1, 0.5, 0.9])
    assert torch.allclose(inverse_sigmoid(x).sigmoid(), x, atol=1e-6)
    assert torch.isfinite(inverse_sigmoid(torch.tensor([0.0, 1.0]))).all()


def test_output_shapes_and_top_k() -> None:
    torch.manual_seed(0)
    proposer = Proposer(feature_dim=32, hidden_dim=64, num_queries=16, num_layers=2, num_heads=4)
    out = proposer(torch.randn(3, 32, 8, 8))
    assert out.boxes.shape == (3, 16, 4) and out.logits.shape == (3, 16) and out.features.shape == (3, 16, 64)
    assert (out.boxes > 0).all() and (out.boxes < 1).all()
    # at initialisation the boxes are the anchors and the objectness is the 1 % prior
    assert torch.allclose(out.boxes[0], proposer.anchor_logits.sigmoid(), atol=1e-6)
    assert torch.allclose(out.logits.sigmoid(), torch.full_like(out.logits, 0.01), atol=0.02)
    top = out.top_k(5)
    assert top.boxes.shape == (3, 5, 4) and top.features.shape == (3, 5, 64)
    assert torch.all(top.logits[:, :-1] >= top.logits[:, 1:])
    best = out.logits.argmax(1)
    assert torch.equal(top.boxes[:, 0], out.boxes[torch.arange(3), best])
    assert out.top_k(100).logits.shape == (3, 16)
    with pytest.raises(ValueError):
        Proposer(feature_dim=32, hidden_dim=60, num_queries=4, num_layers=1, num_heads=4)


def test_mlp_zero_last_starts_at_zero() -> None:
    mlp = MLP(4, 8, 3, 3)
    mlp.zero_last()
    assert torch.equal(mlp(torch.randn(2, 4)), torch.zeros(2, 3))


def test_detr_losses_give_every_proposer_part_a_gradient() -> None:
    torch.manual_seed(0)
    proposer = Proposer(feature_dim=32, hidden_dim=64, num_queries=8, num_layers=2, num_heads=4)
    features = torch.randn(2, 32, 8, 8)
    targets = [
        torch.tensor([[0.3, 0.3, 0.2, 0.2], [0.7, 0.6, 0.3, 0.4]]),
        torch.tensor([[0.5, 0.5, 0.5, 0.5]]),
    ]
    optimizer = torch.optim.SGD(proposer.parameters(), lr=0.1)
    # two passes: the box head's last layer starts at zero, so the layers below it only receive a
    # gradient once it has moved
    for _ in range(2):
        optimizer.zero_grad()
        losses = detr_losses(proposer(features), targets)
        sum(DETR_LOSS_WEIGHTS[k] * v for k, v in losses.items()).backward()
        optimizer.step()
    for name, param in proposer.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, name


def _two_rectangles() -> tuple[torch.Tensor, torch.Tensor]:
    """A 128 x 128 RGB uint8 image with a red and a green rectangle, and their cxcywh boxes."""
    image = torch.zeros(1, 128, 128, 3, dtype=torch.uint8)
    image[0, 20:60, 10:50] = torch.tensor([255, 0, 0], dtype=torch.uint8)
    image[0, 70:120, 60:120] = torch.tensor([0, 255, 0], dtype=torch.uint8)
    xyxy = torch.tensor([[10.0, 20.0, 50.0, 60.0], [60.0, 70.0, 120.0, 120.0]]) / 128
    return image, box_convert(xyxy, "xyxy", "cxcywh")


@pytest.mark.parametrize("query_selection", [False, True])
def test_proposer_fits_two_rectangles_quickly(query_selection: bool) -> None:
    from sparrow.models.sam2 import Sam2Adapter, tiny_sam2_config

    torch.manual_seed(0)
    sam2 = Sam2Adapter.from_config(tiny_sam2_config(128)).eval()
    image, gt = _two_rectangles()
    with torch.no_grad():
        features = sam2.image_features(sam2.preprocess(image)).image_embeddings
    proposer = Proposer(
        sam2.feature_dim,
        hidden_dim=64,
        num_queries=16,
        num_layers=2,
        num_heads=4,
        query_selection=query_selection,
    )
    optimizer = torch.optim.AdamW(proposer.parameters(), lr=1e-3)
    history = []
    for _ in range(120):
        out = proposer(features)
        losses = detr_losses(out, [gt])
        total = sum(DETR_LOSS_WEIGHTS[k] * v for k, v in losses.items())
        history.append(total.item())
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
    assert history[-1] < 0.1 * history[0]
    top = proposer(features).top_k(2)
    iou = box_iou(box_convert(top.boxes[0].detach(), "cxcywh", "xyxy"), box_convert(gt, "cxcywh", "xyxy"))
    assert (iou.max(dim=0).values > 0.8).all(), iou


def test_proposer_output_is_a_plain_dataclass() -> None:
    out = ProposerOutput(
        boxes=torch.rand(1, 3, 4), logits=torch.tensor([[0.0, 2.0, 1.0]]), features=torch.rand(1, 3, 8)
    )
    top = out.top_k(2)
    assert torch.equal(top.logits, torch.tensor([[2.0, 1.0]]))
    assert torch.equal(top.boxes[0, 0], out.boxes[0, 1])


def test_query_selection_anchors_the_queries_on_the_best_cells() -> None:
    torch.manual_seed(0)
    proposer = Proposer(
        feature_dim=32, hidden_dim=64, num_queries=16, num_layers=2, num_heads=4, query_selection=True
    )
    assert not hasattr(proposer, "anchor_logits")
    out = proposer(torch.randn(2, 32, 8, 8))
    cells = out.encoder
    assert cells is not None and cells.boxes.shape == (2, 64, 4) and cells.logits.shape == (2, 64)
    # at initialisation a cell proposes the cell_box_size box centred on itself (raster order)
    torch.testing.assert_close(cells.boxes[0, 9], torch.tensor([1.5 / 8, 1.5 / 8, 0.1, 0.1]))
    # the decoder starts at its anchors: the boxes of the 16 best cells
    top = cells.logits.topk(16, dim=1).indices
    anchors = cells.boxes.gather(1, top[..., None].expand(-1, -1, 4))
    torch.testing.assert_close(out.boxes, anchors, atol=1e-6, rtol=0)
    # the set loss covers both the queries and the cells
    targets = [torch.tensor([[0.3, 0.3, 0.2, 0.2]]), torch.zeros(0, 4)]
    both = detr_losses(out, targets)
    queries = detr_losses(ProposerOutput(out.boxes, out.logits, out.features), targets)
    cell_only = detr_losses(cells, targets)
    for name in both:
        torch.testing.assert_close(both[name], queries[name] + cell_only[name])
    with pytest.raises(ValueError, match="h\\*w"):
        proposer(torch.randn(1, 32, 2, 2))
