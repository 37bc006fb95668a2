"""SPARROW sequence folders (PAPER 1.4): the training-data layout, also the user-data recipe.

::

    <root>/<sequence>/img/<frame>.jpg            frames (jpg / jpeg / png), natural order
    <root>/<sequence>/mask/<obj>/<frame>.png     binary masks, one sub-folder per object, or
    <root>/<sequence>/mask/<frame>_<obj>.png     ... flat, object id after the last "_", or
    <root>/<sequence>/mask/<frame>.png           ... one object (id 1)
    <root>/<sequence>/groundtruth.txt            optional: one "x,y,w,h" per frame (the main target)
    <root>/<sequence>/nlp.txt                    the caption, with optional "[phrase](1, 2)" markup

``root`` may also be a single sequence folder. Object ids are positive integers. A frame without a
mask file for an object has an empty mask. A ``groundtruth.txt`` line of ``nan``s, or with ``w`` or
``h`` <= 0, marks the target absent in that frame; fields may be separated by commas, tabs or spaces.

What the reader builds, per sequence (the frame and mask folders are listed, no image is opened):

- one :class:`ExpressionRecord` per grounded phrase (text = the phrase, referents = its ids), or,
  without markup, one for the whole caption referring to every object;
- a :class:`CaptionRecord` in GCG form (``<p> phrase </p> [SEG]``) when the caption has markup;
- a :class:`TubeRecord` from ``groundtruth.txt`` (span = first to last frame with a box);
- ``VideoRecord.extra["object_masks"]``: ``{obj_id: lazy masks}`` of every object.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

from sparrow.io.frame_folder import natural_key
from sparrow.io.info import IMAGE_EXTENSIONS

from ..issues import Issues, strict_issues
from ..markup import GroundedText, MarkupError, parse_grounding_markup, to_gcg_caption
from ..mask_sources import BinaryPngMasks
from ..records import (
    CaptionRecord,
    DatasetSplit,
    ExpressionRecord,
    TubeBoxes,
    TubeRecord,
    VideoRecord,
    frame_numbers_from_names,
)
from .davis import list_stems

_BOX_SPLIT = re.compile(r"[,\s]+")


def parse_groundtruth(text: str) -> list[tuple[float, float, float, float] | None]:
    """Boxes of a ``groundtruth.txt``: per non-blank line ``(x, y, w, h)``, or None if absent.

    Raises:
        ValueError: a line does not hold 4 numbers (the message gives the line number).
    """
    boxes: list[tuple[float, float, float, float] | None] = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        parts = [p for p in _BOX_SPLIT.split(line.strip()) if p]
        try:
            values = [float(p) for p in parts]
        except ValueError:
            raise ValueError(f"line {lineno}: {line.strip()!r} is not 4 numbers") from None
        if len(values) != 4:
            raise ValueError(
                f"line {lineno}: {line.strip()!r} has {len(values)} numbers, expected 4 (x,y,w,h)"
            )
        x, y, w, h = values
        absent = any(math.isnan(v) for v in values) or w <= 0 or h <= 0
        boxes.append(None if absent else (x, y, w, h))
    return boxes


def sequence_folders(root: Path) -> list[Path]:
    """The sequence folders under ``root`` (or ``[root]`` when it is one), natural order."""
    if (root / "img").is_dir():
        return [root]
    if not root.is_dir():
        return []
    return sorted((p for p in root.iterdir() if (p / "img").is_dir()), key=lambda p: natural_key(p.name))


def list_object_masks(mask_dir: Path, frames: set[str], issues: Issues) -> dict[str, dict[str, Path]]:
    """``{obj_id: {frame name: mask path}}`` of a ``mask/`` folder in any of the three layouts."""
    objects: dict[str, dict[str, Path]] = {}
    if not mask_dir.is_dir():
        return objects
    for entry in sorted(mask_dir.iterdir(), key=lambda p: natural_key(p.name)):
        if entry.name.startswith("."):
            continue
        if entry.is_dir():
            if not entry.name.isdigit():
                issues.report("bad-entry", entry, "object folders must be named by positive integer ids")
                continue
            for f in entry.iterdir():
                if f.suffix.lower() == ".png":
                    if f.stem not in frames:
                        issues.report("missing-frame", f, f"mask of frame {f.stem!r}, which is not in img/")
                        continue
                    objects.setdefault(str(int(entry.name)), {})[f.stem] = f
            continue
        if entry.suffix.lower() != ".png":
            continue
        stem = entry.stem
        head, _, tail = stem.rpartition("_")
        if head in frames and tail.isdigit():
            frame, obj = head, str(int(tail))
        elif stem in frames:
            frame, obj = stem, "1"
        else:
            issues.report("missing-frame", entry, f"mask {entry.name!r} names no frame of img/")
            continue
        objects.setdefault(obj, {})[frame] = entry
    return dict(sorted(objects.items(), key=lambda kv: int(kv[0])))


def _masks(
    objects: dict[str, dict[str, Path]], obj_ids: tuple[str, ...], names: tuple[str, ...]
) -> BinaryPngMasks:
    return BinaryPngMasks(
        [[objects[o][n] for o in obj_ids if o in objects and n in objects[o]] for n in names]
    )


def _read_caption(path: Path, issues: Issues) -> GroundedText | None:
    if not path.is_file():
        return None
    try:
        return parse_grounding_markup(path.read_text(encoding="utf-8").strip())
    except MarkupError as err:
        issues.report("bad-entry", path, err.message)
    except UnicodeDecodeError as err:
        issues.report("bad-entry", path, f"not UTF-8 text ({err})")
    return None


def read_sparrow_sequences(
    root: str | Path, split: str = "all", *, issues: Issues | None = None
) -> DatasetSplit:
    """Index SPARROW sequence folders (one directory listing per folder; no image is opened)."""
    sink = strict_issues(issues)
    root = Path(root)
    folders = sequence_folders(root)
    if not folders:
        sink.report("missing-file", root, "no sequence folder (a folder with an img/ sub-folder) found")
    videos: dict[str, VideoRecord] = {}
    expressions: list[ExpressionRecord] = []
    captions: list[CaptionRecord] = []
    tubes: list[TubeRecord] = []
    files: list[Path] = []
    for folder in folders:
        seq = folder.name
        names_list, ext = list_stems(folder / "img", IMAGE_EXTENSIONS)
        names = tuple(names_list)
        objects = list_object_masks(folder / "mask", set(names), sink)
        video = VideoRecord(
            seq,
            names,
            frame_numbers_from_names(names),
            folder / "img",
            ext,
            object_ids=tuple(objects) or None,
            extra={"object_masks": {o: _masks(objects, (o,), names) for o in objects}},
        )
        videos[seq] = video
        caption = _read_caption(folder / "nlp.txt", sink)
        files.append(folder / "nlp.txt")
        if caption is not None:
            known = set(objects)
            spans = caption.spans
            referents = [(s.phrase, tuple(str(i) for i in s.obj_ids)) for s in spans] or [
                (caption.text, tuple(objects))
            ]
            for k, (text, obj_ids) in enumerate(referents):
                unknown = [o for o in obj_ids if o not in known]
                if unknown and sink.strict:  # when collecting, `sparrow data check` reports it once
                    sink.report(
                        "unknown-object",
                        folder / "nlp.txt",
                        f"{text!r} names object(s) {unknown} with no mask in mask/",
                    )
                masks = _masks(objects, obj_ids, names)
                expressions.append(
                    ExpressionRecord(seq, str(k), text, obj_ids, masks=masks, source=folder / "nlp.txt")
                )
            if spans:
                captions.append(
                    CaptionRecord(
                        sample_id=seq,
                        video=video,
                        caption=to_gcg_caption(caption),
                        caption_cleaned=caption.text,
                        phrases=tuple(s.phrase for s in spans),
                        masks=tuple(_masks(objects, tuple(str(i) for i in s.obj_ids), names) for s in spans),
                    )
                )
        tube = _read_tube(folder / "groundtruth.txt", video, caption.text if caption else "", sink)
        if tube is not None:
            tubes.append(tube)
            files.append(folder / "groundtruth.txt")
    return DatasetSplit(
        "sparrow-seq",
        split,
        root,
        videos,
        tuple(expressions),
        tuple(tubes),
        tuple(captions),
        files=tuple(files),
    )


def _read_tube(path: Path, video: VideoRecord, sentence: str, issues: Issues) -> TubeRecord | None:
    if not path.is_file():
        return None
    try:
        boxes = parse_groundtruth(path.read_text(encoding="utf-8"))
    except ValueError as err:
        issues.report("bad-entry", path, str(err))
        return None
    if len(boxes) != video.num_frames:
        issues.report("frame-count", path, f"{len(boxes)} boxes for {video.num_frames} frames in img/")
    raw = {video.frame_numbers[t]: b for t, b in enumerate(boxes[: video.num_frames]) if b is not None}
    if not raw:
        return None
    span = (min(raw), max(raw) + 1)
    return TubeRecord(video.video_id, video, sentence, "declarative", span, TubeBoxes(raw, span))
