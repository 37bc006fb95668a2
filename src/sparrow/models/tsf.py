"""Target-specific tracked features (TSF), PAPER 1.2.

Crops along the target's track go through the spatial encoder and the spatial V->L adapter and are
mean-pooled to ONE LLM-width vector each; K-means (K = 4, 8 Lloyd iterations, L2) over up to 16 crop
vectors picks K medoids (the real crop vectors nearest the centres); these K vectors replace the
``<tsf>`` placeholders appended after the question. TSF has no weights and no loss of its own:
gradients reach the spatial encoder and adapter through the selected crop vectors.

This module holds the parameter-free pieces: the track (boxes from masks, with the authors' rule for
empty masks), the crops, and the medoid selection. :meth:`SparrowModel.tsf_tokens` composes them
with the encoder.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from sparrow.models.vision import resize_normalize
from sparrow.structures.boxes import masks_to_boxes


def fill_track(boxes: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Complete a track: ``boxes`` ``(T, 4)`` ``xyxy`` pixels, NaN (or empty) where unknown.

    A frame without a box reuses the previous frame's box, or the full frame ``size = (H, W)``
    when no earlier frame has one (the authors' rule for empty masks). Returns ``(T, 4)`` float32.
    """
    h, w = size
    out = np.asarray(boxes, dtype=np.float32).copy()
    known = np.isfinite(out).all(axis=1) & (out[:, 2] > out[:, 0]) & (out[:, 3] > out[:, 1])
    previous = np.array([0.0, 0.0, w, h], dtype=np.float32)
    for i in range(len(out)):
        if known[i]:
            previous = out[i]
        else:
            out[i] = previous
    return out


def track_boxes(masks: np.ndarray) -> np.ndarray:
    """Per-frame ``xyxy`` pixel boxes ``(T, 4)`` float32 of a target's masks ``(T, H, W)`` bool,
    completed by :func:`fill_track` where a mask is empty."""
    masks = np.asarray(masks, dtype=bool)
    return fill_track(masks_to_boxes(masks), masks.shape[1:])


def crop_indices(n_frames: int, max_crops: int) -> np.ndarray:
    """Up to ``max_crops`` frame indices spread uniformly over ``n_frames`` (int64, increasing)."""
    if n_frames <= max_crops:
        return np.arange(n_frames, dtype=np.int64)
    return np.unique(np.linspace(0, n_frames - 1, max_crops).round().astype(np.int64))


def crop_track(
    frames: np.ndarray,
    boxes: np.ndarray,
    size: int,
    mean: Sequence[float],
    std: Sequence[float],
) -> Tensor:
    """Crops of ``frames`` ``(T, H, W, 3)`` uint8 at ``boxes`` ``(T, 4)`` xyxy pixels.

    Returns ``(T, 3, size, size)`` float32, each crop resized (aspect not kept) and normalised like
    the spatial encoder's input. Boxes are rounded outwards and clipped; at least 1 pixel is kept.
    """
    frames = np.asarray(frames)
    t, h, w = frames.shape[:3]
    if boxes.shape != (t, 4):
        raise ValueError(f"boxes must have shape ({t}, 4), got {boxes.shape}")
    crops = []
    for frame, (x1, y1, x2, y2) in zip(frames, boxes, strict=True):
        c0 = int(np.clip(np.floor(x1), 0, w - 1))
        r0 = int(np.clip(np.floor(y1), 0, h - 1))
        c1 = int(np.clip(np.ceil(x2), c0 + 1, w))
        r1 = int(np.clip(np.ceil(y2), r0 + 1, h))
        crops.append(resize_normalize(frame[None, r0:r1, c0:c1], size, mean, std))
    return torch.cat(crops)


def kmeans_medoids(vectors: Tensor, k: int, iterations: int) -> Tensor:
    """Indices ``(k,)`` int64 of the medoids of ``k`` K-means clusters of ``vectors`` ``(n, D)``.

    Deterministic: the centres start at the first sample and then, greedily, the sample farthest
    from the centres chosen so far (farthest-point seeding); ``iterations`` Lloyd steps with L2 distance (an empty cluster keeps its centre); each centre then
    takes its nearest sample not taken by an earlier centre. With ``n <= k`` every sample is used
    once and the list repeats cyclically to length ``k``.
    """
    n = vectors.shape[0]
    if n == 0:
        raise ValueError("kmeans_medoids needs at least one vector")
    if n <= k:
        return torch.arange(k, device=vectors.device) % n
    x = vectors.detach().float()
    seeds = [0]
    nearest = torch.cdist(x, x[:1])[:, 0]
    for _ in range(k - 1):
        seeds.append(int(nearest.argmax()))
        nearest = torch.minimum(nearest, torch.cdist(x, x[seeds[-1] : seeds[-1] + 1])[:, 0])
    centres = x[seeds].clone()
    for _ in range(iterations):
        assign = torch.cdist(x, centres).argmin(dim=1)
        for c in range(k):
            members = assign == c
            if members.any():
                centres[c] = x[members].mean(dim=0)
    dist = torch.cdist(centres, x)
    chosen: list[int] = []
    for c in range(k):
        row = dist[c].clone()
        if chosen:
            row[chosen] = float("inf")
        chosen.append(int(row.argmin()))
    return torch.tensor(chosen, dtype=torch.long, device=vectors.device)
