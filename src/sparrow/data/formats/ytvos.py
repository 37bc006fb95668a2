"""Ref-YouTube-VOS (ReferFormer ``docs/data.md`` layout).

::

    <root>/meta_expressions/{train,valid,test}/meta_expressions.json
    <root>/train/JPEGImages/<video>/<frame>.jpg
    <root>/train/Annotations/<video>/<frame>.png    palette PNGs of object ids
    <root>/train/meta.json                          {"videos": {<video>: {"objects": {"1": {"category", "frames"}}}}}
    <root>/valid/JPEGImages/<video>/<frame>.jpg     (valid and test videos)

Train expressions carry ``obj_id`` (a string); valid/test only ``exp``. The valid meta also lists
the test videos: the ``valid`` split is ``valid \\ test`` (202 videos on the real data).

Submission: ``Annotations/<video>/<exp_id>/<frame>.png`` (L-mode 0/255) for every listed frame,
zipped with the ``Annotations`` folder itself at the top (``zip -r submission.zip Annotations``).
"""

from __future__ import annotations

from pathlib import Path

from ..issues import Issues, strict_issues
from ..mask_sources import IndexPngMasks
from ..records import DatasetSplit, VideoRecord
from .common import BinaryMaskTreeWriter, json_object, read_json
from .meta import parse_meta_expressions

SPLITS = ("train", "valid", "test")


def _meta_path(root: Path, split: str) -> Path:
    return root / "meta_expressions" / split / "meta_expressions.json"


def _video_names(path: Path, issues: Issues) -> set[str] | None:
    data = read_json(path, issues)
    table = json_object(data, "videos", path, issues, "{video: ...}") if data is not None else None
    return set(table) if table is not None else None


def read_ref_youtube_vos(
    root: str | Path, split: str = "valid", *, issues: Issues | None = None
) -> DatasetSplit:
    """Index a Ref-YouTube-VOS split (train with palette-PNG masks; valid = valid minus test; test)."""
    sink = strict_issues(issues)
    root = Path(root)
    if split not in SPLITS:
        raise ValueError(f"unknown Ref-YouTube-VOS split {split!r}; use one of {SPLITS}")
    meta = _meta_path(root, split)
    files = [meta]
    subset = None
    if split == "valid":
        test_meta = _meta_path(root, "test")
        files.append(test_meta)
        test_videos = _video_names(test_meta, sink)
        valid_videos = _video_names(meta, sink)
        if test_videos is not None and valid_videos is not None:
            subset = valid_videos - test_videos
    if split == "train":
        objects = _train_objects(root / "train" / "meta.json", sink)
        files.append(root / "train" / "meta.json")
        ann_root = root / "train" / "Annotations"

        def masks(video: VideoRecord, obj_ids: tuple[str, ...], anno_ids: tuple[str, ...]) -> IndexPngMasks:
            paths = [ann_root / video.video_id / f"{name}.png" for name in video.frame_names]
            return IndexPngMasks(paths, [int(o) for o in obj_ids if o.isdigit()], video.size)

        videos, exps = parse_meta_expressions(
            meta, root / "train" / "JPEGImages", masks, sink, object_ids=lambda vid: objects.get(vid)
        )
    else:
        videos, exps = parse_meta_expressions(
            meta, root / "valid" / "JPEGImages", lambda *_: None, sink, videos_subset=subset
        )
    return DatasetSplit("ref-youtube-vos", split, root, videos, tuple(exps), files=tuple(files))


def _train_objects(path: Path, issues: Issues) -> dict[str, tuple[str, ...]]:
    data = read_json(path, issues)
    table = json_object(data, "videos", path, issues, "{video: {objects}}") if data is not None else None
    out: dict[str, tuple[str, ...]] = {}
    for vid, entry in (table or {}).items():
        objects = entry.get("objects") if isinstance(entry, dict) else None
        if not isinstance(objects, dict):
            issues.report("bad-entry", path, f"video {vid!r} needs an 'objects' object")
            continue
        out[vid] = tuple(str(k) for k in objects)
    return out


def ref_youtube_vos_writer(
    out: str | Path, *, as_zip: bool = True, overwrite: bool = False
) -> BinaryMaskTreeWriter:
    """Writer of the server submission: ``Annotations/<video>/<exp_id>/<frame>.png`` (L 0/255),
    zipped to ``out`` (``submission.zip``) with ``Annotations`` at the top, or a folder if not ``as_zip``."""
    return BinaryMaskTreeWriter(out, prefix="Annotations", as_zip=as_zip, overwrite=overwrite)
