"""``sparrow data check``: validate a local copy of a dataset and list every problem with its path.

The reader runs in collecting mode (broken JSON files, malformed entries, unknown ids), then every
record is checked against the disk: frames exist and share one size, every mask file exists and has
its frame's size, every RLE has the frame's size and one entry per frame, every referent is known.
Images are opened for their header only (no pixel is decoded), except the first annotation frame
of Ref-DAVIS videos, whose maximum label gives the number of objects (the DAVIS rule).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from PIL import Image

from sparrow.errors import DataFormatError
from sparrow.io.mask_files import read_index_png

from .issues import Issues, Problem
from .mask_sources import BinaryPngMasks, IndexPngMasks, RleMasks
from .records import DatasetSplit, VideoRecord
from .registry import get_format


class _Sizes:
    """Image header sizes ``(H, W)``, cached per path; None for a missing or unreadable file."""

    def __init__(self) -> None:
        self._cache: dict[Path, tuple[int, int] | str | None] = {}

    def get(self, path: Path) -> tuple[int, int] | str | None:
        """``(H, W)``, ``None`` if the file is missing, or an error string if it cannot be read."""
        if path not in self._cache:
            if not path.is_file():
                self._cache[path] = None
            else:
                try:
                    with Image.open(path) as im:
                        self._cache[path] = (im.height, im.width)
                except (OSError, ValueError) as err:
                    self._cache[path] = f"cannot read the image ({err})"
        return self._cache[path]


def _wh(size: tuple[int, int]) -> str:
    return f"{size[1]}x{size[0]}"


class _Checker:
    def __init__(self, split: DatasetSplit, issues: Issues) -> None:
        self.split = split
        self.issues = issues
        self.sizes = _Sizes()
        self.frame_size: dict[str, tuple[int, int] | None] = {}
        self.broken_stores: set[Path] = set()
        self.checked_sources: set[int] = set()
        self.checked_tracks: set[tuple[Path, str]] = set()

    # ------------------------------------------------------------------ videos
    def video(self, video: VideoRecord) -> None:
        size = video.size
        if video.video_file is not None:
            if not video.video_file.is_file():
                self.issues.report(
                    "missing-file", video.video_file, f"video file of {video.video_id!r} not found"
                )
        elif video.frame_dir is not None:
            size = self._frames(video)
        self.frame_size[video.video_id] = size

    def _frames(self, video: VideoRecord) -> tuple[int, int] | None:
        if not video.frame_dir.is_dir():
            self.issues.report(
                "missing-file", video.frame_dir, f"frame folder of video {video.video_id!r} not found"
            )
            return video.size
        size = video.size
        for path in video.frame_paths():
            got = self.sizes.get(path)
            if got is None:
                self.issues.report("missing-frame", path, f"frame of video {video.video_id!r} is missing")
            elif isinstance(got, str):
                self.issues.report("bad-image", path, got)
            elif size is None:
                size = got
            elif got != size:
                what = "the declared height/width" if video.size is not None else "the video's first frame"
                self.issues.report("frame-size", path, f"frame is {_wh(got)}, {what} {_wh(size)}")
        return size

    # ------------------------------------------------------------------- masks
    def source(self, source: object, video: VideoRecord, owner: str) -> None:
        """Check one lazy mask source against the video (each source object once)."""
        if id(source) in self.checked_sources:
            return
        self.checked_sources.add(id(source))
        size = self.frame_size.get(video.video_id)
        if isinstance(source, RleMasks):
            self._rle(source, video, size, owner)
        elif isinstance(source, IndexPngMasks):
            self._pngs(((p,) if p is not None else () for p in source.paths), size, owner, required=True)
        elif isinstance(source, BinaryPngMasks):
            self._pngs(source.paths, size, owner, required=False)

    def _pngs(
        self, paths: Iterable[tuple[Path, ...]], size: tuple[int, int] | None, owner: str, required: bool
    ) -> None:
        for frame_paths in paths:
            for path in frame_paths:
                got = self.sizes.get(path)
                if got is None:
                    if required:
                        self.issues.report("missing-mask", path, f"mask of {owner} is missing")
                elif isinstance(got, str):
                    self.issues.report("bad-image", path, got)
                elif size is not None and got != size:
                    self.issues.report(
                        "mask-size", path, f"mask of {owner} is {_wh(got)}, its frame {_wh(size)}"
                    )

    def _rle(self, source: RleMasks, video: VideoRecord, size: tuple[int, int] | None, owner: str) -> None:
        store_path = source.store.path
        if store_path in self.broken_stores:
            return
        for key in source.keys:
            if (store_path, key) in self.checked_tracks:
                continue
            self.checked_tracks.add((store_path, key))
            try:
                known = key in source.store
            except DataFormatError as err:  # the file itself is missing or broken
                self.broken_stores.add(store_path)
                self.issues.report(
                    "missing-file" if not store_path.is_file() else "bad-json", store_path, err.message
                )
                return
            if not known:
                self.issues.report(
                    "unknown-anno-id",
                    store_path,
                    f"{owner} names anno_id {key}, which is not in the mask dict",
                )
                continue
            try:
                track = source.store.track(key)
            except DataFormatError as err:  # one malformed entry
                self.issues.report("bad-entry", store_path, err.message)
                continue
            if len(track) != video.num_frames:
                self.issues.report(
                    "frame-count",
                    store_path,
                    f"anno_id {key} has {len(track)} masks, video {video.video_id!r} {video.num_frames} frames",
                )
            for t, rle in enumerate(track):
                if rle is None:
                    continue
                if not isinstance(rle, dict) or "counts" not in rle or not _is_size(rle.get("size")):
                    self.issues.report("bad-entry", store_path, f"anno_id {key}, frame {t}: not a COCO RLE")
                    break
                got = (int(rle["size"][0]), int(rle["size"][1]))
                if size is not None and got != size:
                    self.issues.report(
                        "mask-size",
                        store_path,
                        f"anno_id {key} ({owner}), frame {t}: RLE is {_wh(got)}, the frame {_wh(size)}",
                    )
                    break

    # ----------------------------------------------------------------- records
    def run(self, progress: Callable[[Iterable[str]], Iterator[str]] | None = None) -> None:
        split = self.split
        ids = list(split.videos)
        for vid in progress(ids) if progress is not None else ids:
            video = split.videos[vid]
            self.video(video)
            for key, value in video.extra.items():
                if isinstance(value, RleMasks):
                    self.source(value, video, f"{key} of video {vid!r}")
            label_map = split.label_maps.get(vid)
            if label_map is not None:
                if label_map.paths and label_map.paths[0] is None:
                    self.issues.report(
                        "missing-mask",
                        video.frame_dir or split.root,
                        f"first frame of {vid!r} has no annotation",
                    )
                self._pngs(
                    ((p,) for p in label_map.paths if p is not None),
                    self.frame_size.get(vid),
                    f"video {vid!r}",
                    True,
                )
        for exp in split.expressions:
            video = split.videos.get(exp.video_id)
            if video is None:
                continue
            owner = f"expression {exp.video_id}/{exp.exp_id}"
            if video.object_ids is not None:
                unknown = [o for o in exp.obj_ids if o not in video.object_ids]
                if unknown:
                    where = exp.source or split.root
                    self.issues.report(
                        "unknown-object",
                        where,
                        f"{owner} names object(s) {unknown}; the video has {list(video.object_ids)}",
                    )
            if exp.masks is not None:
                self.source(exp.masks, video, owner)
        for cap in split.captions:
            for k, masks in enumerate(cap.masks):
                if masks is None:
                    path = (
                        cap.video.frame_dir.parent if cap.video.frame_dir else split.root
                    ) / f"gt_masks_{k}"
                    self.issues.report(
                        "missing-mask",
                        path,
                        f"phrase {k} ({cap.phrases[k]!r}) of sample {cap.sample_id} has no mask folder",
                    )
                else:
                    self.source(masks, cap.video, f"phrase {k} of sample {cap.sample_id}")
        for tube in split.tubes:
            if tube.video.video_id not in self.frame_size and tube.video.video_file is not None:
                self.video(tube.video)
            missing = [f for f in range(*tube.span) if f not in tube.boxes]
            if missing:
                where = split.files[0] if split.files else split.root
                self.issues.report(
                    "missing-box",
                    where,
                    f"query {tube.query_id}: {len(missing)} frame(s) of the tube {list(tube.span)} have no box (first {missing[0]})",
                )


def _is_size(value: object) -> bool:
    return isinstance(value, (list, tuple)) and len(value) == 2 and all(isinstance(v, int) for v in value)


def check_refdavis_objects(split: DatasetSplit, issues: Issues) -> None:
    """Ref-DAVIS: an expression's object must be at most the first frame's maximum label (DAVIS rule)."""
    for vid in split.videos:
        exps = split.expressions_of(vid)
        first = next(
            (e.masks.paths[0] for e in exps if isinstance(e.masks, IndexPngMasks) and e.masks.paths), None
        )
        if first is None or not first.is_file():
            continue
        labels = read_index_png(first)
        n = int(labels[labels != 255].max(initial=0))
        for e in exps:
            bad = [o for o in e.obj_ids if not o.isdigit() or not 1 <= int(o) <= n]
            if bad:
                issues.report(
                    "unknown-object",
                    first,
                    f"expression {vid}/{e.exp_id} names object(s) {bad}; the first frame has objects 1..{n}",
                )


_EXTRA_CHECKS = {"ref-davis17": check_refdavis_objects}


def check_dataset(
    name: str,
    root: str | Path,
    split: str | None = None,
    *,
    progress: Callable[[Iterable[str]], Iterator[str]] | None = None,
) -> list[Problem]:
    """Every problem of the local copy of format ``name`` at ``root`` (empty list: all good).

    Args:
        name: a registry name (``sparrow data list``).
        root: the dataset folder.
        split: the split to check (default: the format's first).
        progress: optional wrapper of the video-id iterable (a progress bar).
    """
    spec = get_format(name)
    issues = Issues.collect()
    try:
        data = spec.open(root, split, issues=issues)
    except DataFormatError as err:
        issues.add_error(err)
        return issues.problems
    _Checker(data, issues).run(progress)
    extra = _EXTRA_CHECKS.get(spec.name)
    if extra is not None:
        extra(data, issues)
    seen: set[tuple[str, Path, str]] = set()
    unique = []
    for p in issues.problems:
        key = (p.kind, p.path, p.message)
        if key not in seen:
            seen.add(key)
            unique.append(p)
    return unique


__all__ = ["Problem", "check_dataset", "check_refdavis_objects"]
