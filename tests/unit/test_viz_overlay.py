"""Overlays: colours, the four annotators, streamed rendering, overlay videos and contact sheets."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from sparrow.io import open_video, probe_video, write_video
from sparrow.structures import GroundedPhrase, GroundingResult, Masklet
from sparrow.viz import (
    BoxAnnotator,
    LabelAnnotator,
    MaskAnnotator,
    OverlayStyle,
    TimeBarAnnotator,
    color_for,
    contact_sheet,
    palette,
    presence_columns,
    render_overlay,
    text_color,
    write_overlay_video,
)

GREY = 100


def grey(h: int = 40, w: int = 60) -> np.ndarray:
    return np.full((h, w, 3), GREY, np.uint8)


# ----------------------------------------------------------------------------- colours
def test_colours_are_stable_and_distinct() -> None:
    assert color_for(0) == color_for(0) == tuple(palette(1)[0].tolist())
    many = palette(60)
    assert many.shape == (60, 3) and many.dtype == np.uint8
    assert len({tuple(c) for c in many.tolist()}) == 60
    with pytest.raises(ValueError):
        color_for(-1)
    assert text_color((255, 255, 0)) == (0, 0, 0)
    assert text_color((0, 0, 128)) == (255, 255, 255)


# ----------------------------------------------------------------------------- annotators
def test_mask_annotator_blends_inside_and_outlines() -> None:
    frame = grey()
    mask = np.zeros((40, 60), bool)
    mask[10:30, 20:50] = True
    out = MaskAnnotator(alpha=0.5, contour_thickness=1).annotate(frame, mask[None], [(200, 0, 50)])
    assert np.array_equal(frame, grey()), "the input frame must not change"
    assert out[20, 35].tolist() == [150, 50, 75]  # round(100 * 0.5 + c * 0.5)
    assert out[10, 30].tolist() == [200, 0, 50]  # contour on the mask's border
    assert np.all(out[~mask] == GREY)
    no_outline = MaskAnnotator(alpha=1.0, contour_thickness=0).annotate(frame, mask[None], [(1, 2, 3)])
    assert np.all(no_outline[mask] == [1, 2, 3]) and np.all(no_outline[~mask] == GREY)


def test_mask_annotator_checks_inputs() -> None:
    with pytest.raises(ValueError, match="one colour per item"):
        MaskAnnotator().annotate(grey(), np.zeros((2, 40, 60), bool), [(1, 2, 3)])
    with pytest.raises(ValueError, match="uint8"):
        MaskAnnotator().annotate(grey().astype(np.float32), np.zeros((1, 40, 60), bool), [(1, 2, 3)])
    assert np.array_equal(MaskAnnotator().annotate(grey(), np.zeros((0, 40, 60), bool), []), grey())


def test_box_annotator_uses_pixel_extent_boxes() -> None:
    boxes = np.asarray([[10, 5, 30, 25], [0, 0, 0, 0]], np.float32)  # the second is empty: skipped
    out = BoxAnnotator(thickness=1).annotate(grey(), boxes, [(255, 0, 0), (0, 255, 0)])
    assert out[5, 10].tolist() == [255, 0, 0] and out[24, 29].tolist() == [255, 0, 0]
    assert out[25, 30].tolist() == [GREY] * 3  # x2, y2 are exclusive
    assert out[15, 20].tolist() == [GREY] * 3  # interior untouched
    assert not np.any(np.all(out == [0, 255, 0], axis=-1))


def test_label_annotator_draws_a_tag_near_the_anchor() -> None:
    out = LabelAnnotator(font_size=12).annotate(
        grey(80, 120), ["cat"], np.asarray([[40.0, 50.0]]), [(0, 0, 255)]
    )
    changed = np.any(out != GREY, axis=-1)
    ys, xs = np.nonzero(changed)
    assert ys.max() < 50 and xs.min() >= 40, "the tag sits above the anchor, starting at its x"
    assert np.any(np.all(out == [0, 0, 255], axis=-1)) and np.any(np.all(out == [255, 255, 255], axis=-1))
    top = LabelAnnotator(font_size=12).annotate(
        grey(80, 120), ["cat"], np.asarray([[115.0, 0.0]]), [(0, 0, 255)]
    )
    ys, xs = np.nonzero(np.any(top != GREY, axis=-1))
    assert ys.min() == 0 and xs.max() <= 119, "no room above: below the anchor, kept inside the frame"
    with pytest.raises(ValueError, match="one anchor per label"):
        LabelAnnotator().annotate(grey(), ["a", "b"], np.zeros((1, 2)), [(0, 0, 0), (1, 1, 1)])


def test_presence_columns_known_values() -> None:
    presence = np.asarray([[1, 0, 0, 0, 0, 0, 0, 1], [0, 0, 0, 1, 1, 0, 0, 0]], bool)
    assert presence_columns(presence, 4).astype(int).tolist() == [[1, 0, 0, 1], [0, 1, 1, 0]]
    assert presence_columns(presence, 16).sum(axis=1).tolist() == [4, 4]


@settings(max_examples=60, deadline=None)
@given(arrays(bool, st.tuples(st.integers(1, 4), st.integers(1, 300))), st.integers(1, 200))
def test_presence_columns_properties(presence: np.ndarray, width: int) -> None:
    cols = presence_columns(presence, width)
    assert cols.shape == (presence.shape[0], width)
    assert np.array_equal(cols.any(axis=1), presence.any(axis=1))
    if width == presence.shape[1]:
        assert np.array_equal(cols, presence)


def test_time_bar_rows_and_cursor() -> None:
    presence = np.zeros((2, 10), bool)
    presence[0, :5] = True
    presence[1, 5:] = True
    out = TimeBarAnnotator(row_height=4, alpha=0.5).annotate(
        grey(40, 100), presence, 7, [(255, 0, 0), (0, 0, 255)]
    )
    assert np.all(out[:31] == GREY), "only the bottom 2 rows x 4 px + 1 px gap are drawn"
    assert out[33, 10].tolist() == [255, 0, 0] and out[33, 60].tolist() == [50, 50, 50]
    assert out[37, 60].tolist() == [0, 0, 255] and out[37, 10].tolist() == [50, 50, 50]
    cursor = int((7 + 0.5) * 100 / 10)
    assert np.all(out[31:, cursor] == 255)


# ----------------------------------------------------------------------------- rendering
def _scene(t: int = 6, h: int = 40, w: int = 60) -> tuple[list[tuple[int, np.ndarray]], GroundingResult]:
    frames = [(10 + i, grey(h, w)) for i in range(t)]
    a = np.zeros((t, h, w), bool)
    a[:3, 5:15, 5:20] = True
    b = np.zeros((t - 2, h, w), bool)
    b[:, 20:30, 30:50] = True
    first = Masklet.from_masks(a, np.arange(10, 10 + t))
    second = Masklet.from_masks(b, np.arange(12, 10 + t), object_id=7)  # covers only the later frames
    phrases = (GroundedPhrase("left thing", first), GroundedPhrase("right thing", second))
    return frames, GroundingResult("text", phrases, (h, w), np.arange(10, 10 + t))


def test_render_overlay_streams_and_draws_each_phrase_where_present() -> None:
    frames, result = _scene()
    consumed: list[int] = []

    def source():
        for number, frame in frames:
            consumed.append(number)
            yield number, frame

    rendered = render_overlay(source(), result)
    first = next(rendered)
    assert consumed == [10], "frames are drawn one at a time"
    rest = list(rendered)
    out = [first, *rest]
    assert len(out) == 6 and all(o.shape == (40, 60, 3) and o.dtype == np.uint8 for o in out)
    red, green = color_for(0), color_for(1)
    assert np.any(np.all(out[0] == red, axis=-1)) and not np.any(np.all(out[0][:30] == green, axis=-1))
    assert np.any(np.all(out[3][:30] == green, axis=-1)) and not np.any(np.all(out[3][:30] == red, axis=-1))
    assert all(np.array_equal(f, grey()) for _, f in frames), "inputs untouched"


def test_render_overlay_layers_can_be_switched_off() -> None:
    frames, result = _scene()
    off = OverlayStyle(masks=False, boxes=False, labels=False, time_bar=False)
    assert all(np.array_equal(o, grey()) for o in render_overlay(frames, result, style=off))
    bar_only = OverlayStyle(masks=False, boxes=False, labels=False)
    out = list(render_overlay(frames, result, style=bar_only))
    assert all(np.array_equal(o[:30], grey()[:30]) for o in out)
    assert not np.array_equal(out[0][-3:], grey()[-3:])


def test_render_overlay_accepts_masklets_and_checks_sizes() -> None:
    frames, result = _scene()
    out = list(render_overlay(frames, result.masklets))
    assert len(out) == 6
    with pytest.raises(ValueError, match="overlay the video the result was made on"):
        list(render_overlay([(10, grey(41, 60))], result))


def test_write_overlay_video_keeps_odd_size(tmp_path: Path) -> None:
    frames, result = _scene(t=5, h=97, w=131)
    path = tmp_path / "overlay.mp4"
    assert write_overlay_video(path, frames, result, fps=5) == 5
    info = probe_video(path)
    assert (info.num_frames, info.height, info.width) == (5, 97, 131)


def test_overlay_from_a_real_video(tmp_path: Path) -> None:
    path = tmp_path / "v.mp4"
    write_video(path, [grey(40, 60)] * 6, fps=6)
    masks = np.zeros((6, 40, 60), bool)
    masks[:, 10:20, 10:20] = True
    masklet = Masklet.from_masks(masks, label="square")
    with open_video(path) as reader:
        out = list(render_overlay(reader.iter_frames(), [masklet], style=OverlayStyle(labels=False)))
    assert len(out) == 6
    inside = out[2][15, 15].astype(int)
    assert np.abs(inside - np.round(GREY * 0.55 + np.asarray(color_for(0)) * 0.45)).max() <= 3


def test_contact_sheet_layout() -> None:
    frames = [(i, np.full((30, 40, 3), 20 * (i + 1), np.uint8)) for i in range(5)]
    sheet = contact_sheet(frames, columns=3, tile_width=None, gap=2)
    assert sheet.shape == (2 * (30 + 2) + 2, 3 * (40 + 2) + 2, 3)
    for i in range(5):
        r, c = divmod(i, 3)
        y, x = 2 + r * 32, 2 + c * 42
        assert sheet[y + 25, x + 35].tolist() == [20 * (i + 1)] * 3
    assert sheet[2 + 32 + 25, 2 + 2 * 42 + 35].tolist() == [32, 32, 32], (
        "the missing sixth tile is background"
    )
    assert np.any(sheet[2:10, 2:30] != 20), "each tile carries a caption"
    resized = contact_sheet(frames, columns=5, tile_width=80, gap=0)
    assert resized.shape == (60, 400, 3)


def test_contact_sheet_with_overlays_and_errors() -> None:
    frames, result = _scene()
    sheet = contact_sheet(frames[:4], result, columns=2, tile_width=None, gap=0)
    assert sheet.shape == (80, 120, 3)
    assert np.any(np.all(sheet == color_for(0), axis=-1))
    with pytest.raises(ValueError, match="at least one frame"):
        contact_sheet([])
    with pytest.raises(ValueError, match="share one size"):
        contact_sheet([(0, grey(10, 10)), (1, grey(12, 10))])
    with pytest.raises(ValueError, match="columns"):
        contact_sheet(frames, columns=0)
