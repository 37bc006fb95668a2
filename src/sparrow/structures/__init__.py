"""Typed containers and pure box / mask / RLE operations. Imports nothing of ours but ``errors``."""

from __future__ import annotations

from .boxes import (
    box_area,
    box_convert,
    box_iou,
    clip_boxes,
    denormalize_boxes,
    generalized_box_iou,
    masks_to_boxes,
    normalize_boxes,
)
from .grounding import GroundedPhrase, GroundingResult
from .masklet import Masklet, runs_of_true
from .masks import (
    RLE,
    empty_rle,
    mask_iou,
    resize_mask,
    rle_area,
    rle_decode,
    rle_encode,
    rle_encode_stack,
    rle_iou,
    rle_to_box,
)
from .video import VideoClip

__all__ = [
    "RLE",
    "GroundedPhrase",
    "GroundingResult",
    "Masklet",
    "VideoClip",
    "box_area",
    "box_convert",
    "box_iou",
    "clip_boxes",
    "denormalize_boxes",
    "empty_rle",
    "generalized_box_iou",
    "mask_iou",
    "masks_to_boxes",
    "normalize_boxes",
    "resize_mask",
    "rle_area",
    "rle_decode",
    "rle_encode",
    "rle_encode_stack",
    "rle_iou",
    "rle_to_box",
    "runs_of_true",
]
