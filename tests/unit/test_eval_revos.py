"""ReVOS protocol (METRICS.md §2.4): A and R vectors, r_weight modes, rounding and aggregation, failures."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from eval_vos_builders import frame_names, square, write_mevis, write_predictions
from typer.testing import CliRunner

from sparrow.cli.app import app
from sparrow.errors import DataFormatError, EvaluationError
from sparrow.evaluation.revos import _official_round, evaluate_revos, revos_accuracy, revos_robustness
from sparrow.structures.masks import rle_encode

GT = square(5, 9, 5, 9)  # 25 px
OTHER = square(14, 17, 14, 17)  # 16 px: foreground union = 41 px
PRED = GT.copy()
PRED[0, 0] = PRED[0, 1] = True  # 2 false positives


def test_robustness_and_accuracy_vectors() -> None:
    gt = GT.astype(np.uint8)
    fg = (GT | OTHER).astype(np.uint8)
    assert revos_robustness(gt, PRED.astype(np.uint8), fg) == pytest.approx(0.951220, abs=5e-7)
    assert revos_robustness(gt, PRED.astype(np.uint8), fg) == 1 - 2 / (41 + 1e-6)
    assert revos_robustness(gt, PRED.astype(np.uint8) * 255, fg) == 0.0
    assert revos_accuracy(gt, PRED.astype(np.uint8) * 255) == 0.9325
    assert revos_accuracy(gt, PRED.astype(np.uint8)) == 0.995
    big_fg = np.zeros((200, 200), np.uint8)
    big_fg[:50] = 1  # 10,000 px
    pred = np.zeros((200, 200), np.uint8)
    pred[150, 150] = 255
    assert revos_robustness(big_fg, pred, big_fg) == pytest.approx(0.9745, abs=5e-9)
    assert revos_robustness(big_fg, pred, big_fg) == 1 - 255 / (10000 + 1e-6)
    # overlapping GT objects (value 2): 1 - 2 wraps to 255, 255 * 255 wraps to 1 -> counted as FP weight 1
    two = np.full((2, 2), 2, np.uint8)
    assert revos_robustness(two, np.full((2, 2), 255, np.uint8), np.ones((2, 2), np.uint8)) == 1 - 4 / (
        4 + 1e-6
    )
    assert revos_robustness(
        two[:1, :1], np.full((1, 1), 255, np.uint8), np.full((1, 1), 4, np.uint8)
    ) == pytest.approx(1 - 1 / (4 + 1e-6))
    assert (
        revos_robustness(np.zeros((2, 2), np.uint8), np.zeros((2, 2), np.uint8), np.zeros((2, 2), np.uint8))
        == 1.0
    )


def test_numpy_rounding_of_the_official_code() -> None:
    assert _official_round(52.535) == 52.54  # Python's round() gives 52.53
    assert round(52.535, 2) == 52.53


def _dataset(tmp_path: Path) -> tuple[Path, Path]:
    gt = tmp_path / "ReVOS"
    frames = frame_names(2)
    videos = {
        "v": {
            "expressions": {
                "0": {"exp": "ref", "anno_id": [1], "type_id": 0},
                "1": {"exp": "reason", "anno_id": [1], "type_id": 1},
                "2": {"exp": "third", "anno_id": [2], "type_id": 2},
            },
            "frames": frames,
            "height": 20,
            "width": 20,
        }
    }
    write_mevis(gt, videos, {1: [GT, GT], 2: [OTHER, None]}, meta_name="meta_expressions_valid_.json")
    results = tmp_path / "pred"
    write_predictions(results, "v", "0", [PRED, GT])  # 0/255 PNGs like VISA's
    write_predictions(results, "v", "1", [np.roll(GT, 2, axis=1), GT])
    write_predictions(results, "v", "2", [OTHER, OTHER])
    return gt, results


def test_aggregation_through_cli(tmp_path: Path) -> None:
    gt, results = _dataset(tmp_path)
    out = tmp_path / "revos.json"
    res = CliRunner().invoke(
        app, ["eval", "revos", "--gt", str(gt), "--results", str(results), "--json", str(out)]
    )
    assert res.exit_code == 0, res.output
    data = json.loads(out.read_text())
    e0 = data["per_expression"]["v/0"]
    j0 = (25 / 27 + 1.0) / 2
    assert e0["raw"]["J"] == pytest.approx(j0, abs=1e-12)
    assert e0["J"] == _official_round(100 * j0)
    # foreground computed from the anno_ids of all expressions (1 and 2): 41 px in frame 0, 25 px in frame 1
    assert e0["raw"]["R"] == pytest.approx((0.0 + 1.0) / 2, abs=1e-12)
    j1 = (15 / 35 + 1.0) / 2
    assert data["reason"]["J"] == _official_round(100 * j1)
    assert data["referring"]["J"] == e0["J"]
    assert data["referring"]["JF"] == (data["referring"]["J"] + data["referring"]["F"]) / 2
    for k in ("J", "F", "A", "R", "JF"):
        assert data["overall"][k] == (data["referring"][k] + data["reason"][k]) / 2
    assert (
        data["J&F"] == data["overall"]["JF"]
        and data["J"] == data["overall"]["J"]
        and data["F"] == data["overall"]["F"]
    )
    assert data["per_expression"]["v/2"]["type_id"] == 2  # reported but excluded from every mean
    assert data["scale"] == "percent" and data["r_weight"] == "png_gray"


def test_binary_weighting_and_foreground_file(tmp_path: Path) -> None:
    gt, results = _dataset(tmp_path)
    binary = evaluate_revos(gt, results, r_weight="binary")
    e0 = binary.expressions[0]
    assert e0.r == pytest.approx((1 - 2 / (41 + 1e-6) + 1.0) / 2, abs=1e-12)
    assert e0.a == pytest.approx((0.995 + 1.0) / 2, abs=1e-12)
    # an explicit foreground file (whole frame 1 as foreground) is used instead of the computed union
    fg = {"v": {"masks_rle": [rle_encode(GT | OTHER), rle_encode(np.ones((20, 20), bool))]}}
    (gt / "mask_dict_foreground.json").write_text(json.dumps(fg))
    r = evaluate_revos(gt, results)
    assert r.expressions[0].r == pytest.approx(0.5, abs=1e-12)
    with pytest.raises(EvaluationError, match="r_weight"):
        evaluate_revos(gt, results, r_weight="weird")  # type: ignore[arg-type]


def test_failures_score_zero_or_raise(tmp_path: Path) -> None:
    gt, results = _dataset(tmp_path)
    (results / "v" / "1" / "00001.png").unlink()
    r = evaluate_revos(gt, results)
    failed = r.expressions[1]
    assert failed.status == "failed" and (failed.j, failed.f, failed.a, failed.r) == (0.0, 0.0, 0.0, 0.0)
    assert r.subsets["reason"]["J"] == 0.0
    with pytest.raises(EvaluationError, match=r"00001\.png"):
        evaluate_revos(gt, results, strict=True)
    meta = json.loads((gt / "meta_expressions_valid_.json").read_text())
    del meta["videos"]["v"]["expressions"]["0"]["type_id"]
    (gt / "meta_expressions_valid_.json").write_text(json.dumps(meta))
    with pytest.raises(DataFormatError, match="type_id"):
        evaluate_revos(gt, results)
