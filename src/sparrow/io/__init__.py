"""Video reading (streamed) and writing, frame sampling, and mask image files."""

from __future__ import annotations

from .mask_files import davis_palette, read_gray_png, read_index_png, write_binary_png, write_index_png

__all__ = ["davis_palette", "read_gray_png", "read_index_png", "write_binary_png", "write_index_png"]
