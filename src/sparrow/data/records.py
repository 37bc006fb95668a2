"""Typed, immutable dataset records. Readers build them without decoding a single pixel.

Everything heavy stays behind a method: :meth:`VideoRecord.load_frames` decodes images,
``load_masks`` decodes RLEs / PNGs (see :mod:`sparrow.data.mask_sources`). Indexing a split is
therefore JSON parsing plus object construction: no image is opened and no frame file is stat-ed.

Conventions (DESIGN.md section 5): frame numbers are the video's own numbers (``"00005"`` -> 5);
positions are 0-based indices into a record's frame list; boxes are ``xyxy`` float in absolute pixels
of the original frame; masks are bool ``(T, H, W)`` at the original resolution.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from sparrow.errors import DataFormatError
from sparrow.structures.video import VideoClip

from .mask_sources import MaskSource

_LAST_NUMBER = re.compile(r"(\d+)(?!.*\d)")


def frame_numbers_from_names(names: Sequence[str]) -> tuple[int, ...]:
    """The video's frame numbers from frame names: the last run of digits (``"00005"`` -> 5,
    ``"frame_12"`` -> 12); positions ``0..T-1`` if any name has no digits or numbers repeat."""
    numbers = []
    for name in names:
        m = _LAST_NUMBER.search(name)
        if m is None:
            return tuple(range(len(names)))
        numbers.append(int(m.group(1)))
    if len(set(numbers)) != len(numbers):
        return tuple(range(len(names)))
    return tuple(numbers)


@dataclass(frozen=True)
class VideoRecord:
    """One video: where its frames are and what is known about them without decoding.

    Attributes:
        video_id: the dataset's id of the video.
        frame_names: frame file stems in order (``"00000"``), for frame folders; empty for a video file.
        frame_numbers: the video's own frame number of each frame (a tuple, or a ``range`` for files).
        frame_dir: folder holding ``<frame_name><frame_ext>`` files, or None.
        frame_ext: extension of the frame files (``".jpg"``).
        video_file: a video container to decode instead of a folder, or None.
        fps: frames per second, when the layout says.
        size: ``(H, W)`` when the layout says (``height``/``width`` keys), else None.
        object_ids: ids of the objects the layout annotates in this video, when listed without decoding
            (Ref-YouTube-VOS ``meta.json``, SynRef ``objects``, SPARROW mask folders); None if unknown.
        extra: every other per-video key of the annotation file, untouched.
    """

    video_id: str
    frame_names: Sequence[str] = ()
    frame_numbers: Sequence[int] = ()
    frame_dir: Path | None = None
    frame_ext: str = ".jpg"
    video_file: Path | None = None
    fps: float | None = None
    size: tuple[int, int] | None = None
    object_ids: tuple[str, ...] | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def num_frames(self) -> int:
        return len(self.frame_numbers)

    def frame_path(self, position: int) -> Path:
        """Path of the frame at ``position`` (frame folders only)."""
        if self.frame_dir is None:
            raise DataFormatError(
                f"video {self.video_id!r} has no frame folder", fix="decode it with load_frames()"
            )
        return self.frame_dir / f"{self.frame_names[position]}{self.frame_ext}"

    def frame_paths(self) -> list[Path]:
        """Paths of every frame file, in order (frame folders only; nothing is stat-ed)."""
        return [self.frame_path(i) for i in range(len(self.frame_names))]

    def load_frames(self, positions: Sequence[int] | None = None) -> VideoClip:
        """Decode frames (all, or those at ``positions``, increasing) -> :class:`VideoClip` uint8 RGB."""
        pos = list(range(self.num_frames)) if positions is None else [int(p) for p in positions]
        numbers = np.asarray([self.frame_numbers[p] for p in pos], dtype=np.int64)
        fps = self.fps if self.fps is not None else 30.0
        if self.video_file is not None:
            from sparrow.io.pyav_source import PyAVSource

            source = PyAVSource(self.video_file, fps=self.fps)
            try:
                decoded = dict(source.frames(np.unique(numbers)))
            finally:
                source.close()
            frames = [decoded[int(n)] for n in numbers]
            source_name = str(self.video_file)
        else:
            from sparrow.io.frame_folder import read_rgb_image

            frames = [read_rgb_image(self.frame_path(p)) for p in pos]
            source_name = str(self.frame_dir)
        if not frames:
            raise DataFormatError(
                f"video {self.video_id!r}: no frames selected", fix="select at least one frame"
            )
        return VideoClip(np.stack(frames), numbers, fps, source_name)


def _require_masks(masks: MaskSource | None, what: str) -> MaskSource:
    if masks is None:
        raise DataFormatError(
            f"{what} has no ground-truth masks in this split", fix="use a split that ships masks"
        )
    return masks


@dataclass(frozen=True)
class ExpressionRecord:
    """A referring expression and its referents in one video.

    Attributes:
        video_id: the video's id (a key of the split's ``videos``).
        exp_id: the expression's id within the video.
        text: the expression.
        obj_ids: ids of the referred objects (as strings), possibly several.
        anno_ids: anno ids into the mask dict (MeViS / ReVOS), as strings; empty otherwise.
        masks: lazy union mask of the referents over the video's frames, or None (no GT in the split).
        span: ``[start, end)`` frame numbers where the referent acts, if annotated.
        tags: free labels (SynRef: ``motion``, ``relation``, ...).
        qtype: expression type (ReVOS ``type_id``, a SynRef type), if any.
        extra: every other per-expression key, untouched.
        source: the annotation file the expression was read from (for messages).
    """

    video_id: str
    exp_id: str
    text: str
    obj_ids: tuple[str, ...] = ()
    anno_ids: tuple[str, ...] = ()
    masks: MaskSource | None = None
    span: tuple[int, int] | None = None
    tags: tuple[str, ...] = ()
    qtype: str | int | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)
    source: Path | None = None

    def load_masks(self, positions: Sequence[int] | None = None) -> np.ndarray:
        """Bool ``(T, H, W)``: the union of the referents' masks on every frame (or ``positions``)."""
        return _require_masks(self.masks, f"expression {self.video_id}/{self.exp_id}").load(positions)


class TubeBoxes(Mapping[int, np.ndarray]):
    """Lazy ``{frame number: xyxy float64 (4,)}`` of one tube, converted from the stored ``xywh``.

    Args:
        raw: the stored boxes -- a mapping ``{frame number (str or int): [x, y, w, h] or {"bbox": [...]}}``
            (VidSTG trajectories) or a list of ``[x, y, w, h]`` starting at ``first_frame`` (HC-STVG).
        span: ``[start, end)``: only frames in it are exposed.
        first_frame: frame number of ``raw[0]`` when ``raw`` is a list.
    """

    def __init__(
        self, raw: Mapping[Any, Any] | Sequence[Any], span: tuple[int, int], first_frame: int = 0
    ) -> None:
        self._raw = raw
        self._span = span
        self._first = first_frame

    def _entry(self, frame: int) -> Any:
        if isinstance(self._raw, Mapping):
            entry = self._raw.get(str(frame), self._raw.get(frame))
        else:
            i = frame - self._first
            entry = self._raw[i] if 0 <= i < len(self._raw) else None
        if isinstance(entry, Mapping):
            entry = entry.get("bbox")
        return entry

    def __getitem__(self, frame: int) -> np.ndarray:
        if not self._span[0] <= frame < self._span[1]:
            raise KeyError(frame)
        entry = self._entry(frame)
        if entry is None:
            raise KeyError(frame)
        x, y, w, h = (float(v) for v in entry)
        return np.asarray([x, y, x + w, y + h], dtype=np.float64)

    def _frames(self) -> list[int]:
        if isinstance(self._raw, Mapping):
            keys = sorted(int(k) for k in self._raw)
        else:
            keys = list(range(self._first, self._first + len(self._raw)))
        return [k for k in keys if self._span[0] <= k < self._span[1] and self._entry(k) is not None]

    def __iter__(self) -> Iterator[int]:
        return iter(self._frames())

    def __len__(self) -> int:
        return len(self._frames())


@dataclass(frozen=True)
class TubeRecord:
    """A spatio-temporal grounding query (VidSTG, HC-STVG, SPARROW ``groundtruth.txt``).

    Attributes:
        query_id: the query's id (TubeDETR's ``video_id``), the key of the prediction JSON.
        video: the source video.
        sentence: the query sentence.
        qtype: ``"declarative"`` / ``"interrogative"`` (VidSTG), or the dataset's single category.
        span: ``[start, end)`` frame numbers of the ground-truth tube (end exclusive).
        boxes: ``{frame number: xyxy (4,)}`` for the annotated frames inside ``span`` (lazy).
        target_id: the target object's id, if the layout has one.
        extra: every other key of the entry, untouched.
    """

    query_id: str
    video: VideoRecord
    sentence: str
    qtype: str
    span: tuple[int, int]
    boxes: Mapping[int, np.ndarray]
    target_id: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class CaptionRecord:
    """A grounded caption (GCG): text with ``<p> phrase </p> [SEG]`` markup and one mask per phrase.

    Attributes:
        sample_id: the sample's id (the ``<idx:06d>`` folder name for VideoGCG).
        video: the frames the masks are aligned with.
        caption: the raw caption, markup included.
        caption_cleaned: the caption with markup removed (VideoGLaMM cleaning).
        phrases: the grounded phrases, in order.
        masks: one lazy mask source per phrase (``masks[k]`` grounds ``phrases[k]``); None where missing.
        extra: every other key of the sample, untouched.
    """

    sample_id: str
    video: VideoRecord
    caption: str
    caption_cleaned: str
    phrases: tuple[str, ...]
    masks: tuple[MaskSource | None, ...] = ()
    extra: Mapping[str, Any] = field(default_factory=dict)

    def load_masks(self) -> list[np.ndarray]:
        """One bool ``(T, H, W)`` per phrase."""
        return [
            _require_masks(m, f"phrase {k} of sample {self.sample_id}").load()
            for k, m in enumerate(self.masks)
        ]


@dataclass(frozen=True)
class LabelMapRecord:
    """Per-frame palette PNGs of object ids for one video (DAVIS ``Annotations``); 255 is void.

    Attributes:
        video_id: the sequence name.
        paths: one PNG per frame of the video, or None where the frame has no annotation.
    """

    video_id: str
    paths: tuple[Path | None, ...]

    def load_labels(self, positions: Sequence[int] | None = None) -> np.ndarray:
        """uint8 ``(T, H, W)`` object ids (0 background, 255 void), as PIL reads the palette indices."""
        from sparrow.io.mask_files import read_index_png

        pos = range(len(self.paths)) if positions is None else positions
        maps = []
        for p in pos:
            path = self.paths[p]
            if path is None:
                raise DataFormatError(
                    f"{self.video_id}: frame position {p} has no annotation", fix="select annotated frames"
                )
            maps.append(read_index_png(path))
        return np.stack(maps)


@dataclass(frozen=True)
class Turn:
    """One turn of a conversation. ``role`` is ``"user"`` or ``"assistant"``."""

    role: Literal["user", "assistant"]
    text: str


@dataclass(frozen=True)
class GroundingTarget:
    """What one ``[SEG]`` token (and the ``[BOX]`` before it) of an answer refers to.

    Attributes:
        phrase: the referent's phrase.
        masks: lazy masks over the conversation's video, if any.
        boxes: ``{frame number: xyxy (4,)}``, if any.
        span: ``[start, end)`` frame numbers, if known.
    """

    phrase: str
    masks: MaskSource | None = None
    boxes: Mapping[int, np.ndarray] | None = None
    span: tuple[int, int] | None = None


SEG_TOKEN = "[SEG]"


@dataclass(frozen=True)
class Conversation:
    """A training sample: turns over one video; ``targets[k]`` grounds the k-th ``[SEG]`` of the answers."""

    sample_id: str
    video: VideoRecord
    turns: tuple[Turn, ...]
    targets: tuple[GroundingTarget, ...] = ()

    def __post_init__(self) -> None:
        n_seg = sum(t.text.count(SEG_TOKEN) for t in self.turns if t.role == "assistant")
        if n_seg != len(self.targets):
            raise ValueError(
                f"conversation {self.sample_id}: {n_seg} [SEG] tokens but {len(self.targets)} targets"
            )


@dataclass(frozen=True)
class DatasetSplit:
    """Everything a reader found in one split of one format (all lazy).

    Attributes:
        format: the registry name of the format.
        split: the split's name.
        root: the folder it was read from.
        videos: ``{video_id: VideoRecord}``.
        expressions: referring expressions (RVOS formats, SPARROW sequences).
        tubes: STVG queries (VidSTG, HC-STVG, SPARROW sequences with ``groundtruth.txt``).
        captions: grounded captions (VideoGCG, SPARROW sequences).
        label_maps: per-video palette label maps (DAVIS), ``{video_id: LabelMapRecord}``.
        files: the annotation files the split was read from.
    """

    format: str
    split: str
    root: Path
    videos: Mapping[str, VideoRecord]
    expressions: tuple[ExpressionRecord, ...] = ()
    tubes: tuple[TubeRecord, ...] = ()
    captions: tuple[CaptionRecord, ...] = ()
    label_maps: Mapping[str, LabelMapRecord] = field(default_factory=dict)
    files: tuple[Path, ...] = ()

    def expressions_of(self, video_id: str) -> list[ExpressionRecord]:
        return [e for e in self.expressions if e.video_id == video_id]
