"""``VideoClip``: decoded RGB frames of (part of) a video, with their frame numbers."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class VideoClip:
    """A run of decoded frames.

    Attributes:
        frames: ``(T, H, W, 3)`` uint8 RGB.
        frame_indices: ``(T,)`` int64 frame numbers in the source video, strictly increasing.
        fps: the source video's frame rate (frames per second).
        source: where the frames came from (a path), for messages.
    """

    frames: np.ndarray
    frame_indices: np.ndarray
    fps: float
    source: str = ""

    def __post_init__(self) -> None:
        frames = np.asarray(self.frames)
        if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
            raise ValueError(
                f"VideoClip.frames must be uint8 (T, H, W, 3), got {frames.dtype} {frames.shape}"
            )
        fi = np.asarray(self.frame_indices, dtype=np.int64).reshape(-1)
        if fi.shape[0] != frames.shape[0]:
            raise ValueError(f"VideoClip has {frames.shape[0]} frames but {fi.shape[0]} frame indices")
        if fi.shape[0] > 1 and np.any(np.diff(fi) <= 0):
            raise ValueError("VideoClip.frame_indices must be strictly increasing")
        object.__setattr__(self, "frames", frames)
        object.__setattr__(self, "frame_indices", fi)

    def __len__(self) -> int:
        return int(self.frames.shape[0])

    @property
    def size(self) -> tuple[int, int]:
        """``(H, W)`` of the frames."""
        return int(self.frames.shape[1]), int(self.frames.shape[2])

    def __getitem__(self, key: slice) -> VideoClip:
        if not isinstance(key, slice):
            raise TypeError("index a VideoClip with a slice; use .frames[i] for one frame")
        return VideoClip(self.frames[key], self.frame_indices[key], self.fps, self.source)
