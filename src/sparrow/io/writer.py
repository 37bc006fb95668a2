"""Writing videos (H.264 through PyAV), frame folders and single images -- all atomically.

``write_video`` encodes with libx264, ``yuv420p`` (plays everywhere), CRF 18 by default and a key
frame every 2 seconds (cheap seeks for :class:`~sparrow.io.VideoReader`). H.264 4:2:0 needs even
sides, so a frame of odd width or height is padded by repeating its last column / row; the original
size goes into the container's ``comment`` tag and :func:`sparrow.io.probe_video` / the reader crop
back to it. Other players show the one-pixel pad.

Every writer writes under a temporary name beside the destination and renames it at the end: after
an error (bad frame, empty input, full disk, Ctrl-C) nothing is left behind.
"""

from __future__ import annotations

from collections.abc import Iterable
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
from PIL import Image

from sparrow.errors import VideoWriteError

from .atomic import atomic_dir, atomic_file
from .pyav_source import original_size_tag

_CONTAINERS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska"}
_IMAGE_FORMATS = {"jpg": "JPEG", "jpeg": "JPEG", "png": "PNG"}
KEYFRAME_SECONDS = 2.0


def as_rgb_frame(frame: Any, *, where: str = "frame") -> np.ndarray:
    """Check and convert one frame: uint8 ``(H, W, 3)`` RGB or ``(H, W)`` / ``(H, W, 1)`` grey -> RGB.

    Raises:
        ValueError: wrong dtype or shape.
    """
    arr = np.asarray(frame)
    if arr.dtype != np.uint8:
        raise ValueError(f"{where} must be uint8, got {arr.dtype}")
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=2)
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.shape[0] < 1 or arr.shape[1] < 1:
        raise ValueError(f"{where} must be (H, W, 3) RGB or (H, W) grey, got shape {arr.shape}")
    return arr


def _pad_even(rgb: np.ndarray) -> np.ndarray:
    h, w = rgb.shape[:2]
    if h % 2 == 0 and w % 2 == 0:
        return rgb
    return np.pad(rgb, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")


def write_video(
    path: str | Path,
    frames: Iterable[np.ndarray],
    fps: float,
    *,
    crf: int = 18,
    preset: str = "veryfast",
) -> int:
    """Encode frames to an H.264 video (``.mp4 .m4v .mov .mkv``), streaming, atomically.

    Args:
        path: output file; its extension picks the container. Parent folders are created.
        frames: uint8 RGB ``(H, W, 3)`` (or grey ``(H, W)``) frames, all of one size; consumed once.
        fps: frames per second (``> 0``).
        crf: x264 constant rate factor (0 lossless luma .. 51; 18 is visually lossless).
        preset: x264 speed preset (``ultrafast`` .. ``veryslow``).

    Returns:
        the number of frames written.

    Raises:
        VideoWriteError: unsupported extension, no frames, a frame of the wrong size / dtype, or an
            encoder error. Nothing is left at ``path`` (nor a temporary file) in that case.
    """
    path = Path(path)
    fmt = _CONTAINERS.get(path.suffix.lower())
    if fmt is None:
        raise VideoWriteError(
            f"cannot write H.264 into {path.suffix or '(no extension)'!r}",
            path=path,
            fix=f"use one of {' '.join(_CONTAINERS)}",
        )
    if not fps > 0:
        raise VideoWriteError(f"fps must be > 0, got {fps!r}", path=path, fix="pass the video's frame rate")
    count = 0
    with atomic_file(path) as tmp:
        try:
            with av.open(str(tmp), mode="w", format=fmt, options=_mux_options(fmt)) as container:
                stream = None
                size = None
                for frame in frames:
                    rgb = as_rgb_frame(frame, where=f"frame {count}")
                    if stream is None:
                        size = rgb.shape[:2]
                        stream = _add_stream(container, size, fps, crf, preset)
                    elif rgb.shape[:2] != size:
                        raise ValueError(
                            f"frame {count} is {rgb.shape[1]}x{rgb.shape[0]}, the first was {size[1]}x{size[0]}"
                        )
                    video_frame = av.VideoFrame.from_ndarray(
                        np.ascontiguousarray(_pad_even(rgb)), format="rgb24"
                    )
                    container.mux(stream.encode(video_frame))
                    count += 1
                if stream is None:
                    raise ValueError("no frames to write")
                container.mux(stream.encode(None))
        except (ValueError, av.FFmpegError) as err:
            raise VideoWriteError(
                f"cannot write video: {err}", path=path, fix="check the frames passed"
            ) from err
    return count


def _mux_options(fmt: str) -> dict[str, str]:
    return {"movflags": "+faststart"} if fmt in ("mp4", "mov") else {}


def _add_stream(container: Any, size: tuple[int, int], fps: float, crf: int, preset: str) -> Any:
    h, w = size
    if h % 2 or w % 2:
        container.metadata["comment"] = original_size_tag(h, w)
    rate = Fraction(fps).limit_denominator(1001)
    stream = container.add_stream("libx264", rate=rate)
    stream.width, stream.height = w + w % 2, h + h % 2
    stream.pix_fmt = "yuv420p"
    stream.options = {"crf": str(crf), "preset": preset, "g": str(max(1, round(fps * KEYFRAME_SECONDS)))}
    return stream


def write_frame_folder(
    folder: str | Path,
    frames: Iterable[np.ndarray | tuple[int, np.ndarray]],
    *,
    start: int = 0,
    ext: str = "jpg",
    name_format: str = "{:05d}",
    quality: int = 95,
    overwrite: bool = False,
) -> int:
    """Write one image per frame into a new folder, atomically.

    Args:
        folder: the folder to create (written under a temporary name, renamed at the end).
        frames: uint8 RGB ``(H, W, 3)`` / grey ``(H, W)`` frames named ``start, start + 1, ...``, or
            ``(frame number, frame)`` pairs (as :meth:`sparrow.io.VideoReader.iter_frames` yields)
            named by their number.
        start: number of the first frame when plain frames are given.
        ext: ``jpg``, ``jpeg`` or ``png``.
        name_format: ``str.format`` pattern of the file stem, given the frame number.
        quality: JPEG quality (1..95).
        overwrite: replace an existing ``folder``.

    Returns:
        the number of images written.

    Raises:
        VideoWriteError: unknown ``ext``, ``folder`` exists (without ``overwrite``), a bad frame, two
            frames with one name, or no frames. Nothing is left behind in that case.
    """
    folder = Path(folder)
    image_format = _IMAGE_FORMATS.get(ext.lower().lstrip("."))
    if image_format is None:
        raise VideoWriteError(f"unknown image extension {ext!r}", path=folder, fix="use jpg or png")
    suffix = "." + ext.lower().lstrip(".")
    count = 0
    with atomic_dir(folder, overwrite=overwrite) as tmp:
        try:
            for item in frames:
                number, frame = item if isinstance(item, tuple) else (start + count, item)
                target = tmp / f"{name_format.format(number)}{suffix}"
                if target.exists():
                    raise ValueError(f"two frames are both named {target.name}")
                image = Image.fromarray(as_rgb_frame(frame, where=f"frame {number}"))
                image.save(
                    target, format=image_format, **({"quality": quality} if image_format == "JPEG" else {})
                )
                count += 1
        except (ValueError, OSError) as err:
            raise VideoWriteError(
                f"cannot write frame folder: {err}", path=folder, fix="check the frames passed"
            ) from err
        if count == 0:
            raise VideoWriteError("no frames to write", path=folder, fix="pass at least one frame")
    return count


def write_image(path: str | Path, image: np.ndarray, *, quality: int = 95) -> None:
    """Write a uint8 RGB ``(H, W, 3)`` or grey ``(H, W)`` image (``.png .jpg .jpeg``) atomically."""
    path = Path(path)
    image_format = _IMAGE_FORMATS.get(path.suffix.lower().lstrip("."))
    if image_format is None:
        raise VideoWriteError(f"unknown image extension {path.suffix!r}", path=path, fix="use .png or .jpg")
    try:
        pil = Image.fromarray(as_rgb_frame(image, where="image"))
    except ValueError as err:
        raise VideoWriteError(f"cannot write image: {err}", path=path, fix="pass a uint8 image") from err
    with atomic_file(path) as tmp:
        pil.save(tmp, format=image_format, **({"quality": quality} if image_format == "JPEG" else {}))
