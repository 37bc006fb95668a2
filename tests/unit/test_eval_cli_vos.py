"""``sparrow eval davis|mevis|refdavis|revos|identity``: help, JSON keys, error handling, lazy imports."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from eval_vos_builders import synthetic_davis_gt, synthetic_davis_pred, write_davis
from typer.testing import CliRunner

from sparrow.cli.app import app
from sparrow.errors import EvaluationError
from sparrow.evaluation.parallel import ItemError, parallel_map
from sparrow.evaluation.report import write_json

runner = CliRunner()


@pytest.mark.parametrize("command", ["davis", "mevis", "refdavis", "revos", "identity"])
def test_help(command: str) -> None:
    res = runner.invoke(app, ["eval", command, "--help"])
    assert res.exit_code == 0
    for option in ("--results", "--workers", "--strict", "--json"):
        assert option in res.output


def test_davis_json_has_exactly_the_official_keys(tmp_path: Path) -> None:
    root = tmp_path / "DAVIS"
    results = write_davis(root, synthetic_davis_gt(), synthetic_davis_pred())
    out = tmp_path / "sub" / "davis.json"
    res = runner.invoke(
        app, ["eval", "davis", "--davis-root", str(root), "--results", str(results), "--json", str(out)]
    )
    assert res.exit_code == 0, res.output
    data = json.loads(out.read_text())
    assert set(data) == {
        "J&F-Mean",
        "J-Mean",
        "J-Recall",
        "J-Decay",
        "F-Mean",
        "F-Recall",
        "F-Decay",
        "per_object",
        "config",
    }
    assert set(data["per_object"]) == {"seq_1", "seq_2"}
    assert not list(out.parent.glob(".*tmp*"))  # atomic write left nothing behind


def test_user_errors_exit_2_without_traceback(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", "from sparrow.cli.app import main; main()", "eval", "davis",
         "--davis-root", str(tmp_path), "--results", str(tmp_path)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 2
    assert "error:" in proc.stderr and "Traceback" not in proc.stderr
    assert "Annotations" in "".join(proc.stderr.split())  # rich may fold a long path


def test_eval_cli_does_not_import_torch() -> None:
    code = (
        "import sys; from sparrow.cli.app import app; import sparrow.evaluation.davis, sparrow.evaluation.mevis, "
        "sparrow.evaluation.revos, sparrow.evaluation.refdavis, sparrow.evaluation.identity; "
        "print('torch' in sys.modules, 'transformers' in sys.modules)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.stdout.split() == ["False", "False"], proc.stderr


def _square_or_fail(x: int) -> int:
    if x == 3:
        raise ValueError("three is not allowed")
    return x * x


def _user_error(x: int) -> int:
    raise EvaluationError("bad prediction", path=f"/data/{x}.png", fix="fix it")


@pytest.mark.parametrize("workers", [1, 2])
def test_parallel_map_order_and_errors(workers: int) -> None:
    assert parallel_map(_square_or_fail, [5, 1, 4, 2], workers=workers, description="t") == [25, 1, 16, 4]
    with pytest.raises(ItemError, match="failed on item 3: ValueError: three is not allowed"):
        parallel_map(_square_or_fail, [1, 2, 3, 4], workers=workers, description="t")
    with pytest.raises(EvaluationError, match="bad prediction"):  # user errors pass through unchanged
        parallel_map(_user_error, [7], workers=workers, description="t")
    assert parallel_map(_square_or_fail, [], workers=workers, description="t") == []


def test_write_json_full_precision_and_nan(tmp_path: Path) -> None:
    value = 1 / 3
    path = write_json(
        tmp_path / "o.json", {"a": np.float64(value), "b": float("nan"), "c": np.arange(2), "d": (1, 2)}
    )
    assert json.loads(path.read_text()) == {"a": value, "b": None, "c": [0, 1], "d": [1, 2]}
