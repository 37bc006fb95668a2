"""A toy model and toy data with SPARROW's training interface, to check the training machinery fast.

``recipe.task: toy`` trains :class:`ToyModel` (a few hundred parameters, dropout included so RNG
restoration matters) on synthetic datasets (``format: toy``; ``options: {size, dim, seed}``). It
exercises everything the trainer does for the real model -- stages that freeze different parts and
emit different loss terms, the weighted mixture, checkpoints, resume, DDP -- in well under a second
per stage on a CPU, and doubles as a smoke test of a new cluster (``sparrow train toy``).

Stages mirror PAPER.md 1.3: 0 trains the ``proposer`` (box regression terms ``det_l1``,
``det_giou``), 1 the ``adapter`` and ``seg_head`` (``lm_ce``, ``mask_bce``, ``mask_dice``), 2 the
``filter`` and ``seg_head`` (``lm_ce``, ``mask_bce``, ``mask_dice``, ``proposal_bce``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

from sparrow.errors import CheckpointError, ConfigError

from .recipe import DatasetSpec, Recipe

NUM_CLASSES = 5
MASK_SIZE = 16


@dataclass
class ToyConfig:
    dim: int = 8
    hidden: int = 16
    dropout: float = 0.1


@dataclass
class ToyOutput:
    """``loss``: scalar total; ``losses``: every term."""

    loss: torch.Tensor
    losses: dict[str, torch.Tensor]


class ToyModel(nn.Module):
    """Maps a feature vector ``x (B, dim)`` to a box ``(B, 4)``, class logits ``(B, 5)``, mask logits
    ``(B, 16)`` and a selection logit ``(B,)``; the losses of the current stage come out of ``forward``."""

    def __init__(self, config: ToyConfig) -> None:
        super().__init__()
        self.config = config
        h = config.hidden
        self.proposer = nn.Sequential(nn.Linear(config.dim, h), nn.GELU(), nn.Linear(h, 4))
        self.adapter = nn.Sequential(nn.Linear(config.dim, h), nn.GELU(), nn.Dropout(config.dropout))
        self.seg_head = nn.Linear(h, NUM_CLASSES + MASK_SIZE)
        self.filter = nn.Linear(h + 4, 1)
        self.stage = 1

    def set_stage(self, stage: int) -> None:
        """Freeze everything but the parts stage ``stage`` trains."""
        trained = {0: ("proposer",), 1: ("adapter", "seg_head"), 2: ("filter", "seg_head"), 3: ("filter",)}[
            stage
        ]
        for name, module in self.named_children():
            module.requires_grad_(name in trained)
        self.stage = stage

    def forward(self, batch: dict[str, torch.Tensor]) -> ToyOutput:
        x = batch["x"]
        boxes = torch.sigmoid(self.proposer(x))
        losses: dict[str, torch.Tensor] = {}
        if self.stage == 0:
            losses["det_l1"] = F.l1_loss(boxes, batch["box"])
            losses["det_giou"] = 0.5 * F.mse_loss(boxes, batch["box"])
        else:
            feats = self.adapter(x)
            out = self.seg_head(feats)
            logits, masks = out[:, :NUM_CLASSES], out[:, NUM_CLASSES:]
            losses["lm_ce"] = F.cross_entropy(logits, batch["label"])
            losses["mask_bce"] = 2.0 * F.binary_cross_entropy_with_logits(masks, batch["mask"])
            prob = masks.sigmoid()
            dice = 1 - (2 * (prob * batch["mask"]).sum(1) + 1) / (prob.sum(1) + batch["mask"].sum(1) + 1)
            losses["mask_dice"] = 0.5 * dice.mean()
            if self.stage >= 2:
                score = self.filter(torch.cat([feats, boxes.detach()], dim=1)).squeeze(1)
                losses["proposal_bce"] = F.binary_cross_entropy_with_logits(score, batch["selected"])
        return ToyOutput(loss=sum(losses.values()), losses=losses)

    def save_pretrained(self, folder: str | Path) -> None:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "config.json").write_text(
            json.dumps({"model": "toy", **asdict(self.config)}), encoding="utf-8"
        )
        save_file(
            {k: v.detach().contiguous() for k, v in self.state_dict().items()},
            str(folder / "model.safetensors"),
        )

    @classmethod
    def from_pretrained(cls, folder: str | Path) -> ToyModel:
        folder = Path(folder)
        try:
            data = json.loads((folder / "config.json").read_text(encoding="utf-8"))
            data.pop("model", None)
            model = cls(ToyConfig(**data))
            model.load_state_dict(load_file(str(folder / "model.safetensors")))
        except (OSError, ValueError, TypeError, RuntimeError) as exc:
            raise CheckpointError(
                f"not a toy model folder: {exc}", path=folder, fix="point at a stage's final/ folder"
            ) from exc
        return model


class ToySource:
    """A synthetic dataset: item ``i`` is a fixed random vector with a fixed class, mask and box.

    ``build`` adds seeded noise to the vector (the stand-in for augmentation), so the sample depends
    on the sampler's per-sample seed exactly as real samples do.
    """

    def __init__(self, spec: DatasetSpec, dim: int) -> None:
        self.name = spec.name
        self.size = int(spec.options.get("size", 32))
        self.seed = int(spec.options.get("seed", 0))
        self.dim = dim
        if spec.max_items is not None:
            self.size = min(self.size, spec.max_items)
        if self.size < 1:
            raise ConfigError(f"toy dataset {spec.name!r} has no items", fix="set options.size >= 1")

    def __len__(self) -> int:
        return self.size

    def sample_id(self, index: int) -> str:
        return f"{self.name}/{index}"

    def build(self, index: int, seed: int) -> dict[str, torch.Tensor]:
        item = np.random.default_rng([self.seed, index])
        x = item.normal(size=self.dim)
        label = int(item.integers(NUM_CLASSES))
        mask = (item.random(MASK_SIZE) < 0.4).astype(np.float32)
        box = item.random(4).astype(np.float32)
        noise = np.random.default_rng(seed).normal(scale=0.05, size=self.dim)
        return {
            "x": torch.from_numpy((x + noise).astype(np.float32)),
            "label": torch.tensor(label),
            "mask": torch.from_numpy(mask),
            "box": torch.from_numpy(box),
            "selected": torch.tensor(float(label % 2)),
        }


class ToyTask:
    """The ``toy`` task (see the module docstring)."""

    def __init__(self, recipe: Recipe) -> None:
        self.recipe = recipe
        self.config = ToyConfig(
            **{k: v for k, v in recipe.model.overrides.items() if k in ToyConfig.__dataclass_fields__}
        )

    def build_model(self) -> ToyModel:
        return ToyModel(self.config)

    def load_model(self, folder: Path, overrides: dict[str, Any], fresh: Sequence[str] = ()) -> ToyModel:
        model = ToyModel.from_pretrained(folder)
        unknown = sorted(set(overrides) - {"dropout"})
        if unknown:
            raise ConfigError(
                f"the toy model cannot change {unknown} after it is built", fix="only dropout may change"
            )
        if "dropout" in overrides:
            model.config.dropout = float(overrides["dropout"])
            model.adapter[2].p = model.config.dropout
        return model

    def train_sources(self, model: nn.Module) -> list[ToySource]:
        return [ToySource(spec, self.config.dim) for spec in self.recipe.data.train]

    def collate(self, samples: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        return {k: torch.stack([s[k] for s in samples]) for k in samples[0]}

    @torch.no_grad()
    def validate(self, model: nn.Module, stage: int) -> dict[str, Any]:
        """Mean loss terms over the validation datasets (each item built with seed 0)."""
        if not self.recipe.data.val:
            return {}
        totals: dict[str, float] = {}
        count = 0
        for spec in self.recipe.data.val:
            source = ToySource(spec, self.config.dim)
            n = (
                len(source)
                if self.recipe.validation.max_items is None
                else min(len(source), self.recipe.validation.max_items)
            )
            batch = self.collate([source.build(i, 0) for i in range(n)])
            out = model(batch)
            for k, v in {"loss": out.loss, **out.losses}.items():
                totals[k] = totals.get(k, 0.0) + float(v) * n
            count += n
        return {k: v / count for k, v in totals.items()}
