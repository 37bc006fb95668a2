"""Per-phrase colours: a fixed, well-separated palette, extended by golden-ratio hues."""

from __future__ import annotations

import colorsys

import numpy as np

_BASE = np.asarray(
    [
        (230, 25, 75),  # red
        (60, 180, 75),  # green
        (0, 130, 200),  # blue
        (255, 225, 25),  # yellow
        (245, 130, 48),  # orange
        (145, 30, 180),  # purple
        (70, 240, 240),  # cyan
        (240, 50, 230),  # magenta
        (210, 245, 60),  # lime
        (250, 190, 212),  # pink
    ],
    dtype=np.uint8,
)
_GOLDEN = 0.618033988749895


def color_for(i: int) -> tuple[int, int, int]:
    """RGB colour of phrase / object number ``i`` (``>= 0``); the same ``i`` always gets the same colour."""
    if i < 0:
        raise ValueError(f"colour index must be >= 0, got {i}")
    if i < len(_BASE):
        r, g, b = _BASE[i].tolist()
        return r, g, b
    hue = (i * _GOLDEN) % 1.0
    r, g, b = colorsys.hsv_to_rgb(hue, 0.75, 0.95)
    return round(r * 255), round(g * 255), round(b * 255)


def palette(n: int) -> np.ndarray:
    """Colours of phrases ``0 .. n-1`` as uint8 ``(n, 3)`` RGB."""
    return np.asarray([color_for(i) for i in range(n)], dtype=np.uint8).reshape(n, 3)


def text_color(background: tuple[int, int, int] | np.ndarray) -> tuple[int, int, int]:
    """Black or white, whichever reads better on an RGB ``background`` (Rec. 601 luma threshold)."""
    r, g, b = (int(c) for c in background)
    return (0, 0, 0) if 0.299 * r + 0.587 * g + 0.114 * b > 140 else (255, 255, 255)
