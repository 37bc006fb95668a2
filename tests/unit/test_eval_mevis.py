"""MeViS protocol (METRICS.md §2.1): verification vector, reading rules, failures, Ref-YouTube-VOS layout."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from eval_vos_builders import frame_names, square, write_mevis, write_predictions
from typer.testing import CliRunner

from sparrow.cli.app import app
from sparrow.errors import DataFormatError, EvaluationError
from sparrow.evaluation.mevis import evaluate_mevis
from sparrow.io.mask_files import write_binary_png, write_index_png

SQ = square(5, 9, 5, 9)
EMPTY = np.zeros((20, 20), bool)


def _vector_dataset(tmp_path: Path) -> tuple[Path, Path]:
    """Expression A: (GT sq, pred sq), (both empty), (GT sq, pred empty); expression B: pred = roll_2(GT)."""
    gt = tmp_path / "valid_u"
    videos = {
        "vidA": {
            "expressions": {"0": {"exp": "a", "obj_id": [1], "anno_id": [10]}},
            "frames": frame_names(3),
        },
        "vidB": {
            "expressions": {"0": {"exp": "b", "obj_id": [1], "anno_id": [20]}},
            "frames": frame_names(1),
        },
    }
    write_mevis(gt, videos, {10: [SQ, None, SQ], 20: [SQ]})
    results = tmp_path / "pred"
    write_predictions(results, "vidA", "0", [SQ, EMPTY, EMPTY])
    write_predictions(results, "vidB", "0", [np.roll(SQ, 2, axis=1)])
    return gt, results


def test_verification_vector_through_cli(tmp_path: Path) -> None:
    gt, results = _vector_dataset(tmp_path)
    out = tmp_path / "mevis.json"
    res = CliRunner().invoke(
        app,
        ["eval", "mevis", "--gt", str(gt), "--results", str(results), "--json", str(out), "--workers", "2"],
    )
    assert res.exit_code == 0, res.output
    data = json.loads(out.read_text())
    assert data["J"] == pytest.approx((2 / 3 + 15 / 35) / 2, abs=1e-12)
    assert data["F"] == pytest.approx((2 / 3 + 0.6) / 2, abs=1e-12)
    assert data["J&F"] == pytest.approx(0.590476, abs=5e-7)
    assert data["per_expression"]["vidA/0"]["J"] == pytest.approx(2 / 3, abs=1e-12)
    assert data["per_expression"]["vidB/0"]["F"] == pytest.approx(0.6, abs=1e-12)
    assert data["dropped"] == [] and data["missing_videos"] == []


def test_gt_is_uint8_sum_and_any_grey_is_foreground(tmp_path: Path) -> None:
    gt = tmp_path / "gt"
    other = square(7, 12, 7, 12)
    videos = {"v": {"expressions": {"3": {"exp": "both", "anno_id": [1, 2]}}, "frames": frame_names(1)}}
    write_mevis(gt, videos, {1: [SQ], 2: [other]})  # overlapping objects sum to 2: still foreground
    results = tmp_path / "pred"
    write_index_png(
        results / "v" / "3" / "00000.png", (SQ | other).astype(np.uint8)
    )  # palette index 1 -> grey 38
    r = evaluate_mevis(gt, results)
    assert r.J == 1.0 and r.F == 1.0


def test_missing_video_scores_zero_and_unreadable_expression_drops(tmp_path: Path) -> None:
    gt, results = _vector_dataset(tmp_path)
    (results / "vidA" / "0" / "00001.png").unlink()  # official worker dies: expression dropped
    r = evaluate_mevis(gt, results)
    assert r.dropped == ["vidA/0"]
    assert pytest.approx(15 / 35, abs=1e-12) == r.J  # only B counts
    assert math.isnan(r.expressions[0].J)
    with pytest.raises(EvaluationError, match=r"00001\.png"):
        evaluate_mevis(gt, results, strict=True)

    gt2, results2 = _vector_dataset(tmp_path / "two")
    for f in (results2 / "vidB" / "0").iterdir():
        f.unlink()
    (results2 / "vidB" / "0").rmdir()
    (results2 / "vidB").rmdir()
    r2 = evaluate_mevis(gt2, results2)
    assert r2.missing_videos == ["vidB"]
    assert pytest.approx((2 / 3 + 0.0) / 2, abs=1e-12) == r2.J  # missing video counts 0
    with pytest.raises(EvaluationError, match="scores it 0"):
        evaluate_mevis(gt2, results2, strict=True)


def test_size_mismatch_drops(tmp_path: Path) -> None:
    gt, results = _vector_dataset(tmp_path)
    write_binary_png(results / "vidB" / "0" / "00000.png", np.zeros((10, 10), bool))
    r = evaluate_mevis(gt, results)
    assert r.dropped == ["vidB/0"]
    with pytest.raises(EvaluationError, match="10x10"):
        evaluate_mevis(gt, results, strict=True)


def test_ref_youtube_vos_layout(tmp_path: Path) -> None:
    """meta with obj_id and palette Annotations/<video>/<frame>.png instead of mask_dict.json."""
    gt = tmp_path / "train"
    frames = ["00000", "00005"]
    meta = {"videos": {"v": {"expressions": {"0": {"exp": "x", "obj_id": "2"}}, "frames": frames}}}
    gt.mkdir()
    (gt / "meta_expressions.json").write_text(json.dumps(meta))
    for name in frames:
        lab = np.zeros((20, 20), np.uint8)
        lab[SQ] = 2
        lab[square(15, 18, 15, 18)] = 1
        write_index_png(gt / "Annotations" / "v" / f"{name}.png", lab)
    results = tmp_path / "pred"
    for name in frames:
        write_binary_png(results / "v" / "0" / f"{name}.png", SQ)
    r = evaluate_mevis(gt, results)
    assert (r.J, r.F) == (1.0, 1.0)


def test_bad_ground_truth_files(tmp_path: Path) -> None:
    with pytest.raises(DataFormatError, match=r"meta_expressions\.json not found"):
        evaluate_mevis(tmp_path, tmp_path)
    (tmp_path / "meta_expressions.json").write_text("{not json")
    with pytest.raises(DataFormatError, match="not valid JSON"):
        evaluate_mevis(tmp_path, tmp_path)
    (tmp_path / "meta_expressions.json").write_text(json.dumps({"videos": {}}))
    with pytest.raises(DataFormatError, match=r"no mask_dict\.json"):
        evaluate_mevis(tmp_path, tmp_path)
    videos = {"v": {"expressions": {"0": {"exp": "x", "anno_id": [99]}}, "frames": ["00000"]}}
    write_mevis(tmp_path, videos, {1: [SQ]})
    with pytest.raises(DataFormatError, match="anno_id 99"):
        evaluate_mevis(tmp_path, tmp_path)
