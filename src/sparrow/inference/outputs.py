"""Writing grounding results: the JSON result, per-phrase mask PNGs, benchmark mask trees, overlays.

Every writer streams: masks are decoded from their RLEs one frame at a time, frames are re-read from
the video one at a time, and each file is written atomically.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from sparrow.data.formats.common import BinaryMaskTreeWriter, frame_key
from sparrow.io.atomic import write_text_atomic
from sparrow.io.mask_files import write_binary_png
from sparrow.structures import GroundingResult, Masklet, rle_decode
from sparrow.viz import write_overlay_video

from .frames import VideoInput, open_frames


def write_result_json(path: str | Path, result: GroundingResult) -> Path:
    """``result`` as JSON (RLE masks, ``xyxy`` boxes, scores, spans per phrase), atomically."""
    path = Path(path)
    write_text_atomic(path, json.dumps(result.to_dict()) + "\n")
    return path


def union_mask(masklets: Sequence[Masklet], position: int, size: tuple[int, int]) -> np.ndarray:
    """Bool ``(H, W)``: the union of the masklets' masks at ``position`` (all empty: all False)."""
    mask = np.zeros(size, dtype=bool)
    for m in masklets:
        if m.presence[position]:
            mask |= rle_decode(m.rles[position])
    return mask


def write_phrase_pngs(folder: str | Path, result: GroundingResult) -> int:
    """``<folder>/<phrase index>/<frame:05d>.png`` (L 0/255) for every phrase and frame; returns files written."""
    folder = Path(folder)
    count = 0
    for k, phrase in enumerate(result.phrases):
        m = phrase.masklet
        for pos, frame in enumerate(m.frame_indices.tolist()):
            write_binary_png(folder / str(k) / f"{frame_key(frame)}.png", rle_decode(m.rles[pos]), value=255)
            count += 1
    return count


def add_expression_masks(
    writer: BinaryMaskTreeWriter,
    video_id: str,
    exp_id: str,
    result: GroundingResult,
    frame_names: Sequence[str | int],
) -> None:
    """One expression in a benchmark mask tree (MeViS / ReVOS / Ref-YouTube-VOS): per frame, the union
    of every grounded phrase (all-zero masks when the answer grounds nothing), frame by frame."""
    if len(frame_names) != len(result.frame_indices):
        raise ValueError(f"{len(frame_names)} frame names for {len(result.frame_indices)} frames")
    masklets = result.masklets
    for pos, name in enumerate(frame_names):
        writer.add(video_id, exp_id, [name], union_mask(masklets, pos, result.size)[None])


def write_overlay(
    path: str | Path, video: VideoInput, result: GroundingResult | Sequence[Masklet], fps: float | None = None
) -> int:
    """Overlay ``result`` on ``video`` (re-read frame by frame) into an H.264 file; returns frames written."""
    source = open_frames(video, fps=fps)
    try:
        frames = source.iter_frames(np.arange(source.num_frames, dtype=np.int64))
        return write_overlay_video(path, frames, result, fps or source.fps)
    finally:
        source.close()
