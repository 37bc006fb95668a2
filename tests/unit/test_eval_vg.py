"""VideoGLaMM/SPARROW grounding mIoU (METRICS.md 3.2): blob removal, DETR boxes, transform, protocol."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage

from sparrow.errors import DataFormatError, EvaluationError
from sparrow.evaluation.stvg_data import load_stvg_annotations
from sparrow.evaluation.vg import (
    detr_mask_box,
    evaluate_vg,
    load_vg_predictions,
    remove_small_blobs,
    transform_frame_size,
    vg_frames,
)
from sparrow.structures.masks import rle_encode


def reference_remove_small_objects(mask: np.ndarray, min_size: int) -> np.ndarray:
    """skimage's algorithm: label with connectivity 1 (the 2-D cross), drop components < min_size."""
    labels, _ = ndimage.label(mask, structure=ndimage.generate_binary_structure(2, 1))
    sizes = np.bincount(labels.ravel())
    too_small = sizes < min_size
    out = mask.copy()
    out[too_small[labels]] = False
    return out


@settings(max_examples=60, deadline=None)
@given(
    st.integers(1, 24),
    st.integers(1, 24),
    st.floats(0.1, 0.7),
    st.integers(0, 30),
    st.randoms(use_true_random=False),
)
def test_blob_removal_matches_skimage_definition(h: int, w: int, density: float, min_size: int, rnd) -> None:
    mask = np.array([rnd.random() < density for _ in range(h * w)]).reshape(h, w)
    np.testing.assert_array_equal(
        remove_small_blobs(mask, min_size), reference_remove_small_objects(mask, min_size)
    )


def test_blob_removal_uses_4_connectivity() -> None:
    mask = np.zeros((12, 12), dtype=bool)
    mask[0:2, 0:5] = True  # 10 px
    mask[2:4, 5:10] = True  # 10 px, touching the first only diagonally at (1,4)-(2,5)
    assert not remove_small_blobs(mask, 20).any()  # two 10-px blobs, not one 20-px blob
    mask[2, 4] = True  # now 4-connected: 21 px
    assert remove_small_blobs(mask, 20).sum() == 21
    blob = np.zeros((10, 10), dtype=bool)
    blob[0:4, 0:5] = True  # exactly 20 px: kept (removal is "< min_size")
    assert remove_small_blobs(blob, 20).sum() == 20
    blob[0, 0] = False
    assert not remove_small_blobs(blob, 20).any()


def test_detr_box_is_inclusive() -> None:
    mask = np.zeros((30, 40), dtype=bool)
    mask[5:15, 10:20] = True  # 10 columns -> a box 9 px wide
    np.testing.assert_array_equal(detr_mask_box(mask), np.array([10, 5, 19, 14], dtype=np.float32))
    np.testing.assert_array_equal(
        detr_mask_box(np.zeros((4, 4), bool)), np.array([1e8, 1e8, 0, 0], dtype=np.float32)
    )


@pytest.mark.parametrize(
    ("w", "h", "expected"),
    [
        (640, 480, (224, 298)),
        (1280, 720, (210, 373)),
        (480, 640, (298, 224)),
        (224, 224, (224, 224)),
        (300, 224, (224, 300)),
    ],
)
def test_frame_size_after_transform(w: int, h: int, expected: tuple[int, int]) -> None:
    assert transform_frame_size(w, h, 224) == expected
    assert transform_frame_size(w, h, None) == (h, w)


def write_gt(
    path: Path,
    *,
    width: int = 224,
    height: int = 224,
    dataset: str = "vidstg",
    box: list[float] | None = None,
) -> Path:
    box = box or [10, 10, 20, 20]
    if dataset == "vidstg":
        video = {
            "video_id": 1,
            "original_video_id": "o1",
            "target_id": 0,
            "caption": "x",
            "qtype": "declarative",
            "fps": 1,
            "width": width,
            "height": height,
            "start_frame": 0,
            "end_frame": 10,
            "tube_start_frame": 2,
            "tube_end_frame": 6,
            "video_path": "v.mp4",
        }
        data: object = {
            "videos": [video],
            "trajectories": {"o1": {"0": {str(f): {"bbox": box} for f in range(2, 6)}}},
        }
    else:  # HC-STVG: frame_count 20 -> 1 fps
        data = [
            {
                "video_id": 1,
                "frame_count": 20,
                "tube_start_frame": 2,
                "tube_end_frame": 6,
                "trajectory": [box] * 4,
                "width": width,
                "height": height,
            }
        ]
    path.write_text(json.dumps(data))
    return path


def square(size: tuple[int, int], y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
    m = np.zeros(size, dtype=bool)
    m[y0:y1, x0:x1] = True
    return m


def golden_masks(size: tuple[int, int] = (224, 224)) -> dict:
    good = square(size, 10, 30, 10, 30)  # DETR box (10, 10, 29, 29) vs GT (10, 10, 30, 30): IoU 19*19/400
    tiny = square(size, 0, 1, 0, 19)  # a 19-px blob, removed -> empty -> IoU 0
    return {
        "1": {
            "2": rle_encode(good),
            "3": rle_encode(good),
            "4": rle_encode(np.zeros(size, bool)),
            "5": rle_encode(tiny),
        }
    }


def test_golden_protocol(tmp_path: Path) -> None:
    gt = write_gt(tmp_path / "test.json")
    assert vg_frames(load_stvg_annotations(gt).videos[0]) == [2, 3, 4, 5]
    pred = tmp_path / "pred.json"
    pred.write_text(json.dumps(golden_masks()))
    result = evaluate_vg(gt, pred, workers=1)
    expected = 2 * (19 * 19 / 400) / 4
    assert result.overall["mIoU"] == pytest.approx(expected, abs=1e-6)
    assert result.per_qtype["declarative"]["mIoU"] == result.overall["mIoU"]
    assert result.overall["gt_vIoU@0.3"] == 1.0 and result.overall["gt_vIoU@0.5"] == 0.0
    assert result.videos[0].n_frames == 4


def test_original_size_masks_are_resized_to_the_test_transform(tmp_path: Path) -> None:
    gt = write_gt(tmp_path / "test.json", width=448, height=448, box=[20, 20, 40, 40])
    full = {"1": {str(f): rle_encode(square((448, 448), 20, 60, 20, 60)) for f in range(2, 6)}}
    small = {"1": {str(f): rle_encode(square((224, 224), 10, 30, 10, 30)) for f in range(2, 6)}}
    r_full = evaluate_vg(gt, full, workers=1)
    r_small = evaluate_vg(gt, small, workers=1)
    assert r_full.overall["mIoU"] == pytest.approx(19 * 19 / 400, abs=1e-6)
    assert r_full.overall["mIoU"] == r_small.overall["mIoU"]
    r_orig = evaluate_vg(gt, full, resolution=None, workers=1)
    assert r_orig.overall["mIoU"] == pytest.approx(39 * 39 / 1600, abs=1e-6)


def test_hcstvg_is_interrogative(tmp_path: Path) -> None:
    gt = write_gt(tmp_path / "val_proc.json", dataset="hcstvg")
    result = evaluate_vg(gt, golden_masks(), workers=1)
    assert list(result.per_qtype) == ["interrogative"]


def test_failures_exclude_or_raise(tmp_path: Path) -> None:
    gt = write_gt(tmp_path / "test.json")
    masks = golden_masks()
    del masks["1"]["4"]
    result = evaluate_vg(gt, masks, workers=1)
    assert result.overall["n_videos"] == 0 and "frame 4" in result.excluded["1"]
    with pytest.raises(EvaluationError, match="frame 4"):
        evaluate_vg(gt, masks, strict=True, workers=1)
    odd = {"1": {str(f): rle_encode(np.zeros((50, 50), bool)) for f in range(2, 6)}}
    assert "mask size" in evaluate_vg(gt, odd, workers=1).excluded["1"]
    degenerate = write_gt(tmp_path / "deg.json", box=[10, 10, 0, 20])
    assert "degenerate" in evaluate_vg(degenerate, golden_masks(), workers=1).excluded["1"]
    assert evaluate_vg(gt, {}, workers=1).excluded == {"1": "no prediction for this video"}


def test_malformed_prediction_file(tmp_path: Path) -> None:
    path = tmp_path / "pred.json"
    path.write_text('{"1": {"2": [1, 2]}}')
    with pytest.raises(DataFormatError, match="not an RLE"):
        load_vg_predictions(path)
