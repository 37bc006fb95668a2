"""The training machinery end to end on the toy task (CPU, seconds).

- every stage runs 20 steps (in this process), each starting from the previous stage's model;
- REAL process kills (SIGKILL after step 13 of one stage, then in the middle of writing the step-15
  checkpoint of the next), each followed by ``sparrow train --resume``: the loss curve equals an
  uninterrupted run's, bit for bit;
- ``torchrun --nproc_per_node 2`` (gloo): the ranks train on different samples and end with
  identical weights.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from sparrow.errors import ConfigError
from sparrow.training import load_recipe, train
from sparrow.training.checkpoint import CheckpointManager, read_state
from sparrow.training.metrics_log import read_metrics

ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
QUIET = ["--set", "logging.progress=false"]


def _sparrow(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [sys.executable, "-m", "sparrow", *args], env=ENV, capture_output=True, text=True, timeout=300
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"sparrow {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
        )
    return proc


def _curve(run: Path) -> list[tuple]:
    return [
        (r["stage_index"], r["step"], r["loss"], r["losses"], r["lr"])
        for r in read_metrics(run / "metrics.jsonl")
        if r["kind"] == "train"
    ]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bundled toy recipe run in this process, on one thread like the subprocesses below."""
    run = tmp_path_factory.mktemp("full") / "run"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        train(load_recipe("toy", ["logging.progress=false", "logging.sample_ids=true"]), run)
    finally:
        torch.set_num_threads(threads)
    return run


def test_every_stage_runs_and_chains(uninterrupted: Path) -> None:
    recipe = load_recipe("toy", ["logging.progress=false"])
    records = read_metrics(uninterrupted / "metrics.jsonl")
    train_records = [r for r in records if r["kind"] == "train"]
    assert [(r["stage"], r["step"]) for r in train_records] == [
        (s, i) for s in (0, 1, 2) for i in range(1, 21)
    ]
    assert {tuple(sorted(r["losses"])) for r in train_records if r["stage"] == 0} == {("det_giou", "det_l1")}
    assert {tuple(sorted(r["losses"])) for r in train_records if r["stage"] == 2} == {
        ("lm_ce", "mask_bce", "mask_dice", "proposal_bce")
    }
    assert len([r for r in records if r["kind"] == "val"]) == 3  # validation at every stage end
    # mixture weights 3:1 over 60 steps x 4 samples
    ids = [i for r in train_records for i in r["sample_ids"][0]]
    share_a = sum(i.startswith("toy_a/") for i in ids) / len(ids)
    assert 0.65 < share_a < 0.85
    # each stage starts from the previous one: parts a stage freezes leave it unchanged
    finals = [
        load_file(str(uninterrupted / s / "final" / "model.safetensors"))
        for s in ("0-proposer", "1-tsf", "2-filter")
    ]
    for key in finals[0]:
        assert torch.equal(finals[0][key], finals[1][key]) == (not key.startswith(("adapter", "seg_head")))
    assert all(
        torch.equal(finals[1][k], finals[2][k]) for k in finals[1] if k.startswith(("proposer", "adapter"))
    )
    # checkpoints: every 5 steps, the last 2 kept
    ckpts = CheckpointManager(uninterrupted / "1-tsf" / "checkpoints", keep_last=2)
    assert [s for s, _ in ckpts.complete()] == [15, 20]
    # a finished run resumes to nothing; a second start in the same folder is refused
    again = train(recipe, uninterrupted, resume=True)
    assert [s.steps_run for s in again.stages] == [0, 0, 0]
    with pytest.raises(ConfigError, match="already holds a run"):
        train(recipe, uninterrupted)
    with pytest.raises(ConfigError, match="differs"):
        train(load_recipe("toy", ["optim.lr=0.5"]), uninterrupted, resume=True)


def test_sigkill_then_resume_continues_the_exact_loss_curve(uninterrupted: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    # 1. SIGKILL right after step 13 of stage 1 (the last checkpoint is step 10)
    killed = _sparrow(
        "train",
        "toy",
        "--out",
        str(run),
        *QUIET,
        "--set",
        "debug.kill_at_step=13",
        "--set",
        "debug.kill_in_stage=1",
        check=False,
    )
    assert killed.returncode == -9  # SIGKILL
    assert (run / "0-proposer" / "final").is_dir() and not (run / "1-tsf" / "final").exists()
    latest = CheckpointManager(run / "1-tsf" / "checkpoints", keep_last=2).latest()
    assert read_state(latest).step == 10
    assert max(r["step"] for r in read_metrics(run / "metrics.jsonl") if r["stage_index"] == 1) == 13

    # 2. resume; SIGKILL again while the step-15 checkpoint of stage 2 is written (files complete, not published)
    kill = [
        "--set",
        "debug.kill_at_step=15",
        "--set",
        "debug.kill_in_stage=2",
        "--set",
        "debug.kill_during_checkpoint=true",
    ]
    killed = _sparrow("train", "--resume", str(run), *QUIET, *kill, check=False)
    assert killed.returncode == -9
    folder = run / "2-filter" / "checkpoints"
    assert (folder / ".tmp-step-00000015" / "model.safetensors").is_file()
    assert (folder / "latest").read_text().strip() == "step-00000010"
    assert read_state(CheckpointManager(folder, keep_last=2).latest()).step == 10

    # 3. resume to the end (the recipe may be named again: it matches the stored one)
    _sparrow("train", "toy", "--resume", str(run), *QUIET)
    assert not (folder / ".tmp-step-00000015").exists()
    assert _curve(run) == _curve(uninterrupted)  # steps 11-20 of stages 1 and 2 included, bit for bit
    for stage in ("0-proposer", "1-tsf", "2-filter"):
        a = load_file(str(run / stage / "final" / "model.safetensors"))
        b = load_file(str(uninterrupted / stage / "final" / "model.safetensors"))
        assert all(torch.equal(a[k], b[k]) for k in a)


def test_torchrun_two_ranks_see_different_samples_and_agree(tmp_path: Path) -> None:
    run = tmp_path / "run"
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        "-m", "sparrow", "train", "toy", "--out", str(run), *QUIET,
        "--set", "logging.sample_ids=true", "--set", "stages=[{stage: 1, steps: 10}]",
    ]  # fmt: skip
    proc = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    records = read_metrics(run / "metrics.jsonl")
    steps = [r for r in records if r["kind"] == "train"]
    assert len(steps) == 10
    for r in steps:
        rank0, rank1 = r["sample_ids"]
        assert len(rank0) == len(rank1) == 4
        assert set(rank0).isdisjoint(rank1)  # an epoch draws each toy item once: no overlap within a step
        assert r["samples_seen"] == 8 * r["step"]
    seen = [set(i for r in steps for i in r["sample_ids"][k]) for k in (0, 1)]
    assert seen[0] != seen[1]
    end = next(r for r in records if r["kind"] == "stage_end")
    digests = end["rank_weight_digests"]
    assert len(digests) == 2 and digests[0] == digests[1]
