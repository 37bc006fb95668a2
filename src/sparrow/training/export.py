"""Turn a training checkpoint into a model folder (``sparrow export``).

A checkpoint (``RUN/<index>-<stage>/checkpoints/step-N/``) holds the weights as trained, with no
config or tokenizer: those come from the folder the stage started from and the recipe's overrides
for the stage. :func:`export_checkpoint` rebuilds the stage's model exactly as the trainer does,
loads the checkpoint's weights strictly and writes a ``save_pretrained`` folder that ``--model``
accepts (the same folder ``final/`` would be, had the stage ended at step N).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sparrow.errors import CheckpointError

from .checkpoint import STATE_FILE, durable_dir, load_checkpoint_weights, newest_checkpoint, read_state
from .recipe import stored_recipe
from .stages import load_stage_model, stage_start
from .task import make_task


@dataclass(frozen=True)
class ExportResult:
    """Where the model went and what it was: recipe stage ``stage_index`` (paper stage ``stage``)
    after ``step`` optimizer steps."""

    model: Path
    checkpoint: Path
    stage_index: int
    stage: int
    step: int


def checkpoint_folder(path: Path) -> Path:
    """``path`` itself when it is a checkpoint (``step-N/``); the newest one of a stage's
    ``checkpoints/`` folder or of a stage folder.

    Raises:
        CheckpointError: ``path`` is none of these.
    """
    if (path / STATE_FILE).is_file():
        return path
    for folder in (path, path / "checkpoints"):
        newest = newest_checkpoint(folder)
        if newest is not None:
            return newest
    raise CheckpointError(
        "not a training checkpoint (no trainer_state.json)",
        path=path,
        fix="give a checkpoint folder RUN/<index>-<stage>/checkpoints/step-N, its checkpoints/ "
        "folder or its stage folder; a final/ folder already is a model",
    )


def export_checkpoint(checkpoint: str | Path, out: str | Path) -> ExportResult:
    """Write the model of a training checkpoint to ``out`` (which must not exist).

    The run folder is the checkpoint's third parent (``RUN/<index>-<stage>/checkpoints/step-N``);
    its ``recipe.yaml`` says which folder the stage started from and with which overrides.

    Raises:
        CheckpointError: not a checkpoint, no run folder around it, the stage's start folder is gone,
            ``out`` exists, or the weights do not fit the stage's model.
    """
    folder = checkpoint_folder(Path(checkpoint))
    out = Path(out)
    if out.exists():
        raise CheckpointError("the output folder exists", path=out, fix="choose a new --out folder")
    state = read_state(folder)
    run_dir = folder.parent.parent.parent
    recipe = stored_recipe(run_dir)
    if recipe is None or state.stage_index >= len(recipe.stages):
        raise CheckpointError(
            f"no run folder around the checkpoint (expected {run_dir / 'recipe.yaml'} with stage "
            f"{state.stage_index})",
            path=folder,
            fix="export the checkpoint where the training run left it: RUN/<index>-<stage>/checkpoints/step-N",
        )
    start = stage_start(recipe, run_dir, state.stage_index)
    if not start.is_dir():
        raise CheckpointError(
            "the folder this stage started from is gone (it holds the config and tokenizer)",
            path=start,
            fix="restore it, or export from the run's own machine",
        )
    model = load_stage_model(make_task(recipe), recipe, start, state.stage_index)
    load_checkpoint_weights(
        model, folder, fix="the run's recipe.yaml or start folder changed after training; restore them"
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    with durable_dir(out) as tmp:
        model.save_pretrained(tmp)
    return ExportResult(out, folder, state.stage_index, state.stage, state.step)
