"""Stateless annotators: each draws one kind of mark on a uint8 RGB frame and returns a new frame.

Every ``annotate`` takes ``frame`` uint8 ``(H, W, 3)`` RGB (not modified) and returns a new uint8
``(H, W, 3)`` array of the same size. Coordinates are absolute pixels of that frame; boxes are
``xyxy`` with the pixel-extent convention of :mod:`sparrow.structures.boxes` (a box ``(0, 0, 2, 2)``
covers pixels 0 and 1). Colours are RGB triples, one per item.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .colors import text_color

Color = tuple[int, int, int]


def check_frame(frame: np.ndarray) -> np.ndarray:
    """Return ``frame`` as an array after checking it is uint8 ``(H, W, 3)``; ValueError otherwise."""
    arr = np.asarray(frame)
    if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f"frame must be uint8 (H, W, 3) RGB, got {arr.dtype} {arr.shape}")
    return arr


def _colors(colors: Sequence[Color] | np.ndarray, n: int) -> np.ndarray:
    arr = np.asarray(colors, dtype=np.uint8).reshape(-1, 3)
    if arr.shape[0] != n:
        raise ValueError(f"need one colour per item: {n} items, {arr.shape[0]} colours")
    return arr


@lru_cache(maxsize=16)
def font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """PIL's bundled default font at ``size`` pixels (no file or download needed)."""
    return ImageFont.load_default(size=size)


def default_font_size(height: int) -> int:
    """Label font size for a frame ``height`` pixels tall: about 1/30 of it, between 10 and 28."""
    return int(min(28, max(10, round(height / 30))))


@dataclass(frozen=True)
class MaskAnnotator:
    """Fill masks with their colour (alpha blend) and outline them.

    Attributes:
        alpha: opacity of the fill in ``[0, 1]``.
        contour_thickness: outline width in pixels (0: no outline).
    """

    alpha: float = 0.45
    contour_thickness: int = 2

    def annotate(
        self, frame: np.ndarray, masks: np.ndarray, colors: Sequence[Color] | np.ndarray
    ) -> np.ndarray:
        """Draw bool masks ``(N, H, W)`` (frame-sized) in ``colors`` ``(N, 3)``; later masks on top."""
        out = check_frame(frame).copy()
        m = (
            np.asarray(masks, dtype=bool).reshape(-1, *out.shape[:2])
            if np.size(masks)
            else np.zeros((0, *out.shape[:2]), bool)
        )
        cols = _colors(colors, m.shape[0])
        for mask, color in zip(m, cols, strict=True):
            if not mask.any():
                continue
            blended = out[mask].astype(np.float32) * (1 - self.alpha) + color.astype(np.float32) * self.alpha
            out[mask] = np.round(blended).astype(np.uint8)
            if self.contour_thickness > 0:
                contours, _ = cv2.findContours(
                    mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE
                )
                cv2.drawContours(out, contours, -1, tuple(int(c) for c in color), self.contour_thickness)
        return out


@dataclass(frozen=True)
class BoxAnnotator:
    """Draw ``xyxy`` box outlines.

    Attributes:
        thickness: line width in pixels.
    """

    thickness: int = 2

    def annotate(
        self, frame: np.ndarray, boxes: np.ndarray, colors: Sequence[Color] | np.ndarray
    ) -> np.ndarray:
        """Draw boxes ``(N, 4)`` xyxy (absolute pixels) in ``colors`` ``(N, 3)``; empty boxes are skipped."""
        out = check_frame(frame).copy()
        b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        cols = _colors(colors, b.shape[0])
        for (x1, y1, x2, y2), color in zip(b, cols, strict=True):
            if x2 <= x1 or y2 <= y1:
                continue
            p1 = (round(x1), round(y1))
            p2 = (max(round(x2) - 1, p1[0]), max(round(y2) - 1, p1[1]))
            cv2.rectangle(out, p1, p2, tuple(int(c) for c in color), self.thickness)
        return out


@dataclass(frozen=True)
class LabelAnnotator:
    """Write text labels on filled tags, with PIL's bundled default font.

    Attributes:
        font_size: pixels; ``None`` picks :func:`default_font_size` of the frame height.
        padding: pixels around the text inside its tag.
    """

    font_size: int | None = None
    padding: int = 2

    def annotate(
        self,
        frame: np.ndarray,
        texts: Sequence[str],
        anchors: np.ndarray,
        colors: Sequence[Color] | np.ndarray,
    ) -> np.ndarray:
        """Draw ``texts`` at ``anchors`` ``(N, 2)`` ``(x, y)`` pixels: the tag sits just above the
        anchor (below it when there is no room), its left edge at ``x``, kept inside the frame."""
        out = check_frame(frame)
        pts = np.asarray(anchors, dtype=np.float64).reshape(-1, 2)
        if len(texts) != pts.shape[0]:
            raise ValueError(f"need one anchor per label: {len(texts)} labels, {pts.shape[0]} anchors")
        cols = _colors(colors, len(texts))
        if not texts:
            return out.copy()
        h, w = out.shape[:2]
        fnt = font(self.font_size or default_font_size(h))
        image = Image.fromarray(out)
        draw = ImageDraw.Draw(image)
        for text, (x, y), color in zip(texts, pts, cols, strict=True):
            left, top, right, bottom = draw.textbbox((0, 0), text, font=fnt)
            tw, th = right - left + 2 * self.padding, bottom - top + 2 * self.padding
            ax, ay = round(float(x)), round(float(y))
            x0 = min(max(ax, 0), max(w - tw, 0))
            y0 = ay - th if ay >= th else ay  # above the anchor if it fits, else below
            y0 = min(max(y0, 0), max(h - th, 0))
            fill = tuple(int(c) for c in color)
            draw.rectangle((x0, y0, x0 + tw - 1, y0 + th - 1), fill=fill)
            draw.text(
                (x0 + self.padding - left, y0 + self.padding - top), text, font=fnt, fill=text_color(color)
            )
        return np.asarray(image, dtype=np.uint8).copy()


def presence_columns(presence: np.ndarray, width: int) -> np.ndarray:
    """Downsample bool presence ``(P, T)`` to ``(P, width)`` columns: a column is on if any of its frames is.

    Column ``x`` covers timeline positions ``floor(x * T / width) .. floor((x + 1) * T / width) - 1``
    (at least one position, so short timelines are stretched).
    """
    p = np.asarray(presence, dtype=bool)
    if p.ndim != 2:
        raise ValueError(f"presence must be (P, T), got shape {p.shape}")
    t = p.shape[1]
    if t == 0 or width <= 0:
        return np.zeros((p.shape[0], max(width, 0)), dtype=bool)
    starts = np.minimum((np.arange(width) * t) // width, t - 1)
    ends = np.maximum(((np.arange(width) + 1) * t) // width, starts + 1)
    csum = np.concatenate([np.zeros((p.shape[0], 1), np.int64), np.cumsum(p, axis=1)], axis=1)
    return (csum[:, ends] - csum[:, starts]) > 0


@dataclass(frozen=True)
class TimeBarAnnotator:
    """A presence bar over the bottom of the frame: one row per phrase, filled in its colour on the
    frames where the phrase is present, with a white cursor at the current frame.

    Attributes:
        row_height: pixels per row; ``None`` picks ``max(3, H // 40)``.
        alpha: opacity of the bar's dark background in ``[0, 1]``.
    """

    row_height: int | None = None
    alpha: float = 0.6

    def annotate(
        self,
        frame: np.ndarray,
        presence: np.ndarray,
        position: int,
        colors: Sequence[Color] | np.ndarray,
    ) -> np.ndarray:
        """Draw bool ``presence`` ``(P, T)`` over the timeline's ``T`` positions; the cursor marks
        timeline position ``position`` (``0 <= position < T``)."""
        out = check_frame(frame).copy()
        p = np.asarray(presence, dtype=bool)
        if p.ndim != 2:
            raise ValueError(f"presence must be (P, T), got shape {p.shape}")
        cols = _colors(colors, p.shape[0])
        rows, t = p.shape
        if rows == 0 or t == 0:
            return out
        h, w = out.shape[:2]
        rh = self.row_height or max(3, h // 40)
        gap = 1 if rh >= 3 else 0
        bar_h = min(h, rows * rh + gap)
        top = h - bar_h
        region = out[top:].astype(np.float32) * (1 - self.alpha)
        out[top:] = np.round(region).astype(np.uint8)
        on = presence_columns(p, w)
        for r in range(rows):
            y0 = top + gap + r * rh
            y1 = min(h, y0 + rh - gap)
            if y1 <= y0:
                continue
            out[y0:y1][:, on[r]] = cols[r]
        cursor = int(np.clip(np.floor((position + 0.5) * w / t), 0, w - 1))
        out[top:, max(cursor - 1, 0) : cursor + 1] = 255
        return out
