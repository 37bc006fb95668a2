"""Training inputs of :class:`~sparrow.models.sparrow.SparrowModel`: one sample and a collated batch.

A :class:`TrainingSample` holds numpy arrays already at the model's resolutions (built by
:class:`~sparrow.models.processor.SparrowProcessor`); :func:`collate` pads the token sequences and
stacks or concatenates the rest into a :class:`Batch` of torch tensors.

Grounding targets are listed per token in reading order (row-major over the batch): the ``j``-th
``[SEG]`` of the flattened ``input_ids`` is supervised by ``seg_masks[j]``, the ``i``-th ``[BOX]`` by
``boxes[i]`` (its target's box on the key frame). A ``[SEG]`` right after a ``[BOX]`` (``[BOX] [SEG]``)
is prompted with that box.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
import torch
from torch import Tensor

from sparrow.models.tokenizer import IGNORE_INDEX


@dataclass
class TrainingSample:
    """One teacher-forced sample.

    Attributes:
        input_ids: ``(L,)`` int64 prompt + answer token ids (``<video>`` / ``<tsf>`` expanded).
        labels: ``(L,)`` int64, the answer ids and ``-100`` elsewhere.
        spatial_frames: ``(T_s, 3, H_s, W_s)`` float32, spatial-encoder input (normalised).
        temporal_frames: ``(T_t, 3, H_t, W_t)`` float32, temporal-encoder input (normalised).
        sam_frames: ``(T_sam, 3, S, S)`` float32, SAM2 input (ImageNet-normalised).
        supervised: ``(T_sam,)`` bool, SAM frames whose masks are supervised.
        key_frame: index in ``[0, T_sam)`` of the frame the proposals come from.
        seg_masks: ``(n_seg, T_sam, S, S)`` bool target masklet of each ``[SEG]`` at SAM resolution.
        boxes: ``(n_box, 4)`` float32 target of each ``[BOX]``: its object's box on the key frame,
            normalised ``cxcywh``.
        box_valid: ``(n_box,)`` bool, False where the target is absent from the key frame.
        det_boxes: ``(G, 4)`` float32 normalised ``cxcywh`` boxes of every object on the key frame
            (class-agnostic proposer targets).
        tsf_crops: ``(n_crops, 3, H_s, W_s)`` float32 crops along the target track, or ``None``.
    """

    input_ids: np.ndarray
    labels: np.ndarray
    spatial_frames: np.ndarray
    temporal_frames: np.ndarray
    sam_frames: np.ndarray
    supervised: np.ndarray
    key_frame: int
    seg_masks: np.ndarray
    boxes: np.ndarray
    box_valid: np.ndarray
    det_boxes: np.ndarray
    tsf_crops: np.ndarray | None = None


@dataclass
class Batch:
    """A collated batch of ``B`` samples (torch tensors; every float tensor float32).

    Attributes:
        input_ids: ``(B, L)`` int64, right-padded with the pad id.
        attention_mask: ``(B, L)`` int64, 1 on real tokens.
        labels: ``(B, L)`` int64, ``-100`` on prompt and padding.
        spatial_frames: ``(B, T_s, 3, H_s, W_s)``.
        temporal_frames: ``(B, T_t, 3, H_t, W_t)``.
        sam_frames: ``(B, T_sam, 3, S, S)``.
        supervised: ``(B, T_sam)`` bool.
        key_frames: ``(B,)`` int64.
        seg_masks: ``(n_seg, T_sam, S, S)`` bool, all samples' ``[SEG]`` targets in reading order.
        seg_sample: ``(n_seg,)`` int64, the sample of each ``[SEG]``.
        boxes: ``(n_box, 4)`` normalised ``cxcywh``; box_valid: ``(n_box,)`` bool.
        box_sample: ``(n_box,)`` int64, the sample of each ``[BOX]``.
        det_boxes: list of ``B`` tensors ``(G_i, 4)`` normalised ``cxcywh``.
        tsf_crops: ``(B, N_max, 3, H_s, W_s)`` zero-padded, or ``None`` when no sample has crops.
        tsf_valid: ``(B, N_max)`` bool, or ``None``.
    """

    input_ids: Tensor
    attention_mask: Tensor
    labels: Tensor
    spatial_frames: Tensor
    temporal_frames: Tensor
    sam_frames: Tensor
    supervised: Tensor
    key_frames: Tensor
    seg_masks: Tensor
    seg_sample: Tensor
    boxes: Tensor
    box_valid: Tensor
    box_sample: Tensor
    det_boxes: list[Tensor]
    tsf_crops: Tensor | None = None
    tsf_valid: Tensor | None = None

    def to(self, device: torch.device | str, dtype: torch.dtype | None = None) -> Batch:
        """A copy on ``device``; float tensors also cast to ``dtype`` when given."""

        def move(x: object) -> object:
            if isinstance(x, Tensor):
                if dtype is not None and x.is_floating_point():
                    return x.to(device=device, dtype=dtype)
                return x.to(device)
            if isinstance(x, list):
                return [move(v) for v in x]
            return x

        return Batch(**{f.name: move(getattr(self, f.name)) for f in fields(self)})

    @property
    def size(self) -> int:
        return int(self.input_ids.shape[0])


def collate(samples: list[TrainingSample], pad_id: int) -> Batch:
    """Pad and stack ``samples`` into a :class:`Batch`.

    Raises:
        ValueError: the samples disagree on frame counts or resolutions, or a sample is malformed.
    """
    if not samples:
        raise ValueError("collate needs at least one sample")
    for s in samples:
        _check_sample(s)
    length = max(len(s.input_ids) for s in samples)
    b = len(samples)
    input_ids = np.full((b, length), pad_id, dtype=np.int64)
    labels = np.full((b, length), IGNORE_INDEX, dtype=np.int64)
    attention = np.zeros((b, length), dtype=np.int64)
    for i, s in enumerate(samples):
        n = len(s.input_ids)
        input_ids[i, :n] = s.input_ids
        labels[i, :n] = s.labels
        attention[i, :n] = 1

    def stack(name: str) -> Tensor:
        arrays = [getattr(s, name) for s in samples]
        shapes = {a.shape for a in arrays}
        if len(shapes) > 1:
            raise ValueError(f"samples disagree on {name} shape: {sorted(shapes)}")
        return torch.from_numpy(np.stack(arrays))

    crops = [s.tsf_crops for s in samples]
    tsf_crops = tsf_valid = None
    if any(c is not None and len(c) for c in crops):
        shape = next(c.shape[1:] for c in crops if c is not None and len(c))
        n_max = max(len(c) for c in crops if c is not None)
        tsf_crops = torch.zeros((b, n_max, *shape), dtype=torch.float32)
        tsf_valid = torch.zeros((b, n_max), dtype=torch.bool)
        for i, c in enumerate(crops):
            if c is not None and len(c):
                if c.shape[1:] != shape:
                    raise ValueError(f"samples disagree on tsf_crops shape: {c.shape[1:]} vs {shape}")
                tsf_crops[i, : len(c)] = torch.from_numpy(np.asarray(c, dtype=np.float32))
                tsf_valid[i, : len(c)] = True

    def cat(name: str, dtype: np.dtype, row_shape: tuple[int, ...]) -> Tensor:
        return torch.cat(
            [
                torch.from_numpy(np.asarray(getattr(s, name), dtype=dtype).reshape(-1, *row_shape))
                for s in samples
            ]
        )

    sam_shape = samples[0].sam_frames.shape
    return Batch(
        input_ids=torch.from_numpy(input_ids),
        attention_mask=torch.from_numpy(attention),
        labels=torch.from_numpy(labels),
        spatial_frames=stack("spatial_frames").float(),
        temporal_frames=stack("temporal_frames").float(),
        sam_frames=stack("sam_frames").float(),
        supervised=stack("supervised").bool(),
        key_frames=torch.tensor([s.key_frame for s in samples], dtype=torch.long),
        seg_masks=cat("seg_masks", bool, (sam_shape[0], *sam_shape[2:])),
        seg_sample=_sample_index([len(s.seg_masks) for s in samples]),
        boxes=cat("boxes", np.float32, (4,)),
        box_valid=cat("box_valid", bool, ()),
        box_sample=_sample_index([len(s.box_valid) for s in samples]),
        det_boxes=[
            torch.from_numpy(np.asarray(s.det_boxes, dtype=np.float32)).reshape(-1, 4) for s in samples
        ],
        tsf_crops=tsf_crops,
        tsf_valid=tsf_valid,
    )


def _sample_index(counts: list[int]) -> Tensor:
    return torch.cat([torch.full((n,), i, dtype=torch.long) for i, n in enumerate(counts)])


def _check_sample(s: TrainingSample) -> None:
    if s.input_ids.shape != s.labels.shape or s.input_ids.ndim != 1:
        raise ValueError(
            f"input_ids {s.input_ids.shape} and labels {s.labels.shape} must be equal (L,) arrays"
        )
    t_sam = s.sam_frames.shape[0]
    if s.supervised.shape != (t_sam,):
        raise ValueError(f"supervised must be ({t_sam},), got {s.supervised.shape}")
    if not 0 <= s.key_frame < t_sam:
        raise ValueError(f"key_frame {s.key_frame} outside [0, {t_sam})")
    if s.seg_masks.ndim != 4 or s.seg_masks.shape[1:] != (t_sam, *s.sam_frames.shape[2:]):
        raise ValueError(f"seg_masks must be (n_seg, {t_sam}, S, S), got {s.seg_masks.shape}")
    valid = np.asarray(s.box_valid)
    if valid.ndim != 1 or np.asarray(s.boxes).reshape(-1, 4).shape[0] != len(valid):
        raise ValueError("boxes (n_box, 4) and box_valid (n_box,) must have one row per [BOX]")
