"""Read back what :mod:`.writer` wrote that only SynRef has: the manifest, ``objects.json`` and the
per-object facts the checker needs, so an emitted expression can be re-proved from the files alone.
(The MeViS / VidSTG / GCG files are read by :mod:`sparrow.data.formats`.)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from sparrow.errors import DataFormatError
from sparrow.structures.masks import rle_decode

from .checker import Observation
from .world import ATTRIBUTES, REFERENCE_SIZE


def read_json(path: Path, what: str) -> Any:
    """Parse a JSON file of a SynRef split.

    Raises:
        DataFormatError: missing or not JSON.
    """
    if not path.is_file():
        raise DataFormatError(
            f"{what} not found", path=path, fix="point at a split folder written by `sparrow data synref`"
        )
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DataFormatError(
            f"{what} is not valid JSON ({err})", path=path, fix="regenerate the split"
        ) from err


def video_entry(data: Any, video: str, path: Path) -> tuple[str, dict[str, Any]]:
    """``(name, data["videos"][name])`` where ``video`` is a name, or a position in the sorted names.

    Raises:
        DataFormatError: no such video, or no ``videos`` mapping.
    """
    videos = data.get("videos") if isinstance(data, dict) else None
    if not isinstance(videos, dict):
        raise DataFormatError("no 'videos' mapping", path=path, fix="regenerate the split")
    if video not in videos and video.isdigit() and int(video) < len(videos):
        video = sorted(videos)[int(video)]
    if video not in videos:
        raise DataFormatError(
            f"no video {video!r}", path=path, fix="use a name listed in meta_expressions.json or an index"
        )
    return video, videos[video]


def decode_masks(mask_dict: dict[str, Any], anno_id: int, size: tuple[int, int]) -> np.ndarray:
    """Bool ``(T, H, W)`` masks of one anno id (``null`` frames are empty)."""
    rles = mask_dict[str(anno_id)]
    return np.stack([rle_decode(r) if r is not None else np.zeros(size, dtype=bool) for r in rles])


def observation(entry: dict[str, Any], visible_px: np.ndarray, height: int, width: int) -> Observation:
    """The checker's view of one video from its ``objects.json`` entry.

    Args:
        entry: ``objects.json["videos"][video]``.
        visible_px: int ``(K, T)`` visible pixel counts (e.g. from the decoded ``mask_dict.json``).
        height, width: frame size.
    """
    objs = [entry["objects"][str(k)] for k in range(len(entry["objects"]))]

    def stack(key: str) -> np.ndarray:
        return np.asarray([o["pixels"][key] for o in objs], dtype=np.int64).reshape(len(objs), -1)

    return Observation(
        height=height,
        width=width,
        scale=min(height, width) / REFERENCE_SIZE,
        attributes=tuple({a: o[a] for a in ATTRIBUTES} for o in objs),
        radius=np.asarray([o["radius"] for o in objs], dtype=np.float64),
        visible_px=np.asarray(visible_px, dtype=np.int64),
        full_px=stack("full"),
        amodal_px=stack("in_view"),
        wall_px=stack("wall"),
        amodal_box=np.asarray([o["amodal_box"] for o in objs], dtype=np.float32).reshape(len(objs), -1, 4),
        centers=np.asarray([o["center"] for o in objs], dtype=np.float64).reshape(len(objs), -1, 2),
        walls=len(entry["walls"]),
    )
