"""TSF: track boxes (authors' empty-mask rule), crops, K-means medoids, and TSF tokens in the model."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from models_toys import clip, tiny

from sparrow.models.config import CLIP_MEAN, CLIP_STD
from sparrow.models.tsf import crop_indices, crop_track, kmeans_medoids, track_boxes


def test_track_boxes_reuse_previous_box_or_full_frame() -> None:
    masks = np.zeros((5, 20, 30), dtype=bool)
    masks[1, 2:6, 3:9] = True
    masks[3, 10:12, 20:25] = True
    boxes = track_boxes(masks)
    np.testing.assert_array_equal(boxes[0], [0, 0, 30, 20])  # nothing before: full frame
    np.testing.assert_array_equal(boxes[1], [3, 2, 9, 6])
    np.testing.assert_array_equal(boxes[2], [3, 2, 9, 6])  # empty: previous box
    np.testing.assert_array_equal(boxes[3], [20, 10, 25, 12])
    np.testing.assert_array_equal(boxes[4], [20, 10, 25, 12])


def test_crop_indices() -> None:
    np.testing.assert_array_equal(crop_indices(5, 16), np.arange(5))
    idx = crop_indices(64, 16)
    assert len(idx) == 16 and idx[0] == 0 and idx[-1] == 63 and np.all(np.diff(idx) > 0)


def test_crop_track_crops_the_box() -> None:
    frames = np.zeros((2, 40, 40, 3), dtype=np.uint8)
    frames[:, 10:20, 5:25] = (255, 0, 0)
    boxes = np.array([[5, 10, 25, 20], [4.5, 9.2, 25.0, 20.0]], dtype=np.float32)
    crops = crop_track(frames, boxes, 8, CLIP_MEAN, CLIP_STD)
    assert crops.shape == (2, 3, 8, 8)
    red = (torch.tensor([1.0, 0.0, 0.0]) - torch.tensor(CLIP_MEAN)) / torch.tensor(CLIP_STD)
    torch.testing.assert_close(crops[0], red[:, None, None].expand(3, 8, 8))
    # Fractional boxes are rounded outwards: the second crop includes a black border.
    assert crops[1][0].amin() < red[0] - 1.0  # the red channel drops at the border
    degenerate = crop_track(
        frames[:1], np.array([[39.5, 39.5, 39.5, 39.5]], np.float32), 8, CLIP_MEAN, CLIP_STD
    )
    assert degenerate.shape == (1, 3, 8, 8)


def test_kmeans_medoids_picks_one_per_cluster() -> None:
    rng = np.random.default_rng(0)
    centres = np.array([[0, 0], [10, 0], [0, 10], [10, 10]], dtype=np.float32)
    order = rng.permutation(np.repeat(np.arange(4), 4))
    x = torch.from_numpy(centres[order] + rng.normal(0, 0.3, (16, 2)).astype(np.float32))
    idx = kmeans_medoids(x, 4, 8)
    assert sorted(order[idx.numpy()].tolist()) == [0, 1, 2, 3]
    assert torch.equal(idx, kmeans_medoids(x, 4, 8))  # deterministic
    for c in idx:  # each medoid is the sample nearest its cluster's mean
        members = x[torch.from_numpy(order == order[c])]
        assert int(torch.cdist(members.mean(0, keepdim=True), members).argmin()) == int(
            (torch.from_numpy(np.flatnonzero(order == order[c])) == c).nonzero()[0, 0]
        )


def test_kmeans_medoids_with_few_samples_repeats() -> None:
    x = torch.randn(3, 5)
    assert kmeans_medoids(x, 4, 8).tolist() == [0, 1, 2, 0]
    with pytest.raises(ValueError, match="at least one"):
        kmeans_medoids(x[:0], 4, 8)


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 20), st.integers(1, 6), st.integers(0, 8), st.integers(0, 10_000))
def test_kmeans_medoids_are_valid_and_distinct(n: int, k: int, iterations: int, seed: int) -> None:
    x = torch.from_numpy(np.random.default_rng(seed).normal(size=(n, 3)).astype(np.float32))
    idx = kmeans_medoids(x, k, iterations)
    assert idx.shape == (k,) and idx.dtype == torch.long
    assert int(idx.min()) >= 0 and int(idx.max()) < n
    assert len(set(idx.tolist())) == min(n, k)


def test_tsf_tokens_are_medoid_crop_vectors_with_gradient() -> None:
    model = tiny()
    frames, masks = clip()
    crops = model.processor.tsf_crops(frames, track_boxes(masks[0]))
    assert crops.shape == (8, 3, 64, 64)
    batch_crops = torch.stack([crops, crops.flip(0)])
    valid = torch.ones(2, 8, dtype=torch.bool)
    valid[1, 5:] = False
    tokens = model.tsf_tokens(batch_crops, valid)
    assert tokens.shape == (2, 4, model.width)
    vectors = model.crop_vectors(crops)
    for row in tokens[0]:  # every token is one of the crop vectors (a medoid, not a centre)
        assert torch.isclose(vectors, row, atol=1e-5).all(dim=1).any()
    tokens.sum().backward()
    grads = [p.grad for p in model.spatial_encoder.parameters()]
    assert any(g is not None and g.abs().sum() > 0 for g in grads)
    with pytest.raises(ValueError, match="at least one valid crop"):
        model.tsf_tokens(batch_crops, torch.zeros(2, 8, dtype=torch.bool))
