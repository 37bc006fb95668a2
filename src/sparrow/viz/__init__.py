"""Overlays on frames and videos: masks, boxes, labels, presence bars, overlay videos, contact sheets."""

from __future__ import annotations

from .annotators import BoxAnnotator, LabelAnnotator, MaskAnnotator, TimeBarAnnotator, presence_columns
from .colors import color_for, palette, text_color
from .overlay import OverlayStyle, contact_sheet, render_overlay, write_overlay_video

__all__ = [
    "BoxAnnotator",
    "LabelAnnotator",
    "MaskAnnotator",
    "OverlayStyle",
    "TimeBarAnnotator",
    "color_for",
    "contact_sheet",
    "palette",
    "presence_columns",
    "render_overlay",
    "text_color",
    "write_overlay_video",
]
