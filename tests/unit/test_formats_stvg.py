"""VidSTG / HC-STVG (TubeDETR processed JSON): tubes, lazy xyxy boxes, prediction JSON, round trip."""

from __future__ import annotations

import json

import numpy as np
import pytest
from formats_builders import build_hcstvg, build_vidstg, write_json

from sparrow.data.formats import StvgPrediction, read_hcstvg, read_vidstg, write_stvg_predictions
from sparrow.data.formats.stvg import hcstvg_file
from sparrow.errors import DataFormatError


def test_vidstg_reader(tmp_path):
    build_vidstg(tmp_path / "annotations")
    split = read_vidstg(tmp_path, "test")
    assert split.files == (tmp_path / "annotations" / "test.json",)
    decl, inter = split.tubes
    assert (decl.query_id, decl.qtype, decl.span, decl.sentence) == (
        "0",
        "declarative",
        (2, 9),
        "a dog runs.",
    )
    assert (inter.qtype, inter.span, inter.target_id) == ("interrogative", (3, 9), "3")
    assert list(decl.boxes) == list(range(2, 9)) and 9 not in decl.boxes and 1 not in decl.boxes
    np.testing.assert_array_equal(decl.boxes[4], [6.0, 3.0, 16.0, 11.0])  # xywh [6,3,10,8] -> xyxy
    video = decl.video
    assert video.video_file == tmp_path / "video" / "1025" / "2345.mp4"
    assert video.fps == 10.0 and video.size == (24, 32) and list(video.frame_numbers) == list(range(12))
    assert decl.extra["frame_count"] == 12
    other = read_vidstg(tmp_path / "annotations", "test", videos_root=tmp_path / "vids")
    assert other.tubes[0].video.video_file == tmp_path / "vids" / "video" / "1025" / "2345.mp4"


def test_vidstg_unknown_target_raises(tmp_path):
    path = build_vidstg(tmp_path)
    data = json.loads(path.read_text())
    data["videos"][1]["target_id"] = 99
    write_json(path, data)
    with pytest.raises(DataFormatError, match="target 99"):
        read_vidstg(tmp_path, "test")


def test_hcstvg_reader(tmp_path):
    build_hcstvg(tmp_path)
    assert hcstvg_file("test") == "test_proc.json" and hcstvg_file("val_v2") == "valv2_proc.json"
    (tube,) = read_hcstvg(tmp_path, "test").tubes
    assert tube.span == (20, 30) and len(tube.boxes) == 10
    np.testing.assert_array_equal(tube.boxes[21], [2.0, 2.0, 14.0, 11.0])
    assert tube.video.fps == 5.0 and len(tube.video.frame_numbers) == 100


def test_prediction_json_layout_and_validation(tmp_path):
    out = tmp_path / "pred.json"
    write_stvg_predictions(out, {"7": StvgPrediction((3, 9), {3: (1, 2, 3, 4), 4: np.array([1.5, 2, 3, 4])})})
    assert json.loads(out.read_text()) == {
        "7": {"sted": [3, 9], "boxes": {"3": [1.0, 2.0, 3.0, 4.0], "4": [1.5, 2.0, 3.0, 4.0]}}
    }
    with pytest.raises(ValueError, match="4 finite numbers"):
        write_stvg_predictions(tmp_path / "bad.json", {"1": StvgPrediction((0, 1), {0: (1, 2, 3)})})
    with pytest.raises(ValueError, match="before start"):
        write_stvg_predictions(tmp_path / "bad.json", {"1": StvgPrediction((5, 1), {})})
    assert not (tmp_path / "bad.json").exists()


def _gt_predictions(split):
    return {t.query_id: StvgPrediction(t.span, dict(t.boxes)) for t in split.tubes}


@pytest.mark.parametrize("fmt", ["vidstg", "hcstvg"])
def test_round_trip_through_eval_is_perfect(tmp_path, fmt):
    from sparrow.evaluation.stvg import evaluate_stvg

    path = build_vidstg(tmp_path) if fmt == "vidstg" else build_hcstvg(tmp_path)
    split = read_vidstg(tmp_path, "test") if fmt == "vidstg" else read_hcstvg(tmp_path, "test")
    write_stvg_predictions(tmp_path / "pred.json", _gt_predictions(split))
    result = evaluate_stvg(path, tmp_path / "pred.json", workers=1, strict=True)
    assert result.overall["m_tIoU"] == pytest.approx(1.0)
    assert result.overall["m_vIoU"] == pytest.approx(1.0)
    assert result.overall["gt_vIoU"] == pytest.approx(1.0)
    assert result.overall["n_videos"] == len(split.tubes)
