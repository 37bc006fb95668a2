"""Builders of small on-disk benchmark layouts for the VOS evaluation tests (official folder layouts)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from sparrow.io.mask_files import write_binary_png, write_index_png
from sparrow.structures.masks import rle_encode


def square(r0: int, r1: int, c0: int, c1: int, shape: tuple[int, int] = (20, 20)) -> np.ndarray:
    """Filled rows r0..r1 × cols c0..c1 (inclusive), bool."""
    m = np.zeros(shape, dtype=bool)
    m[r0 : r1 + 1, c0 : c1 + 1] = True
    return m


def write_davis(
    root: Path,
    gt: Sequence[np.ndarray],
    pred: Sequence[np.ndarray] | None = None,
    *,
    seq: str = "seq",
    results: Path | None = None,
    image_set: str = "val",
    tasks: Sequence[str] = ("Annotations", "Annotations_unsupervised"),
    images: bool = True,
) -> Path:
    """DAVIS-2017 layout under ``root`` with one sequence; predictions under ``results`` (default
    ``root/results``). ``gt`` / ``pred``: uint8 id maps ``(H, W)`` per frame. Returns the results folder."""
    for task in tasks:
        for t, lab in enumerate(gt):
            write_index_png(root / task / "480p" / seq / f"{t:05d}.png", lab)
    if images:
        img_dir = root / "JPEGImages" / "480p" / seq
        img_dir.mkdir(parents=True, exist_ok=True)
        for t, lab in enumerate(gt):
            Image.fromarray(np.zeros((*lab.shape, 3), np.uint8)).save(img_dir / f"{t:05d}.jpg")
    sets = root / "ImageSets" / "2017" / f"{image_set}.txt"
    sets.parent.mkdir(parents=True, exist_ok=True)
    names = sets.read_text().split() if sets.is_file() else []
    if seq not in names:
        sets.write_text("\n".join([*names, seq]) + "\n")
    res = results if results is not None else root / "results"
    for t, lab in enumerate(pred or []):
        write_index_png(res / seq / f"{t:05d}.png", lab)
    return res


def synthetic_davis_gt() -> list[np.ndarray]:
    """METRICS.md §1.7: 6 frames 20×20, object 1 rows 5..9 × cols 5..9, object 2 rows 12..15 × cols 12..15."""
    frames = []
    for _ in range(6):
        lab = np.zeros((20, 20), np.uint8)
        lab[square(5, 9, 5, 9)] = 1
        lab[square(12, 15, 12, 15)] = 2
        frames.append(lab)
    return frames


def synthetic_davis_pred(swap: bool = False) -> list[np.ndarray]:
    """Object 1 correct except frame 3 (shifted 2 columns); object 2 correct but missing in frames 0 and 5."""
    a, b = (2, 1) if swap else (1, 2)
    frames = []
    for t in range(6):
        lab = np.zeros((20, 20), np.uint8)
        lab[square(5, 9, 7, 11) if t == 3 else square(5, 9, 5, 9)] = a
        if t not in (0, 5):
            lab[square(12, 15, 12, 15)] = b
        frames.append(lab)
    return frames


def write_mevis(
    gt_dir: Path,
    videos: Mapping[str, Mapping[str, object]],
    objects: Mapping[int, Sequence[np.ndarray | None]],
    *,
    meta_name: str = "meta_expressions.json",
) -> None:
    """MeViS layout: ``videos`` is the ``meta_expressions.json`` "videos" mapping; ``objects`` maps
    anno_id -> per-frame bool masks (None = null RLE) written to ``mask_dict.json``."""
    gt_dir.mkdir(parents=True, exist_ok=True)
    (gt_dir / meta_name).write_text(json.dumps({"videos": videos}))
    mask_dict = {
        str(k): [None if m is None else rle_encode(m) for m in frames] for k, frames in objects.items()
    }
    (gt_dir / "mask_dict.json").write_text(json.dumps(mask_dict))


def write_predictions(
    results: Path, video: str, exp_id: str, masks: Sequence[np.ndarray], *, value: int = 255
) -> None:
    """``results/<video>/<exp_id>/<00000+t>.png`` as L-mode PNGs with foreground ``value``."""
    for t, m in enumerate(masks):
        write_binary_png(results / video / exp_id / f"{t:05d}.png", m, value=value)


def frame_names(n: int) -> list[str]:
    return [f"{t:05d}" for t in range(n)]
