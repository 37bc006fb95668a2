"""Where a model folder is: ``"default"`` (the bundled model) or a path -- with the error that says
how to get one. Imports nothing heavy, so the CLI can fail fast before loading torch."""

from __future__ import annotations

from pathlib import Path

from sparrow.errors import CheckpointError
from sparrow.paths import bundled_model_dir

TRAIN_HINT = (
    "train it: `sparrow data synref` (see src/sparrow/configs/recipes/synref_tiny.yaml for the "
    "commands), then `sparrow train synref_tiny --out runs/synref_tiny`, and pass --model with the "
    "last stage's folder, runs/synref_tiny/<index>-<stage>/final, which the training summary prints "
    "(or copy that folder to {bundled})"
)


def resolve_model_path(path: str | Path) -> Path:
    """``"default"`` -> the bundled model folder; a path stays a path.

    Raises:
        CheckpointError: the folder does not exist (the message says how to get or train one).
    """
    if str(path) == "default":
        folder = bundled_model_dir()
        if not (folder / "config.json").is_file():
            raise CheckpointError(
                "no trained bundled model is installed yet",
                path=folder,
                fix=TRAIN_HINT.format(bundled=folder),
            )
        return folder
    folder = Path(path)
    if not folder.is_dir():
        raise CheckpointError(
            "model folder not found",
            path=folder,
            fix="give a folder written by save_pretrained / `sparrow train`, or "
            + TRAIN_HINT.format(bundled=bundled_model_dir()),
        )
    return folder
