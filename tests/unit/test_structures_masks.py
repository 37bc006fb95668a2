"""COCO RLE encode / decode / area / IoU / boxes against the dense mask operations."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from sparrow.structures import (
    empty_rle,
    mask_iou,
    masks_to_boxes,
    resize_mask,
    rle_area,
    rle_decode,
    rle_encode,
    rle_encode_stack,
    rle_iou,
    rle_to_box,
)

shapes = st.tuples(st.integers(1, 24), st.integers(1, 24))


@st.composite
def masks(draw: st.DrawFn, shape: tuple[int, int] | None = None) -> np.ndarray:
    """Random bool masks, with all-empty and all-full ones drawn often."""
    shape = shape or draw(shapes)
    kind = draw(st.sampled_from(["random", "empty", "full", "blob"]))
    if kind == "empty":
        return np.zeros(shape, bool)
    if kind == "full":
        return np.ones(shape, bool)
    if kind == "blob":
        m = np.zeros(shape, bool)
        y0, x0 = draw(st.integers(0, shape[0] - 1)), draw(st.integers(0, shape[1] - 1))
        m[y0 : y0 + draw(st.integers(1, shape[0])), x0 : x0 + draw(st.integers(1, shape[1]))] = True
        return m
    return draw(arrays(bool, shape))


@settings(max_examples=120, deadline=None)
@given(masks())
def test_rle_round_trip(mask: np.ndarray) -> None:
    rle = rle_encode(mask)
    assert rle["size"] == list(mask.shape) and isinstance(rle["counts"], str)
    decoded = rle_decode(rle)
    assert decoded.dtype == bool and np.array_equal(decoded, mask)
    assert rle_area(rle) == int(mask.sum())


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 5), shapes, st.data())
def test_rle_encode_stack_matches_single_encodes(t: int, shape: tuple[int, int], data: st.DataObject) -> None:
    stack = data.draw(arrays(bool, (t, *shape)))
    rles = rle_encode_stack(stack)
    assert rles == [rle_encode(m) for m in stack]


def test_uncompressed_and_bytes_rles_decode() -> None:
    mask = np.zeros((3, 4), bool)
    mask[1:, 2] = True  # column-major runs: 7 zeros, 2 ones, 3 zeros
    assert np.array_equal(rle_decode({"size": [3, 4], "counts": [7, 2, 3]}), mask)
    rle = rle_encode(mask)
    assert np.array_equal(rle_decode({"size": rle["size"], "counts": rle["counts"].encode()}), mask)
    with pytest.raises(ValueError, match="not a COCO RLE"):
        rle_decode({"counts": "x"})
    with pytest.raises(ValueError, match="one"):
        rle_encode(np.zeros((2, 2, 2), bool))


@settings(max_examples=80, deadline=None)
@given(shapes, st.data())
def test_rle_iou_matches_mask_iou(shape: tuple[int, int], data: st.DataObject) -> None:
    a = [data.draw(masks(shape)) for _ in range(2)]
    b = [data.draw(masks(shape)) for _ in range(3)]
    got = rle_iou([rle_encode(m) for m in a], [rle_encode(m) for m in b])
    assert got.shape == (2, 3)
    for i, ma in enumerate(a):
        for j, mb in enumerate(b):
            if (ma | mb).any():
                assert got[i, j] == pytest.approx(mask_iou(ma, mb), abs=1e-12)
            else:  # documented difference: pycocotools gives 0 for two empty masks, mask_iou gives 1
                assert got[i, j] == 0.0 and mask_iou(ma, mb) == 1.0


def test_rle_iou_empty_lists_and_mask_iou_errors() -> None:
    assert rle_iou([], [empty_rle((2, 2))]).shape == (0, 1)
    with pytest.raises(ValueError, match="shapes differ"):
        mask_iou(np.zeros((2, 2)), np.zeros((2, 3)))


@settings(max_examples=100, deadline=None)
@given(masks())
def test_masks_to_boxes_matches_rle_to_box(mask: np.ndarray) -> None:
    dense = masks_to_boxes(mask[None])[0]
    np.testing.assert_array_equal(dense, rle_to_box(rle_encode(mask)))
    if mask.any():
        ys, xs = np.nonzero(mask)
        np.testing.assert_array_equal(dense, [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
    else:
        np.testing.assert_array_equal(dense, [0, 0, 0, 0])
    t = masks_to_boxes(torch.from_numpy(mask[None]))
    assert isinstance(t, torch.Tensor)
    np.testing.assert_array_equal(t.numpy()[0], dense)


def test_resize_mask_and_empty_rle() -> None:
    m = np.zeros((4, 4), bool)
    m[:2, :2] = True
    big = resize_mask(m, (8, 8))
    assert big.shape == (8, 8) and big[:4, :4].all() and not big[4:].any()
    assert resize_mask(np.stack([m, ~m]), (2, 2)).shape == (2, 2, 2)
    assert rle_area(empty_rle((5, 7))) == 0 and rle_decode(empty_rle((5, 7))).shape == (5, 7)
