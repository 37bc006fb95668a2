"""DAVIS 2017 (semi-supervised and unsupervised layouts).

::

    <root>/JPEGImages/480p/<seq>/00000.jpg
    <root>/Annotations/480p/<seq>/00000.png               semi-supervised: palette ids, 255 = void
    <root>/Annotations_unsupervised/480p/<seq>/00000.png  unsupervised
    <root>/ImageSets/2017/{train,val,test-dev}.txt        one sequence per line
    <root>/ImageSets/2019/{test-dev,test-challenge}.txt   unsupervised test sets

``root`` may also be the folder that holds ``DAVIS/`` (the Ref-DAVIS layout).

Results: ``<out>/<seq>/<frame>.png``, single-channel palette PNGs of object ids (DAVIS palette).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np

from sparrow.io.frame_folder import natural_key
from sparrow.io.info import IMAGE_EXTENSIONS
from sparrow.io.mask_files import write_index_png

from ..issues import Issues, strict_issues
from ..records import DatasetSplit, LabelMapRecord, VideoRecord, frame_numbers_from_names
from .common import TreeWriter, frame_key

Task = Literal["semi-supervised", "unsupervised"]
SPLITS = ("train", "val", "test-dev", "test-challenge")
ANNOTATION_DIRS = {"semi-supervised": "Annotations", "unsupervised": "Annotations_unsupervised"}


def davis_root(root: Path) -> Path:
    """``root``, or ``root/DAVIS`` when ``root`` is the Ref-DAVIS top folder."""
    return (
        root / "DAVIS"
        if not (root / "ImageSets").is_dir() and (root / "DAVIS" / "ImageSets").is_dir()
        else root
    )


def image_set(root: Path, split: str, task: Task) -> Path:
    """The sequence list of a split: ``ImageSets/2019`` for unsupervised test sets, else ``2017``."""
    year = "2019" if task == "unsupervised" and split.startswith("test") else "2017"
    return root / "ImageSets" / year / f"{split}.txt"


def read_sequence_list(path: Path, issues: Issues) -> list[str]:
    """Sequence names of an ``ImageSets`` file (blank lines skipped)."""
    if not path.is_file():
        issues.report("missing-file", path, "sequence list not found")
        return []
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def list_stems(folder: Path, extensions: Sequence[str]) -> tuple[list[str], str]:
    """Natural-sorted file stems of ``folder`` with one of ``extensions``, and the most common extension."""
    names = [
        p
        for p in folder.iterdir()
        if p.is_file() and p.suffix.lower() in extensions and not p.name.startswith(".")
    ]
    names.sort(key=lambda p: natural_key(p.name))
    exts = [p.suffix for p in names]
    return [p.stem for p in names], max(set(exts), key=exts.count) if exts else extensions[0]


def read_davis_videos(
    root: Path, sequences: Sequence[str], resolution: str, issues: Issues
) -> dict[str, VideoRecord]:
    """Video records of DAVIS sequences (one directory listing per sequence; no image is opened)."""
    videos: dict[str, VideoRecord] = {}
    for seq in sequences:
        folder = root / "JPEGImages" / resolution / seq
        if not folder.is_dir():
            issues.report("missing-file", folder, f"frame folder of sequence {seq!r} not found")
            continue
        names, ext = list_stems(folder, IMAGE_EXTENSIONS)
        videos[seq] = VideoRecord(seq, tuple(names), frame_numbers_from_names(names), folder, ext)
    return videos


def label_map_record(video: VideoRecord, folder: Path) -> LabelMapRecord:
    """The per-frame annotation PNGs of ``video`` in ``folder`` (None where a frame has none)."""
    present = set(list_stems(folder, (".png",))[0]) if folder.is_dir() else set()
    paths = tuple(folder / f"{n}.png" if n in present else None for n in video.frame_names)
    return LabelMapRecord(video.video_id, paths)


def read_davis(
    root: str | Path,
    split: str = "val",
    *,
    task: Task = "semi-supervised",
    resolution: str = "480p",
    issues: Issues | None = None,
) -> DatasetSplit:
    """Index a DAVIS 2017 split: frame names from directory listings, label maps as lazy PNG paths."""
    sink = strict_issues(issues)
    root = davis_root(Path(root))
    if task not in ANNOTATION_DIRS:
        raise ValueError(f"unknown DAVIS task {task!r}; use one of {tuple(ANNOTATION_DIRS)}")
    listing = image_set(root, split, task)
    videos = read_davis_videos(root, read_sequence_list(listing, sink), resolution, sink)
    ann_root = root / ANNOTATION_DIRS[task] / resolution
    labels = {vid: label_map_record(v, ann_root / vid) for vid, v in videos.items()}
    return DatasetSplit("davis17", split, root, videos, label_maps=labels, files=(listing,))


class IndexMaskTreeWriter(TreeWriter):
    """``<out>/[<subset>/]<video>/<frame>.png`` palette PNGs of object ids (DAVIS palette)."""

    def add(
        self, video_id: str, frame_names: Sequence[str | int], labels: np.ndarray, subset: str = ""
    ) -> None:
        """Write one video's label maps.

        Args:
            video_id: the sequence folder name.
            frame_names: one per label map (``"00000"``, or an int written ``{n:05d}``).
            labels: uint8 ``(T, H, W)`` object ids, 0 = background.
            subset: an extra folder level (``anno_0`` for Ref-DAVIS), or ``""``.
        """
        labels = np.asarray(labels)
        if labels.ndim != 3 or labels.shape[0] != len(frame_names):
            raise ValueError(f"{video_id}: labels {labels.shape} do not match {len(frame_names)} frame names")
        folder = self.dir / subset / video_id
        for name, frame in zip(frame_names, labels, strict=True):
            write_index_png(folder / f"{frame_key(name)}.png", frame)


def davis_results_writer(out: str | Path, *, overwrite: bool = False) -> IndexMaskTreeWriter:
    """Writer of DAVIS results: ``<out>/<seq>/<frame>.png`` palette PNGs (``add(seq, names, labels)``)."""
    return IndexMaskTreeWriter(out, overwrite=overwrite)
