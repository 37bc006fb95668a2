"""Box operations, vectorised over a leading batch dimension, for numpy arrays and torch tensors.

Conventions (see DESIGN.md section 5):

- ``xyxy``: ``(x1, y1, x2, y2)``; at API boundaries in absolute pixels of the original frame, float.
  A box covers the continuous region ``[x1, x2) x [y1, y2)``, so a mask whose columns run from
  ``c0`` to ``c1`` inclusive has ``x1 = c0`` and ``x2 = c1 + 1``.
- ``xywh``: ``(x1, y1, w, h)`` (COCO, ``groundtruth.txt``).
- ``cxcywh``: ``(cx, cy, w, h)``; inside models, normalised to ``[0, 1]`` by the frame size.

Every function accepts an array of shape ``(..., 4)`` (numpy or torch, any float dtype) and returns
the same kind of array. Areas use no ``+1`` (torchvision convention), as the STVG evaluators do.
"""

from __future__ import annotations

import sys
from typing import Any, Literal

import numpy as np

BoxFormat = Literal["xyxy", "xywh", "cxcywh"]
Array = Any  # numpy.ndarray | torch.Tensor

_FORMATS = ("xyxy", "xywh", "cxcywh")


def _is_torch(x: Array) -> bool:
    """True for a torch tensor, without importing torch (it is only loaded when the caller has it)."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(x, torch.Tensor)


def _stack(parts: list[Array], like: Array) -> Array:
    if _is_torch(like):
        return sys.modules["torch"].stack(parts, dim=-1)
    return np.stack(parts, axis=-1)


def _maximum(a: Array, b: Array) -> Array:
    return sys.modules["torch"].maximum(a, b) if _is_torch(a) else np.maximum(a, b)


def _minimum(a: Array, b: Array) -> Array:
    return sys.modules["torch"].minimum(a, b) if _is_torch(a) else np.minimum(a, b)


def _as_float(boxes: Array) -> Array:
    if _is_torch(boxes):
        return boxes if boxes.is_floating_point() else boxes.float()
    arr = np.asarray(boxes)
    return arr if np.issubdtype(arr.dtype, np.floating) else arr.astype(np.float64)


def box_convert(boxes: Array, in_fmt: BoxFormat, out_fmt: BoxFormat) -> Array:
    """Convert boxes ``(..., 4)`` between ``xyxy``, ``xywh`` and ``cxcywh``; units are unchanged."""
    for fmt in (in_fmt, out_fmt):
        if fmt not in _FORMATS:
            raise ValueError(f"unknown box format {fmt!r}; use one of {_FORMATS}")
    boxes = _as_float(boxes)
    if in_fmt == out_fmt:
        return boxes
    a, b, c, d = boxes[..., 0], boxes[..., 1], boxes[..., 2], boxes[..., 3]
    if in_fmt == "xywh":
        x1, y1, x2, y2 = a, b, a + c, b + d
    elif in_fmt == "cxcywh":
        x1, y1, x2, y2 = a - c / 2, b - d / 2, a + c / 2, b + d / 2
    else:
        x1, y1, x2, y2 = a, b, c, d
    if out_fmt == "xyxy":
        return _stack([x1, y1, x2, y2], boxes)
    if out_fmt == "xywh":
        return _stack([x1, y1, x2 - x1, y2 - y1], boxes)
    return _stack([(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1], boxes)


def _size_vector(size: tuple[int, int], like: Array) -> Array:
    h, w = size
    scale = [w, h, w, h]
    if _is_torch(like):
        return sys.modules["torch"].tensor(scale, dtype=like.dtype, device=like.device)
    return np.asarray(scale, dtype=like.dtype)


def normalize_boxes(boxes: Array, size: tuple[int, int]) -> Array:
    """Divide absolute boxes ``(..., 4)`` (any format) by the frame ``size = (H, W)``."""
    boxes = _as_float(boxes)
    return boxes / _size_vector(size, boxes)


def denormalize_boxes(boxes: Array, size: tuple[int, int]) -> Array:
    """Multiply normalised boxes ``(..., 4)`` (any format) by the frame ``size = (H, W)``."""
    boxes = _as_float(boxes)
    return boxes * _size_vector(size, boxes)


def clip_boxes(boxes: Array, size: tuple[int, int]) -> Array:
    """Clip ``xyxy`` boxes ``(..., 4)`` to a frame of ``size = (H, W)`` in the same units."""
    h, w = size
    boxes = _as_float(boxes)
    x1 = boxes[..., 0].clip(0, w)
    y1 = boxes[..., 1].clip(0, h)
    x2 = boxes[..., 2].clip(0, w)
    y2 = boxes[..., 3].clip(0, h)
    return _stack([x1, y1, x2, y2], boxes)


def box_area(boxes: Array) -> Array:
    """Area of ``xyxy`` boxes ``(..., 4)`` -> ``(...)``; degenerate boxes have area 0."""
    boxes = _as_float(boxes)
    w = (boxes[..., 2] - boxes[..., 0]).clip(min=0)
    h = (boxes[..., 3] - boxes[..., 1]).clip(min=0)
    return w * h


def _inter_union(a: Array, b: Array) -> tuple[Array, Array]:
    a, b = _as_float(a), _as_float(b)
    lt = _maximum(a[:, None, :2], b[None, :, :2])
    rb = _minimum(a[:, None, 2:], b[None, :, 2:])
    wh = (rb - lt).clip(min=0)
    inter = wh[..., 0] * wh[..., 1]
    union = box_area(a)[:, None] + box_area(b)[None, :] - inter
    return inter, union


def box_iou(a: Array, b: Array) -> Array:
    """Pairwise IoU of ``xyxy`` boxes: ``a (N, 4)``, ``b (M, 4)`` -> ``(N, M)``.

    A pair whose union is zero (two degenerate boxes) has IoU 0.
    """
    inter, union = _inter_union(a, b)
    if _is_torch(inter):
        torch = sys.modules["torch"]
        return torch.where(union > 0, inter / union.clamp(min=1e-12), torch.zeros_like(inter))
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def generalized_box_iou(a: Array, b: Array) -> Array:
    """Pairwise GIoU of ``xyxy`` boxes: ``a (N, 4)``, ``b (M, 4)`` -> ``(N, M)``, in ``[-1, 1]``."""
    a, b = _as_float(a), _as_float(b)
    inter, union = _inter_union(a, b)
    lt = _minimum(a[:, None, :2], b[None, :, :2])
    rb = _maximum(a[:, None, 2:], b[None, :, 2:])
    wh = (rb - lt).clip(min=0)
    hull = wh[..., 0] * wh[..., 1]
    if _is_torch(inter):
        iou = inter / union.clamp(min=1e-12)
        return iou - (hull - union) / hull.clamp(min=1e-12)
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = inter / np.maximum(union, 1e-12)
        return iou - (hull - union) / np.maximum(hull, 1e-12)


def masks_to_boxes(masks: Array) -> Array:
    """Tight ``xyxy`` boxes of bool masks ``(N, H, W)`` -> ``(N, 4)`` float, pixel-extent convention.

    A mask whose foreground spans columns ``c0..c1`` (inclusive) gets ``x1 = c0, x2 = c1 + 1``.
    Empty masks get ``(0, 0, 0, 0)``. (The DETR ``masks_to_boxes`` used by VideoGLaMM's grounding
    evaluation omits the ``+1``; :mod:`sparrow.evaluation` implements that variant itself.)
    """
    is_torch = _is_torch(masks)
    m = masks.detach().cpu().numpy() if is_torch else np.asarray(masks)
    if m.ndim != 3:
        raise ValueError(f"masks must have shape (N, H, W), got {m.shape}")
    m = m.astype(bool)
    rows = m.any(axis=2)
    cols = m.any(axis=1)
    out = np.zeros((m.shape[0], 4), dtype=np.float32)
    nonempty = rows.any(axis=1)
    if nonempty.any():
        h, w = m.shape[1:]
        r = rows[nonempty]
        c = cols[nonempty]
        y1 = r.argmax(axis=1)
        y2 = h - r[:, ::-1].argmax(axis=1)
        x1 = c.argmax(axis=1)
        x2 = w - c[:, ::-1].argmax(axis=1)
        out[nonempty] = np.stack([x1, y1, x2, y2], axis=1)
    if is_torch:
        return sys.modules["torch"].from_numpy(out).to(masks.device)
    return out
