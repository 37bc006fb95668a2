"""Look at one video's ground truth (``sparrow data show``): a contact sheet (PNG) or an overlay
video (MP4) with every object's visible mask, its box (visible, or amodal behind a wall) and its id,
drawn with :mod:`sparrow.viz`."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from rich.console import Console
from rich.table import Table

from sparrow.errors import ConfigError, DataFormatError
from sparrow.io.frame_folder import read_rgb_image
from sparrow.io.writer import write_image
from sparrow.structures import Masklet, resize_mask, rle_encode_stack
from sparrow.viz import OverlayStyle, contact_sheet, write_overlay_video

from .reader import decode_masks, read_json, video_entry

_STYLE = OverlayStyle(time_bar=False)  # the presence bars would hide objects near the bottom edge


def show_video(root: str | Path, video: str, out: str | Path, console: Console | None = None) -> Path:
    """Draw the ground truth of ``video`` (a name, or an index into the sorted names) to ``out``.

    Args:
        root: a SynRef split folder.
        video: video name or index.
        out: ``.png`` (contact sheet of every frame) or ``.mp4`` (overlay video).
        console: if given, the video's expressions are printed as a table.

    Raises:
        ConfigError: ``out`` has another extension.
        DataFormatError: the split or the video is missing or malformed.
    """
    root, out = Path(root), Path(out)
    if out.suffix.lower() not in (".png", ".mp4"):
        raise ConfigError(
            f"cannot write {out.suffix!r}", path=out, fix="use a .png (contact sheet) or .mp4 (video) path"
        )
    meta_path = root / "meta_expressions.json"
    meta = read_json(meta_path, "meta_expressions.json")
    name, entry = video_entry(meta, video, meta_path)
    objects = video_entry(read_json(root / "objects.json", "objects.json"), name, root / "objects.json")[1][
        "objects"
    ]
    mask_dict = read_json(root / "mask_dict.json", "mask_dict.json")
    size = (int(entry["height"]), int(entry["width"]))
    zoom = max(1, 512 // max(size))  # draw on enlarged frames so that labels stay small
    big = (size[0] * zoom, size[1] * zoom)
    frames = [
        (
            t,
            cv2.resize(
                read_rgb_image(root / "JPEGImages" / name / f"{f}.jpg"),
                big[::-1],
                interpolation=cv2.INTER_NEAREST,
            ),
        )
        for t, f in enumerate(entry["frames"])
    ]
    masklets = []
    for obj_id, anno in sorted(entry["objects"].items(), key=lambda kv: int(kv[0])):
        if str(anno) not in mask_dict:
            raise DataFormatError(f"anno id {anno} of video {name} is missing", path=root / "mask_dict.json")
        masks = resize_mask(decode_masks(mask_dict, anno, size), big)
        masklets.append(
            Masklet(
                frame_indices=np.arange(len(masks)),
                rles=tuple(rle_encode_stack(masks)),
                boxes=np.asarray(objects[obj_id]["box"], dtype=np.float32) * zoom,
                scores=np.ones(len(masks), dtype=np.float32),
                size=big,
                object_id=int(obj_id),
                label=f"#{obj_id}",
            )
        )
    if out.suffix.lower() == ".png":
        write_image(out, contact_sheet(frames, masklets, columns=4, tile_width=None, style=_STYLE))
    else:
        fps = float(read_json(root / "synref.json", "synref.json")["knobs"]["fps"])
        write_overlay_video(out, frames, masklets, fps=fps, style=_STYLE)
    if console is not None:
        table = Table(title=f"{name}: expressions")
        for column in ("id", "expression", "objects", "tags", "span"):
            table.add_column(column)
        for exp_id, exp in entry["expressions"].items():
            table.add_row(
                exp_id,
                exp["exp"],
                ",".join(map(str, exp["obj_id"])),
                ", ".join(exp["tags"]),
                str(exp["span"]),
            )
        console.print(table)
        legend = Table(title="objects")
        for column in ("id", "anno id", "appearance", "motion seen"):
            legend.add_column(column)
        for obj_id, anno in sorted(entry["objects"].items(), key=lambda kv: int(kv[0])):
            o = objects[obj_id]
            seen = " ".join(x for x in (o["motion"], o["direction"]) if x) or "unclear"
            legend.add_row(
                f"#{obj_id}", str(anno), f"{o['size']} {o['texture']} {o['colour']} {o['shape']}", seen
            )
        console.print(legend)
    return out
