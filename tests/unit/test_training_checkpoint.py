"""Checkpoints: atomic publication, pruning, crash leftovers, RNG round trips, safe loading."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from sparrow.data.sampling import SamplerState
from sparrow.errors import CheckpointError
from sparrow.training.checkpoint import (
    CheckpointManager,
    TrainerState,
    durable_dir,
    load_rng,
    load_torch,
    load_weights,
    preserved_rng,
    read_state,
    save_rng,
    save_torch,
    save_weights,
    write_state,
)


def _draw() -> tuple[float, float, list[float]]:
    return random.random(), float(np.random.rand()), torch.rand(3).tolist()


def _save(manager: CheckpointManager, step: int, **kwargs) -> Path:
    state = TrainerState(0, 1, step, SamplerState(0, step), 1)
    return manager.save(
        step, write_shared=lambda f: write_state(f, state), write_rank=lambda f: save_rng(f, 0), **kwargs
    )


def test_save_publishes_points_and_prunes(tmp_path: Path) -> None:
    manager = CheckpointManager(tmp_path / "ckpt", keep_last=2)
    assert manager.latest() is None
    for step in (5, 10, 15):
        _save(manager, step)
    assert [s for s, _ in manager.complete()] == [10, 15]
    assert manager.latest() == tmp_path / "ckpt" / "step-00000015"
    assert (tmp_path / "ckpt" / "latest").read_text().strip() == "step-00000015"
    assert read_state(manager.latest()).sampler == SamplerState(0, 15)
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == [
        "latest",
        "step-00000010",
        "step-00000015",
    ]


def test_a_crash_before_publication_leaves_the_previous_checkpoint(tmp_path: Path) -> None:
    manager = CheckpointManager(tmp_path / "ckpt", keep_last=3)
    _save(manager, 10)

    def crash() -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _save(manager, 20, before_publish=crash)
    assert (tmp_path / "ckpt" / ".tmp-step-00000020").is_dir()  # what a killed run leaves
    assert manager.latest().name == "step-00000010"
    assert read_state(manager.latest()).step == 10
    reopened = CheckpointManager(tmp_path / "ckpt", keep_last=3)  # the next run cleans up
    assert not (tmp_path / "ckpt" / ".tmp-step-00000020").exists()
    assert reopened.latest().name == "step-00000010"


def test_latest_is_the_highest_published_step_even_with_a_stale_pointer(tmp_path: Path) -> None:
    manager = CheckpointManager(tmp_path / "ckpt", keep_last=3)
    _save(manager, 10)
    _save(manager, 20)
    (tmp_path / "ckpt" / "latest").write_text("step-00000010\n")  # killed between rename and pointer update
    assert manager.latest().name == "step-00000020"


def test_rng_round_trip(tmp_path: Path) -> None:
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    _draw()
    save_rng(tmp_path, 0)
    expected = _draw()
    _draw()
    assert load_rng(tmp_path, 0)
    assert _draw() == expected
    assert not load_rng(tmp_path, 1)


def test_preserved_rng_isolates_a_block() -> None:
    torch.manual_seed(0)
    random.seed(0)
    np.random.seed(0)
    with preserved_rng():
        _draw()
    after = _draw()
    torch.manual_seed(0)
    random.seed(0)
    np.random.seed(0)
    assert _draw() == after


def test_weights_round_trip_with_tied_and_view_tensors(tmp_path: Path) -> None:
    model = nn.Sequential(nn.Embedding(10, 4), nn.Linear(4, 10, bias=False))
    model[1].weight = model[0].weight  # tied
    state = dict(model.state_dict())
    state["view"] = model[0].weight[2:5]
    save_weights(tmp_path / "model.safetensors", state)
    loaded = load_weights(tmp_path / "model.safetensors")
    assert set(loaded) == set(state)
    for k, v in state.items():
        assert torch.equal(loaded[k], v)


def test_corrupt_files_raise_checkpoint_errors(tmp_path: Path) -> None:
    (tmp_path / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(CheckpointError, match="weights"):
        load_weights(tmp_path / "model.safetensors")
    (tmp_path / "trainer_state.json").write_text("{broken")
    with pytest.raises(CheckpointError, match="trainer state"):
        read_state(tmp_path)
    (tmp_path / "trainer_state.json").write_text(json.dumps({"format": 99}))
    with pytest.raises(CheckpointError, match="format"):
        read_state(tmp_path)


class _Evil:
    def __reduce__(self):
        return (print, ("unpickled!",))


def test_torch_files_load_weights_only(tmp_path: Path) -> None:
    optimizer = torch.optim.AdamW(nn.Linear(3, 2).parameters(), lr=0.1)
    optimizer.param_groups[0]["params"][0].grad = torch.ones(2, 3)
    optimizer.param_groups[0]["params"][1].grad = torch.ones(2)
    optimizer.step()
    save_torch(tmp_path / "optimizer.pt", optimizer.state_dict())
    loaded = load_torch(tmp_path / "optimizer.pt")
    assert torch.equal(loaded["state"][0]["exp_avg"], optimizer.state_dict()["state"][0]["exp_avg"])
    torch.save({"x": _Evil()}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match=r"evil\.pt"):
        load_torch(tmp_path / "evil.pt")


def test_durable_dir_is_all_or_nothing(tmp_path: Path) -> None:
    with durable_dir(tmp_path / "out") as tmp:
        (tmp / "a.txt").write_text("a")
    assert (tmp_path / "out" / "a.txt").read_text() == "a"
    with pytest.raises(RuntimeError), durable_dir(tmp_path / "other") as tmp:
        (tmp / "a.txt").write_text("a")
        raise RuntimeError("writer failed")
    assert not (tmp_path / "other").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["out"]
