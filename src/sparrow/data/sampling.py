"""A deterministic, resumable, rank-aware sampler over a weighted mixture of datasets.

Training is step-based, so the sampler is an endless stream of *epochs*. Epoch ``e`` is one fixed,
seeded order of ``epoch_size`` slots; each slot names a dataset and an item of it:

- dataset ``d`` gets ``n_d`` slots, ``n_d`` proportional to its weight (largest-remainder rounding,
  so the counts add up to ``epoch_size`` exactly);
- its items are drawn without replacement from a seeded permutation of the dataset (a new
  permutation each time it runs out, so a small dataset with a large weight is repeated evenly);
- the slots of all datasets are shuffled together.

With ``world_size`` ranks and ``batch_size`` samples per rank, one step consumes ``world_size *
batch_size`` consecutive slots of the epoch; rank ``r`` takes the ``r``-th block of ``batch_size``
of them, so the ranks see different samples. The last incomplete global batch of an epoch is
dropped (every rank runs the same number of steps). The whole state is ``(epoch, position)``:
``position`` counts the slots of epoch ``epoch`` already consumed by all ranks together.

Every slot also carries a ``seed`` derived from ``(seed, epoch, position)`` for the randomness of
building that sample (frame jitter, augmentation), so sample building needs no global RNG and gives
the same result in any data-loader worker.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

# Separates the purposes of derived seeds (epoch order / per-dataset permutation / per-sample seed).
_ORDER, _PERM, _SAMPLE = 0, 1, 2


@dataclass(frozen=True)
class SampleRef:
    """One slot of the mixture: which item to build, and where it sits in the stream.

    Attributes:
        dataset: index of the dataset in the mixture.
        index: index of the item inside that dataset.
        epoch: epoch of the slot.
        position: index of the slot inside its epoch (global, across ranks).
        seed: a 63-bit seed for the randomness of building this sample.
    """

    dataset: int
    index: int
    epoch: int
    position: int
    seed: int


@dataclass(frozen=True)
class SamplerState:
    """Where the stream stands: the next slot to consume is ``position`` of epoch ``epoch``."""

    epoch: int = 0
    position: int = 0

    def to_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "position": self.position}

    @classmethod
    def from_dict(cls, data: dict[str, int]) -> SamplerState:
        return cls(epoch=int(data["epoch"]), position=int(data["position"]))


def mixture_counts(weights: Sequence[float], total: int) -> np.ndarray:
    """Split ``total`` slots among datasets in proportion to ``weights`` (largest remainder).

    Args:
        weights: ``(D,)`` non-negative weights, at least one positive.
        total: slots to split (``>= 0``).

    Returns:
        ``(D,)`` int64 counts that sum to ``total``; ties in the remainders go to the lower index.
    """
    w = np.asarray(weights, dtype=np.float64)
    if w.ndim != 1 or w.size == 0 or np.any(w < 0) or not np.isfinite(w).all() or w.sum() <= 0:
        raise ValueError(
            f"weights must be a non-empty list of non-negative numbers with a positive sum, got {list(weights)}"
        )
    if total < 0:
        raise ValueError(f"total must be >= 0, got {total}")
    exact = w / w.sum() * total
    counts = np.floor(exact).astype(np.int64)
    remainder = exact - counts
    short = total - int(counts.sum())
    order = np.lexsort((np.arange(w.size), -remainder))  # largest remainder first, then lower index
    counts[order[:short]] += 1
    return counts


def _rng(*key: int) -> np.random.Generator:
    return np.random.default_rng(list(key))


class MixtureSampler:
    """Endless, seeded stream of :class:`SampleRef` batches for one rank.

    Args:
        sizes: number of items of each dataset (each ``>= 1``).
        weights: sampling weight of each dataset (same length as ``sizes``).
        batch_size: samples per rank per step.
        seed: seed of the whole stream.
        epoch_size: slots per epoch; by default the total number of items of all datasets.
        world_size: number of ranks sharing the stream.
        rank: this rank, ``0 <= rank < world_size``.
    """

    def __init__(
        self,
        sizes: Sequence[int],
        weights: Sequence[float],
        *,
        batch_size: int,
        seed: int,
        epoch_size: int | None = None,
        world_size: int = 1,
        rank: int = 0,
    ) -> None:
        if len(sizes) != len(weights) or not sizes:
            raise ValueError(
                f"need one weight per dataset, got {len(sizes)} sizes and {len(weights)} weights"
            )
        if any(int(s) < 1 for s in sizes):
            raise ValueError(f"every dataset needs at least one item, got sizes {list(sizes)}")
        if batch_size < 1 or world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"invalid batch_size={batch_size}, world_size={world_size}, rank={rank}")
        self.sizes = tuple(int(s) for s in sizes)
        self.weights = tuple(float(w) for w in weights)
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.world_size = int(world_size)
        self.rank = int(rank)
        self.epoch_size = int(epoch_size) if epoch_size is not None else sum(self.sizes)
        self.counts = mixture_counts(self.weights, self.epoch_size)
        self.global_batch = self.batch_size * self.world_size
        self.steps_per_epoch = self.epoch_size // self.global_batch
        if self.steps_per_epoch < 1:
            raise ValueError(
                f"an epoch of {self.epoch_size} samples is smaller than one global batch "
                f"({self.batch_size} x {self.world_size} ranks); raise epoch_size or lower batch_size"
            )

    @lru_cache(maxsize=2)  # noqa: B019 -- the sampler lives as long as its stage; two epochs at most are live
    def epoch_order(self, epoch: int) -> tuple[np.ndarray, np.ndarray]:
        """The slots of ``epoch``: ``(datasets, indices)``, two ``(epoch_size,)`` int64 arrays."""
        datasets, indices = [], []
        for d, (size, count) in enumerate(zip(self.sizes, self.counts, strict=True)):
            if count == 0:
                continue
            # The items of dataset d form one endless sequence of permutations across epochs, so a
            # dataset is walked through completely before any item repeats.
            start = int(count) * epoch
            first, last = start // size, (start + int(count) - 1) // size
            cycle = np.concatenate(
                [_rng(self.seed, _PERM, d, c).permutation(size) for c in range(first, last + 1)]
            )
            offset = start - first * size
            indices.append(cycle[offset : offset + int(count)])
            datasets.append(np.full(int(count), d, dtype=np.int64))
        all_d = np.concatenate(datasets)
        all_i = np.concatenate(indices).astype(np.int64)
        order = _rng(self.seed, _ORDER, epoch).permutation(self.epoch_size)
        return all_d[order], all_i[order]

    def sample_seed(self, epoch: int, position: int) -> int:
        """The seed of the sample built for slot ``position`` of ``epoch`` (63-bit int)."""
        return int(_rng(self.seed, _SAMPLE, epoch, position).integers(0, 2**63 - 1))

    def batch_at(self, state: SamplerState) -> list[SampleRef]:
        """This rank's batch of the global step that starts at ``state``."""
        datasets, indices = self.epoch_order(state.epoch)
        start = state.position + self.rank * self.batch_size
        return [
            SampleRef(int(datasets[p]), int(indices[p]), state.epoch, p, self.sample_seed(state.epoch, p))
            for p in range(start, start + self.batch_size)
        ]

    def advance(self, state: SamplerState, steps: int = 1) -> SamplerState:
        """The state after ``steps`` global steps from ``state`` (epochs roll over, remainders dropped)."""
        self.check(state)
        step_in_epoch = state.position // self.global_batch + steps
        epoch = state.epoch + step_in_epoch // self.steps_per_epoch
        return SamplerState(epoch, (step_in_epoch % self.steps_per_epoch) * self.global_batch)

    def check(self, state: SamplerState) -> None:
        """Raise ``ValueError`` if ``state`` is not the start of a global step of this sampler."""
        if (
            state.epoch < 0
            or state.position < 0
            or state.position % self.global_batch
            or state.position // self.global_batch >= self.steps_per_epoch
        ):
            raise ValueError(
                f"sampler state {state} is not the start of a step for a global batch of {self.global_batch} "
                f"and epochs of {self.steps_per_epoch} steps (was the run resumed with another batch size or world size?)"
            )

    def batches(self, state: SamplerState) -> Iterator[tuple[list[SampleRef], SamplerState]]:
        """Endless ``(this rank's batch, state after it)`` pairs, starting at ``state``."""
        self.check(state)
        while True:
            refs = self.batch_at(state)
            state = self.advance(state)
            yield refs, state
