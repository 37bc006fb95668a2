"""Mask image files: palette (indexed) PNGs with object ids, and binary PNGs.

Reading semantics follow the official evaluators (see ``specs/METRICS.md``):

- :func:`read_index_png` returns the palette indices (PIL ``P`` mode) or the grey values of an
  ``L`` image, as uint8 ``(H, W)`` -- the DAVIS reading, where 255 is void.
- :func:`read_gray_png` returns what ``cv2.imread(path, IMREAD_GRAYSCALE)`` returns, uint8 ``(H, W)``:
  a palette PNG is converted to luminance -- the MeViS / ReVOS reading.

Writers go through a temporary name and a rename, so a crash never leaves a half-written PNG.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from sparrow.errors import DataFormatError
from sparrow.io.atomic import atomic_file


def davis_palette() -> np.ndarray:
    """The DAVIS / PASCAL VOC colour map: ``(256, 3)`` uint8, index 0 black, 255 the void colour."""
    palette = np.zeros((256, 3), dtype=np.uint8)
    for i in range(256):
        c, r, g, b = i, 0, 0, 0
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        palette[i] = (r, g, b)
    return palette


def _save_png(image: Image.Image, path: Path) -> None:
    with atomic_file(path) as tmp:
        image.save(tmp, format="PNG")


def write_index_png(path: str | Path, labels: np.ndarray, palette: np.ndarray | None = None) -> None:
    """Write uint8 object ids ``(H, W)`` (0 = background) as a palette PNG (DAVIS palette by default)."""
    arr = np.asarray(labels)
    if arr.ndim != 2:
        raise ValueError(f"labels must be (H, W), got {arr.shape}")
    if arr.size and (arr.min() < 0 or arr.max() > 255):
        raise ValueError("object ids must lie in 0..255")
    image = Image.fromarray(arr.astype(np.uint8), mode="P")
    image.putpalette(
        (davis_palette() if palette is None else np.asarray(palette, np.uint8)).reshape(-1).tolist()
    )
    _save_png(image, Path(path))


def write_binary_png(path: str | Path, mask: np.ndarray, value: int = 255) -> None:
    """Write a bool mask ``(H, W)`` as an ``L``-mode PNG with foreground ``value`` (255 or 1)."""
    arr = np.asarray(mask, dtype=bool)
    if arr.ndim != 2:
        raise ValueError(f"mask must be (H, W), got {arr.shape}")
    _save_png(Image.fromarray(arr.astype(np.uint8) * np.uint8(value), mode="L"), Path(path))


def read_index_png(path: str | Path, *, convert: bool = True) -> np.ndarray:
    """Palette indices (or ``L`` grey values) of a PNG as uint8 ``(H, W)``, as PIL reads them.

    Other modes (RGB, RGBA, ...) are converted to ``L`` grey values when ``convert`` is true; with
    ``convert=False`` they raise :class:`DataFormatError` (object ids cannot be recovered from colours --
    the DAVIS evaluator's reading).
    """
    path = Path(path)
    if not path.is_file():
        raise DataFormatError("mask file not found", path=path, fix="check the folder layout and frame names")
    try:
        with Image.open(path) as im:
            if im.mode not in ("P", "L", "1", "I", "I;16"):
                if not convert:
                    raise DataFormatError(
                        f"mask PNG is in {im.mode} mode, not an indexed (P) or greyscale (L) image of object ids",
                        path=path,
                        fix="save each frame as a single-channel palette PNG whose pixel values are object ids",
                    )
                im = im.convert("L")
            arr = np.array(im)
    except (OSError, ValueError) as err:
        raise DataFormatError(
            f"cannot read mask PNG ({err})", path=path, fix="re-export the mask as a PNG"
        ) from err
    if arr.dtype == bool:
        arr = arr.astype(np.uint8)
    return arr.astype(np.uint8) if arr.dtype != np.uint8 else arr


def read_gray_png(path: str | Path) -> np.ndarray:
    """Grey values of an image as ``cv2.imread(path, IMREAD_GRAYSCALE)`` gives them, uint8 ``(H, W)``."""
    path = Path(path)
    arr = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if arr is None:
        raise DataFormatError(
            "mask file missing or unreadable", path=path, fix="check the folder layout and frame names"
        )
    return arr
