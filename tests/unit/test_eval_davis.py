"""DAVIS-2017 protocol: the end-to-end synthetic sequence of METRICS.md §1.7 and the reading rules."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from eval_vos_builders import square, synthetic_davis_gt, synthetic_davis_pred, write_davis
from PIL import Image
from typer.testing import CliRunner

import sparrow.evaluation.davis as davis_mod
from sparrow.cli.app import app
from sparrow.errors import DataFormatError, EvaluationError
from sparrow.evaluation.davis import DAVIS_METRICS, evaluate_davis
from sparrow.io.mask_files import write_index_png

runner = CliRunner()


def _run_cli(root: Path, results: Path, task: str, tmp_path: Path, *extra: str) -> dict:
    out = tmp_path / f"{task}.json"
    res = runner.invoke(
        app,
        [
            "eval",
            "davis",
            "--davis-root",
            str(root),
            "--results",
            str(results),
            "--task",
            task,
            "--json",
            str(out),
            *extra,
        ],
    )
    assert res.exit_code == 0, res.output
    assert "J&F-Mean" in res.output
    return json.loads(out.read_text())


def test_synthetic_sequence_semi_and_unsupervised_through_cli(tmp_path: Path) -> None:
    root = tmp_path / "DAVIS"
    results = write_davis(root, synthetic_davis_gt(), synthetic_davis_pred())

    semi = _run_cli(root, results, "semi-supervised", tmp_path)
    assert set(DAVIS_METRICS) <= set(semi)
    assert semi["J&F-Mean"] == pytest.approx(0.939286, abs=5e-7)
    o1, o2 = semi["per_object"]["seq_1"], semi["per_object"]["seq_2"]
    assert (o1["J-Mean"], o1["J-Recall"], o1["J-Decay"]) == pytest.approx((6 / 7, 0.75, 2 / 7), abs=1e-12)
    assert (o1["F-Mean"], o1["F-Recall"], o1["F-Decay"]) == pytest.approx((0.9, 1.0, 0.2), abs=1e-12)
    assert (o2["J-Mean"], o2["F-Mean"], o2["J-Decay"]) == (1.0, 1.0, 0.0)  # missing first/last frames ignored

    unsup = _run_cli(root, results, "unsupervised", tmp_path, "--workers", "2")
    assert unsup["J&F-Mean"] == pytest.approx(0.792857, abs=5e-7)
    u1, u2 = unsup["per_object"]["seq_1"], unsup["per_object"]["seq_2"]
    assert (u1["J-Mean"], u1["J-Recall"], u1["J-Decay"], u1["F-Mean"]) == pytest.approx(
        (19 / 21, 5 / 6, 0.0, 14 / 15), abs=1e-12
    )
    assert u2["J-Mean"] == pytest.approx(2 / 3, abs=1e-12) and u2["F-Mean"] == pytest.approx(2 / 3, abs=1e-12)


def test_swapped_ids(tmp_path: Path) -> None:
    root = tmp_path / "DAVIS"
    results = write_davis(root, synthetic_davis_gt(), synthetic_davis_pred(swap=True))
    semi = evaluate_davis(root, results, task="semi-supervised")
    assert semi.metrics["J&F-Mean"] == 0.0
    unsup = _run_cli(root, results, "unsupervised", tmp_path)
    assert unsup["J&F-Mean"] == pytest.approx(0.792857, abs=5e-7)
    # official quirk: names follow the matched proposal order; proposal 1 matched GT object 2
    assert unsup["per_object"]["seq_1"]["gt_object"] == 2 and unsup["per_object"]["seq_1"]["proposal"] == 1
    assert unsup["per_object"]["seq_1"]["J-Mean"] == pytest.approx(2 / 3, abs=1e-12)


def test_parallel_equals_serial_and_void_is_used_unsupervised(tmp_path: Path) -> None:
    root = tmp_path / "DAVIS"
    gt = synthetic_davis_gt()
    for lab in gt:
        lab[0:3, :] = 255  # void band
    pred = synthetic_davis_pred()
    for lab in pred:
        lab[0:2, 0:4] = 1  # false positive inside void: ignored by the unsupervised task
    results = write_davis(root, gt, pred, seq="a")
    write_davis(root, gt, synthetic_davis_pred(), seq="b", results=results)
    serial = evaluate_davis(root, results, task="unsupervised", workers=1)
    parallel = evaluate_davis(root, results, task="unsupervised", workers=2)
    assert serial.to_json_dict() == parallel.to_json_dict()
    assert [o.name for o in serial.objects] == ["a_1", "a_2", "b_1", "b_2"]
    assert serial.objects[0].J.mean == serial.objects[2].J.mean  # the FP in void changed nothing
    semi = evaluate_davis(root, results, task="semi-supervised")
    assert semi.objects[0].J.mean < semi.objects[2].J.mean  # semi-supervised ignores void


def test_official_failures_always_raise(tmp_path: Path) -> None:
    root = tmp_path / "DAVIS"
    gt = synthetic_davis_gt()
    bad = synthetic_davis_pred()
    bad[2][0, 0] = 3  # id above the 2 GT objects
    results = write_davis(root, gt, bad)
    with pytest.raises(EvaluationError, match="object id 3"):
        evaluate_davis(root, results, task="semi-supervised")

    many = [lab.copy() for lab in synthetic_davis_pred()]
    many[1][0, 0] = 21
    res2 = write_davis(root, gt, many, results=tmp_path / "r2")
    with pytest.raises(EvaluationError, match="20 proposals"):
        evaluate_davis(root, res2, task="unsupervised")

    res3 = write_davis(root, gt, synthetic_davis_pred(), results=tmp_path / "r3")
    (res3 / "seq" / "00002.png").unlink()
    with pytest.raises(EvaluationError, match=r"00002\.png"):
        evaluate_davis(root, res3, task="semi-supervised")

    res4 = write_davis(root, gt, synthetic_davis_pred(), results=tmp_path / "r4")
    Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(res4 / "seq" / "00001.png")
    with pytest.raises(DataFormatError, match="RGB mode"):
        evaluate_davis(root, res4, task="semi-supervised")

    res5 = write_davis(root, gt, synthetic_davis_pred(), results=tmp_path / "r5")
    write_index_png(res5 / "seq" / "00001.png", np.zeros((10, 20), np.uint8))
    with pytest.raises(EvaluationError, match="annotation resolution"):
        evaluate_davis(root, res5, task="semi-supervised")

    with pytest.raises(DataFormatError, match="sequence list"):
        evaluate_davis(root, res5, image_set="train")


def test_strict_mode_turns_silent_behaviours_into_errors(tmp_path: Path) -> None:
    root = tmp_path / "DAVIS"
    gt = synthetic_davis_gt()
    gt[3][square(0, 1, 0, 1)] = 3  # object 3 appears after frame 0: officially ignored
    results = write_davis(root, gt, synthetic_davis_pred())
    base = evaluate_davis(root, results, task="semi-supervised")
    assert len(base.objects) == 2
    with pytest.raises(EvaluationError, match="object id 3 appears in frame 00003"):
        evaluate_davis(root, results, task="semi-supervised", strict=True)

    root2 = tmp_path / "D2"
    only_one = [np.where(lab == 2, 0, lab).astype(np.uint8) for lab in synthetic_davis_pred()]
    res2 = write_davis(root2, synthetic_davis_gt(), only_one)
    lax = evaluate_davis(root2, res2, task="semi-supervised")
    assert lax.objects[1].J.mean == 0.0  # zero-padded, scored as an empty mask
    with pytest.raises(EvaluationError, match=r"object id\(s\) \[2\]"):
        evaluate_davis(root2, res2, task="semi-supervised", strict=True)


def test_jpeg_count_checked(tmp_path: Path) -> None:
    root = tmp_path / "DAVIS"
    results = write_davis(root, synthetic_davis_gt(), synthetic_davis_pred())
    Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(root / "JPEGImages" / "480p" / "seq" / "00006.jpg")
    with pytest.raises(DataFormatError, match="7 images but only 6"):
        evaluate_davis(root, results)


def test_unsupervised_prepares_each_mask_once_per_frame(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = []
    real = davis_mod.prepare_mask

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(davis_mod, "prepare_mask", counting)
    root = tmp_path / "DAVIS"
    pred = synthetic_davis_pred()
    pred[2][0:2, 0:2] = 5  # 5 proposals against 2 objects
    results = write_davis(root, synthetic_davis_gt(), pred)
    evaluate_davis(root, results, task="unsupervised")
    assert len(calls) == 6 * (2 + 5)  # not 6 * 2 * 5 * 2


def test_long_sequence_decay_wrap(tmp_path: Path) -> None:
    n = 260
    gt = [synthetic_davis_gt()[0]] * n
    pred = [np.roll(gt[0], t % 3, axis=1) for t in range(n)]
    root = tmp_path / "DAVIS"
    results = write_davis(root, gt, pred, images=False)
    official = evaluate_davis(root, results, task="unsupervised")
    corrected = evaluate_davis(root, results, task="unsupervised", decay_mode="corrected")
    assert np.isnan(official.metrics["J-Decay"])  # uint8 bin indices wrapped
    assert np.isfinite(corrected.metrics["J-Decay"])
    assert official.metrics["J-Mean"] == corrected.metrics["J-Mean"]
