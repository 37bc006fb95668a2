"""Ref-DAVIS17: the ReferFormer protocol (mean of 4 DAVIS-unsupervised sets) and the per-expression one."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from eval_vos_builders import (
    frame_names,
    synthetic_davis_gt,
    synthetic_davis_pred,
    write_davis,
    write_predictions,
)
from typer.testing import CliRunner

from sparrow.cli.app import app
from sparrow.errors import ConfigError, EvaluationError
from sparrow.evaluation.davis import evaluate_davis
from sparrow.evaluation.refdavis import ANNOTATION_SETS, evaluate_refdavis_referformer
from sparrow.io.mask_files import write_index_png

runner = CliRunner()


def _four_sets(tmp_path: Path, names: tuple[str, ...]) -> tuple[Path, Path]:
    root, results = tmp_path / "DAVIS", tmp_path / "pred"
    write_davis(root, synthetic_davis_gt(), tasks=("Annotations_unsupervised",))
    good, empty = synthetic_davis_pred(), [np.zeros((20, 20), np.uint8)] * 6
    for i, name in enumerate(names):
        for t, lab in enumerate(good if i % 2 == 0 else empty):
            write_index_png(results / name / "seq" / f"{t:05d}.png", lab)
    return root, results


def test_referformer_protocol_through_cli(tmp_path: Path) -> None:
    root, results = _four_sets(tmp_path, ANNOTATION_SETS["referformer"])
    out = tmp_path / "r.json"
    res = runner.invoke(
        app, ["eval", "refdavis", "--davis-root", str(root), "--results", str(results), "--json", str(out)]
    )
    assert res.exit_code == 0, res.output
    data = json.loads(out.read_text())
    full = evaluate_davis(root, results / "anno_0", task="unsupervised").metrics
    blank = evaluate_davis(root, results / "anno_1", task="unsupervised").metrics
    assert full["J&F-Mean"] == pytest.approx(0.792857, abs=5e-7)
    assert data["J&F"] == np.mean([full["J&F-Mean"], blank["J&F-Mean"]] * 2)
    assert data["J"] == np.mean([full["J-Mean"], blank["J-Mean"]] * 2)
    assert data["protocol"] == "referformer" and set(data["per_set"]) == set(ANNOTATION_SETS["referformer"])
    # ReferFormer exp_id numbering: 4 consecutive ids per object, sets in order
    assert sorted(data["per_expression"], key=lambda k: int(k.split("/")[1])) == [
        f"seq/{i}" for i in range(8)
    ]
    assert data["per_expression"]["seq/0"]["J"] == pytest.approx(19 / 21, abs=1e-12)  # object 1, set 0
    assert data["per_expression"]["seq/4"]["J"] == pytest.approx(2 / 3, abs=1e-12)  # object 2, set 0
    assert data["per_expression"]["seq/1"]["J"] == 0.0  # object 1, set 1 (empty predictions)


def test_videoglamm_folder_names_and_missing_sets(tmp_path: Path) -> None:
    root, results = _four_sets(tmp_path, ANNOTATION_SETS["videoglamm"])
    r = evaluate_refdavis_referformer(root, results)
    assert list(r.sets) == list(ANNOTATION_SETS["videoglamm"])
    (results / "Davis17_annot2").rename(results / "other")
    with pytest.raises(EvaluationError, match="four annotation-set folders"):
        evaluate_refdavis_referformer(root, results)


def test_per_expression_protocol(tmp_path: Path) -> None:
    root = tmp_path / "DAVIS"
    write_davis(root, synthetic_davis_gt(), tasks=("Annotations_unsupervised",))
    exps = {
        str(4 * i + a): {"exp": f"object {obj}", "obj_id": str(obj)}
        for i, obj in enumerate((1, 2))
        for a in range(4)
    }
    meta = tmp_path / "meta_expressions.json"
    meta.write_text(json.dumps({"videos": {"seq": {"expressions": exps, "frames": frame_names(6)}}}))
    results = tmp_path / "pred"
    pred = synthetic_davis_pred()
    for exp_id, exp in exps.items():
        write_predictions(results, "seq", exp_id, [lab == int(exp["obj_id"]) for lab in pred])
    out = tmp_path / "p.json"
    res = runner.invoke(
        app,
        [
            "eval", "refdavis", "--protocol", "per-expression", "--davis-root", str(root), "--meta", str(meta),
            "--results", str(results), "--json", str(out),
        ],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    data = json.loads(out.read_text())
    assert data["per_expression"]["seq/0"]["J"] == pytest.approx(19 / 21, abs=1e-12)
    assert data["per_expression"]["seq/7"]["J"] == pytest.approx(2 / 3, abs=1e-12)
    assert data["J"] == pytest.approx((19 / 21 + 2 / 3) / 2, abs=1e-12)
    bad = runner.invoke(
        app,
        [
            "eval",
            "refdavis",
            "--protocol",
            "per-expression",
            "--davis-root",
            str(root),
            "--results",
            str(results),
        ],
    )
    assert isinstance(bad.exception, ConfigError)
