"""``sparrow train``: run a training recipe (one process, or every process of a ``torchrun`` job);
``sparrow export``: turn one of its checkpoints into a model folder."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

_RECIPE_HELP = (
    "A recipe YAML file, or the name of a bundled recipe (synref_tiny, toy). Optional with --resume."
)
_SET_HELP = (
    "Override a recipe key: --set optim.lr=1e-4 --set stages.0.steps=50 (values parsed as YAML). Repeatable."
)
_RESUME_HELP = "Continue the run in this folder from its newest checkpoint (skips finished stages)."
_OUT_HELP = "Run folder for a new run (default: runs/<recipe name>)."


def train(
    recipe: str | None = typer.Argument(None, help=_RECIPE_HELP, show_default=False, metavar="RECIPE"),
    set_: list[str] | None = typer.Option(
        None, "--set", help=_SET_HELP, show_default=False, metavar="KEY=VALUE"
    ),
    resume: Path | None = typer.Option(
        None, "--resume", help=_RESUME_HELP, show_default=False, metavar="DIR"
    ),
    out: Path | None = typer.Option(None, "--out", help=_OUT_HELP, show_default=False, metavar="DIR"),
    json_out: Path | None = typer.Option(
        None, "--json", help="Write the run summary (stages, final model) as JSON.", metavar="FILE"
    ),
) -> None:
    """Train the model of a recipe through its stages (0 proposer, 1 TSF, 2 filter), with atomic
    checkpoints and exact resume. Multi-process: torchrun --nproc_per_node N -m sparrow train ..."""
    from sparrow.errors import ConfigError
    from sparrow.evaluation.report import write_json
    from sparrow.training import load_recipe, load_resumed_recipe
    from sparrow.training import train as run_training

    overrides = list(set_ or [])
    if resume is not None:
        if out is not None and out.resolve() != resume.resolve():
            raise ConfigError(
                "--out and --resume name different folders",
                fix="a resumed run stays in its folder; drop --out",
            )
        run_dir = resume
        loaded = (
            load_recipe(recipe, overrides) if recipe is not None else load_resumed_recipe(resume, overrides)
        )
    else:
        if recipe is None:
            raise ConfigError(
                "no recipe given", fix="sparrow train RECIPE.yaml, or sparrow train --resume RUN_DIR"
            )
        loaded = load_recipe(recipe, overrides)
        run_dir = out if out is not None else Path("runs") / Path(recipe).stem
    result = run_training(loaded, run_dir, resume=resume is not None)

    from accelerate import PartialState

    if not PartialState().is_main_process:
        return
    table = Table(title=f"training run {result.run_dir}")
    for column in ("stage", "steps", "run now", "last loss", "model"):
        table.add_column(column)
    for s in result.stages:
        table.add_row(
            str(s.stage),
            str(s.steps),
            str(s.steps_run),
            "-" if s.last_loss is None else f"{s.last_loss:.4f}",
            str(s.final),
        )
    Console().print(table)
    if json_out is not None:
        summary = {
            "run_dir": str(result.run_dir),
            "final_model": str(result.final_model),
            "stages": [
                {
                    "index": s.index,
                    "stage": s.stage,
                    "steps": s.steps,
                    "steps_run": s.steps_run,
                    "last_loss": s.last_loss,
                    "final": str(s.final),
                }
                for s in result.stages
            ],
        }
        write_json(json_out, summary)


def export(
    checkpoint: Path = typer.Argument(
        ...,
        help="A training checkpoint, RUN/<index>-<stage>/checkpoints/step-N (or its checkpoints/ or "
        "stage folder: the newest checkpoint).",
        show_default=False,
    ),
    out: Path = typer.Option(..., "--out", help="The model folder to write (must not exist).", metavar="DIR"),
) -> None:
    """Write the model of a training checkpoint as a model folder that --model accepts, as the
    stage's final/ would be had it ended there (the config and tokenizer come from the run)."""
    from sparrow.training.export import export_checkpoint

    result = export_checkpoint(checkpoint, out)
    typer.echo(
        f"{result.model}: recipe stage {result.stage_index} (stage {result.stage}) after "
        f"{result.step} steps, from {result.checkpoint}"
    )
