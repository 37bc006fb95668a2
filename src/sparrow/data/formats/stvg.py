"""Spatio-temporal video grounding: VidSTG and HC-STVG in TubeDETR's processed layout (METRICS 3.1).

VidSTG ``{train,val,test}.json``::

    {"videos": [{"video_id", "original_video_id", "target_id", "caption", "qtype", "fps", "width",
                 "height", "start_frame", "end_frame", "tube_start_frame", "tube_end_frame",
                 "video_path"}, ...],
     "trajectories": {<original_video_id>: {<target_id>: {<frame>: {"bbox": [x, y, w, h]}}}}}

HC-STVG ``{train,test}_proc.json`` (v1) or ``{train,val,test}v2_proc.json`` (v2): a list of
``{"video_id", "original_video_id", "frame_count", "width", "height", "tube_start_frame",
"tube_end_frame", "video_path", "caption", "trajectory": [[x, y, w, h] per tube frame]}``; the
video's frame rate is ``frame_count / 20`` (20 s clips).

The annotation file is looked up in ``root`` then ``root/annotations``; videos are
``<videos_root>/video/<video_path>`` (``videos_root`` defaults to ``root``). Tube ends are exclusive.
Entries may carry ``"frames"`` (a list of frame names): the video is then the frame folder
``<base>/<video_path>/<frame>.jpg``, ``<base>`` being the first of ``<videos_root>/video``,
``<videos_root>`` and the *split folder* (the folder above the annotation file's folder) in which
``<video_path>`` is a folder, else ``<videos_root>/video``. SynRef writes ``<split>/vidstg/<split>.json``
with ``video_path`` = ``JPEGImages/<video>`` relative to ``<split>``, so ``read_vidstg("<split>/vidstg",
"<split>")`` finds its frames. Entries without ``"frames"`` (the official files) always use
``<videos_root>/video/<video_path>`` and nothing is looked up on disk.

Predictions (read by ``sparrow eval stvg``)::

    {"<video_id>": {"sted": [start_frame, end_frame_exclusive], "boxes": {"<frame_id>": [x1, y1, x2, y2]}}}
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sparrow.io.atomic import write_text_atomic

from ..issues import Issues, strict_issues
from ..records import DatasetSplit, TubeBoxes, TubeRecord, VideoRecord, frame_numbers_from_names
from .common import read_json

HCSTVG_CLIP_SECONDS = 20.0
_VIDSTG_KEYS = ("video_id", "original_video_id", "target_id", "caption", "fps", "start_frame", "end_frame",
                "tube_start_frame", "tube_end_frame", "video_path")  # fmt: skip
_HCSTVG_KEYS = (
    "video_id",
    "frame_count",
    "tube_start_frame",
    "tube_end_frame",
    "video_path",
    "caption",
    "trajectory",
)


def annotation_file(root: Path, name: str) -> Path:
    """``root/<name>``, else ``root/annotations/<name>`` if that exists."""
    direct = root / name
    nested = root / "annotations" / name
    return nested if not direct.is_file() and nested.is_file() else direct


class _VideoLocator:
    """Resolves an entry's ``video_path`` (rules in the module docstring).

    Args:
        videos_root: the ``videos_root`` of the reader (default: ``root``).
        annotation: the annotation file; its folder's parent is the split folder of a SynRef split.

    Frame-folder entries cost one ``is_dir`` per candidate base and distinct ``video_path`` (cached);
    no frame is touched.
    """

    def __init__(self, videos_root: Path, annotation: Path) -> None:
        self.official = videos_root / "video"
        self.bases = (self.official, videos_root, annotation.parent.parent)
        self._found: dict[str, Path] = {}

    def __call__(self, video_path: str, frame_folder: bool) -> Path:
        if not frame_folder:
            return self.official / video_path
        if video_path not in self._found:
            self._found[video_path] = next(
                (b / video_path for b in self.bases if (b / video_path).is_dir()), self.official / video_path
            )
        return self._found[video_path]


def _video(
    entry: dict[str, Any], locate: _VideoLocator, frames: Sequence[int], fps: float | None
) -> VideoRecord:
    size = (int(entry["height"]), int(entry["width"])) if "height" in entry and "width" in entry else None
    names = entry.get("frames")
    path = locate(str(entry["video_path"]), isinstance(names, list))
    if isinstance(names, list):
        return VideoRecord(
            str(entry.get("original_video_id", entry["video_id"])),
            frame_names=tuple(str(n) for n in names),
            frame_numbers=frame_numbers_from_names([str(n) for n in names]),
            frame_dir=path,
            fps=fps,
            size=size,
        )
    return VideoRecord(
        str(entry.get("original_video_id", entry["video_id"])),
        frame_numbers=frames,
        video_file=path,
        fps=fps,
        size=size,
    )


_EXTRA_SKIP = {
    "caption",
    "qtype",
    "tube_start_frame",
    "tube_end_frame",
    "trajectory",
    "video_id",
    "target_id",
}


def _missing(entry: Any, keys: Sequence[str]) -> list[str]:
    return [k for k in keys if not isinstance(entry, dict) or k not in entry]


def _open(
    root: str | Path, name: str, videos_root: str | Path | None, issues: Issues | None
) -> tuple[Issues, Path, _VideoLocator, Path, Any]:
    """``(issue sink, root, video locator, annotation path, parsed JSON or None)`` of a split."""
    sink = strict_issues(issues)
    root = Path(root)
    path = annotation_file(root, name)
    locate = _VideoLocator(Path(videos_root) if videos_root is not None else root, path)
    return sink, root, locate, path, read_json(path, sink)


def _tube(
    entry: dict[str, Any],
    video: VideoRecord,
    span: tuple[int, int],
    boxes: TubeBoxes,
    target_id: str | None = None,
) -> TubeRecord:
    """The tube of one annotation entry (query id, caption, qtype and the other keys from ``entry``)."""
    return TubeRecord(
        query_id=str(entry["video_id"]),
        video=video,
        sentence=str(entry["caption"]),
        qtype=str(entry.get("qtype", "declarative")),
        span=span,
        boxes=boxes,
        target_id=target_id,
        extra={k: v for k, v in entry.items() if k not in _EXTRA_SKIP},
    )


def read_vidstg(
    root: str | Path,
    split: str = "test",
    *,
    videos_root: str | Path | None = None,
    issues: Issues | None = None,
) -> DatasetSplit:
    """Index a VidSTG split (TubeDETR ``<split>.json``); boxes convert to ``xyxy`` lazily.

    Official entries are videos ``<videos_root>/video/<video_path>``; entries with ``"frames"`` are
    frame folders, ``video_path`` also looked up under ``videos_root`` and the split folder above the
    annotation's folder (SynRef: ``read_vidstg("<split>/vidstg", "<split>")``; module docstring).
    """
    sink, root, locate, path, data = _open(root, f"{split}.json", videos_root, issues)
    tubes: list[TubeRecord] = []
    videos: dict[str, VideoRecord] = {}
    if data is not None:
        entries, trajectories = (
            data.get("videos") if isinstance(data, dict) else None,
            data.get("trajectories") if isinstance(data, dict) else None,
        )
        if not isinstance(entries, list) or not isinstance(trajectories, dict):
            sink.report("bad-json", path, "expected {'videos': [...], 'trajectories': {...}}")
            entries, trajectories = [], {}
        for i, entry in enumerate(entries):
            missing = _missing(entry, _VIDSTG_KEYS)
            if missing:
                sink.report("bad-entry", path, f"videos[{i}] lacks {missing}")
                continue
            qid = str(entry["video_id"])
            track = trajectories.get(str(entry["original_video_id"]), {}).get(str(entry["target_id"]))
            if not isinstance(track, dict):
                sink.report(
                    "unknown-object", path,
                    f"videos[{i}] (video_id {qid}) names target {entry['target_id']} of "
                    f"{entry['original_video_id']}, which has no trajectory",
                )  # fmt: skip
                continue
            span = (int(entry["tube_start_frame"]), int(entry["tube_end_frame"]))
            video = _video(
                entry, locate, range(int(entry["start_frame"]), int(entry["end_frame"])), float(entry["fps"])
            )
            videos[qid] = video
            tubes.append(_tube(entry, video, span, TubeBoxes(track, span), str(entry["target_id"])))
    return DatasetSplit("vidstg", split, root, videos, tubes=tuple(tubes), files=(path,))


def hcstvg_file(split: str) -> str:
    """Annotation file name of an HC-STVG split: ``test`` -> ``test_proc.json``, ``val_v2`` -> ``valv2_proc.json``."""
    return f"{split[:-3]}v2_proc.json" if split.endswith("_v2") else f"{split}_proc.json"


def read_hcstvg(
    root: str | Path,
    split: str = "test",
    *,
    videos_root: str | Path | None = None,
    issues: Issues | None = None,
) -> DatasetSplit:
    """Index an HC-STVG split (v1 ``train``/``test``; v2 ``train_v2``/``val_v2``/``test_v2``)."""
    sink, root, locate, path, data = _open(root, hcstvg_file(split), videos_root, issues)
    tubes: list[TubeRecord] = []
    videos: dict[str, VideoRecord] = {}
    if data is not None and not isinstance(data, list):
        sink.report("bad-json", path, "expected a list of videos")
        data = []
    for i, entry in enumerate(data or []):
        missing = _missing(entry, _HCSTVG_KEYS)
        if missing:
            sink.report("bad-entry", path, f"entry {i} lacks {missing}")
            continue
        qid = str(entry["video_id"])
        span = (int(entry["tube_start_frame"]), int(entry["tube_end_frame"]))
        n = int(entry["frame_count"])
        video = _video(entry, locate, range(n), n / HCSTVG_CLIP_SECONDS)
        videos[qid] = video
        tubes.append(_tube(entry, video, span, TubeBoxes(entry["trajectory"], span, first_frame=span[0])))
    return DatasetSplit("hcstvg", split, root, videos, tubes=tuple(tubes), files=(path,))


@dataclass(frozen=True)
class StvgPrediction:
    """One query's predicted tube, as :func:`write_stvg_predictions` writes it and
    :func:`sparrow.evaluation.stvg.load_stvg_predictions` reads it back.

    ``sted = (start, end_exclusive)`` frame numbers of the video; ``boxes[frame] = (x1, y1, x2, y2)``,
    ``xyxy`` in absolute pixels of the original frame.
    """

    sted: tuple[float, float]
    boxes: Mapping[int, Sequence[float]]


def _check_prediction(key: str, pred: StvgPrediction) -> dict[str, Any]:
    start, end = (int(v) for v in pred.sted)
    if end < start:
        raise ValueError(f"prediction {key}: sted end {end} before start {start}")
    boxes = {}
    for frame, box in pred.boxes.items():
        values = [float(v) for v in box]
        if len(values) != 4 or not all(math.isfinite(v) for v in values):
            raise ValueError(f"prediction {key}, frame {frame}: a box is 4 finite numbers, got {box!r}")
        boxes[str(int(frame))] = values
    return {"sted": [start, end], "boxes": boxes}


def write_stvg_predictions(path: str | Path, predictions: Mapping[str, StvgPrediction]) -> None:
    """Write the STVG prediction JSON atomically (keys: query ids; boxes ``xyxy`` absolute pixels)."""
    payload = {str(k): _check_prediction(str(k), p) for k, p in predictions.items()}
    write_text_atomic(path, json.dumps(payload))
