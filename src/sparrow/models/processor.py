"""Turn frames, text and masks into model inputs (no weights; safe in data-loader workers).

:class:`SparrowProcessor` knows the preset's sizes and the tokenizer. It

- samples and normalises the frames each encoder sees (:meth:`encoder_inputs`, :meth:`sam_inputs`),
- writes the chat prompt with the right number of ``<video>`` / ``<tsf>`` placeholders
  (:meth:`prompt_ids`, :meth:`n_tsf`),
- adapts grounded answers to the ``box_prompt`` switch (:meth:`format_answer`: ``[BOX]`` before
  every ``[SEG]`` when on, no ``[BOX]`` when off),
- builds the TSF crops along a track (:meth:`tsf_crops`) and whole
  :class:`~sparrow.models.batch.TrainingSample` objects (:meth:`training_sample`).

Frames at this boundary are uint8 RGB ``(T, H, W, 3)`` at the video's resolution; masks are bool
``(..., T, H, W)`` at the same resolution; boxes are ``xyxy`` pixels.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
from torch import Tensor

from sparrow.models.batch import TrainingSample
from sparrow.models.config import SparrowConfig
from sparrow.models.sam2 import IMAGENET_MEAN, IMAGENET_STD
from sparrow.models.tokenizer import BOX, SEG, SparrowTokenizer
from sparrow.models.tsf import crop_indices, crop_track, track_boxes
from sparrow.models.vision import resize_normalize
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
        self.spatial_size = int(sp.hf["image_size"])
        self.temporal_size = int(tp.hf.get("crop_size", 256))
        tubelet = int(tp.hf.get("tubelet_size", 2))
        self.n_video = sp.frames * sp.pooled_tokens + (tp.frames // tubelet) * tp.pooled_tokens
        self.sam_size = config.sam2.image_size

    # -- text ------------------------------------------------------------------------------------

    def n_tsf(self, *, training: bool) -> int:
        """Number of ``<tsf>`` placeholders: K when TSF is on for this phase, else 0."""
        mode = self.config.tsf.mode
        on = mode == "train+infer" or (mode == "train" and training)
        return self.config.tsf.k if on else 0

    def format_answer(self, answer: str) -> str:
        """Adapt grounding tokens to the ``box_prompt`` switch.

        On: every ``[SEG]`` becomes ``[BOX] [SEG]`` (a lone ``[BOX]``, a box answer, stays).
        Off (the baseline has no box token): ``[BOX] [SEG]`` and a lone ``[BOX]`` become ``[SEG]``.
        """
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

    def training_sample(
        self,
        frames: np.ndarray,
        question: str,
        answer: str,
        targets: np.ndarray,
        *,
        sam_indices: Sequence[int] | None = None,
        supervised: Sequence[bool] | None = None,
        key_frame: int = 0,
        object_masks: np.ndarray | None = None,
        track: np.ndarray | None = None,
    ) -> TrainingSample:
        """One teacher-forced sample.

        Args:
            frames: the clip, ``(T, H, W, 3)`` uint8.
            question: the user's text (no ``<video>``; it is added).
            answer: the target answer; its grounding tokens are adapted by :meth:`format_answer`.
            targets: ``(n, T, H, W)`` bool, one masklet per grounding slot of the answer in reading
                order -- a slot is ``[BOX] [SEG]``, a lone ``[SEG]`` or a lone ``[BOX]``; a multi-object
                referent is the union of its objects' masks. A ``[SEG]`` is supervised with the
                masklet, a ``[BOX]`` with the masklet's box on the key frame.
            sam_indices: the ``T_sam`` clip frames given to SAM2 (default: ``sam2.frames`` uniform).
            supervised: which of those frames get the mask loss (default: all).
            key_frame: index into ``sam_indices`` of the proposal frame (default 0, as in the paper).
            object_masks: ``(G, H, W)`` bool masks of EVERY object on the key frame (proposer
                targets); default: the targets.
            track: ``(T, 4)`` xyxy boxes for the TSF crops; default: the first target's masks.

        Raises:
            ValueError: the answer's grounding slots do not match ``len(targets)``.
        """
        frames = np.asarray(frames)
        targets = np.asarray(targets, dtype=bool).reshape(-1, *frames.shape[:3])
        answer = self.format_answer(answer)
        slots = _SLOT.findall(answer)
        if len(slots) != len(targets):
            raise ValueError(
                f"the answer has {len(slots)} grounding slot(s) but {len(targets)} target masklets"
            )
        n_tsf = self.n_tsf(training=True)
        example = self.tokenizer.example(question, answer, n_video=self.n_video, n_tsf=n_tsf)
        spatial, temporal = self.encoder_inputs(frames)
        idx = (
            uniform_indices(len(frames), self.config.sam2.frames)
            if sam_indices is None
            else np.asarray(sam_indices)
        )
        sup = np.ones(len(idx), dtype=bool) if supervised is None else np.asarray(supervised, dtype=bool)
        h, w = frames.shape[1:3]
        s = self.sam_size
        seg = [k for k, slot in enumerate(slots) if SEG in slot]
        box = [k for k, slot in enumerate(slots) if BOX in slot]
        seg_masks = np.zeros((len(seg), len(idx), s, s), dtype=bool)
        for row, k in enumerate(seg):
            seg_masks[row] = resize_mask(targets[k][idx], (s, s))
        key_masks = targets[:, idx[key_frame]]
        present = key_masks.reshape(len(targets), -1).any(axis=1)
        key_boxes = _normalised_cxcywh(key_masks, (h, w))
        if object_masks is None:
            det = key_boxes[present]
        else:
            objects = np.asarray(object_masks, dtype=bool)
            det = _normalised_cxcywh(objects[objects.reshape(len(objects), -1).any(axis=1)], (h, w))
        crops = None
        if n_tsf:
            if track is None:
                if not len(targets):
                    raise ValueError("TSF needs a track: give `track` or at least one target masklet")
                track = track_boxes(targets[0])
            crops = self.tsf_crops(frames, track).numpy()
        return TrainingSample(
            input_ids=np.asarray(example.input_ids, dtype=np.int64),
            labels=np.asarray(example.labels, dtype=np.int64),
            spatial_frames=spatial.numpy(),
            temporal_frames=temporal.numpy(),
            sam_frames=self.sam_inputs(frames[idx]).numpy(),
            supervised=sup,
            key_frame=key_frame,
            seg_masks=seg_masks,
            boxes=key_boxes[box].reshape(-1, 4),
            box_valid=present[box],
            det_boxes=det,
            tsf_crops=crops,
        )


def _normalised_cxcywh(masks: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Tight boxes of masks ``(N, H, W)`` as normalised ``cxcywh`` ``(N, 4)`` float32."""
    if not len(masks):
        return np.zeros((0, 4), dtype=np.float32)
    xyxy = masks_to_boxes(masks)
    return box_convert(normalize_boxes(xyxy, size), "xyxy", "cxcywh").astype(np.float32)
