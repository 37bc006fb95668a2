"""Choosing which frames of a video to read: all, every k-th, at a target rate, N uniform, or explicit.

Every mode returns the video's own frame numbers as a strictly increasing ``(K,)`` int64 array, so the
result can be passed straight to :meth:`sparrow.io.VideoReader.iter_frames` and a
:class:`~sparrow.structures.VideoClip`. Invalid arguments raise :class:`ValueError` naming the
argument; the CLI turns them into usage errors.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

# Slack for float rounding when mapping times to frame numbers (``0.1 * 30`` must land on frame 3).
_EPS = 1e-6


def sample_frame_indices(
    num_frames: int,
    fps: float | None = None,
    *,
    every: int | None = None,
    at_fps: float | None = None,
    num: int | None = None,
    indices: Sequence[int] | np.ndarray | None = None,
) -> np.ndarray:
    """Frame numbers to read from a video of ``num_frames`` frames at ``fps`` frames per second.

    Give at most one mode; with none, every frame is returned.

    Args:
        num_frames: frames in the video (``>= 0``).
        fps: the video's frame rate; required only by ``at_fps``.
        every: keep frames ``0, k, 2k, ...`` (``k >= 1``).
        at_fps: resample to this rate (``> 0``): for each time ``j / at_fps`` inside the video, the
            frame shown at that time, ``floor(j * fps / at_fps)``. A rate at or above ``fps`` keeps
            every frame (frames are never repeated).
        num: ``N`` frames spread uniformly from the first to the last frame, both included
            (``round(linspace(0, num_frames - 1, N))``); ``1 <= N <= num_frames``.
        indices: explicit frame numbers; must be integers, strictly increasing and in
            ``[0, num_frames)``.

    Returns:
        ``(K,)`` int64 strictly increasing frame numbers.

    Raises:
        ValueError: more than one mode, or an argument out of range.
    """
    if isinstance(num_frames, bool) or int(num_frames) != num_frames or num_frames < 0:
        raise ValueError(f"num_frames must be an integer >= 0, got {num_frames!r}")
    n = int(num_frames)
    given = {
        k: v
        for k, v in {"every": every, "at_fps": at_fps, "num": num, "indices": indices}.items()
        if v is not None
    }
    if len(given) > 1:
        raise ValueError(f"choose one sampling mode, got {sorted(given)}")
    if every is not None:
        return np.arange(0, n, _positive_int(every, "every"), dtype=np.int64)
    if at_fps is not None:
        return _at_fps(n, fps, at_fps)
    if num is not None:
        k = _positive_int(num, "num")
        if k > n:
            raise ValueError(f"num={k} asks for more frames than the video has ({n}); use num <= {n}")
        return np.unique(np.round(np.linspace(0, n - 1, k)).astype(np.int64))
    if indices is not None:
        return _check_indices(indices, n)
    return np.arange(n, dtype=np.int64)


def _positive_int(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    return int(value)


def _at_fps(n: int, fps: float | None, target: float) -> np.ndarray:
    if fps is None or not math.isfinite(fps) or fps <= 0:
        raise ValueError(f"at_fps needs the video's frame rate (fps > 0), got fps={fps!r}")
    if isinstance(target, bool) or not math.isfinite(target) or target <= 0:
        raise ValueError(f"at_fps must be a rate > 0, got {target!r}")
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    count = math.ceil(n * target / fps - _EPS)
    picked = np.floor(np.arange(count) * (fps / target) + _EPS).astype(np.int64)
    return np.unique(picked[picked < n])


def _check_indices(indices: Sequence[int] | np.ndarray, n: int) -> np.ndarray:
    arr = np.asarray(indices)
    if arr.ndim != 1:
        raise ValueError(f"indices must be a 1-D sequence of frame numbers, got shape {arr.shape}")
    if arr.size == 0:
        return np.zeros(0, dtype=np.int64)
    whole_floats = np.issubdtype(arr.dtype, np.floating) and bool(np.all(arr == np.round(arr)))
    if not (np.issubdtype(arr.dtype, np.integer) or whole_floats):  # numpy bools are not integers
        raise ValueError(f"indices must be integers, got dtype {arr.dtype}")
    arr = arr.astype(np.int64)
    bad = arr[(arr < 0) | (arr >= n)]
    if bad.size:
        raise ValueError(f"frame indices {bad[:5].tolist()} are out of range for a video of {n} frames")
    if np.any(np.diff(arr) <= 0):
        raise ValueError("indices must be strictly increasing (sort them and drop duplicates)")
    return arr
