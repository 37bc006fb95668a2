"""The mixture sampler: weights, determinism, rank splitting, epochs and resumption."""

from __future__ import annotations

from collections import Counter
from itertools import islice

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sparrow.data.sampling import MixtureSampler, SamplerState, mixture_counts


def _stream(sampler: MixtureSampler, steps: int, start: SamplerState | None = None):
    return [refs for refs, _ in islice(sampler.batches(start or SamplerState()), steps)]


def test_mixture_counts_largest_remainder() -> None:
    assert mixture_counts([1, 1, 1], 10).tolist() == [4, 3, 3]
    assert mixture_counts([3, 1], 8).tolist() == [6, 2]
    assert mixture_counts([0, 2], 5).tolist() == [0, 5]
    assert mixture_counts([1, 2, 3], 10).tolist() == [2, 3, 5]


@given(st.lists(st.floats(0, 10), min_size=1, max_size=6).filter(lambda w: sum(w) > 0), st.integers(0, 500))
def test_mixture_counts_sum_and_proportion(weights: list[float], total: int) -> None:
    counts = mixture_counts(weights, total)
    assert counts.sum() == total
    exact = np.asarray(weights) / sum(weights) * total
    assert np.all(np.abs(counts - exact) < 1.0 + 1e-9)


@pytest.mark.parametrize("weights", [[], [-1.0, 2.0], [0.0, 0.0], [float("nan")]])
def test_mixture_counts_rejects_bad_weights(weights: list[float]) -> None:
    with pytest.raises(ValueError):
        mixture_counts(weights, 10)


def test_epoch_covers_each_dataset_evenly() -> None:
    sampler = MixtureSampler([5, 20], [3.0, 1.0], batch_size=1, seed=7, epoch_size=40)
    datasets, indices = sampler.epoch_order(0)
    assert Counter(datasets.tolist()) == {0: 30, 1: 10}
    small = Counter(indices[datasets == 0].tolist())  # 30 draws from 5 items: each exactly 6 times
    assert set(small.values()) == {6}
    big = indices[datasets == 1].tolist()  # 10 draws from 20 items: no repeat
    assert len(set(big)) == 10
    # the next epoch continues the permutation of the big dataset: the two epochs cover all 20 items
    d1, i1 = sampler.epoch_order(1)
    assert sorted(big + i1[d1 == 1].tolist()) == list(range(20))


def test_stream_is_deterministic_and_seeded() -> None:
    a = _stream(MixtureSampler([10, 7], [1, 1], batch_size=3, seed=1), 12)
    b = _stream(MixtureSampler([10, 7], [1, 1], batch_size=3, seed=1), 12)
    c = _stream(MixtureSampler([10, 7], [1, 1], batch_size=3, seed=2), 12)
    assert a == b
    assert a != c
    seeds = [r.seed for batch in a for r in batch]
    assert len(set(seeds)) == len(seeds)


def test_ranks_split_each_global_batch() -> None:
    sizes, weights = [12, 9], [1.0, 2.0]
    single = _stream(MixtureSampler(sizes, weights, batch_size=4, seed=3), 10)
    ranks = [
        _stream(MixtureSampler(sizes, weights, batch_size=2, seed=3, world_size=2, rank=r), 10)
        for r in range(2)
    ]
    for step in range(10):
        r0, r1 = ranks[0][step], ranks[1][step]
        assert {x.position for x in r0}.isdisjoint({x.position for x in r1})
        assert r0 + r1 == single[step]  # the same global stream, cut into rank blocks


def test_epoch_rolls_over_and_drops_the_remainder() -> None:
    sampler = MixtureSampler([5], [1.0], batch_size=2, seed=0)  # 5 samples -> 2 steps per epoch
    assert sampler.steps_per_epoch == 2
    states = [s for _, s in islice(sampler.batches(SamplerState()), 5)]
    assert states == [
        SamplerState(0, 2),
        SamplerState(1, 0),
        SamplerState(1, 2),
        SamplerState(2, 0),
        SamplerState(2, 2),
    ]


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 20), st.integers(1, 3), st.integers(1, 3))
def test_resume_from_any_state_continues_the_stream(k: int, batch: int, world: int) -> None:
    def make(rank: int) -> MixtureSampler:
        return MixtureSampler([7, 4], [2.0, 1.0], batch_size=batch, seed=11, world_size=world, rank=rank)

    for rank in range(world):
        full = _stream(make(rank), k + 5)
        state = make(rank).advance(SamplerState(), k)
        assert _stream(make(rank), 5, state) == full[k:]


def test_bad_states_and_arguments() -> None:
    sampler = MixtureSampler([8], [1.0], batch_size=2, seed=0, world_size=2)
    with pytest.raises(ValueError, match="not the start of a step"):
        sampler.check(SamplerState(0, 3))
    with pytest.raises(ValueError, match="not the start of a step"):
        sampler.check(SamplerState(0, 8))
    with pytest.raises(ValueError, match="smaller than one global batch"):
        MixtureSampler([3], [1.0], batch_size=2, seed=0, world_size=2)
    with pytest.raises(ValueError, match="one weight per dataset"):
        MixtureSampler([3, 4], [1.0], batch_size=1, seed=0)
    with pytest.raises(ValueError, match="at least one item"):
        MixtureSampler([0], [1.0], batch_size=1, seed=0)
    with pytest.raises(ValueError):
        MixtureSampler([4], [1.0], batch_size=1, seed=0, world_size=2, rank=2)


def test_zero_weight_dataset_is_never_drawn() -> None:
    sampler = MixtureSampler([4, 4], [0.0, 1.0], batch_size=2, seed=5)
    assert {r.dataset for batch in _stream(sampler, 20) for r in batch} == {1}
