"""Reading videos: ``probe_video``, ``open_video`` and the streaming :class:`VideoReader`.

A video is a container file (``.mp4 .m4v .mov .mkv .webm .avi``, decoded through PyAV) or a frame
folder (jpg / jpeg / png, natural sort). Either way frames come out as uint8 RGB ``(H, W, 3)`` at the
original size (greyscale inputs are expanded to three equal channels), numbered by the video's own
frame numbers ``0 .. num_frames - 1``. Memory stays flat for any video length: frames are decoded in
order and only the frames of the current window are held.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import Protocol

import numpy as np

from sparrow.errors import VideoReadError
from sparrow.structures import VideoClip

from .frame_folder import FolderSource
from .info import VideoInfo
from .pyav_source import PyAVSource
from .sampling import sample_frame_indices

Indices = Sequence[int] | np.ndarray


class _Source(Protocol):
    info: VideoInfo

    def frames(self, wanted: np.ndarray) -> Iterator[tuple[int, np.ndarray]]: ...

    def close(self) -> None: ...


def _open_source(path: str | Path, fps: float | None) -> _Source:
    path = Path(path)
    if fps is not None and (isinstance(fps, bool) or not math.isfinite(fps) or fps <= 0):
        raise ValueError(f"fps must be a finite rate > 0, got {fps!r}")
    if path.is_dir():
        return FolderSource(path, fps)
    return PyAVSource(path, fps)


def probe_video(path: str | Path, *, fps: float | None = None) -> VideoInfo:
    """Frame count, rate, size, duration and codec of a video file or frame folder.

    A file is demuxed once (packets read, nothing decoded) so the frame count is exact and a truncated
    file is caught here; a folder has every image header read to check the frames share one size.

    Args:
        path: a video file or a frame folder.
        fps: frame rate of a frame folder (default :data:`~sparrow.io.info.DEFAULT_FOLDER_FPS`); for a
            file it overrides the container's rate.

    Raises:
        VideoReadError: missing path, empty / truncated / corrupt file, unsupported extension, empty
            folder, or a folder mixing frame sizes.
    """
    source = _open_source(path, fps)
    source.close()
    return source.info


def open_video(path: str | Path, *, fps: float | None = None) -> VideoReader:
    """Open a video file or frame folder for streamed reading (see :func:`probe_video` for args)."""
    return VideoReader(path, fps=fps)


class VideoReader:
    """Streamed access to the frames of one video; a context manager.

    Every iteration opens its own decoder, so several iterators may run at once and a reader may be
    iterated any number of times. Frames are uint8 RGB ``(H, W, 3)`` at the original size.

    Attributes:
        info: the video's :class:`~sparrow.io.VideoInfo`.
    """

    def __init__(self, path: str | Path, *, fps: float | None = None) -> None:
        self._source = _open_source(path, fps)
        self.info: VideoInfo = self._source.info

    @property
    def path(self) -> Path:
        return self.info.path

    def __len__(self) -> int:
        return self.info.num_frames

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """Release the source (iterators still running keep their own decoder until exhausted)."""
        self._source.close()

    def check_indices(self, indices: Indices | None) -> np.ndarray:
        """Validate frame numbers for this video -> ``(K,)`` int64; ``None`` means every frame.

        Raises:
            VideoReadError: a frame number is out of range, not an integer, or not strictly increasing.
        """
        try:
            return sample_frame_indices(self.info.num_frames, indices=indices)
        except ValueError as err:
            raise VideoReadError(
                f"bad frame indices: {err}",
                path=self.path,
                fix=f"use strictly increasing frame numbers in 0..{self.info.num_frames - 1}",
            ) from err

    def iter_frames(self, indices: Indices | None = None) -> Iterator[tuple[int, np.ndarray]]:
        """Yield ``(frame number, uint8 RGB (H, W, 3))`` for each wanted frame, in order.

        Args:
            indices: strictly increasing frame numbers (e.g. from
                :func:`~sparrow.io.sample_frame_indices`); ``None`` for every frame.

        Raises:
            VideoReadError: an index is out of range (raised before decoding starts), or the file turns
                out truncated or corrupt while decoding.
        """
        wanted = self.check_indices(indices)
        return self._source.frames(wanted)

    def read(self, indices: Indices | None = None) -> VideoClip:
        """Decode the wanted frames (all by default) into one :class:`~sparrow.structures.VideoClip`.

        Holds every wanted frame in memory: use :meth:`windows` or :meth:`iter_frames` for long videos.
        """
        wanted = self.check_indices(indices)
        h, w = self.info.size
        frames = np.empty((len(wanted), h, w, 3), dtype=np.uint8)
        for k, (_, frame) in enumerate(self._source.frames(wanted)):
            frames[k] = frame
        return VideoClip(frames, wanted, self.info.fps, str(self.path))

    def windows(
        self, size: int, *, indices: Indices | None = None, stride: int | None = None
    ) -> Iterator[VideoClip]:
        """Stream the wanted frames as clips of up to ``size`` consecutive wanted frames.

        Windows start every ``stride`` positions of ``indices`` (window ``j`` holds wanted frames
        ``j * stride .. j * stride + size - 1``) until one reaches the last wanted frame; that last
        window is shorter when the frames run out, so every window is non-empty and none is a subset
        of the one before. ``stride < size`` overlaps windows; ``stride > size`` skips the frames
        between them. At most ``size`` decoded frames are held at any time.

        Args:
            size: frames per window (``>= 1``).
            indices: strictly increasing frame numbers; ``None`` for every frame.
            stride: positions between window starts (``>= 1``); defaults to ``size`` (no overlap).

        Yields:
            :class:`~sparrow.structures.VideoClip` with ``frames`` uint8 ``(t, H, W, 3)``, ``t <= size``.
        """
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ValueError(f"window size must be an integer >= 1, got {size!r}")
        stride = size if stride is None else stride
        if isinstance(stride, bool) or not isinstance(stride, int) or stride < 1:
            raise ValueError(f"stride must be an integer >= 1, got {stride!r}")
        wanted = self.check_indices(indices)
        starts = window_starts(len(wanted), size, stride)
        if not starts:
            return
        # Only frames inside some window are converted and buffered.
        keep = np.zeros(len(wanted), dtype=bool)
        for s in starts:
            keep[s : s + size] = True
        positions = np.flatnonzero(keep).tolist()
        buffer: deque[tuple[int, int, np.ndarray]] = deque()  # (position, frame number, frame)
        w = 0
        for pos, (index, frame) in zip(positions, self._source.frames(wanted[keep]), strict=True):
            buffer.append((pos, index, frame))
            while w < len(starts) and pos == min(starts[w] + size, len(wanted)) - 1:
                yield VideoClip(
                    np.stack([item[2] for item in buffer]),
                    np.asarray([item[1] for item in buffer], dtype=np.int64),
                    self.info.fps,
                    str(self.path),
                )
                w += 1
                while buffer and w < len(starts) and buffer[0][0] < starts[w]:
                    buffer.popleft()


def window_starts(count: int, size: int, stride: int) -> list[int]:
    """Start positions of the windows :meth:`VideoReader.windows` makes over ``count`` frames."""
    starts: list[int] = []
    for s in range(0, count, stride):
        starts.append(s)
        if s + size >= count:
            break
    return starts
