"""The ``meta_expressions.json`` layout shared by Ref-YouTube-VOS, MeViS and ReVOS (and SynRef).

``{"videos": {<video>: {"expressions": {<exp_id>: {"exp": str, "obj_id": ..., "anno_id": ...}},
"frames": ["00000", ...], ...other keys}}}``. Known optional keys: per video ``height``/``width``
(ReVOS, SynRef) and ``objects`` (SynRef: ``{"<obj_id>": <anno_id>}``); per expression ``type_id``
(ReVOS), ``tags`` and ``span`` (SynRef). Every other key is kept in the records' ``extra``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..issues import Issues
from ..mask_sources import MaskSource
from ..records import ExpressionRecord, VideoRecord, frame_numbers_from_names
from .common import id_tuple, json_object, read_json, size_of, span_tuple

MaskFactory = Callable[[VideoRecord, tuple[str, ...], tuple[str, ...]], MaskSource | None]
"""``(video, obj_ids, anno_ids) -> lazy masks`` (or None when the split has no GT)."""

_VIDEO_KEYS = {"expressions", "frames"}
_EXP_KEYS = {"exp", "obj_id", "anno_id", "tags", "type_id"}


def _object_ids(entry: dict[str, Any]) -> tuple[str, ...] | None:
    objects = entry.get("objects")
    return tuple(str(k) for k in objects) if isinstance(objects, dict) else None


def parse_meta_expressions(
    path: Path,
    frames_root: Path,
    masks: MaskFactory,
    issues: Issues,
    *,
    videos_subset: set[str] | None = None,
    object_ids: Callable[[str], tuple[str, ...] | None] | None = None,
) -> tuple[dict[str, VideoRecord], list[ExpressionRecord]]:
    """Read a ``meta_expressions.json`` into records (no frame or mask file is touched).

    Args:
        path: the JSON file.
        frames_root: folder holding ``<video>/<frame>.jpg``.
        masks: builds each expression's lazy masks.
        issues: where malformed entries are reported (strict: raised).
        videos_subset: keep only these videos (Ref-YouTube-VOS valid minus test), in file order.
        object_ids: per video, the annotated object ids when another file lists them.
    """
    data = read_json(path, issues)
    if data is None:
        return {}, []
    table = json_object(data, "videos", path, issues, "{video: {expressions, frames}}")
    if table is None:
        return {}, []
    videos: dict[str, VideoRecord] = {}
    expressions: list[ExpressionRecord] = []
    for vid, entry in table.items():
        if videos_subset is not None and vid not in videos_subset:
            continue
        frames = entry.get("frames") if isinstance(entry, dict) else None
        exps = entry.get("expressions") if isinstance(entry, dict) else None
        if (
            not isinstance(frames, list)
            or not all(isinstance(f, str) for f in frames)
            or not isinstance(exps, dict)
        ):
            issues.report(
                "bad-entry", path, f"video {vid!r} needs 'frames' (list of names) and 'expressions' (object)"
            )
            continue
        video = VideoRecord(
            video_id=vid,
            frame_names=tuple(frames),
            frame_numbers=frame_numbers_from_names(frames),
            frame_dir=frames_root / vid,
            size=size_of(entry),
            object_ids=object_ids(vid) if object_ids is not None else _object_ids(entry),
            extra={k: v for k, v in entry.items() if k not in _VIDEO_KEYS},
        )
        videos[vid] = video
        for exp_id, exp in exps.items():
            if not isinstance(exp, dict) or not isinstance(exp.get("exp"), str):
                issues.report("bad-entry", path, f"expression {vid}/{exp_id} needs an 'exp' string")
                continue
            obj_ids, anno_ids = id_tuple(exp.get("obj_id")), id_tuple(exp.get("anno_id"))
            tags = exp.get("tags", ())
            span = span_tuple(exp.get("span"))  # a [start, end) pair; any other form stays in extra
            expressions.append(
                ExpressionRecord(
                    video_id=vid,
                    exp_id=str(exp_id),
                    text=exp["exp"],
                    obj_ids=obj_ids,
                    anno_ids=anno_ids,
                    masks=masks(video, obj_ids, anno_ids),
                    span=span,
                    tags=tuple(str(t) for t in tags) if isinstance(tags, (list, tuple)) else (str(tags),),
                    qtype=exp.get("type_id"),
                    extra={
                        k: v for k, v in exp.items() if k not in _EXP_KEYS and (k != "span" or span is None)
                    },
                    source=path,
                )
            )
    return videos, expressions
