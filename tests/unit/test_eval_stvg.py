"""STVG metrics (TubeDETR protocol, METRICS.md 3.1): golden vector, sampling, layouts, failures."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sparrow.errors import DataFormatError, EvaluationError
from sparrow.evaluation.stvg import evaluate_stvg, load_stvg_predictions, stvg_frames, temporal_iou
from sparrow.evaluation.stvg_data import load_stvg_annotations, sample_frame_ids


def vidstg_video(
    video_id: int, *, qtype: str = "declarative", tube: tuple[int, int] = (10, 20), fps: float = 5
) -> dict:
    return {
        "video_id": video_id,
        "original_video_id": f"orig{video_id}",
        "target_id": 0,
        "caption": "a man",
        "qtype": qtype,
        "fps": fps,
        "width": 100,
        "height": 100,
        "start_frame": 0,
        "end_frame": 30,
        "tube_start_frame": tube[0],
        "tube_end_frame": tube[1],
        "video_path": f"{video_id}.mp4",
    }


def write_vidstg(
    path: Path, videos: list[dict], box: tuple[float, float, float, float] = (0, 0, 10, 10)
) -> Path:
    trajectories = {
        v["original_video_id"]: {
            "0": {str(f): {"bbox": list(box)} for f in range(v["tube_start_frame"], v["tube_end_frame"])}
        }
        for v in videos
    }
    path.write_text(json.dumps({"videos": videos, "trajectories": trajectories, "obj_categories": {}}))
    return path


def golden_prediction() -> dict:
    # Box IoU with the GT (0, 0, 10, 10): 0.5 on frames 10-14, 0.8 on frames 15-19.
    return {
        "sted": [15, 25],
        "boxes": {str(f): [0, 0, 10, 8] if f >= 15 else [0, 0, 10, 5] for f in range(10, 20)},
    }


def write_json(path: Path, data: object) -> Path:
    path.write_text(json.dumps(data))
    return path


def test_golden_vector(tmp_path: Path) -> None:
    gt = write_vidstg(tmp_path / "test.json", [vidstg_video(7)])
    pred = write_json(tmp_path / "pred.json", {"7": golden_prediction()})
    result = evaluate_stvg(gt, pred, workers=1)
    o = result.overall
    assert o["m_tIoU"] == pytest.approx(1 / 3) and round(o["m_tIoU"], 4) == 0.3333
    assert o["m_vIoU"] == pytest.approx(4 / 15) and round(o["m_vIoU"], 4) == 0.2667
    assert o["vIoU@0.3"] == 0.0 and o["vIoU@0.5"] == 0.0
    assert o["gt_vIoU"] == pytest.approx(0.65)
    assert result.per_qtype["declarative"] == o
    assert result.to_json_dict()["per_video"]["7"]["tIoU"] == pytest.approx(1 / 3)


def test_per_qtype_and_strict_thresholds(tmp_path: Path) -> None:
    videos = [vidstg_video(1), vidstg_video(2, qtype="interrogative"), vidstg_video(3, qtype="interrogative")]
    gt = write_vidstg(tmp_path / "test.json", videos)
    perfect = {"sted": [10, 20], "boxes": {str(f): [0, 0, 10, 10] for f in range(10, 20)}}
    half = {"sted": [10, 20], "boxes": {str(f): [0, 0, 10, 5] for f in range(10, 20)}}  # IoU exactly 0.5
    pred = write_json(tmp_path / "pred.json", {"1": golden_prediction(), "2": perfect, "3": half})
    result = evaluate_stvg(gt, pred, workers=2)
    inter = result.per_qtype["interrogative"]
    assert inter["n_videos"] == 2
    assert inter["m_vIoU"] == pytest.approx(0.75)
    assert inter["vIoU@0.5"] == 0.5  # 0.5 is not > 0.5
    assert inter["vIoU@0.3"] == 1.0
    assert result.overall["m_tIoU"] == pytest.approx((1 / 3 + 1 + 1) / 3)


def test_temporal_iou() -> None:
    assert temporal_iou((10, 20), (15, 25)) == pytest.approx(1 / 3)
    assert temporal_iou((10, 20), (20, 30)) == 0.0  # touching, end exclusive
    assert temporal_iou((10, 20), (30, 40)) == 0.0
    assert temporal_iou((10, 20), (10, 20)) == 1.0


def reference_sampling(start: int, end: int, fps: float, video_fps: float, max_len: int) -> list[int]:
    """The TubeDETR loop, written out literally."""
    rate = fps / video_fps
    ids = [start]
    for f in range(start, end):
        if int(ids[-1] * rate) < int(f * rate):
            ids.append(f)
    if len(ids) > max_len:
        ids = [ids[(j * len(ids)) // max_len] for j in range(max_len)]
    return ids


@settings(max_examples=60, deadline=None)
@given(
    st.integers(0, 500),
    st.integers(0, 1500),
    st.sampled_from([1, 2, 5]),
    st.sampled_from([5, 10, 23.976, 25, 29.97, 30, 60]),
    st.integers(1, 250),
)
def test_sampling_matches_the_tubedetr_loop(
    start: int, length: int, fps: int, video_fps: float, max_len: int
) -> None:
    if fps > video_fps:
        return
    expected = reference_sampling(start, start + length, fps, video_fps, max_len)
    assert sample_frame_ids(start, start + length, fps=fps, video_fps=video_fps, max_len=max_len) == expected


def test_sampling_examples() -> None:
    assert sample_frame_ids(0, 30, fps=5, video_fps=30, max_len=200) == [0, 6, 12, 18, 24]
    assert sample_frame_ids(3, 3, fps=5, video_fps=30, max_len=200) == [3]
    ids = sample_frame_ids(0, 250, fps=5, video_fps=5, max_len=200)
    assert len(ids) == 200 and ids[:6] == [0, 1, 2, 3, 5, 6]  # frames[(j * 250) // 200]
    with pytest.raises(ValueError, match="upsample"):
        sample_frame_ids(0, 10, fps=5, video_fps=2, max_len=200)


def test_hcstvg_layout(tmp_path: Path) -> None:
    entry = {
        "video_id": 3,
        "frame_count": 100,  # 20 s clip -> 5 fps -> every frame sampled, clip = range(0, 99)
        "tube_start_frame": 10,
        "tube_end_frame": 20,
        "trajectory": [[0, 0, 10, 10]] * 10,
        "width": 100,
        "height": 100,
        "caption": "x",
    }
    gt = write_json(tmp_path / "val_proc.json", [entry])
    ann = load_stvg_annotations(gt)
    assert ann.dataset == "hcstvg" and ann.videos[0].video_fps == 5.0
    assert stvg_frames(ann.videos[0]) == list(range(99))
    pred = write_json(tmp_path / "pred.json", {"3": golden_prediction()})
    result = evaluate_stvg(gt, pred, workers=1)
    assert result.per_qtype == {}
    assert result.overall["m_vIoU"] == pytest.approx(4 / 15)
    assert result.overall["gt_vIoU"] == pytest.approx(0.65)


def test_missing_predictions(tmp_path: Path) -> None:
    gt = write_vidstg(tmp_path / "test.json", [vidstg_video(1), vidstg_video(2)])
    partial = golden_prediction()
    del partial["boxes"]["12"]
    pred = write_json(tmp_path / "pred.json", {"1": partial, "99": golden_prediction()})
    result = evaluate_stvg(gt, pred, workers=1)
    assert result.overall["n_videos"] == 0
    assert set(result.excluded) == {"1", "2"} and "frame 12" in result.excluded["1"]
    assert result.ignored_predictions == ["99"]
    with pytest.raises(EvaluationError, match=r"pred\.json.*not in test\.json"):
        evaluate_stvg(gt, pred, strict=True, workers=1)
    pred = write_json(tmp_path / "pred.json", {"1": partial, "2": golden_prediction()})
    with pytest.raises(EvaluationError, match=r"pred\.json.*video '1'.*frame 12"):
        evaluate_stvg(gt, pred, strict=True, workers=1)


@pytest.mark.parametrize(
    "content",
    [
        "not json",
        "[1, 2]",
        '{"1": {"sted": [1]}}',
        '{"1": {"sted": [1, 2], "boxes": {"5": [1, 2, 3]}}}',
        '{"1": {"sted": [1, 2], "boxes": {"five": [1, 2, 3, 4]}}}',
    ],
)
def test_malformed_predictions(tmp_path: Path, content: str) -> None:
    path = tmp_path / "pred.json"
    path.write_text(content)
    with pytest.raises(DataFormatError, match=r"pred\.json"):
        load_stvg_predictions(path)


def test_malformed_annotations(tmp_path: Path) -> None:
    video = vidstg_video(1)
    gt = write_vidstg(tmp_path / "test.json", [video])
    data = json.loads(gt.read_text())
    del data["videos"][0]["fps"]
    gt.write_text(json.dumps(data))
    with pytest.raises(DataFormatError, match=r"test\.json.*'fps' missing"):
        load_stvg_annotations(gt)
    data["videos"][0]["fps"] = 5
    data["trajectories"]["orig1"]["0"].pop("12")
    gt.write_text(json.dumps(data))
    pred = write_json(tmp_path / "pred.json", {"1": golden_prediction()})
    with pytest.raises(DataFormatError, match="no GT box for sampled tube frame 12"):
        evaluate_stvg(gt, pred, workers=1)
    (tmp_path / "other.json").write_text('{"foo": 1}')
    with pytest.raises(DataFormatError, match="unknown layout"):
        load_stvg_annotations(tmp_path / "other.json")
