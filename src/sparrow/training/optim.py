"""AdamW over the trainable parameters and the warmup + decay learning-rate schedule."""

from __future__ import annotations

import math

import torch
from torch import nn

from sparrow.errors import ConfigError

from .recipe import OptimSpec


def make_optimizer(model: nn.Module, spec: OptimSpec) -> torch.optim.AdamW:
    """AdamW over the parameters with ``requires_grad`` (after ``set_stage``).

    With ``weight_decay > 0``, biases and norm weights (parameters of fewer than 2 dimensions) are
    kept out of the decay.

    Raises:
        ConfigError: the stage leaves no parameter to train.
    """
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if not named:
        raise ConfigError(
            "this stage trains no parameter (set_stage froze everything)",
            fix="check the stage number and the model preset",
        )
    if spec.weight_decay > 0:
        decay = [p for n, p in named if p.ndim >= 2]
        no_decay = [p for n, p in named if p.ndim < 2]
        groups = [
            {"params": decay, "weight_decay": spec.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ]
        groups = [g for g in groups if g["params"]]
    else:
        groups = [{"params": [p for _, p in named], "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=spec.lr, betas=spec.betas, eps=spec.eps)


def lr_factor(step: int, spec: OptimSpec, total: int) -> float:
    """Multiplier of the base LR for optimizer step ``step`` (0-based) of a ``total``-step stage.

    Linear warmup from ``1 / warmup_steps`` to 1 over ``warmup_steps`` steps, then ``schedule``
    (constant, linear or cosine) from 1 towards ``min_lr_ratio``, reached one step after the last.
    """
    if spec.warmup_steps > 0 and step < spec.warmup_steps:
        return (step + 1) / spec.warmup_steps
    if spec.schedule == "constant":
        return 1.0
    span = max(1, total - spec.warmup_steps)
    progress = min(1.0, max(0.0, (step - spec.warmup_steps) / span))
    shape = 1.0 - progress if spec.schedule == "linear" else 0.5 * (1.0 + math.cos(math.pi * progress))
    return spec.min_lr_ratio + (1.0 - spec.min_lr_ratio) * shape


def make_scheduler(
    optimizer: torch.optim.Optimizer, spec: OptimSpec, total: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """The schedule of :func:`lr_factor`, stepped once per optimizer step."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step, spec, total))
