"""Mask operations and COCO run-length encoding (RLE).

Masks at API boundaries are bool ``(H, W)`` arrays (or ``(T, H, W)`` stacks) at the original frame
resolution, row-major, ``mask[y, x]``. The RLE is COCO's compressed form
``{"size": [H, W], "counts": str}`` (column-major runs, as pycocotools writes it), which is what
MeViS ``mask_dict.json``, ReVOS and our JSON results store.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np
from pycocotools import mask as coco_mask

RLE = dict[str, Any]


def _check_rle(rle: Any) -> None:
    if not isinstance(rle, dict) or "size" not in rle or "counts" not in rle:
        raise ValueError(f"not a COCO RLE (a dict with 'size' and 'counts'): {str(rle)[:80]!r}")


def rle_encode(mask: np.ndarray) -> RLE:
    """Encode one bool mask ``(H, W)`` as a compressed COCO RLE with ``counts`` as ``str``."""
    m = np.asarray(mask)
    if m.ndim != 2:
        raise ValueError(f"rle_encode expects one (H, W) mask, got shape {m.shape}")
    rle = coco_mask.encode(np.asfortranarray(m.astype(np.uint8)))
    counts = rle["counts"]
    return {
        "size": [int(rle["size"][0]), int(rle["size"][1])],
        "counts": counts.decode("ascii") if isinstance(counts, bytes) else counts,
    }


def rle_encode_stack(masks: np.ndarray) -> list[RLE]:
    """Encode bool masks ``(T, H, W)`` as a list of ``T`` compressed RLEs."""
    m = np.asarray(masks)
    if m.ndim != 3:
        raise ValueError(f"rle_encode_stack expects (T, H, W) masks, got shape {m.shape}")
    if m.shape[0] == 0:
        return []
    rles = coco_mask.encode(np.asfortranarray(np.moveaxis(m.astype(np.uint8), 0, -1)))
    return [
        {"size": [int(r["size"][0]), int(r["size"][1])], "counts": r["counts"].decode("ascii")} for r in rles
    ]


def _to_coco(rle: RLE) -> dict[str, Any]:
    _check_rle(rle)
    counts = rle["counts"]
    if isinstance(counts, list):  # uncompressed RLE -> compressed
        h, w = rle["size"]
        return coco_mask.frPyObjects(rle, h, w)
    return {
        "size": list(rle["size"]),
        "counts": counts.encode("ascii") if isinstance(counts, str) else counts,
    }


def rle_decode(rle: RLE) -> np.ndarray:
    """Decode a COCO RLE (compressed, or uncompressed with a list of counts) to bool ``(H, W)``."""
    return coco_mask.decode(_to_coco(rle)).astype(bool)


def rle_area(rle: RLE) -> int:
    """Foreground pixel count of an RLE, without decoding it."""
    return int(coco_mask.area(_to_coco(rle)))


def rle_to_box(rle: RLE) -> np.ndarray:
    """Tight ``xyxy`` box (pixel-extent convention, see :mod:`.boxes`) of an RLE; zeros if empty."""
    x, y, w, h = coco_mask.toBbox(_to_coco(rle)).tolist()
    return np.asarray([x, y, x + w, y + h], dtype=np.float32)


def rle_iou(a: list[RLE], b: list[RLE]) -> np.ndarray:
    """Pairwise mask IoU of two RLE lists -> ``(len(a), len(b))`` float64, without decoding.

    Two empty masks give 0 here (pycocotools' convention), unlike :func:`mask_iou`, which gives 1.
    """
    if not a or not b:
        return np.zeros((len(a), len(b)), dtype=np.float64)
    return np.asarray(
        coco_mask.iou([_to_coco(r) for r in a], [_to_coco(r) for r in b], [0] * len(b)), dtype=np.float64
    ).reshape(len(a), len(b))


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two bool masks of the same shape (any ndim); 1.0 when both are empty."""
    a = np.asarray(a, dtype=bool)
    b = np.asarray(b, dtype=bool)
    if a.shape != b.shape:
        raise ValueError(f"mask shapes differ: {a.shape} vs {b.shape}")
    union = np.count_nonzero(a | b)
    if union == 0:
        return 1.0
    return np.count_nonzero(a & b) / union


def resize_mask(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize of bool masks ``(H, W)`` or ``(T, H, W)`` to ``size = (H', W')``."""
    m = np.asarray(mask, dtype=bool)
    h, w = size
    if m.ndim == 2:
        return cv2.resize(m.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST).astype(bool)
    if m.ndim == 3:
        out = np.empty((m.shape[0], h, w), dtype=bool)
        for i in range(m.shape[0]):
            out[i] = cv2.resize(m[i].astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST).astype(bool)
        return out
    raise ValueError(f"resize_mask expects (H, W) or (T, H, W), got shape {m.shape}")


def empty_rle(size: tuple[int, int]) -> RLE:
    """The RLE of an all-false mask of ``size = (H, W)``."""
    return rle_encode(np.zeros(size, dtype=bool))
