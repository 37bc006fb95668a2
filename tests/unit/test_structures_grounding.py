"""GroundingResult (JSON round trip, derived arrays, validation) and VideoClip validation."""

from __future__ import annotations

import numpy as np
import pytest

from sparrow.structures import GroundedPhrase, GroundingResult, Masklet, VideoClip


def _result() -> GroundingResult:
    t, h, w = 5, 6, 8
    a = np.zeros((t, h, w), bool)
    a[1:3, 1:3, 2:5] = True
    b = np.zeros((t, h, w), bool)
    b[3:, 4:, :2] = True
    scores = np.asarray([0.1, 0.9, 0.8, 0.2, 0.3], np.float32)
    phrases = (
        GroundedPhrase("the red circle", Masklet.from_masks(a, np.arange(10, 15), scores=scores), (16, 30)),
        GroundedPhrase("a square", Masklet.from_masks(b, np.arange(10, 15), object_id=2)),
    )
    return GroundingResult(
        text="Sure, it is the red circle next to a square.",
        raw_text="Sure, it is <p> the red circle </p> [BOX] [SEG] next to <p> a square </p> [BOX] [SEG].",
        phrases=phrases,
        size=(h, w),
        frame_indices=np.arange(10, 15),
        fps=24.0,
        meta={"model": "tiny", "prompt": "where?"},
    )


def test_json_round_trip() -> None:
    result = _result()
    back = GroundingResult.from_json(result.to_json())
    assert (back.text, back.raw_text, back.size, back.fps, back.meta) == (
        result.text,
        result.raw_text,
        result.size,
        result.fps,
        result.meta,
    )
    np.testing.assert_array_equal(back.frame_indices, result.frame_indices)
    assert [p.text for p in back.phrases] == ["the red circle", "a square"]
    assert back.phrases[0].char_span == (16, 30) and back.phrases[1].char_span is None
    for p, q in zip(back.phrases, result.phrases, strict=True):
        np.testing.assert_array_equal(p.masklet.masks(), q.masklet.masks())
        np.testing.assert_allclose(p.masklet.scores, q.masklet.scores, atol=1e-6)
        assert p.masklet.object_id == q.masklet.object_id
    assert back.to_dict() == result.to_dict()


def test_derived_arrays() -> None:
    result = _result()
    assert result.boxes().shape == (2, 5, 4)
    np.testing.assert_array_equal(result.boxes()[0, 1], [2, 1, 5, 3])
    assert result.presence().tolist() == [
        [False, True, True, False, False],
        [False, False, False, True, True],
    ]
    assert result.spans() == [[(11, 12)], [(13, 14)]]
    assert len(result.masklets) == 2
    empty = GroundingResult("no", (), (4, 4), np.arange(3))
    assert empty.boxes().shape == (0, 3, 4) and empty.presence().shape == (0, 3) and empty.spans() == []


def test_size_mismatch_is_rejected() -> None:
    phrase = GroundedPhrase("x", Masklet.from_masks(np.zeros((1, 3, 3), bool)))
    with pytest.raises(ValueError, match="size"):
        GroundingResult("x", (phrase,), (4, 4), np.arange(1))


def test_video_clip_validation_and_slicing() -> None:
    frames = np.zeros((3, 4, 5, 3), np.uint8)
    clip = VideoClip(frames, [2, 4, 6], 10.0, "v.mp4")
    assert len(clip) == 3 and clip.size == (4, 5) and clip.frame_indices.dtype == np.int64
    assert clip[1:].frame_indices.tolist() == [4, 6]
    with pytest.raises(ValueError, match="uint8"):
        VideoClip(frames.astype(np.float32), [0, 1, 2], 10.0)
    with pytest.raises(ValueError, match="3 frames but 2"):
        VideoClip(frames, [0, 1], 10.0)
    with pytest.raises(ValueError, match="strictly increasing"):
        VideoClip(frames, [0, 2, 2], 10.0)
    with pytest.raises(TypeError):
        clip[0]  # type: ignore[index]
