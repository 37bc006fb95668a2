"""What the trainer needs from a model/data pair, and the registry of such pairs.

The trainer is generic: it drives any :class:`TrainingTask`. ``sparrow`` trains
:class:`~sparrow.models.SparrowModel` on dataset records; ``toy`` is a small MLP with the same
interface, for checking the training machinery (resume, DDP, stages) in seconds.

A model is an ``nn.Module`` with

- ``forward(batch) -> output`` where ``output.loss`` is the scalar total and ``output.losses`` a
  ``dict[str, Tensor]`` of its (weighted) terms;
- ``set_stage(stage: int)``: freezes / unfreezes parameters for a paper stage (0, 1, 2);
- ``save_pretrained(folder)``; the task's :meth:`TrainingTask.load_model` reads that folder back
  (with config overrides: a stage may change switches such as TSF).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

from torch import nn

from .recipe import Recipe


class SampleSource(Protocol):
    """One dataset of the mixture: ``len`` items, each built on demand from an index and a seed."""

    name: str

    def __len__(self) -> int: ...

    def build(self, index: int, seed: int) -> Any:
        """The training sample of item ``index``; ``seed`` drives all of its randomness."""
        ...

    def sample_id(self, index: int) -> str:
        """A stable, human-readable id of item ``index`` (logged with ``logging.sample_ids``)."""
        ...


class TrainingTask(Protocol):
    """A model family and its data, as the trainer sees them."""

    def build_model(self) -> nn.Module:
        """A fresh model of the recipe's preset (the trainer saves it once as the run's ``init/``)."""
        ...

    def load_model(self, folder: Path, overrides: dict[str, Any], fresh: Sequence[str] = ()) -> nn.Module:
        """The model saved in ``folder`` by ``save_pretrained``, with config ``overrides`` (nested
        keys); the parts ``fresh`` may be missing from the folder (the stage re-initialises them)."""
        ...

    def train_sources(self, model: nn.Module) -> list[SampleSource]:
        """The training datasets, in the order of ``recipe.data.train``, building samples for
        ``model`` as :meth:`set_stage` left it (e.g. with or without TSF crops)."""
        ...

    def collate(self, samples: list[Any]) -> Any:
        """A batch for ``model.forward`` from built samples (also of a pick cache's rows)."""
        ...

    def validate(self, model: nn.Module, stage: int) -> dict[str, float]:
        """Held-out metrics of ``model`` at paper stage ``stage`` (``{}`` when there is no val split)."""
        ...


def make_task(recipe: Recipe) -> TrainingTask:
    """The task the recipe names."""
    if recipe.task == "toy":
        from .toy import ToyTask

        return ToyTask(recipe)
    from .sparrow_task import SparrowTask

    return SparrowTask(recipe)
