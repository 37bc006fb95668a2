"""The training stages of PAPER.md 1.3 and where each one's files live in a run folder.

A run folder holds one sub-folder per entry of the recipe's ``stages`` list, named
``<index>-<stage name>`` (``0-proposer``, ``1-tsf``, ``2-filter``, ``3-match``). Each holds ``checkpoints/``
while the stage runs and ``final/`` (a ``save_pretrained`` model folder) once it is done; the next
stage starts from that folder.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

from sparrow.errors import ConfigError

from .seeding import derive_seed

if TYPE_CHECKING:
    from .recipe import Recipe
    from .task import TrainingTask


@dataclass(frozen=True)
class StageInfo:
    """What a stage trains (the model's ``set_stage`` does the freezing) and its losses."""

    name: str
    description: str


STAGES: dict[int, StageInfo] = {
    0: StageInfo("proposer", "class-agnostic proposer pretraining (DETR losses: focal class, L1, GIoU)"),
    1: StageInfo(
        "tsf", "TSF injection: V->L adapters, LLM (LoRA on real presets), L->V [SEG] MLP; CE + BCE + Dice"
    ),
    2: StageInfo(
        "filter", "filtration head + [BOX] prompt, L->V MLPs; CE + BCE + Dice + proposal BCE (+ box L1/GIoU)"
    ),
    3: StageInfo(
        "match", "ours: filtration head, [BOX] MLP, question bag on the frozen model; proposal + box terms"
    ),
}


def stage_dir(run_dir: Path, index: int, stage: int) -> Path:
    """The folder of recipe stage ``index`` (paper stage ``stage``) in ``run_dir``."""
    return run_dir / f"{index}-{STAGES[stage].name}"


def final_dir(run_dir: Path, index: int, stage: int) -> Path:
    """The model folder a finished stage leaves (its presence marks the stage as done)."""
    return stage_dir(run_dir, index, stage) / "final"


def checkpoints_dir(run_dir: Path, index: int, stage: int) -> Path:
    """The stage's resumable checkpoints."""
    return stage_dir(run_dir, index, stage) / "checkpoints"


def stage_start(recipe: Recipe, run_dir: Path, index: int) -> Path:
    """The model folder stage ``index`` starts from: the previous stage's ``final/``, else
    ``model.init``, else the run's ``init/`` (a fresh model of the preset the trainer saves)."""
    if index > 0:
        return final_dir(run_dir, index - 1, recipe.stages[index - 1].stage)
    return Path(recipe.model.init) if recipe.model.init else run_dir / "init"


def load_stage_model(task: TrainingTask, recipe: Recipe, start: Path, index: int) -> nn.Module:
    """The model stage ``index`` trains: the folder ``start`` (:func:`stage_start`) loaded with the
    stage's config overrides, its ``reinit`` parts re-initialised (:func:`reset_parts`, seeded by
    the recipe's seed and the index), frozen by ``set_stage``."""
    spec = recipe.stages[index]
    model = task.load_model(start, recipe.stage_model_overrides(index), spec.reinit)
    if spec.reinit:
        reset_parts(model, spec.reinit, derive_seed(recipe.seed, index, 1))
    model.set_stage(spec.stage)
    return model


def _reset_module(module: nn.Module) -> None:
    """A module's own initialisation: ``reset_parameters``, or attention's input projections."""
    if isinstance(module, nn.MultiheadAttention):
        module._reset_parameters()  # torch's own start of the packed projections (no public name)
    elif hasattr(module, "reset_parameters"):
        module.reset_parameters()


def reset_parts(model: nn.Module, names: list[str], seed: int) -> None:
    """Re-initialise the sub-modules ``names`` of ``model`` as new ones start: every module inside
    that has ``reset_parameters`` calls it (attention layers re-draw their packed projections as
    torch starts them), innermost first (a module's own ``reset_parameters`` then applies its
    special starts, e.g. a zero last layer). Draws from a forked CPU RNG seeded with ``seed``; the
    global streams are untouched.

    Raises:
        ConfigError: ``model`` has no part of a name.
    """
    parts = []
    for name in names:
        try:
            part = model.get_submodule(name)
        except AttributeError:
            part = None
        if not isinstance(part, nn.Module):
            raise ConfigError(
                f"reinit names {name!r}, which this model does not have",
                fix="list parts of the model (filtration, box_projection, question_bag, ...)",
            )
        parts.append(part)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for part in parts:
            part.apply(_reset_module)
