"""Masklet construction, validation, access, spans and (de)serialisation."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from sparrow.structures import Masklet, empty_rle, rle_encode, runs_of_true


def brute_force_runs(flags: list[bool], positions: list[int]) -> list[tuple[int, int]]:
    runs, i = [], 0
    while i < len(flags):
        if flags[i]:
            j = i
            while j + 1 < len(flags) and flags[j + 1]:
                j += 1
            runs.append((positions[i], positions[j]))
            i = j + 1
        else:
            i += 1
    return runs


@settings(max_examples=100, deadline=None)
@given(st.lists(st.booleans(), max_size=40), st.data())
def test_runs_of_true_matches_brute_force(flags: list[bool], data: st.DataObject) -> None:
    gaps = data.draw(st.lists(st.integers(1, 3), min_size=len(flags), max_size=len(flags)))
    positions = np.cumsum(gaps).tolist() if gaps else []
    assert runs_of_true(flags, positions) == brute_force_runs(flags, positions)


def test_spans_known_values() -> None:
    masks = np.zeros((6, 4, 4), bool)
    masks[[1, 2, 4], 0, 0] = True
    m = Masklet.from_masks(masks, [0, 1, 2, 5, 6, 9])
    assert m.presence.tolist() == [False, True, True, False, True, False]
    assert m.spans() == [(1, 2), (6, 6)]
    assert m.areas.tolist() == [0, 1, 1, 0, 1, 0]


@st.composite
def masklets(draw: st.DrawFn) -> Masklet:
    t = draw(st.integers(0, 5))
    h, w = draw(st.integers(1, 12)), draw(st.integers(1, 12))
    masks = draw(arrays(bool, (t, h, w)))
    start = draw(st.integers(0, 100))
    frames = start + np.cumsum(draw(st.lists(st.integers(1, 4), min_size=t, max_size=t))).astype(np.int64)
    scores = np.asarray(draw(st.lists(st.floats(0, 1, width=32), min_size=t, max_size=t)), np.float32)
    label = draw(st.none() | st.text(max_size=10))
    return Masklet.from_masks(masks, frames, scores=scores, object_id=draw(st.integers(-1, 50)), label=label)


@settings(max_examples=80, deadline=None)
@given(masklets())
def test_to_dict_from_dict_round_trip_through_json(m: Masklet) -> None:
    d = json.loads(json.dumps(m.to_dict()))
    back = Masklet.from_dict(d)
    assert back.size == m.size and back.object_id == m.object_id and back.label == m.label
    np.testing.assert_array_equal(back.frame_indices, m.frame_indices)
    assert back.rles == m.rles
    np.testing.assert_allclose(back.boxes, m.boxes, atol=1e-3)
    np.testing.assert_allclose(back.scores, m.scores, atol=1e-6)
    np.testing.assert_array_equal(back.masks(), m.masks())
    assert d["spans"] == [list(s) for s in m.spans()]


def test_access_select_and_slices() -> None:
    masks = np.zeros((4, 5, 6), bool)
    for t in range(4):
        masks[t, t, t] = True
    m = Masklet.from_masks(masks, [10, 11, 13, 20], label="dot")
    assert np.array_equal(m.mask(13), masks[2])
    with pytest.raises(KeyError):
        m.mask(12)
    sub = m.select([11, 20])
    assert sub.frame_indices.tolist() == [11, 20] and np.array_equal(sub.masks(), masks[[1, 3]])
    with pytest.raises(KeyError, match=r"\[12\]"):
        m.select([12])
    assert m[1:3].frame_indices.tolist() == [11, 13] and m[1:3].label == "dot"
    with pytest.raises(TypeError):
        m[0]  # type: ignore[index]
    np.testing.assert_array_equal(m.boxes[2], [2, 2, 3, 3])
    via_rles = Masklet.from_rles(list(m.rles), m.frame_indices, m.size)
    np.testing.assert_array_equal(via_rles.boxes, m.boxes)
    assert via_rles.scores.tolist() == [1.0] * 4
    assert Masklet.from_masks(np.zeros((0, 3, 3), bool)).masks().shape == (0, 3, 3)


def _kwargs(**over):
    base = {
        "frame_indices": [0, 1],
        "rles": (empty_rle((4, 4)), empty_rle((4, 4))),
        "boxes": np.zeros((2, 4)),
        "scores": np.ones(2),
        "size": (4, 4),
    }
    base.update(over)
    return base


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"frame_indices": [1, 1]}, "strictly increasing"),
        ({"frame_indices": [2, 1]}, "strictly increasing"),
        ({"frame_indices": [0, 1, 2]}, "3 frame indices but 2 masks"),
        ({"boxes": np.zeros((3, 4))}, r"boxes must have shape \(2, 4\)"),
        ({"scores": np.ones(3)}, r"scores must have shape \(2,\)"),
        ({"rles": (empty_rle((4, 4)), rle_encode(np.zeros((4, 5), bool)))}, "differs from its size"),
    ],
)
def test_masklet_validation_errors(override: dict, message: str) -> None:
    Masklet(**_kwargs())  # the base case is valid
    with pytest.raises(ValueError, match=message):
        Masklet(**_kwargs(**override))


def test_from_masks_rejects_wrong_rank() -> None:
    with pytest.raises(ValueError, match=r"\(T, H, W\)"):
        Masklet.from_masks(np.zeros((4, 4), bool))
