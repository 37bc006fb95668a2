"""The ``sparrow`` training task: :class:`~sparrow.models.SparrowModel` on dataset records.

Datasets are read with the format registry (:func:`sparrow.data.registry.get_format`; SynRef splits
use ``format: mevis``). A dataset's ``task`` picks its items:

- ``referring_segmentation``: every referring expression ("Can you segment {exp} in this video?");
- ``box_grounding`` / ``tube_grounding``: every STVG tube (its boxes, filled, stand in for masks);
- ``grounded_caption``: every grounded caption (GCG).

The first stage starts from a fresh model of the preset (its tokenizer, for presets without a
pretrained LM, is a byte-level BPE trained on the training mixture's text) or from ``model.init``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from sparrow.data.conversations import (
    caption_conversation,
    expression_conversation,
    multi_expression_conversations,
    tube_conversation,
)
from sparrow.data.mask_sources import MaskSource
from sparrow.data.records import Conversation, DatasetSplit
from sparrow.data.registry import get_format
from sparrow.errors import ConfigError
from sparrow.models import SparrowModel, SparrowTokenizer, collate, load_config, train_tokenizer
from sparrow.models.batch import PickBatch
from sparrow.models.processor import SparrowProcessor

from .recipe import DatasetSpec, Recipe
from .samples import ConversationSource, object_mask_sources
from .validation import grounding_metrics


def open_split(spec: DatasetSpec) -> DatasetSplit:
    """Read (index) the split of one dataset of the recipe.

    Raises:
        ConfigError: the dataset has no ``root``.
        DataFormatError: the files do not follow the format (from the reader).
    """
    if spec.root is None:
        raise ConfigError(f"dataset {spec.name!r} has no root", fix="set its root to the dataset folder")
    return get_format(spec.format).open(spec.root, spec.split)


def read_conversations(
    spec: DatasetSpec, split: DatasetSplit | None = None
) -> tuple[list[Conversation], dict[str, list[MaskSource]]]:
    """The conversations of one dataset of the mixture and, for (multi-)referring segmentation, the
    per-object masks of its videos (proposer targets)."""
    split = open_split(spec) if split is None else split
    objects: dict[str, list[MaskSource]] = {}
    if spec.task == "referring_segmentation":
        items = [
            expression_conversation(e, split.videos[e.video_id])
            for e in split.expressions
            if e.masks is not None
        ]
        objects = object_mask_sources(split)
    elif spec.task == "multi_referring_segmentation":
        group = spec.options.get("group", 3)
        if not isinstance(group, int) or group < 2:
            raise ConfigError(
                f"dataset {spec.name!r}: options.group must be an integer >= 2, got {group!r}",
                fix="set how many expressions of a video one question asks for (default 3)",
            )
        items = list(multi_expression_conversations(split, group))
        objects = object_mask_sources(split)
    elif spec.task == "grounded_caption":
        items = [caption_conversation(c) for c in split.captions]
    else:
        items = [tube_conversation(t) for t in split.tubes]
    if spec.max_items is not None:
        items = items[: spec.max_items]
    return items, objects


def corpus(conversations: Sequence[Conversation], processor_answer: Any) -> list[str]:
    """Every question and (formatted) answer, for training a tokenizer."""
    texts = []
    for conv in conversations:
        phrases = [t.phrase for t in conv.targets]
        for turn in conv.turns:
            texts.append(turn.text if turn.role == "user" else processor_answer(turn.text, phrases))
    return texts


class SparrowTask:
    """The ``sparrow`` task (see the module docstring)."""

    def __init__(self, recipe: Recipe) -> None:
        self.recipe = recipe
        self._splits: dict[str, DatasetSplit] = {}
        self._data: dict[str, tuple[list[Conversation], dict[str, list[MaskSource]]]] = {}
        self._pad_id: int | None = None

    def _split(self, spec: DatasetSpec) -> DatasetSplit:
        key = f"{spec.format}:{spec.root}:{spec.split}"
        if key not in self._splits:
            self._splits[key] = open_split(spec)
        return self._splits[key]

    def _dataset(self, spec: DatasetSpec) -> tuple[list[Conversation], dict[str, list[MaskSource]]]:
        key = f"{spec.format}:{spec.root}:{spec.split}:{spec.task}:{spec.max_items}"
        if key not in self._data:
            self._data[key] = read_conversations(spec, self._split(spec))
        return self._data[key]

    def build_model(self) -> SparrowModel:
        config = load_config(self.recipe.model.preset, self.recipe.model.overrides)
        llm = config.llm
        source = llm.tokenizer or llm.path
        if source is not None:
            tokenizer = SparrowTokenizer.from_pretrained_lm(source, llm.template)
        else:
            answer = SparrowProcessor(config, None).format_answer  # type: ignore[arg-type]  # text only
            texts = [t for spec in self.recipe.data.train for t in corpus(self._dataset(spec)[0], answer)]
            tokenizer = train_tokenizer(texts, llm.template, llm.tokenizer_vocab_size)
        return SparrowModel(config, tokenizer)

    def load_model(self, folder: Path, overrides: dict[str, Any], fresh: Sequence[str] = ()) -> SparrowModel:
        return SparrowModel.from_pretrained(folder, overrides or None, fresh)

    def _sources(self, specs: Sequence[DatasetSpec], model: nn.Module) -> list[ConversationSource]:
        processor = model.processor
        self._pad_id = processor.tokenizer.ids.pad
        sources = []
        for spec in specs:
            conversations, objects = self._dataset(spec)
            sources.append(ConversationSource(spec.name, conversations, processor, objects))
        return sources

    def train_sources(self, model: nn.Module) -> list[ConversationSource]:
        return self._sources(self.recipe.data.train, model)

    def collate(self, samples: list[Any]) -> Any:
        if samples and isinstance(samples[0], PickBatch):  # rows of a pick cache
            return PickBatch.cat(samples)
        if self._pad_id is None:
            raise RuntimeError("train_sources() must be called before collate()")
        return collate(samples, self._pad_id)

    @torch.no_grad()
    def validate(self, model: nn.Module, stage: int) -> dict[str, Any]:
        """Per held-out dataset ``name``: the teacher-forced loss terms on its first
        ``validation.max_items`` items (built with seed 0) as ``name/loss``, ``name/lm_ce``, ...; for
        referring segmentation in the MeViS layout also ``name/J&F``, ``name/J``, ``name/F`` and
        ``name/id_switch_rate`` of the model's own answers (:mod:`.validation`)."""
        limit = self.recipe.validation.max_items
        device = next(model.parameters()).device
        metrics: dict[str, Any] = {}
        for spec, source in zip(
            self.recipe.data.val, self._sources(self.recipe.data.val, model), strict=True
        ):
            n = len(source) if limit is None else min(len(source), limit)
            totals: dict[str, float] = {}
            for i in range(n):
                out = model(self.collate([source.build(i, 0)]).to(device))
                for key, value in {"loss": out.loss, **out.losses}.items():
                    totals[key] = totals.get(key, 0.0) + float(value) / n
            metrics.update({f"{spec.name}/{k}": v for k, v in totals.items()})
            if spec.task == "referring_segmentation" and spec.format == "mevis":
                scores = grounding_metrics(model, self._split(spec), limit)
                metrics.update({f"{spec.name}/{k}": v for k, v in scores.items()})
        return metrics
