"""Processed STVG annotations (TubeDETR preprocessing) and TubeDETR's frame sampling.

Two ground-truth layouts are read (``specs/METRICS.md`` 3.1), told apart by their top level:

- **VidSTG** ``{train,val,test}.json`` -- an object with ``videos`` (list of
  ``{video_id, original_video_id, target_id, caption, qtype, fps, width, height, start_frame,
  end_frame, tube_start_frame, tube_end_frame, video_path}``) and
  ``trajectories[original_video_id][str(target_id)][str(frame)] = {"bbox": [x, y, w, h]}``.
- **HC-STVG** ``{test,val}_proc.json`` / ``{subset}v2_proc.json`` -- a list of
  ``{video_id, frame_count, tube_start_frame, tube_end_frame, trajectory, width, height, caption, ...}``
  where ``trajectory[i]`` is the ``[x, y, w, h]`` box of frame ``tube_start_frame + i``. Clips are
  20 s long, so ``video_fps = frame_count / 20``; the evaluated clip is ``range(0, frame_count - 1)``
  (TubeDETR's bound) and there is no ``qtype``.

Frame numbers are the video's own. Tubes are ``[tube_start_frame, tube_end_frame)`` (end exclusive).
GT boxes are in absolute pixels of the original frame; ``[x, y, w, h]`` becomes ``[x, y, x + w, y + h]``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from sparrow.errors import DataFormatError

__all__ = ["StvgAnnotations", "StvgVideo", "load_stvg_annotations", "sample_frame_ids"]

HCSTVG_CLIP_SECONDS = 20


def sample_frame_ids(start: int, end: int, *, fps: float, video_fps: float, max_len: int) -> list[int]:
    """TubeDETR's frame sampling of ``range(start, end)`` at ``fps``: the video's frame numbers kept.

    ``start`` is always kept; then frame ``f`` is kept whenever ``int(f * (fps / video_fps))`` exceeds
    that of the last kept frame (the first frame of every new ``1/fps`` bucket). If more than
    ``max_len`` frames remain, frames ``ids[j * n // max_len]`` for ``j < max_len`` are kept.

    Raises:
        ValueError: ``fps > video_fps`` (TubeDETR asserts that it only downsamples), or non-positive rates.
    """
    if fps <= 0 or video_fps <= 0 or max_len < 1:
        raise ValueError(f"need fps > 0, video_fps > 0 and max_len >= 1 (got {fps}, {video_fps}, {max_len})")
    rate = fps / video_fps
    if rate > 1:
        raise ValueError(f"sampling at {fps} fps would upsample a {video_fps} fps video")
    ids = [int(start)]
    if end > start + 1:
        frames = np.arange(start, end, dtype=np.int64)
        buckets = (frames * rate).astype(np.int64)  # float64 product, truncation: as int(f * rate)
        new_bucket = np.flatnonzero(buckets[1:] > buckets[:-1]) + 1
        ids.extend(int(f) for f in frames[new_bucket])
    n = len(ids)
    if n > max_len:
        ids = [ids[(j * n) // max_len] for j in range(max_len)]
    return ids


@dataclass(frozen=True)
class StvgVideo:
    """One evaluated sentence-video pair of an STVG benchmark.

    Attributes:
        video_id: the annotation's ``video_id`` as a string (the key used in prediction files).
        qtype: ``"declarative"`` / ``"interrogative"`` (VidSTG) or ``None`` (HC-STVG).
        video_fps: frame rate used by the sampling (VidSTG ``fps``; HC-STVG ``frame_count / 20``).
        clip_start, clip_end: the frames sampled for temporal localisation are ``range(clip_start, clip_end)``.
        tube_start, tube_end: the GT tube ``[tube_start, tube_end)``.
        width, height: frame size in pixels (0 when the annotation lacks it).
        boxes_xywh: GT ``[x, y, w, h]`` per annotated frame number (absolute pixels).
    """

    video_id: str
    qtype: str | None
    video_fps: float
    clip_start: int
    clip_end: int
    tube_start: int
    tube_end: int
    width: int
    height: int
    boxes_xywh: Mapping[int, tuple[float, float, float, float]] = field(repr=False)

    def gt_box_xyxy(self, frame: int) -> tuple[float, float, float, float] | None:
        """GT box of ``frame`` as ``(x1, y1, x1 + w, y1 + h)`` (TubeDETR's conversion), or ``None``."""
        box = self.boxes_xywh.get(frame)
        if box is None:
            return None
        x, y, w, h = box
        return (x, y, x + w, y + h)


@dataclass(frozen=True)
class StvgAnnotations:
    """A loaded annotation file: which ``dataset`` layout it had, its ``path`` and its videos in order."""

    dataset: Literal["vidstg", "hcstvg"]
    path: Path
    videos: list[StvgVideo]


def _fail(path: Path, message: str) -> DataFormatError:
    return DataFormatError(
        message, path=path, fix="pass a TubeDETR-processed VidSTG {split}.json or HC-STVG *_proc.json file"
    )


def _box(value: Any, path: Path, where: str) -> tuple[float, float, float, float]:
    if not (
        isinstance(value, (list, tuple))
        and len(value) == 4
        and all(isinstance(v, (int, float)) for v in value)
    ):
        raise _fail(path, f"{where}: a box must be [x, y, w, h] numbers, got {str(value)[:80]}")
    return (value[0], value[1], value[2], value[3])


def _get(entry: Mapping[str, Any], key: str, path: Path, where: str) -> Any:
    if key not in entry:
        raise _fail(path, f"{where}: key {key!r} missing")
    return entry[key]


def _vidstg(data: Mapping[str, Any], path: Path) -> list[StvgVideo]:
    videos_raw, trajectories = data["videos"], data.get("trajectories")
    if not isinstance(videos_raw, list) or not isinstance(trajectories, Mapping):
        raise _fail(path, "VidSTG layout needs a 'videos' list and a 'trajectories' object")
    out = []
    tracks: dict[tuple[str, str], dict[int, tuple[float, float, float, float]]] = {}  # shared by sentences
    for i, v in enumerate(videos_raw):
        where = f"videos[{i}]"
        if not isinstance(v, Mapping):
            raise _fail(path, f"{where} is not an object")
        key = (str(_get(v, "original_video_id", path, where)), str(_get(v, "target_id", path, where)))
        if key not in tracks:
            per_video = trajectories.get(key[0])
            track = per_video.get(key[1]) if isinstance(per_video, Mapping) else None
            if not isinstance(track, Mapping):
                raise _fail(path, f"{where}: no trajectories[{key[0]!r}][{key[1]!r}]")
            boxes = {}
            for frame, ann in track.items():
                if not isinstance(ann, Mapping) or "bbox" not in ann:
                    raise _fail(path, f"trajectories[{key[0]!r}][{key[1]!r}][{frame!r}] has no 'bbox'")
                boxes[int(frame)] = _box(ann["bbox"], path, f"trajectory frame {frame}")
            tracks[key] = boxes
        boxes = tracks[key]
        out.append(
            StvgVideo(
                video_id=str(_get(v, "video_id", path, where)),
                qtype=v.get("qtype"),
                video_fps=float(_get(v, "fps", path, where)),
                clip_start=int(_get(v, "start_frame", path, where)),
                clip_end=int(_get(v, "end_frame", path, where)),
                tube_start=int(_get(v, "tube_start_frame", path, where)),
                tube_end=int(_get(v, "tube_end_frame", path, where)),
                width=int(v.get("width", 0)),
                height=int(v.get("height", 0)),
                boxes_xywh=boxes,
            )
        )
    return out


def _hcstvg(data: list[Any], path: Path) -> list[StvgVideo]:
    out = []
    for i, v in enumerate(data):
        where = f"[{i}]"
        if not isinstance(v, Mapping):
            raise _fail(path, f"{where} is not an object")
        frame_count = int(_get(v, "frame_count", path, where))
        tube_start = int(_get(v, "tube_start_frame", path, where))
        trajectory = _get(v, "trajectory", path, where)
        if not isinstance(trajectory, list):
            raise _fail(path, f"{where}: 'trajectory' must be a list of [x, y, w, h]")
        out.append(
            StvgVideo(
                video_id=str(_get(v, "video_id", path, where)),
                qtype=None,
                video_fps=frame_count / HCSTVG_CLIP_SECONDS,
                clip_start=0,
                clip_end=frame_count - 1,
                tube_start=tube_start,
                tube_end=int(_get(v, "tube_end_frame", path, where)),
                width=int(v.get("width", 0)),
                height=int(v.get("height", 0)),
                boxes_xywh={
                    tube_start + k: _box(b, path, f"{where} trajectory[{k}]")
                    for k, b in enumerate(trajectory)
                },
            )
        )
    return out


def load_stvg_annotations(path: str | Path) -> StvgAnnotations:
    """Read a VidSTG or HC-STVG processed annotation file (layout detected from the top level).

    Raises:
        DataFormatError: unreadable file, unknown layout, missing keys, malformed boxes or duplicate ids.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise _fail(path, f"cannot read the annotation file ({err})") from err
    if isinstance(data, Mapping) and "videos" in data:
        dataset, videos = "vidstg", _vidstg(data, path)
    elif isinstance(data, list):
        dataset, videos = "hcstvg", _hcstvg(data, path)
    else:
        raise _fail(path, "unknown layout: expected an object with 'videos' (VidSTG) or a list (HC-STVG)")
    seen: set[str] = set()
    for v in videos:
        if v.video_id in seen:
            raise _fail(path, f"duplicate video_id {v.video_id!r}")
        seen.add(v.video_id)
    return StvgAnnotations(dataset=dataset, path=path, videos=videos)  # type: ignore[arg-type]
