"""SynRef world and renderer: determinism, anti-aliasing, occlusion bookkeeping, camera pans, sizes;
and every emitted expression of many generated videos re-proved from its text."""

from __future__ import annotations

import numpy as np
import pytest
from synref_builders import moving, obj, scene, still

from sparrow.data.synref import Checker, GenerationRequest, Observation, generate_video, parse, preset
from sparrow.data.synref.language import HARD_TAGS
from sparrow.data.synref.render import TEMPLATES, WALL_LABEL, _coverage, render
from sparrow.data.synref.world import Scene, Wall


def _request(
    difficulty: str = "hard", frames: int = 16, size: tuple[int, int] = (128, 128), seed: int = 0
) -> GenerationRequest:
    return GenerationRequest("train", 10, frames, size, seed, difficulty, preset(difficulty))


def test_same_request_same_video() -> None:
    a, b = generate_video(_request(), 3), generate_video(_request(), 3)
    assert a.video_id == b.video_id
    assert a.rendering.frames.tobytes() == b.rendering.frames.tobytes()
    assert [e.text for e in a.expressions] == [e.text for e in b.expressions]
    assert a.caption == b.caption and a.qa == b.qa
    c = generate_video(_request(), 4)
    assert c.video_id != a.video_id and c.rendering.frames.tobytes() != a.rendering.frames.tobytes()


@pytest.mark.parametrize(
    ("frames", "size"), [(2, (32, 32)), (5, (48, 80)), (16, (128, 128)), (9, (200, 120))]
)
def test_any_size_and_length(frames: int, size: tuple[int, int]) -> None:
    sample = generate_video(_request(frames=frames, size=size), 0)
    assert sample.rendering.frames.shape == (frames, *size, 3) and sample.rendering.frames.dtype == np.uint8
    assert sample.rendering.labels.shape == (frames, *size)


def test_edges_are_anti_aliased() -> None:
    alpha = _coverage(TEMPLATES["circle"][None] * 10.0 + np.asarray([16.3, 16.7]), (34, 34))[0]
    partial = (alpha > 0) & (alpha < 255)
    assert partial.sum() > 20  # a ring of partly covered pixels around the disc
    assert alpha[16, 16] == 255 and alpha[0, 0] == 0
    assert abs(int((alpha >= 128).sum()) - round(np.pi * 100)) < 12  # ~ the disc's area


def test_pixel_bookkeeping_on_random_scenes() -> None:
    for index in range(4):
        sample = generate_video(_request(), index)
        r, sc = sample.rendering, sample.scene
        vis = r.visible_px()
        assert (
            (vis <= r.amodal_px).all()
            and (r.amodal_px <= r.full_px).all()
            and (r.wall_px <= r.amodal_px).all()
        )
        masks = r.visible_masks()
        assert (masks.sum(axis=0) <= 1).all()
        walls = r.labels == WALL_LABEL
        assert not (masks & walls[None]).any()
        assert (r.amodal_px - vis >= r.wall_px).all()  # wall-covered pixels are never seen
        for k, o in enumerate(sc.objects):
            for t in np.flatnonzero(vis[k] > 0):
                ys, xs = np.nonzero(masks[k, t])
                x0, y0, x1, y1 = r.amodal_box[k, t]
                assert x0 <= xs.min() and xs.max() < x1 and y0 <= ys.min() and ys.max() < y1, (o, t)


def test_wall_hides_and_depth_orders() -> None:
    wall = Wall(50, 0, 80, 128, shade=140)
    behind = obj(0, still(65, 30, 2), "circle", "red", size="small")
    front = obj(1, still(30, 90, 2), "square", "blue", size="large", depth=2)
    back = obj(2, still(40, 90, 2), "circle", "green", depth=1)
    r = render(scene(behind, front, back, walls=(wall,), frames=2))
    vis = r.visible_px()
    assert (
        vis[0].tolist() == [0, 0]
        and r.wall_px[0].tolist() == r.amodal_px[0].tolist()
        and r.amodal_px[0, 0] > 0
    )
    assert 0 < vis[2, 0] < r.full_px[2, 0]  # the green circle is partly under the blue square
    assert vis[1, 0] == r.full_px[1, 0]


def test_camera_pan_moves_the_view_not_the_world() -> None:
    frames = 6
    sc = scene(
        obj(0, still(60, 60, frames)),
        obj(1, moving(30, 30, 2.0, 0.0, frames), "square", "blue"),
        frames=frames,
    )
    cam = np.stack([np.arange(frames) * 3, np.zeros(frames)], axis=1).astype(np.int64)
    panned = Scene(sc.height, sc.width, frames, sc.objects, (), cam, (sc.height, sc.width + 15), 7, 0)
    r = render(panned)
    xs = [np.nonzero(r.labels[t] == 1)[1].mean() for t in range(frames)]
    assert np.allclose(np.diff(xs), -3.0, atol=0.01)  # the still circle drifts left on screen
    assert Checker(Observation.measure(panned, r)).profiles[0].label == "still"  # still in the world


@pytest.mark.parametrize("difficulty", ["standard", "hard"])
def test_every_emitted_expression_reproves(difficulty: str) -> None:
    total = 0
    for index in range(12):
        sample = generate_video(_request(difficulty, frames=12, size=(96, 96), seed=11), index)
        for e in sample.expressions:
            proof = sample.checker.prove(parse(e.text))
            assert proof.proved and proof.referents == e.referents and proof.unclear == ()
            assert proof.span == e.span
            total += 1
    assert total >= 30


@pytest.mark.slow
def test_hard_split_tag_rates() -> None:
    """The hard preset's targets on 200 videos (the acceptance numbers; run with -m slow)."""
    counts = dict.fromkeys(HARD_TAGS, 0)
    n = 0
    request = GenerationRequest("test", 200, 16, (128, 128), 0, "hard", preset("hard"))
    for index in range(200):
        for e in generate_video(request, index).expressions:
            n += 1
            for tag in set(e.tags) & set(HARD_TAGS):
                counts[tag] += 1
    rates = {k: v / n for k, v in counts.items()}
    assert rates["crosses_lookalike"] >= 0.30 and rates["occluded"] >= 0.25 and rates["reappears"] >= 0.15
    assert rates["late_appearance"] >= 0.15 and rates["motion_only"] >= 0.20, rates
