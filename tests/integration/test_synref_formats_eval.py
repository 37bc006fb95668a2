"""SynRef x dataset readers x writers x evaluators, end to end (budget: < 30 s on 2 cores).

A tiny SynRef split per preset is generated with the Python API, read through every matching reader
(MeViS, VidSTG, VideoGCG) and checked against its JSON files; the ground truth is then written as
predictions with the matching writers of :mod:`sparrow.data.formats` and scored by the evaluators,
which must give perfect scores. ``sparrow data check`` must find no problem in the split.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from sparrow.cli.app import app
from sparrow.data.formats import (
    GcgWriter,
    StvgPrediction,
    mevis_results_writer,
    read_mevis,
    read_videogcg,
    read_vidstg,
    write_stvg_predictions,
)
from sparrow.data.registry import get_format
from sparrow.data.synref import GenerationRequest, preset, write_split
from sparrow.errors import ConfigError
from sparrow.evaluation.gcg import evaluate_gcg
from sparrow.evaluation.identity import evaluate_identity
from sparrow.evaluation.stvg import evaluate_stvg
from sparrow.structures.boxes import box_convert
from sparrow.structures.masks import rle_decode

os.environ.setdefault("HF_HUB_OFFLINE", "1")

FRAMES = 8
SIZE = (64, 96)  # (H, W): not square, so a swapped height/width would show
SPLITS = {"standard": "val", "hard": "test"}  # SynRef split names that are not official MeViS ones


@pytest.fixture(scope="module", params=sorted(SPLITS))
def synref(request, tmp_path_factory) -> tuple[Path, str]:
    """``(split folder, split name)`` of a 4-video SynRef split of the ``standard`` or ``hard`` preset."""
    difficulty = request.param
    split = SPLITS[difficulty]
    root = tmp_path_factory.mktemp(f"synref_{difficulty}") / split
    req = GenerationRequest(
        split=split,
        videos=4,
        frames=FRAMES,
        size=SIZE,
        seed=3,
        difficulty=difficulty,
        knobs=preset(difficulty),
    )
    counts = write_split(root, req)
    assert counts["videos"] == 4 and counts["expressions"] > 0 and counts["vidstg_entries"] > 0
    return root, split


def _json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def _union(mask_dict: dict, anno_ids: list[int]) -> np.ndarray:
    """bool ``(T, H, W)``: the union of the anno ids' per-frame RLEs (``null`` = empty)."""
    out = np.zeros((FRAMES, *SIZE), dtype=bool)
    for a in anno_ids:
        for t, rle in enumerate(mask_dict[str(a)]):
            if rle is not None:
                out[t] |= rle_decode(rle)
    return out


def _invoke(*args: str) -> None:
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, result.output


# ----------------------------------------------------------------------------------------- readers


def test_mevis_reader_matches_the_json(synref):
    root, split = synref
    meta = _json(root / "meta_expressions.json")["videos"]
    mask_dict = _json(root / "mask_dict.json")
    data = read_mevis(root, split)
    assert data.split == split and data.root == root
    assert data.files == (root / "meta_expressions.json", root / "mask_dict.json")
    assert list(data.videos) == list(meta)
    assert len(data.expressions) == sum(len(v["expressions"]) for v in meta.values())
    # the registry accepts the SynRef split name, from the split folder or from its parent
    for where in (root, root.parent):
        assert len(get_format("mevis").open(where, split).expressions) == len(data.expressions)
    for vid, video in data.videos.items():
        entry = meta[vid]
        assert video.frame_names == tuple(entry["frames"]) and video.num_frames == FRAMES
        assert video.size == SIZE == (entry["height"], entry["width"])
        assert video.object_ids == tuple(entry["objects"])
        assert all(p.is_file() for p in video.frame_paths())
    for exp in data.expressions:
        raw = meta[exp.video_id]["expressions"][exp.exp_id]
        assert exp.text == raw["exp"]
        assert exp.obj_ids == tuple(str(o) for o in raw["obj_id"])
        assert exp.anno_ids == tuple(str(a) for a in raw["anno_id"])
        assert exp.tags == tuple(raw["tags"])
        assert exp.span == (tuple(raw["span"]) if raw["span"] is not None else None)
        assert exp.extra["kind"] == raw["kind"]
        masks = exp.load_masks()
        assert masks.dtype == bool and masks.shape == (FRAMES, *SIZE)
        np.testing.assert_array_equal(masks, _union(mask_dict, raw["anno_id"]))


def test_vidstg_reader_finds_synref_frames(synref):
    root, split = synref
    ann = _json(root / "vidstg" / f"{split}.json")
    data = read_vidstg(root / "vidstg", split)
    assert [t.query_id for t in data.tubes] == [str(e["video_id"]) for e in ann["videos"]]
    for tube, entry in zip(data.tubes, ann["videos"], strict=True):
        vid = entry["original_video_id"]
        assert tube.video.frame_dir == root / "JPEGImages" / vid
        assert tube.video.video_file is None and tube.video.size == SIZE
        assert all(p.is_file() for p in tube.video.frame_paths())
        assert tube.sentence == entry["caption"] and tube.qtype == entry["qtype"]
        assert tube.span == (entry["tube_start_frame"], entry["tube_end_frame"])
        assert tube.target_id == str(entry["target_id"])
        track = ann["trajectories"][vid][str(entry["target_id"])]
        assert sorted(tube.boxes) == list(range(*tube.span))
        for frame, box in tube.boxes.items():
            expected = box_convert(np.asarray(track[str(frame)]["bbox"], dtype=np.float64), "xywh", "xyxy")
            np.testing.assert_allclose(box, expected)


def test_videogcg_reader_resolves_frames_into_jpegimages(synref):
    root, split = synref
    folders = sorted(p for p in (root / "gcg").iterdir() if p.is_dir())
    data = read_videogcg(root / "gcg", split)
    assert [c.sample_id for c in data.captions] == [p.name for p in folders]
    for cap, folder in zip(data.captions, folders, strict=True):
        res = _json(folder / "res.json")
        assert cap.caption == res["gt_text"] and cap.caption_cleaned == res["gt_text_cleaned"]
        assert cap.phrases == tuple(res["gt_phrases"])
        assert cap.extra["video"] == res["video"] and cap.extra["gt_obj_ids"] == res["gt_obj_ids"]
        assert cap.video.frame_dir == root / "JPEGImages" / res["video"]
        assert cap.video.frame_names == tuple(res["frames"]) and cap.video.num_frames == FRAMES
        assert all(p.is_file() for p in cap.video.frame_paths())
        masks = cap.load_masks()
        assert len(masks) == len(res["gt_phrases"])
        assert all(m.shape == (FRAMES, *SIZE) and m.any() for m in masks)


def test_official_locations_keep_precedence(synref, tmp_path):
    """``video/<video_path>`` (VidSTG) and ``img_frames/`` (VideoGCG) win over the SynRef fallbacks;
    a video found nowhere keeps the official path (for ``sparrow data check`` to report)."""
    root, split = synref
    ann = tmp_path / "ann"
    ann.mkdir()
    shutil.copy(root / "vidstg" / f"{split}.json", ann / f"{split}.json")
    vids = sorted({t.video.video_id for t in read_vidstg(root / "vidstg", split).tubes})
    (ann / "video" / "JPEGImages" / vids[0]).mkdir(parents=True)
    for tube in read_vidstg(ann, split).tubes:
        assert tube.video.frame_dir == ann / "video" / "JPEGImages" / tube.video.video_id
    sample = tmp_path / "gcg" / "000000"
    shutil.copytree(root / "gcg" / "000000", sample)
    (sample / "img_frames").mkdir()
    for t in range(3):
        shutil.copy(root / "JPEGImages" / vids[0] / "00000.jpg", sample / "img_frames" / f"frame_{t}.jpg")
    (cap,) = read_videogcg(tmp_path / "gcg", split).captions
    assert cap.video.frame_dir == sample / "img_frames" and cap.video.num_frames == 3


def test_unknown_mevis_split_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="has no split 'test'") as err:
        get_format("mevis").open(tmp_path, "test")
    assert "split folder" in (err.value.fix or "")


def test_data_check_finds_no_problem(synref):
    root, split = synref
    _invoke("data", "check", "mevis", "--root", str(root), "--split", split)
    _invoke("data", "check", "mevis", "--root", str(root.parent), "--split", split)
    _invoke("data", "check", "vidstg", "--root", str(root / "vidstg"), "--split", split)
    _invoke("data", "check", "videogcg", "--root", str(root / "gcg"))


# ---------------------------------------------------------------------------- writers + evaluators


def test_gt_as_mevis_predictions_scores_perfectly(synref, tmp_path):
    root, split = synref
    data = read_mevis(root, split)
    results = tmp_path / "results"
    with mevis_results_writer(results) as writer:
        for exp in data.expressions:
            writer.add(exp.video_id, exp.exp_id, data.videos[exp.video_id].frame_names, exp.load_masks())
    out = tmp_path / "mevis.json"
    _invoke(
        "eval", "mevis", "--gt", str(root), "--results", str(results), "--workers", "1", "--json", str(out)
    )
    scores = _json(out)
    assert scores["J&F"] == scores["J"] == scores["F"] == 1.0
    assert scores["n_expressions"] == len(data.expressions) and scores["dropped"] == []

    identity = evaluate_identity(root, results, workers=1, strict=True)
    assert identity.n_evaluated > 0 and identity.n_switch == 0 and identity.id_switch_rate == 0.0
    assert identity.tracking["IDSW"] == 0 and identity.tracking["IDF1"] == pytest.approx(1.0)


def test_gt_tubes_as_stvg_predictions_score_perfectly(synref, tmp_path):
    root, split = synref
    data = read_vidstg(root / "vidstg", split)
    preds = {
        t.query_id: StvgPrediction(sted=t.span, boxes={f: b.tolist() for f, b in t.boxes.items()})
        for t in data.tubes
    }
    pred_path = tmp_path / "stvg.json"
    write_stvg_predictions(pred_path, preds)
    result = evaluate_stvg(root / "vidstg" / f"{split}.json", pred_path, workers=1, strict=True)
    assert result.overall["n_videos"] == len(data.tubes) and not result.excluded
    assert result.overall["m_tIoU"] == pytest.approx(1.0) and result.overall["m_vIoU"] == pytest.approx(1.0)
    assert set(result.per_qtype) <= {"declarative", "interrogative"}


def test_gt_captions_as_gcg_predictions_score_perfectly(synref, tmp_path):
    root, split = synref
    data = read_videogcg(root / "gcg", split)
    out = tmp_path / "gcg"
    with GcgWriter(out) as writer:
        for cap in data.captions:
            writer.add(int(cap.sample_id), cap.caption, cap.load_masks(), gt=cap)
    # the written folders are complete (GT half, frames copied from JPEGImages) and score alone ...
    first = out / data.captions[0].sample_id
    assert len(list((first / "img_frames").glob("frame_*.jpg"))) == FRAMES
    alone = evaluate_gcg(out, captions=False, workers=1, strict=True)
    # ... and against SynRef's own GT folders
    against = evaluate_gcg(root / "gcg", out, captions=False, workers=1, strict=True)
    for result in (alone, against):
        assert len(result.samples) == len(data.captions)
        assert result.miou == pytest.approx(1.0) and result.recall == pytest.approx(1.0)
    # re-read through the reader: the frames are now the copied img_frames
    again = read_videogcg(out, split)
    assert [c.video.num_frames for c in again.captions] == [FRAMES] * len(data.captions)
