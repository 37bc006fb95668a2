"""Seeds derived from the recipe, and seeding every RNG a run draws from."""

from __future__ import annotations

import random

import numpy as np
import torch


def derive_seed(*key: int) -> int:
    """A 31-bit seed from integers (stable across runs and machines)."""
    return int(np.random.default_rng(list(key)).integers(0, 2**31 - 1))


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (CPU and every GPU)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
