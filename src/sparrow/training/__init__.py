"""Training: recipes, the multi-stage trainer (accelerate; DDP / FSDP), atomic checkpoints, metrics.

Entry points: :func:`load_recipe` (YAML + ``--set`` overrides) and :func:`train` (run a recipe in a
run folder, resumable). ``sparrow train`` is the command-line front end; see ``docs/training.md``.
"""

from __future__ import annotations

from .recipe import Recipe, load_recipe, load_resumed_recipe
from .trainer import RunResult, StageResult, Trainer, train

__all__ = ["Recipe", "RunResult", "StageResult", "Trainer", "load_recipe", "load_resumed_recipe", "train"]
