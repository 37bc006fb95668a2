"""``sparrow train``: arguments, errors a user can cause, the --json summary."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sparrow.cli.app import app
from sparrow.errors import ConfigError

runner = CliRunner()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["train"], "no recipe given"),
        (["train", "no_such_recipe.yaml"], "recipe not found"),
        (["train", "toy", "--set", "optim.lr"], "key.sub=value"),
        (["train", "toy", "--set", "optim.nope=1"], "unknown key"),
        (["train", "--resume", "a", "--out", "b"], "different folders"),
    ],
)
def test_user_errors(args: list[str], message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, args)
    assert isinstance(result.exception, ConfigError)
    assert message in str(result.exception)


def test_resume_of_a_folder_without_a_run(tmp_path: Path) -> None:
    result = runner.invoke(app, ["train", "--resume", str(tmp_path)])
    assert isinstance(result.exception, ConfigError)
    assert "no run to resume" in str(result.exception)


def test_toy_run_writes_a_summary(tmp_path: Path) -> None:
    out, summary = tmp_path / "run", tmp_path / "summary.json"
    stages = "stages=[{stage: 0, steps: 3}, {stage: 1, steps: 2}]"
    result = runner.invoke(
        app,
        [
            "train",
            "toy",
            "--out",
            str(out),
            "--set",
            stages,
            "--set",
            "logging.progress=false",
            "--json",
            str(summary),
        ],
    )
    assert result.exit_code == 0, result.output
    data = json.loads(summary.read_text())
    assert [(s["stage"], s["steps_run"]) for s in data["stages"]] == [(0, 3), (1, 2)]
    assert Path(data["final_model"]) == out / "1-tsf" / "final"
    assert (out / "1-tsf" / "final" / "model.safetensors").is_file()
    assert "training run" in result.output
