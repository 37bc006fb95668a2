"""The training machinery end to end on the toy task (CPU, seconds).

- every stage runs 20 steps, each starting from the previous stage's model; mixture weights,
  checkpoint pruning, refusals to overwrite or to resume with another recipe;
- ``torchrun --nproc_per_node 2`` (gloo): the ranks train on different samples and end with
  identical weights.

Killing and resuming real processes is tested on the SPARROW model (``test_training_sparrow.py``).
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
from sparrow.training.checkpoint import CheckpointManager
from sparrow.training.metrics_log import read_metrics

ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
QUIET = ["--set", "logging.progress=false"]


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bundled toy recipe, run in this process."""
    run = tmp_path_factory.mktemp("toy") / "run"
    train(load_recipe("toy", ["logging.progress=false", "logging.sample_ids=true"]), run)
    return run


def test_every_stage_runs_and_chains(toy_run: Path) -> None:
    recipe = load_recipe("toy", ["logging.progress=false"])
    records = read_metrics(toy_run / "metrics.jsonl")
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
        load_file(str(toy_run / s / "final" / "model.safetensors"))
        for s in ("0-proposer", "1-tsf", "2-filter")
    ]
    for key in finals[0]:
        assert torch.equal(finals[0][key], finals[1][key]) == (not key.startswith(("adapter", "seg_head")))
    assert all(
        torch.equal(finals[1][k], finals[2][k]) for k in finals[1] if k.startswith(("proposer", "adapter"))
    )
    # checkpoints: every 5 steps, the last 2 kept
    ckpts = CheckpointManager(toy_run / "1-tsf" / "checkpoints", keep_last=2)
    assert [s for s, _ in ckpts.complete()] == [15, 20]
    # a finished run resumes to nothing; a second start in the same folder is refused
    again = train(recipe, toy_run, resume=True)
    assert [s.steps_run for s in again.stages] == [0, 0, 0]
    with pytest.raises(ConfigError, match="already holds a run"):
        train(recipe, toy_run)
    with pytest.raises(ConfigError, match="differs"):
        train(load_recipe("toy", ["optim.lr=0.5"]), toy_run, resume=True)


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
