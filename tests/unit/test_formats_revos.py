"""ReVOS: type_id, height/width, the foreground dict, VISA results layout, round trip through eval."""

from __future__ import annotations

import numpy as np
import pytest
from formats_builders import H, W, build_revos
from PIL import Image

from sparrow.data.formats import read_revos, revos_results_writer


def test_reader_types_sizes_and_foreground(tmp_path):
    expected = build_revos(tmp_path)
    split = read_revos(tmp_path, "valid")
    assert [e.qtype for e in split.expressions[:3]] == [0, 1, 0]
    video = split.videos["vid_a"]
    assert video.size == (H, W) and video.extra["height"] == H
    np.testing.assert_array_equal(video.extra["foreground"].load(), expected[("vid_a", "2")])
    for exp in split.expressions:
        np.testing.assert_array_equal(exp.load_masks(), expected[(exp.video_id, exp.exp_id)])
    assert read_revos(tmp_path, "train").expressions == ()
    with pytest.raises(ValueError, match="unknown ReVOS split"):
        read_revos(tmp_path, "test")


def _write(out, split):
    with revos_results_writer(out) as writer:
        for exp in split.expressions:
            writer.add(exp.video_id, exp.exp_id, split.videos[exp.video_id].frame_names, exp.load_masks())


def test_results_are_visa_layout(tmp_path):
    build_revos(tmp_path / "ReVOS")
    split = read_revos(tmp_path / "ReVOS", "valid")
    _write(tmp_path / "pred", split)
    with Image.open(tmp_path / "pred" / "vid_b" / "1" / "00002.png") as im:
        assert im.mode == "L" and set(np.unique(np.asarray(im)).tolist()) == {0, 255}


def test_round_trip_through_eval_is_perfect(tmp_path):
    from sparrow.evaluation.revos import evaluate_revos

    build_revos(tmp_path / "ReVOS")
    split = read_revos(tmp_path / "ReVOS", "valid")
    _write(tmp_path / "pred", split)
    result = evaluate_revos(tmp_path / "ReVOS", tmp_path / "pred", workers=1, strict=True)
    for subset in ("referring", "reason", "overall"):
        scores = result.subsets[subset]
        assert (scores["J"], scores["F"], scores["JF"]) == (pytest.approx(100.0),) * 3
    assert result.subsets["overall"]["R"] == pytest.approx(100.0)  # no false positive at all
