"""``VideoInfo``: what :func:`sparrow.io.probe_video` learns about a video file or frame folder."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

VIDEO_EXTENSIONS = (".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi")
"""Container extensions the reader accepts (decoded through PyAV / FFmpeg)."""

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
"""Frame-folder image extensions (case-insensitive)."""

DEFAULT_FOLDER_FPS = 30.0
"""Frame rate assumed for a frame folder when the caller gives none (folders store no rate)."""


@dataclass(frozen=True)
class VideoInfo:
    """Static facts about a video.

    Attributes:
        path: the file or folder.
        kind: ``"file"`` (a container decoded through PyAV) or ``"folder"`` (one image per frame).
        num_frames: exact number of frames the reader yields.
        fps: frames per second (for a folder: the caller's value or :data:`DEFAULT_FOLDER_FPS`).
        height: frame height in pixels, as the reader returns frames.
        width: frame width in pixels, as the reader returns frames.
        duration_s: ``num_frames / fps``.
        codec: FFmpeg codec name (``"h264"``) for a file; the image format(s) (``"jpeg"``, ``"png"``,
            ``"jpeg+png"``) for a folder.
    """

    path: Path
    kind: Literal["file", "folder"]
    num_frames: int
    fps: float
    height: int
    width: int
    duration_s: float
    codec: str

    @property
    def size(self) -> tuple[int, int]:
        """``(H, W)`` of the frames."""
        return self.height, self.width

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict of every field (``path`` as a string)."""
        return {
            "path": str(self.path),
            "kind": self.kind,
            "num_frames": self.num_frames,
            "fps": self.fps,
            "height": self.height,
            "width": self.width,
            "duration_s": self.duration_s,
            "codec": self.codec,
        }
