"""Box conversions, normalisation and IoU / GIoU properties (numpy and torch)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from sparrow.structures import (
    box_area,
    box_convert,
    box_iou,
    clip_boxes,
    denormalize_boxes,
    generalized_box_iou,
    normalize_boxes,
)

FORMATS = ("xyxy", "xywh", "cxcywh")
coord = st.floats(0, 1000, allow_nan=False, allow_infinity=False, allow_subnormal=False)


@st.composite
def xyxy_boxes(draw: st.DrawFn, min_n: int = 1, max_n: int = 6, positive: bool = False) -> np.ndarray:
    n = draw(st.integers(min_n, max_n))
    lo = 0.5 if positive else 0.0
    rows = []
    for _ in range(n):
        x, y = draw(coord), draw(coord)
        w, h = (
            draw(st.floats(lo, 500, allow_subnormal=False)),
            draw(st.floats(lo, 500, allow_subnormal=False)),
        )
        rows.append([x, y, x + w, y + h])
    return np.asarray(rows, dtype=np.float64)


@pytest.mark.parametrize(("a", "b"), list(itertools.permutations(FORMATS, 2)))
@settings(max_examples=30, deadline=None)
@given(boxes=xyxy_boxes())
def test_box_convert_round_trips_every_pair(a: str, b: str, boxes: np.ndarray) -> None:
    start = box_convert(boxes, "xyxy", a)
    there = box_convert(start, a, b)
    back = box_convert(there, b, a)
    np.testing.assert_allclose(back, start, rtol=1e-9, atol=1e-7)
    np.testing.assert_allclose(box_convert(there, b, "xyxy"), boxes, rtol=1e-9, atol=1e-7)
    tensor = box_convert(torch.from_numpy(start), a, b)
    assert isinstance(tensor, torch.Tensor)
    np.testing.assert_allclose(tensor.numpy(), there, rtol=1e-9, atol=1e-7)


def test_box_convert_known_values_and_errors() -> None:
    xyxy = np.asarray([[10, 20, 30, 60]])
    np.testing.assert_array_equal(box_convert(xyxy, "xyxy", "xywh"), [[10, 20, 20, 40]])
    np.testing.assert_array_equal(box_convert(xyxy, "xyxy", "cxcywh"), [[20, 40, 20, 40]])
    assert box_convert(xyxy, "xyxy", "xyxy").dtype == np.float64  # integers come back as floats
    assert box_convert(np.zeros((2, 3, 4)), "xywh", "xyxy").shape == (2, 3, 4)
    with pytest.raises(ValueError, match="unknown box format"):
        box_convert(xyxy, "xyxy", "yxyx")  # type: ignore[arg-type]


@settings(max_examples=50, deadline=None)
@given(xyxy_boxes(), st.integers(1, 4000), st.integers(1, 4000))
def test_normalize_denormalize_round_trip(boxes: np.ndarray, h: int, w: int) -> None:
    norm = normalize_boxes(boxes, (h, w))
    np.testing.assert_allclose(norm[:, [0, 2]] * w, boxes[:, [0, 2]], rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(norm[:, [1, 3]] * h, boxes[:, [1, 3]], rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(denormalize_boxes(norm, (h, w)), boxes, rtol=1e-9, atol=1e-9)
    t = denormalize_boxes(normalize_boxes(torch.from_numpy(boxes), (h, w)), (h, w))
    np.testing.assert_allclose(t.numpy(), boxes, rtol=1e-9, atol=1e-9)


def test_clip_and_area() -> None:
    boxes = np.asarray([[-5, -5, 10, 10], [50, 50, 200, 80], [5, 5, 2, 2]], np.float32)
    np.testing.assert_array_equal(
        clip_boxes(boxes, (60, 100)), [[0, 0, 10, 10], [50, 50, 100, 60], [5, 5, 2, 2]]
    )
    np.testing.assert_array_equal(box_area(boxes), [225, 4500, 0])


@settings(max_examples=60, deadline=None)
@given(xyxy_boxes(positive=True), xyxy_boxes(positive=True))
def test_iou_and_giou_properties(a: np.ndarray, b: np.ndarray) -> None:
    iou = box_iou(a, b)
    giou = generalized_box_iou(a, b)
    assert iou.shape == giou.shape == (len(a), len(b))
    assert np.all((iou >= 0) & (iou <= 1 + 1e-9))
    assert np.all((giou >= -1 - 1e-9) & (giou <= 1 + 1e-9))
    assert np.all(giou <= iou + 1e-9)
    np.testing.assert_allclose(box_iou(b, a), iou.T, atol=1e-12)
    np.testing.assert_allclose(generalized_box_iou(b, a), giou.T, atol=1e-12)
    np.testing.assert_allclose(np.diag(generalized_box_iou(a, a)), 1.0, atol=1e-9)
    t = generalized_box_iou(torch.from_numpy(a), torch.from_numpy(b))
    np.testing.assert_allclose(t.numpy(), giou, atol=1e-9)


@settings(max_examples=60, deadline=None)
@given(
    xyxy_boxes(max_n=1, positive=True),
    st.floats(0, 1),
    st.floats(0, 1),
    st.floats(0.05, 1),
    st.floats(0.05, 1),
)
def test_giou_equals_iou_for_nested_boxes(
    outer: np.ndarray, fx: float, fy: float, fw: float, fh: float
) -> None:
    x1, y1, x2, y2 = outer[0]
    w, h = (x2 - x1) * fw, (y2 - y1) * fh
    ix = x1 + (x2 - x1 - w) * fx
    iy = y1 + (y2 - y1 - h) * fy
    inner = np.asarray([[ix, iy, ix + w, iy + h]])
    iou = box_iou(outer, inner)[0, 0]
    np.testing.assert_allclose(generalized_box_iou(outer, inner)[0, 0], iou, atol=1e-9)
    np.testing.assert_allclose(iou, fw * fh, rtol=1e-6)


def test_giou_known_values() -> None:
    a = np.asarray([[0.0, 0.0, 1.0, 1.0]])
    far = np.asarray([[2.0, 0.0, 3.0, 1.0]])  # disjoint, hull 3: giou = 0 - (3 - 2) / 3
    np.testing.assert_allclose(generalized_box_iou(a, far), [[-1 / 3]])
    np.testing.assert_allclose(box_iou(a, np.asarray([[0.5, 0.0, 1.5, 1.0]])), [[1 / 3]])
    assert box_iou(np.zeros((1, 4)), np.zeros((1, 4)))[0, 0] == 0.0  # degenerate pair: 0, not NaN
    assert generalized_box_iou(np.zeros((1, 4)), np.zeros((1, 4)))[0, 0] == 0.0
