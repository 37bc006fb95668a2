"""Mean / Recall / Decay statistics (METRICS.md §1.3 and §1.7)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from sparrow.evaluation.statistics import db_statistics, decay_bin_ids


@pytest.mark.parametrize(
    ("values", "mean", "recall", "decay"),
    [
        ([1, 1, 0.9, 0.8, 0.6, 0.4, 0.2, 0], 0.6125, 0.625, 0.766667),
        ([0.5, 0.51, 0.49, 1], 0.625, 0.5, -0.24),  # 0.5 is not > 0.5
        ([0.2, 0.6, 0.9], 0.566667, 0.666667, -0.5),
        ([0.7], 0.7, 1.0, 0.0),
    ],
)
def test_verified_vectors(values: list[float], mean: float, recall: float, decay: float) -> None:
    s = db_statistics(np.array(values))
    assert s.mean == pytest.approx(mean, abs=5e-7)
    assert s.recall == pytest.approx(recall, abs=5e-7)
    assert s.decay == pytest.approx(decay, abs=5e-7)


def test_exact_values_equal_numpy_formulas() -> None:
    v = np.array([1, 1, 0.9, 0.8, 0.6, 0.4, 0.2, 0])
    s = db_statistics(v)
    assert s.mean == np.nanmean(v)
    assert s.decay == np.nanmean(v[0:3]) - np.nanmean(v[5:8])  # ids [0, 2, 4, 5, 7]


@pytest.mark.parametrize(
    ("n", "ids"),
    [
        (8, [0, 2, 4, 5, 7]),
        (6, [0, 1, 3, 4, 5]),
        (4, [0, 1, 2, 2, 3]),
        (3, [0, 1, 1, 2, 2]),
        (1, [0, 0, 0, 0, 0]),
    ],
)
def test_bin_ids(n: int, ids: list[int]) -> None:
    assert decay_bin_ids(n).tolist() == ids


def test_uint8_wrap_is_official_and_corrected_mode_fixes_it() -> None:
    assert decay_bin_ids(300).tolist() == [0, 75, 150, 224, 43]
    assert decay_bin_ids(300, "corrected").tolist() == [0, 75, 150, 224, 299]
    assert (
        decay_bin_ids(256).tolist() == decay_bin_ids(256, "corrected").tolist()
    )  # last index 255 still fits
    assert decay_bin_ids(257).tolist()[-1] == 0
    v = np.linspace(1, 0, 300)
    assert math.isnan(db_statistics(v).decay)
    assert db_statistics(v, decay_mode="corrected").decay == pytest.approx(
        np.mean(v[0:76]) - np.mean(v[224:300]), abs=1e-12
    )
    with pytest.raises(ValueError):
        decay_bin_ids(5, "other")  # type: ignore[arg-type]


def test_nan_counts_as_miss_for_recall() -> None:
    s = db_statistics(np.array([1.0, np.nan, 0.2, 0.9]))
    assert s.mean == pytest.approx(0.7, abs=1e-12)
    assert s.recall == 0.5
