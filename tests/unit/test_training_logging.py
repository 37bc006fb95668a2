"""LR schedule, optimizer groups, metrics JSONL (torn lines, rewind on resume)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from sparrow.errors import ConfigError
from sparrow.training.metrics_log import MetricsLog, read_metrics
from sparrow.training.optim import lr_factor, make_optimizer, make_scheduler
from sparrow.training.recipe import OptimSpec


def test_warmup_then_linear_decay() -> None:
    spec = OptimSpec(warmup_steps=4, schedule="linear", min_lr_ratio=0.0)
    factors = [lr_factor(s, spec, 12) for s in range(12)]
    assert factors[:4] == [0.25, 0.5, 0.75, 1.0]
    assert factors[4] == 1.0
    assert factors[8] == pytest.approx(0.5)
    assert factors[11] == pytest.approx(0.125)


def test_cosine_and_constant_schedules() -> None:
    cosine = OptimSpec(warmup_steps=0, schedule="cosine", min_lr_ratio=0.1)
    assert lr_factor(0, cosine, 10) == pytest.approx(1.0)
    assert lr_factor(5, cosine, 10) == pytest.approx(0.1 + 0.9 * 0.5)
    constant = OptimSpec(warmup_steps=2, schedule="constant")
    assert [lr_factor(s, constant, 10) for s in range(4)] == [0.5, 1.0, 1.0, 1.0]


def test_scheduler_steps_the_optimizer_lr() -> None:
    model = nn.Linear(2, 2)
    spec = OptimSpec(lr=0.1, warmup_steps=2, schedule="constant")
    optimizer = make_optimizer(model, spec)
    scheduler = make_scheduler(optimizer, spec, 5)
    seen = []
    for _ in range(3):
        seen.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert seen == pytest.approx([0.05, 0.1, 0.1])


def test_optimizer_takes_only_trainable_parameters_and_splits_decay() -> None:
    model = nn.Sequential(nn.Linear(3, 4), nn.LayerNorm(4), nn.Linear(4, 2))
    model[2].requires_grad_(False)
    optimizer = make_optimizer(model, OptimSpec(weight_decay=0.1))
    groups = {g["weight_decay"]: len(g["params"]) for g in optimizer.param_groups}
    assert groups == {0.1: 1, 0.0: 3}  # linear weight decays; its bias and the norm's two do not
    model.requires_grad_(False)
    with pytest.raises(ConfigError, match="trains no parameter"):
        make_optimizer(model, OptimSpec())


def test_metrics_skip_a_torn_line_and_rewind(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    log = MetricsLog(path)
    for stage_index in (0, 1):
        for step in (1, 2, 3):
            log.write({"kind": "train", "stage_index": stage_index, "step": step, "loss": float(step)})
    log.write({"kind": "stage_end", "stage_index": 1, "step": 3})
    log.close()
    with open(path, "a") as f:
        f.write('{"kind": "train", "stage_in')  # a kill in the middle of a write
    assert len(read_metrics(path)) == 7
    MetricsLog(path).rewind(1, 2)
    kept = [(r["stage_index"], r["step"], r["kind"]) for r in read_metrics(path)]
    assert kept == [(0, 1, "train"), (0, 2, "train"), (0, 3, "train"), (1, 1, "train"), (1, 2, "train")]
    assert all(json.loads(line) for line in path.read_text().splitlines())


def test_writes_after_a_rewind_land_in_the_file(tmp_path: Path) -> None:
    log = MetricsLog(tmp_path / "m.jsonl")
    log.write({"kind": "train", "stage_index": 0, "step": 1})
    log.rewind(1, 0)  # the next stage starts: nothing to drop, but the file is rewritten
    log.write({"kind": "train", "stage_index": 1, "step": 1})
    log.close()
    assert [(r["stage_index"], r["step"]) for r in read_metrics(tmp_path / "m.jsonl")] == [(0, 1), (1, 1)]


def test_metrics_of_other_ranks_are_not_written(tmp_path: Path) -> None:
    log = MetricsLog(tmp_path / "m.jsonl", enabled=False)
    log.write({"step": 1, "loss": torch.tensor(1.0).item()})
    log.rewind(0, 0)
    assert not (tmp_path / "m.jsonl").exists()


def test_non_finite_values_stay_valid_json(tmp_path: Path) -> None:
    log = MetricsLog(tmp_path / "m.jsonl")
    log.write({"step": 1, "loss": float("nan"), "losses": {"a": float("inf")}})
    log.close()
    assert read_metrics(tmp_path / "m.jsonl") == [{"step": 1, "loss": "nan", "losses": {"a": "inf"}}]
