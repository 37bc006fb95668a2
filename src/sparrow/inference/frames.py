"""Frames for inference: one interface over video files, frame folders, image lists and arrays, and a
lazy, bounded sequence of SAM2 inputs that streams the video while SAM2 tracks.

A :class:`FrameSource` yields uint8 RGB ``(H, W, 3)`` frames at the original resolution, by the
video's own frame numbers ``0 .. num_frames - 1``, in increasing order. :class:`SamFrames` turns a
source into a ``Sequence`` of preprocessed ``(3, S, S)`` float32 tensors that
:meth:`sparrow.models.SparrowModel.propagate` reads one index at a time: forward reads continue one
decoder; a backward read decodes the ``chunk`` frames ending at the wanted one; at most
``chunk + 2`` preprocessed frames are held. Memory therefore does not grow with the video.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Protocol

import numpy as np
from torch import Tensor

from sparrow.errors import ConfigError, VideoReadError
from sparrow.io import DEFAULT_FOLDER_FPS, VideoReader, open_video, read_rgb_image
from sparrow.io.writer import as_rgb_frame


class FrameSource(Protocol):
    """Frames of one video (see the module docstring)."""

    name: str
    num_frames: int
    size: tuple[int, int]
    fps: float

    def iter_frames(self, indices: np.ndarray) -> Iterator[tuple[int, np.ndarray]]:
        """Yield ``(frame number, uint8 RGB (H, W, 3))`` for strictly increasing ``indices``."""
        ...

    def close(self) -> None: ...


VideoInput = str | Path | VideoReader | np.ndarray | Sequence[np.ndarray] | Sequence[Path] | FrameSource
"""What the pipeline accepts as a video: a file or frame folder path, an open reader, a uint8 array
``(T, H, W, 3)`` / ``(T, H, W)``, a list of frames, a list of image paths, or a :class:`FrameSource`."""


class ReaderFrames:
    """A :class:`~sparrow.io.VideoReader` (file or frame folder) as a frame source."""

    def __init__(self, reader: VideoReader, *, owned: bool) -> None:
        self.reader = reader
        self.owned = owned
        info = reader.info
        self.name = str(info.path)
        self.num_frames = info.num_frames
        self.size = info.size
        self.fps = info.fps

    def iter_frames(self, indices: np.ndarray) -> Iterator[tuple[int, np.ndarray]]:
        return self.reader.iter_frames(indices)

    def close(self) -> None:
        if self.owned:
            self.reader.close()


class ArrayFrames:
    """Frames held in memory: uint8 ``(T, H, W, 3)`` RGB or ``(T, H, W)`` grey, or a list of frames."""

    def __init__(self, frames: np.ndarray | Sequence[np.ndarray], fps: float | None = None) -> None:
        self.frames = frames
        self.name = "<frames>"
        self.num_frames = len(frames)
        if self.num_frames == 0:
            raise VideoReadError("the video has no frames", fix="pass at least one frame")
        first = self._frame(0)
        self.size = (int(first.shape[0]), int(first.shape[1]))
        self.fps = DEFAULT_FOLDER_FPS if fps is None else float(fps)

    def _frame(self, i: int) -> np.ndarray:
        try:
            rgb = as_rgb_frame(self.frames[i], where=f"frame {i}")
        except ValueError as err:
            raise VideoReadError(
                str(err), fix="pass uint8 RGB (T, H, W, 3) or grey (T, H, W) frames"
            ) from err
        if i and rgb.shape[:2] != self.size:
            raise VideoReadError(
                f"frame {i} is {rgb.shape[1]}x{rgb.shape[0]}, frame 0 is {self.size[1]}x{self.size[0]}",
                fix="give frames of one size",
            )
        return rgb

    def iter_frames(self, indices: np.ndarray) -> Iterator[tuple[int, np.ndarray]]:
        for i in np.asarray(indices, dtype=np.int64).tolist():
            yield i, self._frame(i)

    def close(self) -> None:
        """Nothing to release."""


class ImageFileFrames:
    """An explicit list of image files (a dataset record's frames), decoded one at a time."""

    def __init__(self, paths: Sequence[str | Path], fps: float | None = None) -> None:
        self.paths = [Path(p) for p in paths]
        if not self.paths:
            raise VideoReadError("the video has no frames", fix="pass at least one image path")
        self.name = str(self.paths[0].parent)
        self.num_frames = len(self.paths)
        first = read_rgb_image(self.paths[0])
        self.size = (int(first.shape[0]), int(first.shape[1]))
        self.fps = DEFAULT_FOLDER_FPS if fps is None else float(fps)

    def iter_frames(self, indices: np.ndarray) -> Iterator[tuple[int, np.ndarray]]:
        for i in np.asarray(indices, dtype=np.int64).tolist():
            frame = read_rgb_image(self.paths[i])
            if frame.shape[:2] != self.size:
                raise VideoReadError(
                    f"frame is {frame.shape[1]}x{frame.shape[0]}, the first is {self.size[1]}x{self.size[0]}",
                    path=self.paths[i],
                    fix="resize all frames of the video to one size",
                )
            yield i, frame

    def close(self) -> None:
        """Nothing to release."""


def open_frames(video: VideoInput, *, fps: float | None = None) -> FrameSource:
    """A :class:`FrameSource` for any :data:`VideoInput`.

    Args:
        video: see :data:`VideoInput`. A path is opened with :func:`sparrow.io.open_video` (streamed).
        fps: frame rate of a folder / array (files keep theirs unless this overrides it).

    Raises:
        VideoReadError: missing, empty, corrupt or unsupported video.
        ConfigError: an object that is not a video.
    """
    if hasattr(video, "iter_frames") and hasattr(video, "num_frames") and not isinstance(video, VideoReader):
        return video  # already a FrameSource
    if isinstance(video, str | Path):
        reader = open_video(video, fps=fps)
        if reader.info.num_frames == 0:
            reader.close()
            raise VideoReadError("the video has no frames", path=video, fix="give a video with frames")
        return ReaderFrames(reader, owned=True)
    if isinstance(video, VideoReader):
        return ReaderFrames(video, owned=False)
    if isinstance(video, np.ndarray):
        if video.ndim not in (3, 4):
            raise VideoReadError(
                f"a video array must be (T, H, W, 3) or (T, H, W), got shape {video.shape}",
                fix="stack the frames along a first axis",
            )
        return ArrayFrames(video, fps)
    if isinstance(video, Sequence) and not isinstance(video, bytes):
        if len(video) and isinstance(video[0], str | Path):
            return ImageFileFrames(video, fps)  # type: ignore[arg-type]
        return ArrayFrames(video, fps)  # type: ignore[arg-type]
    raise ConfigError(
        f"cannot read a video from a {type(video).__name__}",
        fix="give a video file or frame-folder path, a VideoReader, or uint8 frames (T, H, W, 3)",
    )


def read_frames(source: FrameSource, indices: Sequence[int] | np.ndarray) -> np.ndarray:
    """Decode the frames at ``indices`` (any order, repeats allowed) -> uint8 ``(K, H, W, 3)``."""
    wanted = np.asarray(indices, dtype=np.int64).reshape(-1)
    unique = np.unique(wanted)
    decoded = dict(source.iter_frames(unique))
    h, w = source.size
    out = np.empty((len(wanted), h, w, 3), dtype=np.uint8)
    for k, i in enumerate(wanted.tolist()):
        out[k] = decoded[i]
    return out


class SparseFrames:
    """The frames of a video at a few indices, indexable like the whole clip.

    ``len()`` is the video's frame count and ``frames[idx]`` (an index array) returns the stacked
    frames, as :meth:`sparrow.models.SparrowProcessor.encoder_inputs` indexes a clip -- so the
    processor samples exactly the frames it would sample from the whole video, while only those are
    decoded.
    """

    def __init__(self, source: FrameSource, indices: np.ndarray) -> None:
        self.num_frames = source.num_frames
        unique = np.unique(np.asarray(indices, dtype=np.int64))
        self._frames = dict(source.iter_frames(unique))

    def __len__(self) -> int:
        return self.num_frames

    def __getitem__(self, idx: np.ndarray) -> np.ndarray:
        wanted = np.asarray(idx, dtype=np.int64).reshape(-1)
        missing = sorted(set(wanted.tolist()) - set(self._frames))
        if missing:
            raise KeyError(f"frames {missing[:5]} were not decoded")
        return np.stack([self._frames[i] for i in wanted.tolist()])


class SamFrames(Sequence[Tensor]):
    """Lazy SAM2 inputs of a whole video: ``frames[t]`` is ``(3, S, S)`` float32 (see the module
    docstring for the streaming and the memory bound).

    Args:
        source: the video.
        preprocess: uint8 ``(1, H, W, 3)`` -> ``(1, 3, S, S)`` (``SparrowProcessor.sam_inputs``).
        chunk: frames decoded per backward step (also bounds the cache).
    """

    def __init__(
        self, source: FrameSource, preprocess: Callable[[np.ndarray], Tensor], chunk: int = 16
    ) -> None:
        self.source = source
        self.preprocess = preprocess
        self.chunk = max(1, int(chunk))
        self._cache: dict[int, Tensor] = {}
        self._stream: Iterator[tuple[int, np.ndarray]] | None = None
        self._next = 0
        self._last = -1
        self.decoded = 0  # frames decoded so far (a test / benchmark counter)

    def __len__(self) -> int:
        return self.source.num_frames

    def __getitem__(self, t: int) -> Tensor:  # type: ignore[override]
        n = len(self)
        t = int(t)
        if t < 0:
            t += n
        if not 0 <= t < n:
            raise IndexError(f"frame {t} outside [0, {n})")
        hit = self._cache.get(t)
        if hit is None:
            if t >= self._last:
                self._forward(t)
            else:
                self._backward(t)
            hit = self._cache[t]
        self._last = t
        return hit

    def _put(self, t: int, frame: np.ndarray, keep: range) -> None:
        """Cache frame ``t``; beyond the bound, drop the frames outside ``keep`` farthest from it."""
        self._cache[t] = self.preprocess(np.array(frame[None]))[0]  # a writable copy for torch
        self.decoded += 1
        excess = len(self._cache) - (self.chunk + 2)
        if excess > 0:
            centre = keep[-1]
            others = sorted(
                (i for i in self._cache if i not in keep), key=lambda i: abs(i - centre), reverse=True
            )
            for old in others[:excess]:
                del self._cache[old]

    def _forward(self, t: int) -> None:
        if self._stream is None or not self._next <= t < self._next + self.chunk:
            self._close_stream()
            self._stream = self.source.iter_frames(np.arange(t, len(self), dtype=np.int64))
            self._next = t
        while self._next <= t:
            index, frame = next(self._stream)
            self._put(index, frame, keep=range(index, t + 1))
            self._next = index + 1

    def _backward(self, t: int) -> None:
        self._close_stream()
        start = max(0, t - self.chunk + 1)
        for index, frame in self.source.iter_frames(np.arange(start, t + 1, dtype=np.int64)):
            self._put(index, frame, keep=range(start, t + 1))

    def _close_stream(self) -> None:
        close = getattr(self._stream, "close", None)
        if close is not None:
            close()
        self._stream = None

    def close(self) -> None:
        """Stop the running decoder and drop the cached frames."""
        self._close_stream()
        self._cache.clear()


class FrameView(Sequence[Tensor]):
    """``view[i] = frames[order[i]]``: a sub-sequence (e.g. ``range(t, -1, -1)``: backward from ``t``)."""

    def __init__(self, frames: Sequence[Tensor], order: range) -> None:
        self.frames = frames
        self.order = order

    def __len__(self) -> int:
        return len(self.order)

    def __getitem__(self, i: int) -> Tensor:  # type: ignore[override]
        return self.frames[self.order[i]]
