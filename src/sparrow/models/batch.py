"""Training inputs of :class:`~sparrow.models.sparrow.SparrowModel`, in three forms.

- :class:`SparrowSample`: one sample as the data side produces it -- the clip, the question, the
  answer with grounding markup, one masklet and/or box track per grounding slot (no file paths).
- :class:`TrainingSample`: the same, tokenised and at the model's resolutions (numpy), made by
  :meth:`SparrowProcessor.prepare <sparrow.models.processor.SparrowProcessor.prepare>` (in data-loader
  workers).
- :class:`SparrowBatch`: prepared samples padded and stacked into torch tensors by
  :func:`collate` (``SparrowProcessor.collate`` does prepare + collate).

And :class:`PickBatch`: what the pick (``[BOX]`` MLP, question bag, filtration head) reads of a
teacher-forced batch when every other part is frozen, taken once by
:meth:`SparrowModel.pick_inputs <sparrow.models.sparrow.SparrowModel.pick_inputs>` (stage 3 on a cache).

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
class SparrowSample:
    """One training sample as the data side produces it.

    A *grounding slot* of the answer is ``[BOX] [SEG]``, a lone ``[SEG]`` or a lone ``[BOX]``, in
    reading order (the answer's ``[BOX]`` tokens are first adapted to the ``box_prompt`` switch by
    ``SparrowProcessor.format_answer``). Slot ``k`` is described by ``masks[k]`` and/or ``boxes[k]``;
    a multi-object referent is the union of its objects. A ``[SEG]`` needs the masklet; a ``[BOX]``
    uses the box on the key frame (taken from ``boxes``, else from the masklet).

    Attributes:
        frames: ``(T, H, W, 3)`` uint8 RGB clip.
        question: the user's text (the ``<video>`` placeholder is added by the template).
        answer: the target answer with ``[SEG]`` / ``[BOX]`` / ``<p> ... </p>`` markup.
        masks: ``(n_slots, T, H, W)`` bool masklet per slot, or ``None`` (box-only data).
        boxes: ``(n_slots, T, 4)`` float ``xyxy`` pixel boxes per slot and frame (NaN where unknown
            or absent), or ``None`` to take them from ``masks``.
        sam_indices: the ``T_sam`` clip frames given to SAM2 (default: ``sam2.frames`` spread evenly).
        supervised: ``(T_sam,)`` bool, which of them get the mask loss (default: all).
        key_frame: index into ``sam_indices`` of the frame the proposals come from (paper: 0).
        object_boxes: ``(G, 4)`` ``xyxy`` pixel boxes of EVERY object on the key frame (class-agnostic
            proposer targets), or ``None`` for the slots' own key-frame boxes.
        track: ``(T, 4)`` ``xyxy`` pixel boxes along which the TSF crops are taken (NaN where
            unknown), or ``None`` for slot 0's.
    """

    frames: np.ndarray
    question: str
    answer: str
    masks: np.ndarray | None = None
    boxes: np.ndarray | None = None
    sam_indices: np.ndarray | None = None
    supervised: np.ndarray | None = None
    key_frame: int = 0
    object_boxes: np.ndarray | None = None
    track: np.ndarray | None = None


@dataclass
class TrainingSample:
    """One teacher-forced sample at the model's resolutions.

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
class SparrowBatch:
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

    def to(self, device: torch.device | str, dtype: torch.dtype | None = None) -> SparrowBatch:
        """A copy on ``device``; float tensors also cast to ``dtype`` when given."""

        def move(x: object) -> object:
            if isinstance(x, Tensor):
                if dtype is not None and x.is_floating_point():
                    return x.to(device=device, dtype=dtype)
                return x.to(device)
            if isinstance(x, list):
                return [move(v) for v in x]
            return x

        return SparrowBatch(**{f.name: move(getattr(self, f.name)) for f in fields(self)})

    @property
    def size(self) -> int:
        return int(self.input_ids.shape[0])


def collate(samples: list[TrainingSample], pad_id: int) -> SparrowBatch:
    """Pad and stack prepared ``samples`` into a :class:`SparrowBatch` (``pad_id``: the tokenizer's).

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
    return SparrowBatch(
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


@dataclass
class PickBatch:
    """The pick's inputs for ``R`` ``[BOX]`` rows (each with a target on its key frame), computed by
    the frozen model; ``K`` proposals per row.

    Attributes:
        states: ``(R, W)`` the LLM's last hidden state at each ``[BOX]`` token (W: the LLM width).
        words: ``(R, L)`` int64 token ids of the row's question words, 0-padded.
        word_mask: ``(R, L)`` bool, which of ``words`` are real.
        features: ``(R, K, D)`` the key frame's top-``K`` proposal features.
        boxes: ``(R, K, 4)`` their boxes, normalised ``cxcywh``.
        logits: ``(R, K)`` their objectness logits.
        fine: ``(R, K, F)`` their crops of the key frame's fine maps, or ``None`` (no fine features).
        targets: ``(R, 4)`` the target's box on the key frame, normalised ``cxcywh``.
    """

    states: Tensor
    words: Tensor
    word_mask: Tensor
    features: Tensor
    boxes: Tensor
    logits: Tensor
    fine: Tensor | None
    targets: Tensor

    def __len__(self) -> int:
        return int(self.states.shape[0])

    def to(self, device: torch.device | str) -> PickBatch:
        """A copy on ``device``."""
        return PickBatch(**{f.name: _move(getattr(self, f.name), device) for f in fields(self)})

    def select(self, rows: Tensor | list[int]) -> PickBatch:
        """The rows ``rows`` (int64 indices) in that order; word padding trimmed to the longest."""
        rows = torch.as_tensor(rows, dtype=torch.long)
        picked = {f.name: getattr(self, f.name) for f in fields(self)}
        picked = {k: None if v is None else v[rows] for k, v in picked.items()}
        width = int(picked["word_mask"].sum(dim=1).max()) if len(rows) else 0
        picked["words"], picked["word_mask"] = picked["words"][:, :width], picked["word_mask"][:, :width]
        return PickBatch(**picked)

    @staticmethod
    def cat(parts: list[PickBatch]) -> PickBatch:
        """The rows of ``parts`` in order, words padded to the longest (the parts agree on ``K``,
        the widths and whether ``fine`` is present).

        Raises:
            ValueError: no parts, or parts of different models.
        """
        if not parts:
            raise ValueError("PickBatch.cat needs at least one part")
        if len({p._row_shape() for p in parts}) > 1:
            raise ValueError("these PickBatches come from different models (proposal / state shapes differ)")
        width = max(p.words.shape[1] for p in parts)

        def pad(t: Tensor) -> Tensor:
            return torch.nn.functional.pad(t, (0, width - t.shape[1]))

        joined = {
            f.name: torch.cat([getattr(p, f.name) for p in parts])
            for f in fields(PickBatch)
            if f.name not in ("words", "word_mask", "fine")
        }
        fine = None if parts[0].fine is None else torch.cat([p.fine for p in parts])
        words = torch.cat([pad(p.words) for p in parts])
        word_mask = torch.cat([pad(p.word_mask) for p in parts])
        return PickBatch(**joined, words=words, word_mask=word_mask, fine=fine)

    def _row_shape(self) -> tuple:
        """What rows of one model share: proposal features, fine crops (or none) and state width."""
        return (
            self.features.shape[1:],
            None if self.fine is None else self.fine.shape[1:],
            self.states.shape[1],
        )


def _move(x: Tensor | None, device: torch.device | str) -> Tensor | None:
    return None if x is None else x.to(device)


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
