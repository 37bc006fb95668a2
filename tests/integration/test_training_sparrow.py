"""The SPARROW model through every stage of PAPER.md 1.3 on a tiny SynRef split (CPU).

A shrunken ``tiny`` preset (2 encoder frames, SAM2 at 64 px on 2 frames, a 1-layer LM) runs 20
steps of stage 0 (proposer), 1 (TSF injection), 2 (filtration + [BOX]) and our stage 3 (the pick
alone), then stage 3 again on a pick cache with a fresh pick; each stage starts from the previous
one's model, freezes what ``set_stage`` freezes, and is validated (teacher-forced losses, J&F and
identity-switch rate of the model's own answers) at its end.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from sparrow.data.synref import GenerationRequest, preset, write_split
from sparrow.errors import CheckpointError
from sparrow.models import SparrowModel
from sparrow.training import train
from sparrow.training.checkpoint import CheckpointManager, read_state
from sparrow.training.export import export_checkpoint
from sparrow.training.metrics_log import read_metrics
from sparrow.training.recipe import load_recipe

PICK = ("filtration", "box_projection", "question_bag")
SMALL = {
    "spatial": {"frames": 2},
    "temporal": {"frames": 2, "hf": {"frames_per_clip": 2}},
    "sam2": {"frames": 2, "image_size": 64},
    "tsf": {"max_crops": 4},
    "llm": {"hf": {"num_hidden_layers": 1}, "tokenizer_vocab_size": 400},
    "proposer": {"num_layers": 1, "num_queries": 8, "top_k": 4},
}


def _split(root: Path, name: str, videos: int) -> Path:
    request = GenerationRequest(
        split=name,
        videos=videos,
        frames=6,
        size=(64, 64),
        seed=1,
        difficulty="standard",
        knobs=preset("standard"),
    )
    write_split(root / name, request)
    return root / name


@pytest.fixture(scope="module")
def recipe_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = tmp_path_factory.mktemp("synref")
    recipe = {
        "task": "sparrow",
        "model": {"preset": "tiny", "overrides": SMALL},
        "data": {
            "train": [{"name": "synref", "format": "mevis", "root": str(_split(data, "train", 3))}],
            "val": [
                {"name": "val", "format": "mevis", "root": str(_split(data, "val", 1)), "split": "valid_u"}
            ],
        },
        "optim": {"lr": 1.0e-3, "warmup_steps": 2},
        "stages": [
            {"stage": 0, "steps": 20},
            {"stage": 1, "steps": 20},
            {"stage": 2, "steps": 20, "model": {"tsf": {"mode": "off"}}},
            {"stage": 3, "steps": 20, "batch_size": 2},
            {
                "stage": 3,
                "steps": 20,
                "batch_size": 2,
                "cache": True,
                "reinit": list(PICK),
                "model": {"filtration": {"question_bag": True, "fine_features": True}},
            },
        ],
        "checkpoint": {"every": 10, "keep_last": 1},
        "logging": {"progress": False},
        "validation": {"every": 0, "max_items": 1},
    }
    path = data / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


@pytest.fixture(scope="module")
def run(recipe_file: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The recipe run in this process, on one thread like the subprocesses of the kill test."""
    out = tmp_path_factory.mktemp("run") / "run"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        result = train(load_recipe(recipe_file), out)
    finally:
        torch.set_num_threads(threads)
    assert [s.steps_run for s in result.stages] == [20, 20, 20, 20, 20]
    return out


def test_every_stage_trains_its_losses(run: Path) -> None:
    records = read_metrics(run / "metrics.jsonl")
    steps = [r for r in records if r["kind"] == "train"]
    assert [(r["stage"], r["step"]) for r in steps] == [(s, i) for s in (0, 1, 2, 3, 3) for i in range(1, 21)]
    assert all(math.isfinite(r["loss"]) for r in steps)
    terms = {s: set().union(*(r["losses"] for r in steps if r["stage"] == s)) for s in (0, 1, 2, 3)}
    # proposer pretraining (DETR losses) and, the tiny preset training from scratch, SAM2 box -> masklet
    assert terms[0] == {"det_class", "det_l1", "det_giou", "sam_bce", "sam_dice", "sam_object_score"}
    mask_terms = {"lm_ce", "mask_bce", "mask_dice", "object_score"}
    det_terms = {"det_class", "det_l1", "det_giou"}  # from scratch the proposer keeps training
    assert terms[1] == {*mask_terms, *det_terms}
    box_terms = {"proposal_bce", "proposal_rank", "box_l1", "box_giou"}
    assert terms[2] == {*mask_terms, *box_terms, *det_terms}
    assert terms[3] == box_terms  # ours: the pick alone on the frozen model
    ce = [r["losses"]["lm_ce"] for r in steps if r["stage"] == 1]
    assert sum(ce[-5:]) < sum(ce[:5])  # the answer template is learnt within 20 steps
    vals = [r for r in records if r["kind"] == "val"]
    assert len(vals) == 5
    assert all(0.0 <= v["val/J&F"] <= 1.0 and math.isfinite(v["val/loss"]) for v in vals)


@pytest.mark.parametrize(
    ("index", "stage", "start"),
    [
        (0, 0, "init"),
        (1, 1, "0-proposer/final"),
        (2, 2, "1-tsf/final"),
        (3, 3, "2-filter/final"),
        (4, 3, "3-match/final"),
    ],
)
def test_each_stage_starts_from_the_previous_and_keeps_frozen_parts(
    run: Path, index: int, stage: int, start: str
) -> None:
    names = ["0-proposer", "1-tsf", "2-filter", "3-match", "4-match"]
    before = SparrowModel.from_pretrained(run / start)
    after = SparrowModel.from_pretrained(run / names[index] / "final")
    before.set_stage(stage)
    frozen = {n for n, p in before.named_parameters() if not p.requires_grad}
    trained = {n for n, p in before.named_parameters() if p.requires_grad}
    assert trained, "set_stage left nothing to train"
    assert after.config.tsf.mode == ("off" if stage >= 2 else "train")  # the stage-2 override is saved
    a, b = dict(before.named_parameters()), dict(after.named_parameters())
    assert all(torch.equal(a[n], b[n]) for n in frozen)
    assert any(not torch.equal(a[n], b[n]) for n in trained)


def test_the_cached_stage_trains_a_fresh_pick_on_the_frozen_models_rows(run: Path) -> None:
    """Stage 3 with ``cache: true``: rank 0 caches the pick inputs of every training item once (one
    row per [BOX] with its target on the key frame), the pick starts afresh (``reinit``, the stage's
    new question bag and crop MLP included) and trains on the rows; the rest is the start model's."""
    summary = json.loads((run / "4-match" / "pick_cache" / "summary.json").read_text())
    assert summary["rows"]["synref"] > 0
    start = SparrowModel.from_pretrained(run / "3-match" / "final")
    final = SparrowModel.from_pretrained(run / "4-match" / "final")
    assert final.question_bag is not None and final.filtration.fine_proj is not None
    assert not start.config.filtration.question_bag  # the stage's overrides are saved with its model
    a, b = start.state_dict(), final.state_dict()
    kept = [k for k in a if k.split(".")[0] not in PICK]
    assert kept and all(torch.equal(a[k], b[k]) for k in kept)
    assert all(not torch.equal(a[k], b[k]) for k in a if k.startswith("filtration.score_head"))


def _sparrow(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    return subprocess.run(
        [sys.executable, "-m", "sparrow", *args], env=env, capture_output=True, text=True, timeout=600
    )


def _curve(run: Path) -> list[tuple]:
    records = read_metrics(run / "metrics.jsonl")
    return [
        (r["stage_index"], r["step"], r["loss"], r["losses"], r["lr"], r["grad_norm"])
        for r in records
        if r["kind"] == "train"
    ]


def test_sigkill_then_resume_continues_the_exact_loss_curve(
    run: Path, recipe_file: Path, tmp_path: Path
) -> None:
    """REAL kills (SIGKILL) of ``sparrow train``, then ``--resume``: the loss curve equals the
    uninterrupted run's bit for bit (steps 11-20 of the killed stages included)."""
    out = tmp_path / "run"
    # 1. killed right after step 13 of stage 1 (its last checkpoint: step 10)
    killed = _sparrow(
        "train",
        str(recipe_file),
        "--out",
        str(out),
        "--set",
        "debug.kill_at_step=13",
        "--set",
        "debug.kill_in_stage=1",
    )
    assert killed.returncode == -9, killed.stderr
    assert (out / "0-proposer" / "final").is_dir() and not (out / "1-tsf" / "final").exists()
    assert read_state(CheckpointManager(out / "1-tsf" / "checkpoints", keep_last=1).latest()).step == 10
    # 2. resumed, then killed while the step-15 checkpoint of stage 2 is written (complete, unpublished)
    kill = [
        "--set",
        "debug.kill_at_step=15",
        "--set",
        "debug.kill_in_stage=2",
        "--set",
        "debug.kill_during_checkpoint=true",
    ]
    killed = _sparrow("train", "--resume", str(out), *kill)
    assert killed.returncode == -9, killed.stderr
    folder = out / "2-filter" / "checkpoints"
    assert (folder / ".tmp-step-00000015" / "model.safetensors").is_file()
    assert read_state(CheckpointManager(folder, keep_last=1).latest()).step == 10
    # 3. resumed, then killed after step 13 of the cached stage (its cache built, its checkpoint: step 10)
    kill = ["--set", "debug.kill_at_step=13", "--set", "debug.kill_in_stage=4"]
    killed = _sparrow("train", "--resume", str(out), *kill, "--set", "debug.kill_during_checkpoint=false")
    assert killed.returncode == -9, killed.stderr
    assert (out / "4-match" / "pick_cache" / "rows.pt").is_file()
    assert read_state(CheckpointManager(out / "4-match" / "checkpoints", keep_last=1).latest()).step == 10
    # 4. resumed to the end (the cache is read back, not rebuilt)
    done = _sparrow("train", "--resume", str(out), "--set", "debug.kill_at_step=null")
    assert done.returncode == 0, done.stderr
    assert _curve(out) == _curve(run)
    a = SparrowModel.from_pretrained(out / "4-match" / "final").state_dict()
    b = SparrowModel.from_pretrained(run / "4-match" / "final").state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_export_writes_a_checkpoint_as_the_stage_final_would_be(run: Path, tmp_path: Path) -> None:
    """``sparrow export`` rebuilds the stage's model (start folder + the stage's overrides) around a
    checkpoint's weights; for the last step that is exactly the stage's ``final/``."""
    from typer.testing import CliRunner

    from sparrow.cli.app import app

    checkpoint = run / "2-filter" / "checkpoints" / "step-00000020"
    with pytest.raises(CheckpointError, match="sparrow export"):
        SparrowModel.from_pretrained(checkpoint)  # weights only: the error says how to export
    result = CliRunner().invoke(app, ["export", str(checkpoint), "--out", str(tmp_path / "model")])
    assert result.exit_code == 0, result.output
    assert "recipe stage 2 (stage 2) after 20 steps" in result.output
    exported = SparrowModel.from_pretrained(tmp_path / "model")
    final = SparrowModel.from_pretrained(run / "2-filter" / "final")
    assert exported.config == final.config and exported.config.tsf.mode == "off"  # the stage's override
    a, b = exported.state_dict(), final.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    # a stage folder names its newest checkpoint; an existing --out and a model folder are refused
    newest = export_checkpoint(run / "3-match", tmp_path / "match")
    assert (newest.stage_index, newest.stage, newest.step) == (3, 3, 20)
    # a stage with re-initialised parts: its start folder lacks them, the checkpoint has them
    export_checkpoint(run / "4-match", tmp_path / "pick")
    a = SparrowModel.from_pretrained(tmp_path / "pick").state_dict()
    b = SparrowModel.from_pretrained(run / "4-match" / "final").state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(CheckpointError, match="output folder exists"):
        export_checkpoint(checkpoint, tmp_path / "model")
    with pytest.raises(CheckpointError, match="not a training checkpoint"):
        export_checkpoint(run / "2-filter" / "final", tmp_path / "other")
    assert not (tmp_path / "other").exists()
