"""``sparrow data convert``: rewrite a dataset in another of our layouts, atomically.

Supported (source -> target):

- ``sparrow-seq -> mevis``: every sequence becomes a MeViS video; every object one anno id; every
  expression (grounded phrase, or the whole caption) one MeViS expression.
- ``ref-davis17 -> mevis``: the per-expression protocol's ground truth -- 4 expressions per object,
  masks from ``Annotations_unsupervised`` -- so ``sparrow eval mevis`` scores Ref-DAVIS like VISA/GLUS.
- ``ref-youtube-vos -> mevis`` (train): a local ground truth for a held-out part of train, since
  the valid set is scored on the server only.
- ``davis17 -> mevis`` / ``davis17-unsupervised -> mevis``: one expression (empty text) per object
  of the first frame's labels (the DAVIS rule), to score VOS results per object with the MeViS code.

The output is built in a temporary folder beside ``out`` and renamed into place when complete.
Frames are hard-linked by default (copied across file systems; non-JPEG frames are re-encoded).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sparrow.errors import ConfigError, DataFormatError, VideoReadError
from sparrow.io.frame_folder import image_size

from .formats.common import FrameMode
from .formats.mevis import MevisSplitWriter
from .mask_sources import BinaryPngMasks, IndexPngMasks
from .records import DatasetSplit, ExpressionRecord, VideoRecord
from .registry import get_format

Progress = Callable[[Iterable[str]], Iterator[str]]


@dataclass(frozen=True)
class ConvertReport:
    """What a conversion wrote."""

    source: str
    target: str
    out: Path
    videos: int
    expressions: int
    objects: int

    def to_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "out": str(self.out)}


def _frame_size(video: VideoRecord) -> tuple[int, int]:
    if video.size is not None:
        return video.size
    try:
        return image_size(video.frame_path(0))
    except VideoReadError as err:
        raise DataFormatError(err.message, path=err.path, fix="run `sparrow data check` first") from err


def _sequence_objects(video: VideoRecord) -> dict[str, np.ndarray]:
    sources = video.extra.get("object_masks", {})
    size = _frame_size(video) if sources else None
    return {obj: BinaryPngMasks(src.paths, size=size).load() for obj, src in sources.items()}


def _indexed_objects(expressions: list[ExpressionRecord]) -> dict[str, np.ndarray]:
    """Per-object masks of the objects the expressions name, from their palette-PNG sources."""
    objects: dict[str, np.ndarray] = {}
    for exp in expressions:
        if not isinstance(exp.masks, IndexPngMasks):
            raise DataFormatError(
                f"expression {exp.video_id}/{exp.exp_id} has no palette-PNG masks",
                fix="convert a split with ground truth",
            )
        for obj in exp.obj_ids:
            if obj not in objects:
                objects[obj] = IndexPngMasks(exp.masks.paths, [int(obj)], exp.masks.size).load()
    return objects


def _write(
    split: DatasetSplit,
    writer: MevisSplitWriter,
    objects_of: Callable[[VideoRecord], tuple[dict[str, np.ndarray], list[ExpressionRecord]]],
    progress: Progress | None,
) -> tuple[int, int, int]:
    n_exp = n_obj = 0
    ids = list(split.videos)
    for vid in progress(ids) if progress is not None else ids:
        video = split.videos[vid]
        objects, expressions = objects_of(video)
        writer.add_video(vid, video.frame_paths(), list(video.frame_names), objects, expressions)
        n_exp += len(expressions)
        n_obj += len(objects)
    return len(ids), n_exp, n_obj


def _from_sequences(
    split: DatasetSplit,
) -> Callable[[VideoRecord], tuple[dict[str, np.ndarray], list[ExpressionRecord]]]:
    return lambda video: (_sequence_objects(video), split.expressions_of(video.video_id))


def _from_indexed(
    split: DatasetSplit,
) -> Callable[[VideoRecord], tuple[dict[str, np.ndarray], list[ExpressionRecord]]]:
    def objects_of(video: VideoRecord) -> tuple[dict[str, np.ndarray], list[ExpressionRecord]]:
        exps = split.expressions_of(video.video_id)
        return _indexed_objects(exps), exps

    return objects_of


def _from_davis(
    split: DatasetSplit,
) -> Callable[[VideoRecord], tuple[dict[str, np.ndarray], list[ExpressionRecord]]]:
    def objects_of(video: VideoRecord) -> tuple[dict[str, np.ndarray], list[ExpressionRecord]]:
        labels = split.label_maps[video.video_id]
        if any(p is None for p in labels.paths):
            raise DataFormatError(
                f"sequence {video.video_id!r} is not annotated on every frame",
                path=split.root,
                fix="convert a split with full annotations (train / val)",
            )
        maps = labels.load_labels()
        first = maps[0][maps[0] != 255]
        ids = range(1, int(first.max(initial=0)) + 1)
        objects = {str(k): maps == k for k in ids}
        exps = [ExpressionRecord(video.video_id, str(k - 1), "", (str(k),)) for k in ids]
        return objects, exps

    return objects_of


CONVERSIONS = {
    ("sparrow-seq", "mevis"): _from_sequences,
    ("ref-davis17", "mevis"): _from_indexed,
    ("ref-youtube-vos", "mevis"): _from_indexed,
    ("davis17", "mevis"): _from_davis,
    ("davis17-unsupervised", "mevis"): _from_davis,
}
"""``(source format, target format) -> builder of per-video (objects, expressions)``."""


def convert(
    source: str,
    target: str,
    root: str | Path,
    out: str | Path,
    *,
    split: str | None = None,
    frames: FrameMode = "link",
    overwrite: bool = False,
    progress: Progress | None = None,
) -> ConvertReport:
    """Convert the ``split`` of the ``source``-format dataset at ``root`` into ``target`` at ``out``.

    Raises:
        ConfigError: the conversion is not supported.
        DataFormatError: the source has a problem (run ``sparrow data check`` to list them all).
    """
    builder = CONVERSIONS.get((source, target))
    if builder is None:
        pairs = ", ".join(f"{a} -> {b}" for a, b in CONVERSIONS)
        raise ConfigError(f"no conversion from {source!r} to {target!r}", fix=f"supported: {pairs}")
    data = get_format(source).open(root, split)
    with MevisSplitWriter(out, frames=frames, overwrite=overwrite) as writer:
        n_videos, n_exp, n_obj = _write(data, writer, builder(data), progress)
    return ConvertReport(source, target, Path(out), n_videos, n_exp, n_obj)
