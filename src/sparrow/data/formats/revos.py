"""ReVOS (VISA; ReVOS-api layout).

::

    <root>/JPEGImages/<video>/<frame>.jpg            train and valid together
    <root>/mask_dict.json                            {str(anno_id): [per-frame RLE or null]}
    <root>/mask_dict_foreground.json                 {<video>: {"masks_rle": [per-frame RLE], "foreground_ratio": [...]}}
    <root>/meta_expressions_{train,valid}_.json      MeViS layout + "type_id" per expression,
                                                     "height"/"width" per video

``type_id``: 0 referring, 1 reasoning, 2 a third type excluded from every aggregate; exposed as
:attr:`ExpressionRecord.qtype`. The video's union foreground (used by the robustness metric R) is a
lazy :class:`~sparrow.data.mask_sources.RleMasks` in ``VideoRecord.extra["foreground"]``.

Predictions (VISA ``train_ds.py``): ``<out>/<video>/<exp_id>/<frame>.png``, L-mode 0/255 -- the
MeViS results tree.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from ..issues import Issues, strict_issues
from ..mask_sources import AnnoMaskDict, ForegroundDict, RleMasks
from ..records import DatasetSplit, VideoRecord
from .common import BinaryMaskTreeWriter
from .meta import parse_meta_expressions

SPLITS = ("train", "valid")


def read_revos(root: str | Path, split: str = "valid", *, issues: Issues | None = None) -> DatasetSplit:
    """Index a ReVOS split (JSON only; both mask dicts are parsed on the first mask load)."""
    sink = strict_issues(issues)
    root = Path(root)
    if split not in SPLITS:
        raise ValueError(f"unknown ReVOS split {split!r}; use one of {SPLITS}")
    meta = root / f"meta_expressions_{split}_.json"
    store = AnnoMaskDict(root / "mask_dict.json")
    foreground = ForegroundDict(root / "mask_dict_foreground.json")

    def masks(video: VideoRecord, obj_ids: tuple[str, ...], anno_ids: tuple[str, ...]) -> RleMasks:
        return RleMasks(store, anno_ids, video.num_frames, video.size)

    videos, exps = parse_meta_expressions(meta, root / "JPEGImages", masks, sink)
    videos = {
        vid: replace(v, extra={**v.extra, "foreground": RleMasks(foreground, (vid,), v.num_frames, v.size)})
        for vid, v in videos.items()
    }
    files = (meta, store.path, foreground.path)
    return DatasetSplit("revos", split, root, videos, tuple(exps), files=files)


def revos_results_writer(out: str | Path, *, overwrite: bool = False) -> BinaryMaskTreeWriter:
    """Writer of ReVOS predictions in the VISA layout: ``<out>/<video>/<exp_id>/<frame>.png``, L 0/255."""
    return BinaryMaskTreeWriter(out, overwrite=overwrite)
