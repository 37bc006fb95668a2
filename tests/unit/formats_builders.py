"""Tiny datasets in the exact official layouts, for the format tests (imported by test_formats_*.py).

Every video has 3 frames of 24x32 pixels and two non-overlapping objects (ids 1 and 2) that move.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from sparrow.io.mask_files import write_binary_png, write_index_png
from sparrow.structures.masks import rle_encode

H, W = 24, 32
FRAMES = ("00000", "00001", "00002")


def object_masks(n_frames: int = 3, shift: int = 0) -> dict[int, np.ndarray]:
    """``{1: (T, H, W), 2: (T, H, W)}`` bool; object 1 moves right, object 2 shrinks from the right."""
    masks = {1: np.zeros((n_frames, H, W), bool), 2: np.zeros((n_frames, H, W), bool)}
    for t in range(n_frames):
        masks[1][t, 2:9, 3 + t + shift : 11 + t + shift] = True
        masks[2][t, 12:20, 15 : 25 - t] = True
    return masks


def label_maps(masks: dict[int, np.ndarray]) -> np.ndarray:
    out = np.zeros(next(iter(masks.values())).shape, np.uint8)
    for k, m in masks.items():
        out[m] = k
    return out


def write_frames(folder: Path, names, size: tuple[int, int] = (H, W), ext: str = ".jpg") -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(names):
        Image.new("RGB", (size[1], size[0]), (10 * i, 80, 160)).save(folder / f"{name}{ext}")


def write_json(path: Path, data, encoding: str = "utf-8") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data), encoding=encoding)
    return path


# ---------------------------------------------------------------- MeViS / ReVOS
def mevis_tables(videos=("vid_a", "vid_b"), *, synref: bool = False, revos: bool = False):
    """``(meta, mask_dict, expected)``: expected = ``{(video, exp_id): union masks (T, H, W)}``."""
    meta: dict = {"videos": {}}
    mask_dict: dict = {}
    expected = {}
    for v, vid in enumerate(videos):
        objs = object_masks(shift=v)
        anno = {}
        for k in (1, 2):
            anno[k] = len(mask_dict)
            # frame 2 of object 2 stored as null when empty -- here never empty, but keep a null case:
            mask_dict[str(anno[k])] = [rle_encode(m) for m in objs[k]]
        exps = {
            "0": {"exp": "the left box moving right", "obj_id": [1], "anno_id": [anno[1]]},
            "1": {"exp": "the shrinking box", "obj_id": [2], "anno_id": [anno[2]]},
            "2": {"exp": "both boxes", "obj_id": [1, 2], "anno_id": [anno[1], anno[2]]},
        }
        entry: dict = {"expressions": exps, "frames": list(FRAMES)}
        if synref:
            entry["objects"] = {"1": anno[1], "2": anno[2]}
            exps["0"].update(tags=["motion"], span=[0, 2])
            exps["1"].update(tags=["static", "size"], difficulty="hard")
            exps["2"].update(tags="multi", span="second half")  # forms the reader keeps as they are
        if revos:
            entry.update(height=H, width=W)
            for i, e in exps.items():
                e["type_id"] = int(i) % 2
        meta["videos"][vid] = entry
        expected[(vid, "0")] = objs[1]
        expected[(vid, "1")] = objs[2]
        expected[(vid, "2")] = objs[1] | objs[2]
    return meta, mask_dict, expected


def build_mevis(root: Path, split: str = "valid_u", *, with_masks: bool = True, synref: bool = False):
    meta, mask_dict, expected = mevis_tables(synref=synref)
    folder = root / split
    write_json(folder / "meta_expressions.json", meta)
    if with_masks:
        write_json(folder / "mask_dict.json", mask_dict)
    for vid in meta["videos"]:
        write_frames(folder / "JPEGImages" / vid, FRAMES)
    return folder, expected


def build_revos(root: Path):
    meta, mask_dict, expected = mevis_tables(revos=True)
    write_json(root / "meta_expressions_valid_.json", meta)
    write_json(root / "meta_expressions_train_.json", {"videos": {}})
    write_json(root / "mask_dict.json", mask_dict)
    fg = {}
    for vid in meta["videos"]:
        union = expected[(vid, "2")]
        fg[vid] = {
            "masks_rle": [rle_encode(m) for m in union],
            "foreground_ratio": [float(m.mean()) for m in union],
        }
        write_frames(root / "JPEGImages" / vid, FRAMES)
    write_json(root / "mask_dict_foreground.json", fg)
    return expected


# ------------------------------------------------------------ Ref-YouTube-VOS
YT_FRAMES = ("00000", "00005", "00010")


def build_ytvos(root: Path):
    """Train (2 videos, palette masks) + valid meta with 3 videos of which 1 is a test video."""
    train_meta = {"videos": {}}
    meta_json = {"videos": {}}
    expected = {}
    for v, vid in enumerate(("a1b2c3", "d4e5f6")):
        objs = object_masks(shift=v)
        train_meta["videos"][vid] = {
            "expressions": {
                "0": {"exp": "a box moving right", "obj_id": "1"},
                "1": {"exp": "a shrinking box", "obj_id": "2"},
            },
            "frames": list(YT_FRAMES),
        }
        meta_json["videos"][vid] = {
            "objects": {
                "1": {"category": "box", "frames": list(YT_FRAMES)},
                "2": {"category": "box", "frames": list(YT_FRAMES)},
            }
        }
        write_frames(root / "train" / "JPEGImages" / vid, YT_FRAMES)
        labels = label_maps(objs)
        for name, lab in zip(YT_FRAMES, labels, strict=True):
            write_index_png(root / "train" / "Annotations" / vid / f"{name}.png", lab)
        expected[(vid, "0")] = objs[1]
        expected[(vid, "1")] = objs[2]
    write_json(root / "meta_expressions" / "train" / "meta_expressions.json", train_meta)
    write_json(root / "train" / "meta.json", meta_json)
    valid = {"videos": {}}
    test = {"videos": {}}
    for vid in ("v_valid1", "v_valid2", "v_test1"):
        entry = {
            "expressions": {"0": {"exp": f"the thing in {vid}"}, "1": {"exp": "another thing"}},
            "frames": list(YT_FRAMES),
        }
        valid["videos"][vid] = entry
        if vid.startswith("v_test"):
            test["videos"][vid] = entry
        write_frames(root / "valid" / "JPEGImages" / vid, YT_FRAMES)
    write_json(root / "meta_expressions" / "valid" / "meta_expressions.json", valid)
    write_json(root / "meta_expressions" / "test" / "meta_expressions.json", test)
    return expected


# -------------------------------------------------------------- DAVIS / Ref-DAVIS
DAVIS_SEQS = ("bike-packing", "classic-car")


def build_davis(root: Path, seqs=DAVIS_SEQS):
    """DAVIS-2017 folder with semi-supervised + unsupervised annotations; returns ``{seq: labels}``."""
    (root / "ImageSets" / "2017").mkdir(parents=True, exist_ok=True)
    (root / "ImageSets" / "2017" / "val.txt").write_text("\n".join(seqs) + "\n")
    (root / "ImageSets" / "2017" / "train.txt").write_text("")
    expected = {}
    for v, seq in enumerate(seqs):
        labels = label_maps(object_masks(shift=v))
        write_frames(root / "JPEGImages" / "480p" / seq, FRAMES)
        for ann in ("Annotations", "Annotations_unsupervised"):
            for name, lab in zip(FRAMES, labels, strict=True):
                write_index_png(root / ann / "480p" / seq / f"{name}.png", lab)
        expected[seq] = labels
    return expected


REFDAVIS_TEXT = {
    # file: lines (the video name "clasic-car" is misspelled on purpose: ReferFormer fixes it)
    "Davis17_annot1.txt": [
        'bike-packing 1 "a man on a bike"',
        'bike-packing 2 "a backpack"',
        'clasic-car 1 "a car"',
        'clasic-car 2 "a man"',
    ],
    "Davis17_annot1_full_video.txt": [
        'bike-packing 1 "a man riding"',
        'bike-packing 2 "a bag moving"',
        'clasic-car 1 "a car parked"',
        'clasic-car 2 "a man walking"',
    ],
    "Davis17_annot2.txt": [
        'bike-packing 1 "a cyclist"',
        'bike-packing 2 "a red bag"',
        'clasic-car 1 "an old café car"',
        'clasic-car 2 "a person"',
    ],
    "Davis17_annot2_full_video.txt": [
        'bike-packing 2 "the bag"',
        'bike-packing 1 "the cyclist"',
        'clasic-car 1 "the car"',
        'clasic-car 2 "the person"',
    ],
}


def build_refdavis(root: Path):
    labels = build_davis(root / "DAVIS")
    folder = root / "davis_text_annotations"
    folder.mkdir(parents=True, exist_ok=True)
    for name, lines in REFDAVIS_TEXT.items():
        encoding = "latin-1" if "annot2" in name else "utf-8"
        (folder / name).write_bytes(("\n".join(lines) + "\n").encode(encoding))
    return labels


# ------------------------------------------------------------------ STVG
def build_vidstg(root: Path, split: str = "test"):
    """Two queries on one video (declarative + interrogative); boxes xywh per frame 0..9."""
    traj = {str(f): {"bbox": [2 + f, 3, 10, 8]} for f in range(0, 12)}
    videos = []
    for i, (qtype, cap) in enumerate((("declarative", "a dog runs."), ("interrogative", "what runs?"))):
        videos.append(
            {
                "video_id": i, "original_video_id": "1025/2345", "target_id": 3, "caption": cap, "qtype": qtype,
                "fps": 10.0, "width": W, "height": H, "frame_count": 12, "start_frame": 0, "end_frame": 12,
                "tube_start_frame": 2 + i, "tube_end_frame": 9, "video_path": "1025/2345.mp4",
            }
        )  # fmt: skip
    data = {"videos": videos, "trajectories": {"1025/2345": {"3": traj}}}
    return write_json(root / f"{split}.json", data)


def build_hcstvg(root: Path, split: str = "test"):
    entries = [
        {
            "original_video_id": "clip_a", "frame_count": 100, "width": W, "height": H, "tube_start_frame": 20,
            "tube_end_frame": 30, "tube_start_time": 4.0, "tube_end_time": 6.0, "video_path": "x/clip_a.mp4",
            "caption": "the man in red walks to the door.", "video_id": 0,
            "trajectory": [[1 + i, 2, 12, 9] for i in range(10)],
        }
    ]  # fmt: skip
    return write_json(root / f"{split}_proc.json", entries)


# ------------------------------------------------------------------ VideoGCG
GCG_TEXT = "A <p> red box </p> [SEG] moves toward <p> a blue box </p> [SEG]."


def build_videogcg(root: Path, n: int = 2):
    expected = {}
    for idx in range(n):
        folder = root / f"{idx:06d}"
        objs = object_masks(shift=idx)
        write_json(
            folder / "res.json",
            {
                "gt_text": GCG_TEXT,
                "gt_text_cleaned": "A red box moves toward a blue box.",
                "gt_phrases": ["red box", "a blue box"],
            },
        )
        write_frames(folder / "img_frames", [f"frame_{t}" for t in range(3)])
        for k in (0, 1):
            for t in range(3):
                write_binary_png(folder / f"gt_masks_{k}" / f"mask_{t}.png", objs[k + 1][t])
        expected[folder.name] = [objs[1], objs[2]]
    return expected


# ------------------------------------------------------------------ SPARROW sequences
def build_sequences(root: Path):
    """Two sequences: ``seq1`` (per-object sub-folders, markup, groundtruth.txt) and ``seq2`` (flat
    ``<frame>_<obj>.png`` masks, png frames, a caption without markup)."""
    expected = {}
    names = ("img_0001", "img_0002", "img_0003")
    objs = object_masks()
    s1 = root / "seq1"
    write_frames(s1 / "img", names)
    for k in (1, 2):
        for t, name in enumerate(names):
            if t == 2 and k == 2:
                continue  # object 2 has no mask file on the last frame: empty mask there
            write_binary_png(s1 / "mask" / str(k) / f"{name}.png", objs[k][t])
    (s1 / "nlp.txt").write_text(
        "[A red box](1) slides past [the blue box](2) and [both](1, 2) stop.\n", encoding="utf-8"
    )
    (s1 / "groundtruth.txt").write_text("3,2,8,7\n4,2,8,7\nnan,nan,nan,nan\n")
    exp2 = objs[2].copy()
    exp2[2] = False
    expected[("seq1", "0")] = objs[1]
    expected[("seq1", "1")] = exp2
    expected[("seq1", "2")] = objs[1] | exp2
    s2 = root / "seq2"
    names2 = ("00000", "00001", "00002")
    write_frames(s2 / "img", names2, ext=".png")
    objs2 = object_masks(shift=1)
    for t, name in enumerate(names2):
        write_binary_png(s2 / "mask" / f"{name}_1.png", objs2[1][t])
    (s2 / "nlp.txt").write_text("a box moving to the right", encoding="utf-8")
    expected[("seq2", "0")] = objs2[1]
    return expected
