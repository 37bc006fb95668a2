"""VideoGCG per-sample folders: reader, caption cleaning, prediction writer, round trip (mIoU = 1)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from formats_builders import GCG_TEXT, build_videogcg, object_masks
from PIL import Image

from sparrow.data.formats import GcgWriter, read_videogcg
from sparrow.data.markup import clean_gcg_caption


@pytest.mark.parametrize(
    ("text", "cleaned", "phrases"),
    [
        (GCG_TEXT, "A red box moves toward a blue box .", ["red box", "a blue box"]),
        ("USER: hi ASSISTANT: The <p>cat</p> [SEG] sleeps.\n", "The cat sleeps.", ["cat"]),
        ("'<p> a </p> [SEG] and  <p>b</p>[SEG]'", "a and b", ["a", "b"]),
        ("no phrases at all", "no phrases at all", []),
    ],
)
def test_clean_gcg_caption(text, cleaned, phrases):
    assert clean_gcg_caption(text) == (cleaned, phrases)


def test_reader(tmp_path):
    expected = build_videogcg(tmp_path / "video_gcg")
    split = read_videogcg(tmp_path)  # the folder holding video_gcg/ also works
    assert [c.sample_id for c in split.captions] == ["000000", "000001"]
    cap = split.captions[1]
    assert cap.phrases == ("red box", "a blue box") and cap.caption == GCG_TEXT
    assert cap.caption_cleaned == "A red box moves toward a blue box."
    assert cap.video.frame_names == ("frame_0", "frame_1", "frame_2")
    for got, want in zip(cap.load_masks(), expected["000001"], strict=True):
        np.testing.assert_array_equal(got, want)
    assert cap.video.load_frames().frames.shape == (3, 24, 32, 3)


def test_missing_mask_folder_gives_none(tmp_path):
    build_videogcg(tmp_path)
    for f in (tmp_path / "000000" / "gt_masks_1").iterdir():
        f.unlink()
    (tmp_path / "000000" / "gt_masks_1").rmdir()
    cap = read_videogcg(tmp_path).captions[0]
    assert cap.masks[0] is not None and cap.masks[1] is None


def test_writer_layout(tmp_path):
    build_videogcg(tmp_path / "gt")
    gt = read_videogcg(tmp_path / "gt").captions[0]
    pred_text = "A <p> red box </p> [SEG] near <p> a box </p> [SEG]."
    with GcgWriter(tmp_path / "pred") as writer:
        writer.add(0, pred_text, gt.load_masks())
        writer.add(1, pred_text, gt.load_masks(), gt=gt)
    res = json.loads((tmp_path / "pred" / "000000" / "res.json").read_text())
    assert res == {
        "pred_text": pred_text,
        "pred_text_cleaned": "A red box near a box .",
        "pred_phrases": ["red box", "a box"],
    }
    with Image.open(tmp_path / "pred" / "000000" / "pred_masks_1" / "mask_2.png") as im:
        assert im.mode == "L" and set(np.unique(np.asarray(im)).tolist()) == {0, 255}
    full = tmp_path / "pred" / "000001"
    assert json.loads((full / "res.json").read_text())["gt_phrases"] == ["red box", "a blue box"]
    assert (full / "gt_masks_1" / "mask_0.png").is_file() and (full / "img_frames" / "frame_2.jpg").is_file()


def test_round_trip_through_eval_is_perfect(tmp_path):
    from sparrow.evaluation.gcg import evaluate_gcg

    build_videogcg(tmp_path / "gt")
    split = read_videogcg(tmp_path / "gt")
    with GcgWriter(tmp_path / "pred") as writer, GcgWriter(tmp_path / "combined") as combined:
        for i, cap in enumerate(split.captions):
            writer.add(i, cap.caption, cap.load_masks())
            combined.add(i, cap.caption, cap.load_masks(), gt=cap)
    result = evaluate_gcg(tmp_path / "gt", tmp_path / "pred", captions=False, workers=1, strict=True)
    assert result.miou == pytest.approx(1.0) and result.recall == pytest.approx(1.0)
    alone = evaluate_gcg(tmp_path / "combined", captions=False, workers=1, strict=True)
    assert alone.miou == pytest.approx(1.0) and alone.recall == pytest.approx(1.0)
    # a wrong prediction is not perfect: the check can fail
    with GcgWriter(tmp_path / "wrong") as writer:
        for i, cap in enumerate(split.captions):
            writer.add(i, cap.caption, [object_masks(shift=5)[1], object_masks()[1]])
    assert evaluate_gcg(tmp_path / "gt", tmp_path / "wrong", captions=False, workers=1).miou < 0.9
