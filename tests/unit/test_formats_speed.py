"""Indexing a large MeViS-layout split is JSON parsing only: fast, and nothing is opened or decoded.

Decision (documented in docs/data_formats.md): readers neither open nor stat frame files; the
MeViS reader touches two files -- it parses ``meta_expressions.json`` and checks that
``mask_dict.json`` exists (parsed on the first ``load_masks``). ``sparrow data check`` is the
command that visits every frame.
"""

from __future__ import annotations

import json
import os
import time

import cv2
import PIL.Image
import pycocotools.mask
import pytest

import sparrow.data.mask_sources
import sparrow.structures.masks
from sparrow.data.formats import read_mevis

N_VIDEOS, N_EXPRESSIONS, N_FRAMES = 1000, 10, 30


def _write_split(folder):
    frames = [f"{i:05d}" for i in range(N_FRAMES)]
    videos = {}
    for v in range(N_VIDEOS):
        exps = {
            str(e): {
                "exp": f"object {e} of video {v} moving left",
                "obj_id": [e % 3],
                "anno_id": [3 * v + e % 3],
            }
            for e in range(N_EXPRESSIONS)
        }
        videos[f"video_{v:04d}"] = {"expressions": exps, "frames": frames}
    folder.mkdir(parents=True)
    (folder / "meta_expressions.json").write_text(json.dumps({"videos": videos}))
    rle = {"size": [480, 854], "counts": "PPYo0"}
    (folder / "mask_dict.json").write_text(
        json.dumps({str(a): [rle] * N_FRAMES for a in range(3 * N_VIDEOS)})
    )


def test_index_1000_videos_fast_without_decoding(tmp_path, monkeypatch):
    _write_split(tmp_path / "train")

    def forbidden(*args, **kwargs):
        raise AssertionError("indexing must not open or decode anything")

    monkeypatch.setattr(PIL.Image, "open", forbidden)
    monkeypatch.setattr(cv2, "imread", forbidden)
    monkeypatch.setattr(pycocotools.mask, "decode", forbidden)
    monkeypatch.setattr(sparrow.structures.masks, "rle_decode", forbidden)
    monkeypatch.setattr(sparrow.data.mask_sources, "rle_decode", forbidden)
    for name in ("listdir", "scandir"):
        monkeypatch.setattr(os, name, forbidden)
    stats = []
    real_stat = os.stat

    def counting_stat(path, *args, **kwargs):
        stats.append(str(path))
        return real_stat(path, *args, **kwargs)

    monkeypatch.setattr(os, "stat", counting_stat)

    start = time.perf_counter()
    split = read_mevis(tmp_path, "train")
    elapsed = time.perf_counter() - start

    assert len(split.videos) == N_VIDEOS and len(split.expressions) == N_VIDEOS * N_EXPRESSIONS
    assert split.videos["video_0999"].num_frames == N_FRAMES
    assert not split.expressions[0].masks.store.file._loaded  # mask_dict.json not even parsed
    assert len(stats) <= 5, stats  # a handful of stats of the split folder files, never a frame
    assert not any("JPEGImages" in s for s in stats)
    print(f"indexed {N_VIDEOS} videos / {N_VIDEOS * N_EXPRESSIONS} expressions in {elapsed:.3f} s")
    assert elapsed < 2.0
    with pytest.raises(AssertionError, match="must not open or decode"):
        split.expressions[0].load_masks()  # the decoder really is patched: loading would decode
