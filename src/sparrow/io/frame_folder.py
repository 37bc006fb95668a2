"""Frame folders: one image (jpg / jpeg / png) per frame, ordered by natural sort of the file names.

Frame ``i`` of a folder is its ``i``-th image in natural order (``frame2.jpg`` before
``frame10.jpg``); the numbers in the names are not used as frame numbers. Files with other
extensions and hidden files are ignored. Images are decoded with PIL and converted to RGB
(greyscale, palette and RGBA images included); EXIF orientation is not applied.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import numpy as np
from PIL import Image

from sparrow.errors import VideoReadError

from .info import DEFAULT_FOLDER_FPS, IMAGE_EXTENSIONS, VideoInfo

_DIGITS = re.compile(r"(\d+)")
_FORMAT_NAMES = {".jpg": "jpeg", ".jpeg": "jpeg", ".png": "png"}
T = TypeVar("T")


def natural_key(name: str) -> tuple[tuple[int, int | str], ...]:
    """Sort key that orders embedded numbers by value: ``frame2`` < ``frame10`` < ``frame10b``."""
    return tuple(
        (0, int(part)) if part.isdigit() else (1, part.lower()) for part in _DIGITS.split(name) if part
    )


def list_frame_files(folder: str | Path) -> list[Path]:
    """Image files of ``folder`` in natural order.

    Raises:
        VideoReadError: the folder is missing or holds no jpg / jpeg / png image.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise VideoReadError("frame folder not found", path=folder, fix="check the path")
    files = [
        p
        for p in folder.iterdir()
        if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_EXTENSIONS
    ]
    if not files:
        raise VideoReadError(
            "frame folder holds no images",
            path=folder,
            fix=f"put one {'/'.join(e[1:] for e in IMAGE_EXTENSIONS)} file per frame in it",
        )
    return sorted(files, key=lambda p: natural_key(p.name))


def _decode(path: Path, read: Callable[[Image.Image], T]) -> T:
    """``read(image)`` on the opened image file; unreadable files raise :class:`VideoReadError`."""
    try:
        with Image.open(path) as im:
            return read(im)
    except (OSError, ValueError) as err:
        raise VideoReadError(
            f"cannot read frame image ({err})", path=path, fix="re-export or remove this frame"
        ) from err


def image_size(path: str | Path) -> tuple[int, int]:
    """``(H, W)`` of an image file, read from its header.

    Raises:
        VideoReadError: the file is missing, truncated or not an image.
    """
    return _decode(Path(path), lambda im: (im.height, im.width))


def read_rgb_image(path: str | Path) -> np.ndarray:
    """Decode an image file to uint8 RGB ``(H, W, 3)``.

    Raises:
        VideoReadError: the file is missing, truncated or not an image.
    """
    return _decode(Path(path), lambda im: np.asarray(im.convert("RGB"), dtype=np.uint8))


class FolderSource:
    """Frames of a frame folder; every image header is checked for a common size when it is opened."""

    def __init__(self, folder: str | Path, fps: float | None = None) -> None:
        folder = Path(folder)
        self.files = list_frame_files(folder)
        sizes = {}
        for f in self.files:
            sizes.setdefault(image_size(f), f)
        if len(sizes) > 1:
            listed = ", ".join(f"{f.name} is {w}x{h}" for (h, w), f in list(sizes.items())[:3])
            raise VideoReadError(
                f"frame folder mixes frame sizes ({listed})",
                path=folder,
                fix="resize all frames to one size or split the folder",
            )
        (height, width) = next(iter(sizes))
        rate = DEFAULT_FOLDER_FPS if fps is None else float(fps)
        codec = "+".join(sorted({_FORMAT_NAMES[f.suffix.lower()] for f in self.files}))
        n = len(self.files)
        self.info = VideoInfo(folder, "folder", n, rate, height, width, n / rate, codec)

    def frames(self, wanted: np.ndarray) -> Iterator[tuple[int, np.ndarray]]:
        """Yield ``(frame number, uint8 RGB (H, W, 3))`` for the strictly increasing ``wanted`` numbers."""
        for i in wanted.tolist():
            yield i, read_rgb_image(self.files[i])

    def close(self) -> None:
        """Nothing to release: each image is opened and closed as it is read."""
