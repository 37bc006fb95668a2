"""MeViS (henghuiding/MeViS) and everything written in its layout (SynRef, our conversions).

Layout of one split folder (``train``, ``valid_u``, ``valid``; any other name holding these files is
read too, e.g. SynRef's ``val`` and ``test``)::

    <split>/JPEGImages/<video>/<frame>.jpg
    <split>/meta_expressions.json     {"videos": {<video>: {"expressions": {<exp_id>: {"exp", "obj_id": [int],
                                       "anno_id": [int]}}, "frames": ["00000", ...]}}}
    <split>/mask_dict.json            {str(anno_id): [per-frame COCO RLE or null]}   (train, valid_u only)

Submission / results: ``<video>/<exp_id>/<frame>.png`` (L-mode 0/255): a zip with the video folders at
its top level for the ``valid`` server, or the same tree unzipped for ``sparrow eval mevis --results``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sparrow.structures.masks import rle_encode

from ..issues import Issues, strict_issues
from ..mask_sources import AnnoMaskDict, RleMasks
from ..records import DatasetSplit, ExpressionRecord, VideoRecord
from .common import BinaryMaskTreeWriter, FrameMode, TreeWriter, place_jpeg
from .meta import parse_meta_expressions

SPLITS = ("train", "valid_u", "valid")


def split_dir(root: Path, split: str) -> Path:
    """``root/<split>``, or ``root`` itself when it is already a split folder."""
    return (
        root if (root / "meta_expressions.json").is_file() and not (root / split).is_dir() else root / split
    )


def has_split(root: Path, split: str) -> bool:
    """Whether ``root`` holds a MeViS-layout split called ``split`` (any name: SynRef writes ``train``,
    ``val``, ``test``): ``root/<split>/meta_expressions.json``, or ``root`` is a split folder itself."""
    return (split_dir(root, split) / "meta_expressions.json").is_file()


def read_mevis(root: str | Path, split: str = "valid_u", *, issues: Issues | None = None) -> DatasetSplit:
    """Index a MeViS-layout split: JSON only; frames and masks stay on disk until loaded.

    ``mask_dict.json`` is used when the split folder has one (its parse is deferred to the first
    ``load_masks``); otherwise expressions have ``masks=None``. Extra keys (SynRef ``objects``,
    ``tags``, ``span``, ReVOS ``height``/``width``) are exposed on the records.
    """
    sink = strict_issues(issues)
    folder = split_dir(Path(root), split)
    meta = folder / "meta_expressions.json"
    mask_path = folder / "mask_dict.json"
    store = AnnoMaskDict(mask_path) if mask_path.is_file() else None

    def masks(video: VideoRecord, obj_ids: tuple[str, ...], anno_ids: tuple[str, ...]) -> RleMasks | None:
        return None if store is None else RleMasks(store, anno_ids, video.num_frames, video.size)

    videos, expressions = parse_meta_expressions(meta, folder / "JPEGImages", masks, sink)
    files = (meta, mask_path) if store is not None else (meta,)
    return DatasetSplit("mevis", split, folder, videos, tuple(expressions), files=files)


def mevis_results_writer(
    out: str | Path, *, as_zip: bool = False, overwrite: bool = False
) -> BinaryMaskTreeWriter:
    """Writer of MeViS predictions ``<video>/<exp_id>/<frame>.png`` (L 0/255): a folder for
    ``sparrow eval mevis --results``, or with ``as_zip`` the ``valid`` server zip (videos at the top)."""
    return BinaryMaskTreeWriter(out, as_zip=as_zip, overwrite=overwrite)


class MevisSplitWriter(TreeWriter):
    """Writes a ground-truth split in the MeViS layout (used by ``sparrow data convert``).

    Each object gets one anno id (a running counter) whose per-frame RLEs go to ``mask_dict.json``
    (``null`` where the mask is empty); every video also gets SynRef's ``"objects": {obj_id: anno_id}``.
    Frames are placed in ``JPEGImages/<video>/<frame>.jpg`` (JPEG files are copied / linked, other
    images re-encoded as JPEG quality 95).
    """

    def __init__(self, out: str | Path, *, frames: FrameMode = "link", overwrite: bool = False) -> None:
        super().__init__(out, overwrite=overwrite)
        self.frames = frames
        self._meta: dict[str, Any] = {}
        self._mask_dict: dict[str, list[Any]] = {}

    def add_video(
        self,
        video_id: str,
        frame_files: Sequence[Path],
        frame_names: Sequence[str],
        objects: Mapping[str, np.ndarray],
        expressions: Sequence[ExpressionRecord],
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        """Add one video.

        Args:
            video_id: folder name of the video.
            frame_files: source image of each frame.
            frame_names: output stem of each frame (``"00000"``).
            objects: ``{obj_id: bool (T, H, W)}``; obj ids are integers written as strings.
            expressions: the video's expressions; their ``exp_id``, ``text``, ``obj_ids`` (all in
                ``objects``), ``span``, ``tags``, ``qtype`` (as ``type_id``) and JSON-ready ``extra`` are kept.
            extra: more per-video keys (e.g. ``height``/``width``).
        """
        if len(frame_files) != len(frame_names):
            raise ValueError(f"{video_id}: {len(frame_files)} frame files but {len(frame_names)} names")
        for src, name in zip(frame_files, frame_names, strict=True):
            place_jpeg(src, self.dir / "JPEGImages" / video_id / f"{name}.jpg", self.frames)
        anno_of: dict[str, int] = {}
        for obj_id, masks in objects.items():
            masks = np.asarray(masks, dtype=bool)
            if masks.ndim != 3 or masks.shape[0] != len(frame_names):
                raise ValueError(
                    f"{video_id}: object {obj_id} has masks {masks.shape} for {len(frame_names)} frames"
                )
            anno_of[str(obj_id)] = anno = len(self._mask_dict)
            self._mask_dict[str(anno)] = [rle_encode(m) if m.any() else None for m in masks]
        self._meta[video_id] = {
            "expressions": {e.exp_id: _expression_entry(e, anno_of, video_id) for e in expressions},
            "frames": list(frame_names),
            "objects": dict(anno_of),
            **(extra or {}),
        }

    def finish(self) -> None:
        with open(self.dir / "meta_expressions.json", "w", encoding="utf-8") as f:
            json.dump({"videos": self._meta}, f)
        with open(self.dir / "mask_dict.json", "w", encoding="utf-8") as f:
            json.dump(self._mask_dict, f)


def _expression_entry(exp: ExpressionRecord, anno_of: Mapping[str, int], video_id: str) -> dict[str, Any]:
    missing = [o for o in exp.obj_ids if o not in anno_of]
    if missing:
        raise ValueError(f"{video_id}/{exp.exp_id}: objects {missing} have no masks")
    entry: dict[str, Any] = {
        **exp.extra,
        "exp": exp.text,
        "obj_id": [int(o) for o in exp.obj_ids],
        "anno_id": [anno_of[o] for o in exp.obj_ids],
    }
    if exp.span is not None:
        entry["span"] = list(exp.span)
    if exp.tags:
        entry["tags"] = list(exp.tags)
    if exp.qtype is not None:
        entry["type_id"] = exp.qtype
    return entry
