"""Per-object statistics of a per-frame metric series: Mean M, Recall R (O) and Decay D (METRICS.md §1.3).

Matches davis2017 ``utils.db_statistics``:

- ``M = nanmean(v)``; ``R = nanmean(v > 0.5)`` (strict threshold, NaN counts as a miss).
- Decay: four overlapping bins cut at ``ids = round(linspace(1, N, 5) + 1e-10) - 1``;
  ``D = nanmean(bin 0) - nanmean(bin 3)``.

The official code casts ``ids`` to **uint8**, so sequences of 257 frames or more wrap the indices
(for N = 300 the ids become ``[0, 75, 150, 224, 43]`` and D is NaN). ``decay_mode="official"`` (the
default) reproduces that; ``decay_mode="corrected"`` keeps the indices as int64.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Literal

import numpy as np

__all__ = ["DecayMode", "Statistics", "db_statistics", "decay_bin_ids"]

DecayMode = Literal["official", "corrected"]
N_BINS = 4


@dataclass(frozen=True)
class Statistics:
    """Mean, recall (fraction of frames > 0.5) and decay of one object's per-frame values."""

    mean: float
    recall: float
    decay: float


def decay_bin_ids(n: int, decay_mode: DecayMode = "official") -> np.ndarray:
    """The five bin edges (int64) for a series of ``n`` frames; wrapped modulo 256 in official mode."""
    ids = np.round(np.linspace(1, n, N_BINS + 1) + 1e-10) - 1
    if decay_mode == "official":
        return ids.astype(np.int64) % 256  # the official uint8 cast, as it behaves on x86
    if decay_mode == "corrected":
        return ids.astype(np.int64)
    raise ValueError(f"decay_mode must be 'official' or 'corrected', got {decay_mode!r}")


def db_statistics(values: np.ndarray, *, decay_mode: DecayMode = "official") -> Statistics:
    """M, R and D of a 1-D float series ``(N,)`` (NaN allowed), as the davis2017 toolkit computes them."""
    v = np.asarray(values, dtype=np.float64)
    if v.ndim != 1:
        raise ValueError(f"expected a 1-D series of per-frame values, got shape {v.shape}")
    ids = decay_bin_ids(len(v), decay_mode)
    bins = [v[ids[i] : ids[i + 1] + 1] for i in range(N_BINS)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=RuntimeWarning)
        mean = np.nanmean(v)
        recall = np.nanmean(v > 0.5)
        decay = np.nanmean(bins[0]) - np.nanmean(bins[3])
    return Statistics(float(mean), float(recall), float(decay))
