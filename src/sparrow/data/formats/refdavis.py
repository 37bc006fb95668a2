"""Ref-DAVIS17: the DAVIS 2017 videos plus the Khoreva et al. text annotations (ReferFormer layout).

::

    <root>/DAVIS/JPEGImages/480p/<video>/00000.jpg
    <root>/DAVIS/Annotations_unsupervised/480p/<video>/00000.png   the GT used by every protocol
    <root>/DAVIS/ImageSets/2017/{train,val}.txt
    <root>/davis_text_annotations/Davis17_annot1.txt               utf-8
    <root>/davis_text_annotations/Davis17_annot1_full_video.txt    utf-8
    <root>/davis_text_annotations/Davis17_annot2.txt               latin-1
    <root>/davis_text_annotations/Davis17_annot2_full_video.txt    latin-1

Each annotation line is ``<video> <obj_id> "<expression>"``. Three video names are fixed on read
(``clasic-car``, ``dog-scale``, ``motor-bike``). Objects of a video are sorted by ``obj_id`` as
strings and each gets 4 consecutive exp ids ``4*i + a``, ``a`` = annotation set in the order above.

Submission (ReferFormer protocol): for each set ``a``, ``anno_<a>/<video>/<frame:05d>.png`` palette
PNGs built from per-object probabilities: values below 0.5 set to 0, a constant 0.1 background plane
in front, argmax (object k of the stack gets id k+1).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..issues import Issues, strict_issues
from ..mask_sources import IndexPngMasks
from ..records import DatasetSplit, ExpressionRecord
from .davis import IndexMaskTreeWriter, davis_root, read_davis_videos, read_sequence_list

ANNOTATION_FILES = (
    ("Davis17_annot1.txt", "utf-8"),
    ("Davis17_annot1_full_video.txt", "utf-8"),
    ("Davis17_annot2.txt", "latin-1"),
    ("Davis17_annot2_full_video.txt", "latin-1"),
)
"""The four annotation sets, in exp-id order, with their encodings."""

NAME_FIXES = {"clasic-car": "classic-car", "dog-scale": "dogs-scale", "motor-bike": "motorbike"}
"""Video names the text files misspell, and the DAVIS names (as ReferFormer fixes them)."""

SUBMISSION_FOLDERS = ("anno_0", "anno_1", "anno_2", "anno_3")
VIDEOGLAMM_FOLDERS = tuple(name[: -len(".txt")] for name, _ in ANNOTATION_FILES)
SPLITS = ("train", "val")


def parse_annotation_lines(text: str) -> list[tuple[str, str, str]]:
    """``(video, obj_id, expression)`` per non-blank line, with the video-name fixes applied.

    The expression is the rest of the line after the first two fields, words re-joined by single
    spaces, with one pair of surrounding double quotes removed.
    """
    rows = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 2:
            continue
        video, obj_id = parts[0], parts[1]
        exp = " ".join(parts[2:])
        if len(exp) >= 2 and exp[0] == '"' and exp[-1] == '"':
            exp = exp[1:-1]
        rows.append((NAME_FIXES.get(video, video), obj_id, exp))
    return rows


def _read_sets(folder: Path, issues: Issues) -> list[dict[tuple[str, str], str]]:
    sets = []
    for name, encoding in ANNOTATION_FILES:
        path = folder / name
        table: dict[tuple[str, str], str] = {}
        if not path.is_file():
            issues.report("missing-file", path, "Ref-DAVIS text annotation file not found")
        else:
            for video, obj_id, exp in parse_annotation_lines(path.read_text(encoding=encoding)):
                if (video, obj_id) in table:
                    issues.report("bad-entry", path, f"{video} object {obj_id} is annotated twice")
                    continue
                table[(video, obj_id)] = exp
        sets.append(table)
    return sets


def read_ref_davis(root: str | Path, split: str = "val", *, issues: Issues | None = None) -> DatasetSplit:
    """Index Ref-DAVIS17: 4 expressions per object, masks from ``Annotations_unsupervised/480p``."""
    sink = strict_issues(issues)
    root = Path(root)
    if split not in SPLITS:
        raise ValueError(f"unknown Ref-DAVIS split {split!r}; use one of {SPLITS}")
    droot = davis_root(root)
    listing = droot / "ImageSets" / "2017" / f"{split}.txt"
    videos = read_davis_videos(droot, read_sequence_list(listing, sink), "480p", sink)
    text_dir = root / "davis_text_annotations"
    sets = _read_sets(text_dir, sink)
    ann_root = droot / "Annotations_unsupervised" / "480p"
    expressions: list[ExpressionRecord] = []
    for vid, video in videos.items():
        objects = sorted({obj for table in sets for (v, obj) in table if v == vid})
        if not objects:
            sink.report("bad-entry", text_dir, f"video {vid!r} has no text annotation")
            continue
        paths = [ann_root / vid / f"{n}.png" for n in video.frame_names]
        for i, obj in enumerate(objects):
            for a, table in enumerate(sets):
                if (vid, obj) not in table:
                    sink.report(
                        "bad-entry",
                        text_dir / ANNOTATION_FILES[a][0],
                        f"{vid} object {obj} has no expression",
                    )
                    continue
                expressions.append(
                    ExpressionRecord(
                        video_id=vid,
                        exp_id=str(4 * i + a),
                        text=table[(vid, obj)],
                        obj_ids=(obj,),
                        masks=IndexPngMasks(paths, [int(obj)] if obj.isdigit() else []),
                        extra={"anno_set": a, "annotator": 1 + a // 2, "full_video": a % 2 == 1},
                        source=text_dir / ANNOTATION_FILES[a][0],
                    )
                )
    files = (listing, *(text_dir / name for name, _ in ANNOTATION_FILES))
    return DatasetSplit("ref-davis17", split, root, videos, tuple(expressions), files=files)


def refdavis_labels(probs: np.ndarray) -> np.ndarray:
    """ReferFormer's rule: per-object probabilities -> one label map per frame.

    Args:
        probs: float ``(K, T, H, W)`` in ``[0, 1]`` (bool masks count as 0/1), one plane per object.

    Returns:
        uint8 ``(T, H, W)``: 0 where every object is below 0.5, else ``1 + argmax_k`` (ties: lowest k).
    """
    p = np.asarray(probs, dtype=np.float32)
    if p.ndim != 4:
        raise ValueError(f"probs must be (K, T, H, W), got {p.shape}")
    if p.shape[0] > 254:
        raise ValueError("at most 254 objects fit a palette PNG")
    p = np.where(p < 0.5, 0.0, p)
    background = np.full((1, *p.shape[1:]), 0.1, dtype=np.float32)
    return np.argmax(np.concatenate([background, p], axis=0), axis=0).astype(np.uint8)


class RefDavisWriter(IndexMaskTreeWriter):
    """Writes ``<out>/<set folder>/<video>/<frame:05d>.png`` for the 4 annotation sets.

    Args:
        out: the output folder.
        folders: the 4 set folder names: :data:`SUBMISSION_FOLDERS` (``anno_0``..) or
            :data:`VIDEOGLAMM_FOLDERS` (``Davis17_annot1``..).
    """

    def __init__(
        self, out: str | Path, *, folders: Sequence[str] = SUBMISSION_FOLDERS, overwrite: bool = False
    ) -> None:
        super().__init__(out, overwrite=overwrite)
        if len(folders) != 4:
            raise ValueError("Ref-DAVIS has 4 annotation sets")
        self.folders = tuple(folders)

    def add_probabilities(
        self, video_id: str, anno_set: int, frame_names: Sequence[str | int], probs: np.ndarray
    ) -> None:
        """Write one video of one annotation set from per-object probabilities ``(K, T, H, W)``."""
        self.add(video_id, frame_names, refdavis_labels(probs), subset=self.folders[anno_set])
