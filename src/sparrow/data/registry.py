"""The dataset formats sparrow reads, by name: what each holds, its layout and what the reader needs."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from sparrow.errors import ConfigError

from .formats import (
    has_mevis_split,
    read_davis,
    read_hcstvg,
    read_mevis,
    read_ref_davis,
    read_ref_youtube_vos,
    read_revos,
    read_sparrow_sequences,
    read_videogcg,
    read_vidstg,
)
from .issues import Issues
from .records import DatasetSplit

Reader = Callable[..., DatasetSplit]
"""``reader(root, split, *, issues=None) -> DatasetSplit``."""


@dataclass(frozen=True)
class FormatSpec:
    """One dataset format.

    Attributes:
        name: the registry name (``sparrow data check NAME``).
        task: what it is for (``RVOS``, ``VOS``, ``STVG``, ``GCG``, ``training``).
        layout: one-line summary of the files.
        needs: what the reader needs on disk.
        writes: the prediction / submission layout our writer produces for it.
        splits: split names; the first is the default.
        read: the reader.
        has_split: for layouts whose split names are open (MeViS: SynRef writes ``train``/``val``/
            ``test``), ``has_split(root, split)`` says whether ``root`` holds a split of another name;
            None: only ``splits`` are accepted.
    """

    name: str
    task: str
    layout: str
    needs: str
    writes: str
    splits: tuple[str, ...]
    read: Reader
    has_split: Callable[[Path, str], bool] | None = None

    def open(
        self, root: str | Path, split: str | None = None, *, issues: Issues | None = None
    ) -> DatasetSplit:
        """Read ``split`` (default: the first) of a local copy at ``root``."""
        split = split or self.splits[0]
        if split not in self.splits and not (
            self.has_split is not None and self.has_split(Path(root), split)
        ):
            where = " or a split folder of that name under --root" if self.has_split is not None else ""
            raise ConfigError(
                f"format {self.name!r} has no split {split!r}",
                fix=f"use one of {', '.join(self.splits)}{where}",
            )
        return self.read(Path(root), split, issues=issues)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "task": self.task,
            "splits": list(self.splits),
            "layout": self.layout,
            "needs": self.needs,
            "writes": self.writes,
        }


FORMATS: dict[str, FormatSpec] = {
    spec.name: spec
    for spec in (
        FormatSpec(
            "mevis", "RVOS",
            "<split>/meta_expressions.json, <split>/mask_dict.json (RLE per anno_id), <split>/JPEGImages/<video>/<frame>.jpg",
            "--root: the folder holding the split folders (or one split folder); mask_dict.json only for GT splits; "
            "any split name whose folder has meta_expressions.json (SynRef: train, val, test)",
            "<video>/<exp_id>/<frame>.png L 0/255 (folder for `sparrow eval mevis`, zip for the valid server)",
            ("valid_u", "valid", "train"), read_mevis, has_mevis_split,
        ),
        FormatSpec(
            "ref-youtube-vos", "RVOS",
            "meta_expressions/{train,valid,test}/meta_expressions.json, train/{JPEGImages,Annotations,meta.json}, valid/JPEGImages",
            "--root: the ref-youtube-vos folder; valid needs the test meta (valid minus test)",
            "submission.zip with Annotations/<video>/<exp_id>/<frame>.png L 0/255",
            ("valid", "train", "test"), read_ref_youtube_vos,
        ),
        FormatSpec(
            "revos", "RVOS",
            "meta_expressions_{train,valid}_.json (+type_id, height/width), mask_dict.json, mask_dict_foreground.json, JPEGImages/",
            "--root: the ReVOS folder",
            "<video>/<exp_id>/<frame>.png L 0/255 (VISA layout)",
            ("valid", "train"), read_revos,
        ),
        FormatSpec(
            "ref-davis17", "RVOS",
            "DAVIS/{JPEGImages,Annotations_unsupervised}/480p/<video>/, DAVIS/ImageSets/2017/, davis_text_annotations/Davis17_annot{1,2}[_full_video].txt",
            "--root: the folder holding DAVIS/ and davis_text_annotations/",
            "anno_{0..3}/<video>/<frame:05d>.png palette (ReferFormer rule)",
            ("val", "train"), read_ref_davis,
        ),
        FormatSpec(
            "davis17", "VOS",
            "JPEGImages/480p/<seq>/, Annotations/480p/<seq>/ palette PNGs (255 void), ImageSets/2017/<split>.txt",
            "--root: the DAVIS folder (semi-supervised annotations)",
            "<seq>/<frame>.png palette PNGs of object ids",
            ("val", "train", "test-dev"), read_davis,
        ),
        FormatSpec(
            "davis17-unsupervised", "VOS",
            "JPEGImages/480p/<seq>/, Annotations_unsupervised/480p/<seq>/, ImageSets/{2017,2019}/<split>.txt",
            "--root: the DAVIS folder (unsupervised annotations)",
            "<seq>/<frame>.png palette PNGs of object ids",
            ("val", "train", "test-dev", "test-challenge"), partial(read_davis, task="unsupervised"),
        ),
        FormatSpec(
            "vidstg", "STVG",
            "<split>.json (TubeDETR: videos[] + trajectories) in root or root/annotations; videos in video/<video_path>",
            "--root: the annotation folder (videos are looked up under it in video/)",
            '{"<video_id>": {"sted": [s, e), "boxes": {"<frame>": [x1, y1, x2, y2]}}}',
            ("test", "val", "train"), read_vidstg,
        ),
        FormatSpec(
            "hcstvg", "STVG",
            "{train,test}_proc.json (v1) or {train,val,test}v2_proc.json (v2); videos in video/<video_path>",
            "--root: the annotation folder",
            '{"<video_id>": {"sted": [s, e), "boxes": {"<frame>": [x1, y1, x2, y2]}}}',
            ("test", "train", "val_v2", "train_v2", "test_v2"), read_hcstvg,
        ),
        FormatSpec(
            "videogcg", "GCG",
            "<idx:06d>/res.json (gt_text, gt_phrases), img_frames/frame_<t>.jpg, gt_masks_<k>/mask_<t>.png",
            "--root: the folder of sample folders (or the folder holding video_gcg/)",
            "<idx:06d>/res.json (pred_text, pred_phrases, pred_text_cleaned), pred_masks_<k>/mask_<t>.png 0/255",
            ("val",), read_videogcg,
        ),
        FormatSpec(
            "sparrow-seq", "training",
            "<seq>/img/<frame>.jpg, <seq>/mask/<obj>/<frame>.png or <frame>_<obj>.png, groundtruth.txt (x,y,w,h), nlp.txt ([phrase](1, 2))",
            "--root: the folder of sequence folders (or one sequence folder)",
            "(training data; convert to mevis with `sparrow data convert sparrow-seq mevis`)",
            ("all",), read_sparrow_sequences,
        ),
    )
}  # fmt: skip


def get_format(name: str) -> FormatSpec:
    """The :class:`FormatSpec` called ``name``.

    Raises:
        ConfigError: no format has that name (the message lists them).
    """
    try:
        return FORMATS[name]
    except KeyError:
        raise ConfigError(
            f"unknown dataset format {name!r}", fix=f"use one of: {', '.join(FORMATS)}"
        ) from None
