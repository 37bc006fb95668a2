"""J and F: the verification vectors of METRICS.md §1.7 and identity with the full-frame reference."""

from __future__ import annotations

import numpy as np
import pytest
from eval_vos_builders import square
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sparrow.evaluation.jf import (
    boundary_radius,
    disk,
    f_measure,
    f_pair,
    jaccard,
    jaccard_pair,
    jf_pairwise,
    jf_series,
    prepare_mask,
)
from sparrow.evaluation.jf_reference import reference_f, reference_j, reference_seg2bmap


def jf(gt: np.ndarray, pred: np.ndarray, void: np.ndarray | None = None) -> tuple[float, float]:
    j, f = jf_series(gt, pred, void)
    return float(j[0]), float(f[0])


GT20 = square(5, 9, 5, 9)


@pytest.mark.parametrize(
    ("shift", "j", "f"),
    [(0, 1.0, 1.0), (1, 20 / 30, 1.0), (2, 15 / 35, 0.6), (3, 10 / 40, 0.5)],
)
def test_rolled_square_vectors(shift: int, j: float, f: float) -> None:
    got_j, got_f = jf(GT20, np.roll(GT20, shift, axis=1))
    assert got_j == j
    assert got_f == pytest.approx(f, abs=1e-12)


def test_empty_and_full_cases() -> None:
    empty, full = np.zeros((20, 20), bool), np.ones((20, 20), bool)
    assert jf(empty, empty) == (1.0, 1.0)
    assert jf(empty, GT20) == (0.0, 0.0)
    assert jf(GT20, empty) == (0.0, 0.0)
    assert jf(full, full) == (1.0, 1.0)
    assert jf(full, GT20) == (0.0625, 0.0)
    # everything non-empty inside void: empty union -> J = 1; no boundary left -> F = 1
    assert jf(GT20, GT20 | square(0, 1, 0, 1), void=np.ones((20, 20), bool)) == (1.0, 1.0)


def test_boundary_of_square_and_single_pixel() -> None:
    b = reference_seg2bmap(GT20)
    assert b.sum() == 20 and b[4:10, 4:10].sum() == 20  # 6x6 outline shifted toward the origin
    px = np.zeros((5, 5), bool)
    px[2, 2] = True
    assert {tuple(p) for p in np.argwhere(reference_seg2bmap(px))} == {(1, 1), (1, 2), (2, 1), (2, 2)}
    g = prepare_mask(GT20)
    assert g.n_boundary == 20 and g.area == 25
    assert prepare_mask(np.ones((20, 20), bool)).n_boundary == 0


@pytest.mark.parametrize(
    ("shape", "radius"),
    [
        ((20, 20), 1),
        ((100, 100), 2),
        ((224, 224), 3),
        ((480, 854), 8),
        ((720, 1280), 12),
        ((1024, 1024), 12),
        ((1080, 1920), 18),
    ],
)
def test_radius_table(shape: tuple[int, int], radius: int) -> None:
    assert boundary_radius(shape) == radius


def test_disk_shapes() -> None:
    assert disk(1).tolist() == [[0, 1, 0], [1, 1, 1], [0, 1, 0]]
    assert disk(8).shape == (17, 17) and disk(8)[0, 8] == 1 and disk(8)[0, 7] == 0
    assert boundary_radius((20, 20), 3) == 3
    with pytest.raises(ValueError):
        boundary_radius((20, 20), 2.5)


RECT = np.zeros((480, 854), bool)
RECT[100:300, 200:500] = True


@pytest.mark.parametrize(
    ("dy", "dx", "j", "f"),
    [
        (0, 5, 0.967213, 1.0),
        (0, 8, 0.948052, 1.0),
        (0, 9, 0.941748, 0.616),
        (0, 10, 0.935484, 0.614),
        (0, 12, 0.923077, 0.61),
        (0, 20, 0.875, 0.594),
        (6, 6, 0.905851, 0.999),
        (7, 7, 0.891223, 0.993),
    ],
)
def test_480p_shift_vectors(dy: int, dx: int, j: float, f: float) -> None:
    pred = np.roll(np.roll(RECT, dy, axis=0), dx, axis=1)
    got_j, got_f = jf(RECT, pred)
    assert got_j == reference_j(RECT, pred)
    assert got_j == pytest.approx(j, abs=5e-7)
    assert got_f == pytest.approx(f, abs=1e-12)  # these F values are exact decimals


def _circle(r: int) -> np.ndarray:
    yy, xx = np.mgrid[:480, :854]
    return (yy - 240) ** 2 + (xx - 427) ** 2 <= r * r


@pytest.mark.parametrize(("r2", "j", "f"), [(90, 0.809912, 0.0), (91, 0.827482, 1 / 24)])
def test_circle_vectors(r2: int, j: float, f: float) -> None:
    got_j, got_f = jf(_circle(100), _circle(r2))
    assert got_j == pytest.approx(j, abs=5e-7)
    assert got_f == pytest.approx(f, abs=1e-12)


# --------------------------- identity with the full-frame reference ---------------------------------

SIZES = [
    (20, 20),
    (20, 20),
    (23, 41),
    (37, 53),
    (64, 64),
    (64, 65),
    (100, 100),
    (120, 333),
    (224, 224),
] * 2 + [
    (480, 854),
    (480, 854),
    (720, 1280),
    (1080, 1920),
]


def _shape(rng: np.random.Generator, kind: str, h: int, w: int) -> np.ndarray:
    m = np.zeros((h, w), bool)
    if kind == "full":
        m[:] = True
    elif kind == "rect":
        y0, x0 = rng.integers(0, h), rng.integers(0, w)
        m[y0 : rng.integers(y0, h) + 1, x0 : rng.integers(x0, w) + 1] = True
    elif kind == "border":  # a rectangle glued to one or two frame edges
        y0, x0 = rng.integers(0, h), rng.integers(0, w)
        m[y0:, : x0 + 1] = True  # bottom-left corner
        if rng.random() < 0.5:
            m[: rng.integers(1, h + 1), x0:] = True  # top-right corner
    elif kind == "disk":
        cy, cx = rng.integers(-h // 4, h + h // 4), rng.integers(-w // 4, w + w // 4)
        r = rng.integers(1, max(2, min(h, w)))
        yy, xx = np.ogrid[:h, :w]
        m = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
    elif kind == "blob":  # random walk of small squares
        y, x = rng.integers(0, h), rng.integers(0, w)
        for _ in range(int(rng.integers(5, 60))):
            s = int(rng.integers(1, max(2, min(h, w) // 6)))
            m[max(0, y - s) : y + s + 1, max(0, x - s) : x + s + 1] = True
            y = int(np.clip(y + rng.integers(-2 * s - 1, 2 * s + 2), 0, h - 1))
            x = int(np.clip(x + rng.integers(-2 * s - 1, 2 * s + 2), 0, w - 1))
    elif kind == "noise":
        m = rng.random((h, w)) < rng.random()
    return m


def _random_mask(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    kinds = ["empty", "full", "rect", "border", "disk", "blob", "noise"]
    m = np.zeros((h, w), bool)
    for _ in range(int(rng.integers(1, 4))):  # unions of primitives
        m |= _shape(rng, kinds[int(rng.integers(len(kinds)))], h, w)
    return m


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(size=st.sampled_from(SIZES), seed=st.integers(0, 2**32 - 1), use_void=st.booleans())
def test_fast_equals_reference(size: tuple[int, int], seed: int, use_void: bool) -> None:
    rng = np.random.default_rng(seed)
    h, w = size
    gt = _random_mask(rng, h, w)
    pred = (
        _random_mask(rng, h, w) if rng.random() < 0.6 else np.roll(gt, rng.integers(-12, 13, 2), axis=(0, 1))
    )
    void = (
        (_shape(rng, "blob", h, w) if rng.random() < 0.5 else rng.random((h, w)) < 0.05) if use_void else None
    )
    j, f = jf(gt, pred, void)
    assert j == reference_j(gt, pred, void)  # exact
    assert abs(f - reference_f(gt, pred, void)) <= 1e-12


@settings(max_examples=60, deadline=None)
@given(
    h=st.integers(1, 40),
    w=st.integers(1, 140),
    radius=st.integers(1, 70),
    seed=st.integers(0, 2**32 - 1),
)
def test_fast_equals_reference_any_radius(h: int, w: int, radius: int, seed: int) -> None:
    """Thin frames, 1-pixel frames and radii beyond one 64-bit word of padding."""
    rng = np.random.default_rng(seed)
    gt, pred = _random_mask(rng, h, w), _random_mask(rng, h, w)
    j, f = jf_series(gt, pred, bound_th=radius)
    assert j[0] == reference_j(gt, pred)
    assert abs(f[0] - reference_f(gt, pred, bound_th=radius)) <= 1e-12


def test_stack_and_pairwise_apis_agree() -> None:
    rng = np.random.default_rng(7)
    gt = np.stack([_random_mask(rng, 60, 90) for _ in range(5)])
    pred = np.stack([_random_mask(rng, 60, 90) for _ in range(5)])
    j, f = jf_series(gt, pred)
    assert np.array_equal(jaccard(gt, pred), j)
    assert np.array_equal(f_measure(gt, pred), f)
    assert jaccard(gt[0], pred[0]) == j[0] and f_measure(gt[0], pred[0]) == f[0]
    gts = [prepare_mask(m) for m in gt]
    preds = [prepare_mask(m) for m in pred]
    pj, pf = jf_pairwise(gts, preds)
    for p in range(5):
        for g in range(5):
            assert pj[p, g] == reference_j(gt[g], pred[p])
            assert (
                pf[p, g] == f_pair(gts[g], preds[p]) == pytest.approx(reference_f(gt[g], pred[p]), abs=1e-12)
            )
    assert f_pair(gts[0], preds[1]) == f_pair(preds[1], gts[0])  # symmetric
    assert jaccard_pair(gts[0], preds[1]) == jaccard_pair(preds[1], gts[0])


def test_shape_errors() -> None:
    with pytest.raises(ValueError, match="shapes differ"):
        jf_series(np.zeros((4, 4)), np.zeros((4, 5)))
    with pytest.raises(ValueError, match="shapes differ"):
        jaccard_pair(prepare_mask(np.zeros((4, 4))), prepare_mask(np.zeros((5, 4))))
    with pytest.raises(ValueError):
        prepare_mask(np.zeros((2, 2, 2)))


@pytest.mark.parametrize("size", [(480, 854), (720, 1280), (1080, 1920)])
def test_fast_equals_reference_large_frames(size: tuple[int, int]) -> None:
    for seed in range(8):
        rng = np.random.default_rng(1000 + seed)
        gt = _random_mask(rng, *size)
        pred = np.roll(gt, rng.integers(-25, 26, 2), axis=(0, 1)) if seed % 2 else _random_mask(rng, *size)
        void = rng.random(size) < 0.01 if seed % 3 == 0 else None
        j, f = jf(gt, pred, void)
        assert j == reference_j(gt, pred, void)
        assert abs(f - reference_f(gt, pred, void)) <= 1e-12
