"""Frame sampling: every mode, its validation, and properties of the returned frame numbers."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sparrow.io import sample_frame_indices


def test_default_is_every_frame() -> None:
    out = sample_frame_indices(5, 30.0)
    assert out.dtype == np.int64
    assert out.tolist() == [0, 1, 2, 3, 4]


def test_every_kth() -> None:
    assert sample_frame_indices(10, 30.0, every=3).tolist() == [0, 3, 6, 9]
    assert sample_frame_indices(10, None, every=1).tolist() == list(range(10))


@pytest.mark.parametrize(
    ("n", "fps", "target", "expected"),
    [
        (10, 30.0, 10.0, [0, 3, 6, 9]),
        (25, 25.0, 10.0, [0, 2, 5, 7, 10, 12, 15, 17, 20, 22]),
        (6, 30.0, 30.0, [0, 1, 2, 3, 4, 5]),
        (6, 30.0, 60.0, [0, 1, 2, 3, 4, 5]),  # above the native rate: every frame, none repeated
        (90, 29.97, 1.0, [0, 29, 59, 89]),
    ],
)
def test_at_fps(n: int, fps: float, target: float, expected: list[int]) -> None:
    assert sample_frame_indices(n, fps, at_fps=target).tolist() == expected


def test_num_uniform_includes_first_and_last() -> None:
    assert sample_frame_indices(10, 30.0, num=4).tolist() == [0, 3, 6, 9]
    assert sample_frame_indices(10, 30.0, num=1).tolist() == [0]
    assert sample_frame_indices(7, 30.0, num=7).tolist() == list(range(7))


def test_explicit_indices() -> None:
    assert sample_frame_indices(10, 30.0, indices=[1, 4, 9]).tolist() == [1, 4, 9]
    assert sample_frame_indices(10, 30.0, indices=np.array([2.0, 3.0])).tolist() == [2, 3]
    assert sample_frame_indices(10, 30.0, indices=[]).tolist() == []


def test_empty_video() -> None:
    assert sample_frame_indices(0, 30.0).size == 0
    assert sample_frame_indices(0, 30.0, every=2).size == 0
    assert sample_frame_indices(0, 30.0, at_fps=1.0).size == 0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"every": 2, "num": 3}, "one sampling mode"),
        ({"at_fps": 1.0, "indices": [0]}, "one sampling mode"),
        ({"every": 0}, "every must be an integer >= 1"),
        ({"every": 1.5}, "every must be an integer >= 1"),
        ({"every": True}, "every must be an integer >= 1"),
        ({"num": 0}, "num must be an integer >= 1"),
        ({"num": 11}, "more frames than the video has"),
        ({"at_fps": 0.0}, "at_fps must be a rate > 0"),
        ({"at_fps": float("nan")}, "at_fps must be a rate > 0"),
        ({"indices": [3, 10]}, "out of range"),
        ({"indices": [-1]}, "out of range"),
        ({"indices": [4, 2]}, "strictly increasing"),
        ({"indices": [2, 2]}, "strictly increasing"),
        ({"indices": [0.5]}, "integers"),
        ({"indices": [True, False]}, "integers"),
        ({"indices": [[0, 1]]}, "1-D"),
    ],
)
def test_invalid_arguments(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        sample_frame_indices(10, 30.0, **kwargs)


def test_at_fps_needs_the_video_rate() -> None:
    with pytest.raises(ValueError, match="frame rate"):
        sample_frame_indices(10, None, at_fps=5.0)


@pytest.mark.parametrize("n", [-1, 2.5, True])
def test_invalid_num_frames(n: object) -> None:
    with pytest.raises(ValueError, match="num_frames"):
        sample_frame_indices(n, 30.0)  # type: ignore[arg-type]


def _valid(out: np.ndarray, n: int) -> None:
    assert out.dtype == np.int64
    assert np.all(np.diff(out) > 0)
    assert out.size == 0 or (out[0] >= 0 and out[-1] < n)


@settings(max_examples=80, deadline=None)
@given(st.integers(1, 2000), st.integers(1, 50))
def test_num_gives_exactly_num_frames(n: int, k: int) -> None:
    k = min(k, n)
    out = sample_frame_indices(n, 30.0, num=k)
    _valid(out, n)
    assert out.size == k and out[0] == 0 and out[-1] == (n - 1 if k > 1 else 0)


@settings(max_examples=80, deadline=None)
@given(st.integers(0, 2000), st.sampled_from([24.0, 25.0, 29.97, 30.0, 60.0]), st.floats(0.1, 120.0))
def test_at_fps_properties(n: int, fps: float, target: float) -> None:
    out = sample_frame_indices(n, fps, at_fps=target)
    _valid(out, n)
    if n and target <= fps:
        # one frame per 1/target seconds of video, give or take the last partial step
        assert abs(out.size - n * target / fps) <= 1
        assert out[0] == 0
    if target >= fps:
        assert out.size == n


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 500), st.integers(1, 40))
def test_every_properties(n: int, k: int) -> None:
    out = sample_frame_indices(n, None, every=k)
    _valid(out, n)
    assert out.size == -(-n // k)
    assert np.all(out % k == 0)
