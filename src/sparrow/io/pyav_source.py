"""Video files decoded through PyAV (FFmpeg): exact frame counts, streamed decoding, seeks that pay.

Opening a file demuxes every packet of its video stream once, without decoding (about the cost of
reading the file from disk: well under a millisecond per 1,000 packets once the file is cached). This
packet table gives

- the exact frame count, whatever the container's header says (Matroska / WebM store none), and
  detects truncation: a cut packet, fewer packets than the header promises (MP4), or packets that
  cover less time than the stream's stated duration (Matroska's ``DURATION`` tag);
- the presentation timestamp of every frame, so a decoded frame's number is the rank of its
  timestamp (robust to variable frame rates and to where a seek lands);
- the key frames, so :meth:`PyAVSource.frames` seeks only when a key frame lies between the decoder's
  position and the next wanted frame (decoding from there is then strictly less work).

The table holds 9 bytes per frame (about 1 MB for an hour at 30 fps); decoded frames are never kept.
Files written by :func:`sparrow.io.write_video` with an odd width or height were padded to even
size for H.264 4:2:0; the original size is stored in the container's ``comment`` tag and frames are
cropped back to it here.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import av
import numpy as np

from sparrow.errors import VideoReadError

from .info import VIDEO_EXTENSIONS, VideoInfo

SIZE_TAG = "sparrow-original-size"
"""Prefix of the ``comment`` tag that records the size before padding: ``sparrow-original-size=WxH``."""

_SIZE_RE = re.compile(rf"{SIZE_TAG}=(\d+)x(\d+)")
_DURATION_RE = re.compile(r"(\d+):(\d{2}):(\d{2}(?:\.\d+)?)")
_NO_PTS = np.iinfo(np.int64).min  # stands for a packet without a timestamp
_CORRUPT_FIX = "re-encode or re-download the file (e.g. `ffmpeg -i in.mp4 -c:v libx264 out.mp4`)"


def original_size_tag(height: int, width: int) -> str:
    """The ``comment`` tag value recording a frame size of ``(height, width)`` before padding."""
    return f"{SIZE_TAG}={width}x{height}"


def _open(path: Path) -> Any:
    try:
        return av.open(str(path), mode="r")
    except av.FFmpegError as err:
        raise VideoReadError(
            f"not a readable video: corrupt bytes, a truncated header or an unknown format ({err})",
            path=path,
            fix=_CORRUPT_FIX,
        ) from err


def _video_stream(container: Any, path: Path) -> Any:
    if not container.streams.video:
        raise VideoReadError(
            "the file holds no video stream (truncated, or audio only)", path=path, fix=_CORRUPT_FIX
        )
    return container.streams.video[0]


def _check_file(path: Path) -> None:
    if not path.exists():
        raise VideoReadError("video not found", path=path, fix="check the path")
    if path.suffix.lower() not in VIDEO_EXTENSIONS:
        raise VideoReadError(
            f"unsupported video extension {path.suffix or '(none)'!r}",
            path=path,
            fix=f"convert it to one of {' '.join(VIDEO_EXTENSIONS)}, or give a folder of jpg/png frames",
        )
    if path.stat().st_size == 0:
        raise VideoReadError("video file is empty (0 bytes)", path=path, fix="re-copy or re-encode the file")


def _frame_rate(stream: Any, num_frames: int, fps: float | None, path: Path) -> float:
    if fps is not None:
        return float(fps)
    for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if rate and rate > 0:
            return float(rate)
    if stream.duration and stream.time_base and num_frames:
        return num_frames / float(stream.duration * stream.time_base)
    raise VideoReadError("the file states no frame rate", path=path, fix="pass fps= (CLI: --source-fps)")


def _declared_duration_s(stream: Any) -> float | None:
    """The video stream's duration as its header states it (MP4 track, Matroska ``DURATION`` tag)."""
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    for key, value in stream.metadata.items():
        if key.upper() == "DURATION" and (m := _DURATION_RE.fullmatch(value.strip())):
            return int(m.group(1)) * 3600 + int(m.group(2)) * 60 + float(m.group(3))
    return None


def _original_size(container: Any, height: int, width: int) -> tuple[int, int]:
    for key, value in container.metadata.items():
        if key.lower() == "comment" and (m := _SIZE_RE.search(value)):
            w, h = int(m.group(1)), int(m.group(2))
            if 0 <= width - w <= 1 and 0 <= height - h <= 1:
                return h, w
    return height, width


class PyAVSource:
    """A video file's packet table and info; :meth:`frames` decodes the wanted frames in order."""

    def __init__(self, path: str | Path, fps: float | None = None) -> None:
        self.path = Path(path)
        _check_file(self.path)
        with _open(self.path) as container:
            stream = _video_stream(container, self.path)
            pts, keys = self._packet_table(container, stream)
            ctx = stream.codec_context
            height, width = _original_size(container, ctx.height, ctx.width)
            rate = _frame_rate(stream, len(pts), fps, self.path)
            codec = ctx.name
        if len(pts) == 0:
            raise VideoReadError("the video holds no frames", path=self.path, fix=_CORRUPT_FIX)
        if height <= 0 or width <= 0:
            raise VideoReadError("the video stream has no frame size", path=self.path, fix=_CORRUPT_FIX)
        n = len(pts)
        self.info = VideoInfo(self.path, "file", n, rate, height, width, n / rate, codec)
        # Timestamps give frame numbers only if every packet has a distinct one.
        sorted_pts = np.sort(pts) if not np.any(pts == _NO_PTS) else None
        if sorted_pts is not None and np.any(np.diff(sorted_pts) == 0):
            sorted_pts = None
        self._pts = sorted_pts
        self._key_ranks = (
            np.flatnonzero(keys[np.argsort(pts, kind="stable")]) if sorted_pts is not None else None
        )

    def _packet_table(self, container: Any, stream: Any) -> tuple[np.ndarray, np.ndarray]:
        pts: list[int] = []
        keys: list[bool] = []
        first, end = None, None  # timestamp span the packets cover
        try:
            for packet in container.demux(stream):
                if packet.size == 0:  # the flush packet at the end of the stream
                    continue
                if packet.is_corrupt:
                    raise VideoReadError(
                        f"video is truncated or corrupt (packet {len(pts)} is damaged)",
                        path=self.path,
                        fix=_CORRUPT_FIX,
                    )
                pts.append(_NO_PTS if packet.pts is None else packet.pts)
                keys.append(packet.is_keyframe)
                if packet.pts is not None:
                    first = packet.pts if first is None else min(first, packet.pts)
                    stop = packet.pts + (packet.duration or 0)
                    end = stop if end is None else max(end, stop)
        except av.FFmpegError as err:
            raise VideoReadError(
                f"video is truncated or corrupt after packet {len(pts)} ({err})",
                path=self.path,
                fix=_CORRUPT_FIX,
            ) from err
        if stream.frames and len(pts) < stream.frames:
            raise VideoReadError(
                f"video is truncated: the header promises {stream.frames} frames, the file holds {len(pts)}",
                path=self.path,
                fix=_CORRUPT_FIX,
            )
        declared = _declared_duration_s(stream)
        if declared is not None and first is not None and end is not None and stream.time_base and pts:
            covered = float((end - first) * stream.time_base)
            frame_s = covered / len(pts)
            if declared - covered > 2 * frame_s + 1e-3:
                raise VideoReadError(
                    f"video is truncated or corrupt: its header says {declared:.3f} s, "
                    f"its {len(pts)} frames cover {covered:.3f} s",
                    path=self.path,
                    fix=_CORRUPT_FIX,
                )
        return np.asarray(pts, dtype=np.int64), np.asarray(keys, dtype=bool)

    # ----------------------------------------------------------------- decoding
    def frames(self, wanted: np.ndarray) -> Iterator[tuple[int, np.ndarray]]:
        """Yield ``(frame number, uint8 RGB (H, W, 3))`` for the strictly increasing ``wanted`` numbers.

        Decodes forward from the start, seeking to a key frame whenever one lies after the decoder's
        position and at or before the next wanted frame.

        Raises:
            VideoReadError: a packet cannot be decoded, or the stream ends before a wanted frame.
        """
        if wanted.size == 0:
            return
        with _open(self.path) as container:
            stream = _video_stream(container, self.path)
            stream.thread_type = "AUTO"
            pos = 0
            next_index = 0  # the number of the frame the decoder produces next
            while pos < len(wanted):
                key = self._seek_target(int(wanted[pos]), next_index)
                if key is not None:
                    container.seek(int(self._pts[key]), stream=stream, backward=True, any_frame=False)  # type: ignore[index]
                    next_index = key
                for index, frame in self._decode(container, stream, next_index):
                    next_index = index + 1
                    target = int(wanted[pos])
                    if index < target:
                        continue
                    if index > target:
                        raise VideoReadError(
                            f"frame {target} could not be decoded (the decoder skipped to frame {index})",
                            path=self.path,
                            fix=_CORRUPT_FIX,
                        )
                    yield index, self._to_rgb(frame)
                    pos += 1
                    if pos == len(wanted) or self._seek_target(int(wanted[pos]), next_index) is not None:
                        break
                else:
                    raise VideoReadError(
                        f"video ended after frame {next_index - 1}, before frame {int(wanted[pos])} "
                        f"of the {self.info.num_frames} it holds (truncated or corrupt)",
                        path=self.path,
                        fix=_CORRUPT_FIX,
                    )

    def _seek_target(self, target: int, next_index: int) -> int | None:
        """The key frame to seek to before decoding ``target``, or None to keep decoding forward."""
        if self._key_ranks is None:
            return None
        i = int(np.searchsorted(self._key_ranks, target, side="right")) - 1
        if i < 0:
            return None
        key = int(self._key_ranks[i])
        return key if key > next_index else None

    def _decode(self, container: Any, stream: Any, first: int) -> Iterator[tuple[int, Any]]:
        counter = first
        try:
            for packet in container.demux(stream):
                for frame in packet.decode():
                    index = self._index_of(frame, counter)
                    counter = index + 1
                    yield index, frame
        except av.FFmpegError as err:
            raise VideoReadError(
                f"cannot decode the video after frame {counter - 1} ({err}); it is truncated or corrupt",
                path=self.path,
                fix=_CORRUPT_FIX,
            ) from err

    def _index_of(self, frame: Any, counter: int) -> int:
        if self._pts is not None and frame.pts is not None:
            r = int(np.searchsorted(self._pts, frame.pts))
            if r < len(self._pts) and self._pts[r] == frame.pts:
                return r
        return counter

    def _to_rgb(self, frame: Any) -> np.ndarray:
        rgb = frame.to_ndarray(format="rgb24")
        h, w = self.info.height, self.info.width
        if rgb.shape[0] != h or rgb.shape[1] != w:
            rgb = np.ascontiguousarray(rgb[:h, :w])
        return rgb

    def close(self) -> None:
        """Nothing to release: each :meth:`frames` call opens and closes its own container."""
