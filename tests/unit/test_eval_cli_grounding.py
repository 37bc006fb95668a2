"""``sparrow eval stvg | vg | gcg`` end to end on small official-layout folders, with ``--json``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from test_eval_gcg import A0, B0, box_mask, build_two_samples, write_gcg_sample
from test_eval_stvg import golden_prediction, vidstg_video, write_vidstg
from test_eval_vg import golden_masks, write_gt
from typer.testing import CliRunner

from sparrow.cli.app import app
from sparrow.errors import ConfigError, DataFormatError
from sparrow.evaluation.captions import java_available

runner = CliRunner()


def run(*args: str):
    return runner.invoke(app, ["eval", *args])


def test_stvg_cli(tmp_path: Path) -> None:
    gt = write_vidstg(tmp_path / "test.json", [vidstg_video(7)])
    pred = tmp_path / "pred.json"
    pred.write_text(json.dumps({"7": golden_prediction()}))
    out = tmp_path / "out" / "stvg.json"
    result = run("stvg", "--gt", str(gt), "--pred", str(pred), "--workers", "1", "--json", str(out))
    assert result.exit_code == 0, result.output
    assert "0.3333" in result.output and "0.2667" in result.output
    data = json.loads(out.read_text())
    assert data["m_tIoU"] == pytest.approx(1 / 3)
    assert data["m_vIoU"] == pytest.approx(4 / 15)
    assert data["vIoU@0.3"] == data["vIoU@0.5"] == 0.0
    assert data["gt_vIoU"] == pytest.approx(0.65)
    assert data["per_qtype"]["declarative"]["m_vIoU"] == pytest.approx(4 / 15)


def test_vg_cli(tmp_path: Path) -> None:
    gt = write_gt(tmp_path / "test.json")
    pred = tmp_path / "masks.json"
    pred.write_text(json.dumps(golden_masks()))
    out = tmp_path / "vg.json"
    result = run("vg", "--gt", str(gt), "--pred", str(pred), "--workers", "1", "--json", str(out))
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    assert data["mIoU"] == pytest.approx(2 * (19 * 19 / 400) / 4, abs=1e-6)
    assert data["per_qtype"]["declarative"]["mIoU"] == data["mIoU"]
    bad = run("vg", "--gt", str(gt), "--pred", str(pred), "--resolution", "100")
    assert isinstance(bad.exception, ConfigError)


@pytest.mark.skipif(not java_available(), reason="caption metrics need Java")
def test_gcg_cli_full(tmp_path: Path) -> None:
    gt, res = tmp_path / "gt", tmp_path / "results"
    build_two_samples(gt)
    # Move the predictions into their own folder tree, as an inference run writes them.
    write_gcg_sample(
        res,
        0,
        "pred",
        "A <p>dog</p> [SEG] and a <p>car</p> [SEG].",
        [[box_mask(0, 10, 0, 8)] * 2, [box_mask(10, 20, 10, 13)] * 2],
    )
    write_gcg_sample(res, 1, "pred", "The <p>man</p> [SEG] waves.", [[A0, B0]])
    out = tmp_path / "gcg.json"
    result = run(
        "gcg",
        "--gt",
        str(gt),
        "--results",
        str(res),
        "--judge",
        "lexical",
        "--workers",
        "1",
        "--json",
        str(out),
    )
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    for key in (
        "mIoU",
        "recall",
        "AP50",
        "METEOR",
        "CIDEr",
        "BLEU-1",
        "BLEU-2",
        "BLEU-3",
        "BLEU-4",
        "ROUGE-L",
        "CLAIR",
    ):
        assert isinstance(data[key], float), key
    assert data["mIoU"] == pytest.approx(((0.8 + 0.3) / 2 + 1.0) / 2)
    assert data["recall"] == pytest.approx(2 / 3)
    assert data["CIDEr"] > 0 and 0 < data["METEOR"] <= 1
    # Lexical F1 of "A dog and a car." vs "A dog near a red car." is 8/11; the second pair is identical.
    assert data["CLAIR"] == pytest.approx((8 / 11 + 1.0) / 2, abs=1e-5)
    assert "not an LLM" in data["judge"] and "token-cosine" in data["text_similarity"]
    assert "lexical-f1" in result.output


def test_gcg_cli_errors_and_options(tmp_path: Path) -> None:
    build_two_samples(tmp_path)
    out = tmp_path / "gcg.json"
    ok = run(
        "gcg", "--gt", str(tmp_path), "--no-captions", "--text-similarity", "iou-only", "--json", str(out)
    )
    assert ok.exit_code == 0, ok.output
    data = json.loads(out.read_text())
    assert data["METEOR"] is None and data["CLAIR"] is None and data["judge"] is None
    assert "iou-only" in data["text_similarity"]
    assert data["recall"] == pytest.approx(2 / 3)
    missing = run(
        "gcg", "--gt", str(tmp_path), "--results", str(tmp_path / "nothing"), "--no-captions", "--strict"
    )
    assert isinstance(missing.exception, DataFormatError) and "nothing" in str(missing.exception)
    no_bert = run("gcg", "--gt", str(tmp_path), "--text-similarity", "bert", "--no-captions")
    assert isinstance(no_bert.exception, ConfigError)
    no_command = run("gcg", "--gt", str(tmp_path), "--judge", "command", "--no-captions")
    assert isinstance(no_command.exception, ConfigError)


def test_gcg_strict_failure_names_the_file(tmp_path: Path) -> None:
    write_gcg_sample(tmp_path, 0, "gt", "A <p>dog</p> [SEG].", [[np.ones((4, 4), bool)]])
    write_gcg_sample(
        tmp_path, 0, "pred", "A <p>dog</p> [SEG] and <p>cat</p> [SEG].", [[np.ones((4, 4), bool)]]
    )
    result = run("gcg", "--gt", str(tmp_path), "--no-captions", "--strict", "--workers", "1")
    assert isinstance(result.exception, DataFormatError)
    assert "pred_masks_1" in str(result.exception)


def test_cli_start_is_light(tmp_path: Path) -> None:
    gt = write_vidstg(tmp_path / "test.json", [vidstg_video(7)])
    pred = tmp_path / "pred.json"
    pred.write_text(json.dumps({"7": golden_prediction()}))
    code = (
        "import sys\nfrom typer.testing import CliRunner\nfrom sparrow.cli.app import app\n"
        f"r = CliRunner().invoke(app, ['eval', 'stvg', '--gt', {str(gt)!r}, '--pred', {str(pred)!r}, '--workers', '1'])\n"
        "assert r.exit_code == 0, r.output\n"
        "print(sorted(m for m in ('torch', 'transformers', 'pycocoevalcap') if m in sys.modules))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert proc.stdout.strip().splitlines()[-1] == "[]"
