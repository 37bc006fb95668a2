"""Overlays of grounding results on video frames: streamed rendering, overlay videos, contact sheets.

The inputs are frames as ``(frame number, uint8 RGB (H, W, 3))`` pairs -- what
:meth:`sparrow.io.VideoReader.iter_frames` yields -- and either a
:class:`~sparrow.structures.GroundingResult` or a list of :class:`~sparrow.structures.Masklet`
(ground truth, say). Phrase ``p`` is drawn in :func:`~sparrow.viz.colors.color_for` ``(p)``. Frames
are drawn at their original resolution, one at a time; a mask is decoded from its RLE only for the
frame being drawn.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from sparrow.io import write_video
from sparrow.structures import GroundingResult, Masklet, rle_decode, rle_to_box

from .annotators import (
    BoxAnnotator,
    LabelAnnotator,
    MaskAnnotator,
    TimeBarAnnotator,
    check_frame,
    default_font_size,
)
from .colors import color_for

Frames = Iterable[tuple[int, np.ndarray]]


@dataclass(frozen=True)
class OverlayStyle:
    """What to draw and how.

    Attributes:
        masks, boxes, labels, time_bar: which layers to draw.
        mask: fill / outline settings.
        box: box outline settings.
        label: label tag settings.
        bar: presence bar settings.
    """

    masks: bool = True
    boxes: bool = True
    labels: bool = True
    time_bar: bool = True
    mask: MaskAnnotator = field(default_factory=MaskAnnotator)
    box: BoxAnnotator = field(default_factory=BoxAnnotator)
    label: LabelAnnotator = field(default_factory=LabelAnnotator)
    bar: TimeBarAnnotator = field(default_factory=TimeBarAnnotator)


@dataclass(frozen=True)
class _Track:
    text: str
    masklet: Masklet
    color: tuple[int, int, int]
    positions: dict[int, int]  # frame number -> position in the masklet


def _tracks(result: GroundingResult | Sequence[Masklet]) -> tuple[list[_Track], np.ndarray]:
    """Tracks to draw and the timeline (sorted frame numbers) the presence bar spans."""
    if isinstance(result, GroundingResult):
        named = [(p.text, p.masklet) for p in result.phrases]
        timeline = result.frame_indices
    else:
        named = [
            (m.label or (f"#{m.object_id}" if m.object_id >= 0 else f"object {i}"), m)
            for i, m in enumerate(result)
        ]
        timeline = np.zeros(0, np.int64)
    if timeline.size == 0 and named:
        timeline = np.unique(np.concatenate([m.frame_indices for _, m in named]))
    tracks = [
        _Track(text, m, color_for(i), {int(f): k for k, f in enumerate(m.frame_indices.tolist())})
        for i, (text, m) in enumerate(named)
    ]
    return tracks, np.asarray(timeline, dtype=np.int64)


def _timeline_presence(tracks: list[_Track], timeline: np.ndarray) -> np.ndarray:
    presence = np.zeros((len(tracks), len(timeline)), dtype=bool)
    for r, track in enumerate(tracks):
        for t, frame in enumerate(timeline.tolist()):
            k = track.positions.get(frame)
            presence[r, t] = k is not None and bool(track.masklet.presence[k])
    return presence


def render_overlay(
    frames: Frames,
    result: GroundingResult | Sequence[Masklet],
    *,
    style: OverlayStyle = OverlayStyle(),
) -> Iterator[np.ndarray]:
    """Draw masks, boxes, labels and the presence bar of ``result`` on each frame, streaming.

    Args:
        frames: ``(frame number, uint8 RGB (H, W, 3))`` pairs at the result's original size.
        result: a grounding result, or masklets (labelled by ``label``, else ``#object_id``).
        style: layers and their settings.

    Yields:
        uint8 RGB ``(H, W, 3)`` annotated frames, one per input frame, same size. A phrase is drawn
        on a frame only if its masklet covers that frame number; a box is drawn when it is non-empty
        (an explicit box is drawn even where the mask is empty).

    Raises:
        ValueError: a frame's size differs from the masks' size.
    """
    tracks, timeline = _tracks(result)
    presence = _timeline_presence(tracks, timeline) if style.time_bar else None
    for number, frame in frames:
        yield _draw(number, frame, tracks, timeline, presence, style)


def _draw(
    number: int,
    frame: np.ndarray,
    tracks: list[_Track],
    timeline: np.ndarray,
    presence: np.ndarray | None,
    style: OverlayStyle,
) -> np.ndarray:
    out = check_frame(frame)
    masks, mask_colors, boxes, box_colors, texts, anchors, label_colors = [], [], [], [], [], [], []
    for track in tracks:
        k = track.positions.get(int(number))
        if k is None:
            continue
        if tuple(track.masklet.size) != tuple(out.shape[:2]):
            raise ValueError(
                f"frame {number} is {out.shape[1]}x{out.shape[0]} but the masks of {track.text!r} are "
                f"{track.masklet.size[1]}x{track.masklet.size[0]}: overlay the video the result was made on"
            )
        rle = track.masklet.rles[k]
        box = track.masklet.boxes[k]
        present = bool(track.masklet.presence[k])
        if present and style.masks:
            masks.append(rle_decode(rle))
            mask_colors.append(track.color)
        has_box = bool(box[2] > box[0] and box[3] > box[1])
        if has_box:
            boxes.append(box)
            box_colors.append(track.color)
        if present or has_box:
            texts.append(track.text)
            anchors.append((box if has_box else rle_to_box(rle))[:2])
            label_colors.append(track.color)
    if masks:
        out = style.mask.annotate(out, np.stack(masks), mask_colors)
    if boxes and style.boxes:
        out = style.box.annotate(out, np.stack(boxes), box_colors)
    if texts and style.labels:
        out = style.label.annotate(out, texts, np.stack(anchors), label_colors)
    if presence is not None and presence.shape[0] and timeline.size:
        position = int(min(np.searchsorted(timeline, number), timeline.size - 1))
        out = style.bar.annotate(out, presence, position, [t.color for t in tracks])
    return out.copy() if out is frame else out  # never hand back the caller's array


def write_overlay_video(
    path: str | Path,
    frames: Frames,
    result: GroundingResult | Sequence[Masklet],
    fps: float,
    *,
    style: OverlayStyle = OverlayStyle(),
) -> int:
    """Render :func:`render_overlay` into an H.264 video at ``path`` (atomically); returns frames written."""
    return write_video(path, render_overlay(frames, result, style=style), fps)


def contact_sheet(
    frames: Frames,
    result: GroundingResult | Sequence[Masklet] | None = None,
    *,
    columns: int = 4,
    tile_width: int | None = 320,
    gap: int = 4,
    style: OverlayStyle = OverlayStyle(),
) -> np.ndarray:
    """A grid of frames (with overlays if ``result`` is given), each captioned with its frame number.

    Args:
        frames: ``(frame number, uint8 RGB (H, W, 3))`` pairs, all of one size, e.g. a handful picked
            with :func:`sparrow.io.sample_frame_indices` ``(num=N)``.
        result: what to draw on them (see :func:`render_overlay`); ``None`` for plain frames.
        columns: tiles per row.
        tile_width: tiles are resized to this width (aspect kept); ``None`` keeps the original size.
        gap: pixels between tiles (dark grey).
        style: overlay layers and settings.

    Returns:
        uint8 RGB ``(rows * (h + gap) + gap, columns * (w + gap) + gap, 3)`` image, ``(h, w)`` the
        tile size.

    Raises:
        ValueError: no frames, frames of different sizes, or ``columns < 1``.
    """
    if columns < 1:
        raise ValueError(f"columns must be >= 1, got {columns}")
    pairs = [(int(n), check_frame(f)) for n, f in frames]
    if not pairs:
        raise ValueError("contact_sheet needs at least one frame")
    if len({f.shape for _, f in pairs}) > 1:
        raise ValueError(
            f"all frames of a contact sheet must share one size, got {sorted({f.shape for _, f in pairs})}"
        )
    drawn = render_overlay(pairs, result, style=style) if result is not None else (f for _, f in pairs)
    tiles = [
        _caption(_resize_width(image, tile_width), f"frame {number}")
        for (number, _), image in zip(pairs, drawn, strict=True)
    ]
    th, tw = tiles[0].shape[:2]
    rows = -(-len(tiles) // columns)
    cols = min(columns, len(tiles))
    sheet = np.full((rows * (th + gap) + gap, cols * (tw + gap) + gap, 3), 32, dtype=np.uint8)
    for i, tile in enumerate(tiles):
        r, c = divmod(i, cols)
        y, x = gap + r * (th + gap), gap + c * (tw + gap)
        sheet[y : y + th, x : x + tw] = tile
    return sheet


def _resize_width(image: np.ndarray, width: int | None) -> np.ndarray:
    h, w = image.shape[:2]
    if width is None or width == w:
        return image
    height = max(1, round(h * width / w))
    interpolation = cv2.INTER_AREA if width < w else cv2.INTER_LINEAR
    return cv2.resize(image, (width, height), interpolation=interpolation)


def _caption(tile: np.ndarray, text: str) -> np.ndarray:
    size = default_font_size(tile.shape[0])
    return LabelAnnotator(font_size=size).annotate(tile, [text], np.asarray([[0.0, 0.0]]), [(16, 16, 16)])
