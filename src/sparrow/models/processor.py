"""Turn frames, text and masks into model inputs (no weights; safe in data-loader workers).

:class:`SparrowProcessor` knows the preset's sizes and the tokenizer. It

- samples and normalises the frames each encoder sees (:meth:`encoder_inputs`, :meth:`sam_inputs`),
- writes the chat prompt with the right number of ``<video>`` / ``<tsf>`` placeholders
  (:meth:`prompt_ids`, :meth:`n_tsf`),
- adapts grounded answers to the ``box_prompt`` and ``phrase_answer`` switches (:meth:`format_answer`:
  ``[BOX]`` before every ``[SEG]`` when on, no ``[BOX]`` when off; the referent's phrase before a
  bare grounding slot),
- builds the TSF crops along a track (:meth:`tsf_crops`), turns a
  :class:`~sparrow.models.batch.SparrowSample` into a :class:`~sparrow.models.batch.TrainingSample`
  (:meth:`prepare`) and collates samples into a batch (:meth:`collate`).

Frames at this boundary are uint8 RGB ``(T, H, W, 3)`` at the video's resolution; masks are bool
``(..., T, H, W)`` at the same resolution; boxes are ``xyxy`` pixels.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
from torch import Tensor

from sparrow.data.conversations import phrase_of
from sparrow.models.batch import SparrowBatch, SparrowSample, TrainingSample, collate
from sparrow.models.config import SparrowConfig
from sparrow.models.sam2 import IMAGENET_MEAN, IMAGENET_STD
from sparrow.models.tokenizer import BOX, P_CLOSE, P_OPEN, SEG, SparrowTokenizer
from sparrow.models.tsf import crop_indices, crop_track, fill_track
from sparrow.models.vision import encoder_hf_config, resize_normalize
from sparrow.structures.boxes import box_convert, masks_to_boxes, normalize_boxes
from sparrow.structures.masks import resize_mask

_WITH_BOX = re.compile(r"(?:\[BOX\]\s*)?\[SEG\]")
_WITHOUT_BOX = re.compile(r"\[BOX\](?:\s*\[SEG\])?")
_SLOT = re.compile(r"\[BOX\]\s*\[SEG\]|\[BOX\]|\[SEG\]")


def uniform_indices(n_frames: int, n: int) -> np.ndarray:
    """``n`` frame indices spread uniformly over ``[0, n_frames)`` (repeats when ``n > n_frames``)."""
    if n_frames < 1:
        raise ValueError("a clip needs at least one frame")
    return np.linspace(0, n_frames - 1, n).round().astype(np.int64)


class SparrowProcessor:
    """Inputs for one preset.

    Args:
        config: the model config (sizes and switches).
        tokenizer: the model's tokenizer.
    """

    def __init__(self, config: SparrowConfig, tokenizer: SparrowTokenizer) -> None:
        self.config = config
        self.tokenizer = tokenizer
        sp, tp = config.spatial, config.temporal
        spatial_hf, temporal_hf = encoder_hf_config(sp), encoder_hf_config(tp)
        self.spatial_size = int(spatial_hf.image_size)
        self.temporal_size = int(temporal_hf.crop_size)
        tubelet = int(temporal_hf.tubelet_size)
        self.n_video = sp.frames * sp.pooled_tokens + (tp.frames // tubelet) * tp.pooled_tokens
        self.sam_size = config.sam2.image_size

    # -- text ------------------------------------------------------------------------------------

    def n_tsf(self, *, training: bool) -> int:
        """Number of ``<tsf>`` placeholders: K when TSF is on for this phase, else 0."""
        mode = self.config.tsf.mode
        on = mode == "train+infer" or (mode == "train" and training)
        return self.config.tsf.k if on else 0

    def format_answer(self, answer: str, phrases: Sequence[str] = ()) -> str:
        """Adapt grounding tokens to the ``box_prompt`` and ``phrase_answer`` switches.

        ``box_prompt`` on: every ``[SEG]`` becomes ``[BOX] [SEG]`` (a lone ``[BOX]``, a box answer,
        stays). Off (the baseline has no box token): ``[BOX] [SEG]`` and a lone ``[BOX]`` become
        ``[SEG]``.

        ``phrase_answer`` on: an answer without ``<p>`` markup whose grounding slots match
        ``phrases`` one to one gets ``<p> phrase </p>`` before each slot ("Sure, [SEG]." ->
        "Sure, <p> the red star </p> [BOX] [SEG]."); any other answer is left as it is.
        """
        slots = _SLOT.findall(answer)
        if self.config.phrase_answer and phrases and len(phrases) == len(slots) and P_OPEN not in answer:
            named = iter(phrases)
            answer = _SLOT.sub(lambda m: f"{P_OPEN} {phrase_of(next(named))} {P_CLOSE} {m.group(0)}", answer)
        if self.config.box_prompt:
            return _WITH_BOX.sub(f"{BOX} {SEG}", answer)
        return _WITHOUT_BOX.sub(SEG, answer)

    def prompt_ids(self, question: str, *, with_tsf: bool) -> list[int]:
        """Prompt ids for generation (``with_tsf``: append K ``<tsf>`` placeholders)."""
        return self.tokenizer.prompt_ids(
            question, n_video=self.n_video, n_tsf=self.config.tsf.k if with_tsf else 0
        )

    # -- pixels ----------------------------------------------------------------------------------

    def encoder_inputs(self, frames: np.ndarray | Tensor) -> tuple[Tensor, Tensor]:
        """Spatial ``(T_s, 3, H_s, W_s)`` and temporal ``(T_t, 3, H_t, W_t)`` float32 inputs,
        each from frames sampled uniformly over the clip ``(T, H, W, 3)`` uint8."""
        sp, tp = self.config.spatial, self.config.temporal
        n = len(frames)
        spatial = resize_normalize(frames[uniform_indices(n, sp.frames)], self.spatial_size, sp.mean, sp.std)
        temporal = resize_normalize(
            frames[uniform_indices(n, tp.frames)], self.temporal_size, tp.mean, tp.std
        )
        return spatial, temporal

    def sam_inputs(self, frames: np.ndarray | Tensor) -> Tensor:
        """SAM2 input ``(T, 3, S, S)`` float32 of frames ``(T, H, W, 3)`` uint8 (all of them)."""
        return resize_normalize(frames, self.sam_size, IMAGENET_MEAN, IMAGENET_STD)

    def tsf_crops(self, frames: np.ndarray, boxes: np.ndarray) -> Tensor:
        """Spatial-encoder crops ``(n, 3, H_s, W_s)`` along a track.

        Args:
            frames: ``(T, H, W, 3)`` uint8.
            boxes: ``(T, 4)`` xyxy pixel boxes of the target (e.g. :func:`~sparrow.models.tsf.track_boxes`).

        At most ``tsf.max_crops`` frames, spread uniformly, are cropped.
        """
        idx = crop_indices(len(frames), self.config.tsf.max_crops)
        sp = self.config.spatial
        return crop_track(
            np.asarray(frames)[idx],
            np.asarray(boxes, dtype=np.float32)[idx],
            self.spatial_size,
            sp.mean,
            sp.std,
        )

    # -- training samples ------------------------------------------------------------------------

    def prepare(self, sample: SparrowSample) -> TrainingSample:
        """Tokenise, sample and resize one :class:`SparrowSample` for the model.

        Raises:
            ValueError: the answer's grounding slots do not match the given masks / boxes, or a
                ``[SEG]`` slot has no masklet.
        """
        frames = np.asarray(sample.frames)
        t, h, w = frames.shape[:3]
        answer = self.format_answer(sample.answer)
        slots = _SLOT.findall(answer)
        masks = None if sample.masks is None else np.asarray(sample.masks, dtype=bool).reshape(-1, t, h, w)
        if sample.boxes is not None:
            tracks = np.asarray(sample.boxes, dtype=np.float32).reshape(-1, t, 4)
        elif masks is not None:
            tracks = (
                np.stack([_boxes_or_nan(m) for m in masks]) if len(masks) else np.zeros((0, t, 4), np.float32)
            )
        else:
            tracks = np.zeros((0, t, 4), np.float32)
        for name, given in (("masklets", masks), ("box tracks", tracks)):
            if given is not None and len(given) != len(slots):
                raise ValueError(f"the answer has {len(slots)} grounding slot(s) but {len(given)} {name}")
        seg = [k for k, slot in enumerate(slots) if SEG in slot]
        box = [k for k, slot in enumerate(slots) if BOX in slot]
        if seg and masks is None:
            raise ValueError("the answer has [SEG] slots but the sample has no masks")
        if box and len(tracks) != len(slots):
            raise ValueError("the answer has [BOX] slots but the sample has neither boxes nor masks")

        n_tsf = self.n_tsf(training=True)
        example = self.tokenizer.example(sample.question, answer, n_video=self.n_video, n_tsf=n_tsf)
        spatial, temporal = self.encoder_inputs(frames)
        idx = (
            uniform_indices(t, self.config.sam2.frames)
            if sample.sam_indices is None
            else np.asarray(sample.sam_indices)
        )
        sup = (
            np.ones(len(idx), dtype=bool)
            if sample.supervised is None
            else np.asarray(sample.supervised, dtype=bool)
        )
        s = self.sam_size
        seg_masks = np.zeros((len(seg), len(idx), s, s), dtype=bool)
        for row, k in enumerate(seg):
            seg_masks[row] = resize_mask(masks[k][idx], (s, s))
        key = int(idx[sample.key_frame])
        key_boxes = tracks[:, key] if len(tracks) else np.zeros((0, 4), np.float32)
        present = _valid_boxes(key_boxes)
        if sample.object_boxes is None:
            det = key_boxes[present]
        else:
            objects = np.asarray(sample.object_boxes, dtype=np.float32).reshape(-1, 4)
            det = objects[_valid_boxes(objects)]
        crops = None
        if n_tsf:
            if sample.track is not None:
                track = fill_track(sample.track, (h, w))
            elif len(tracks):
                track = fill_track(tracks[0], (h, w))
            else:
                raise ValueError("TSF needs a track: give `track`, `masks` or `boxes`")
            crops = self.tsf_crops(frames, track).numpy()
        return TrainingSample(
            input_ids=np.asarray(example.input_ids, dtype=np.int64),
            labels=np.asarray(example.labels, dtype=np.int64),
            spatial_frames=spatial.numpy(),
            temporal_frames=temporal.numpy(),
            sam_frames=self.sam_inputs(frames[idx]).numpy(),
            supervised=sup,
            key_frame=sample.key_frame,
            seg_masks=seg_masks,
            boxes=_normalised_cxcywh(np.nan_to_num(key_boxes[box]), (h, w)),
            box_valid=present[box],
            det_boxes=_normalised_cxcywh(det, (h, w)),
            tsf_crops=crops,
        )

    def training_sample(
        self,
        frames: np.ndarray,
        question: str,
        answer: str,
        targets: np.ndarray,
        *,
        sam_indices: np.ndarray | None = None,
        supervised: np.ndarray | None = None,
        key_frame: int = 0,
        object_masks: np.ndarray | None = None,
        track: np.ndarray | None = None,
    ) -> TrainingSample:
        """Keyword form of :meth:`prepare` for mask-annotated data: ``targets`` ``(n_slots, T, H, W)``
        bool masklets, ``object_masks`` ``(G, H, W)`` bool masks of every object on the key frame."""
        objects = None if object_masks is None else masks_to_boxes(np.asarray(object_masks, dtype=bool))
        return self.prepare(
            SparrowSample(
                frames, question, answer, masks=targets, sam_indices=sam_indices, supervised=supervised,
                key_frame=key_frame, object_boxes=objects, track=track,
            )
        )  # fmt: skip

    def collate(self, samples: list[SparrowSample]) -> SparrowBatch:
        """:meth:`prepare` every sample, then :func:`~sparrow.models.batch.collate` them."""
        return collate([self.prepare(s) for s in samples], self.tokenizer.ids.pad)


def _boxes_or_nan(masks: np.ndarray) -> np.ndarray:
    """``xyxy`` boxes ``(T, 4)`` float32 of masks ``(T, H, W)``; NaN where a mask is empty."""
    boxes = masks_to_boxes(masks).astype(np.float32)
    boxes[~masks.reshape(len(masks), -1).any(axis=1)] = np.nan
    return boxes


def _valid_boxes(boxes: np.ndarray) -> np.ndarray:
    """``(N,)`` bool: finite ``xyxy`` boxes with positive width and height."""
    return np.isfinite(boxes).all(axis=1) & (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])


def _normalised_cxcywh(boxes: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``xyxy`` pixel boxes ``(N, 4)`` -> normalised ``cxcywh`` ``(N, 4)`` float32."""
    boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    return box_convert(normalize_boxes(boxes, size), "xyxy", "cxcywh").astype(np.float32)
