"""The SynRef expression prover on hand-built scenes: motion labels, events, relations, spans,
tags, and the three-valued logic that keeps ambiguous expressions out."""

from __future__ import annotations

import math

import numpy as np
import pytest
from synref_builders import checker, moving, obj, still

from sparrow.data.synref.checker import Truth, motion_profile
from sparrow.data.synref.language import Proposer, parse
from sparrow.data.synref.query import Event, Filter, Motion, Query, Relation
from sparrow.data.synref.world import Wall

T = 16
ALL = np.ones(T, dtype=bool)


def _steps(*legs: tuple[int, float, float]) -> np.ndarray:
    """Trajectory from (steps, vx, vy) legs, starting at (64, 64)."""
    v = np.concatenate([np.tile([[vx, vy]], (n, 1)) for n, vx, vy in legs])
    return np.concatenate([[[64.0, 64.0]], 64.0 + np.cumsum(v, axis=0)])


def _circle() -> np.ndarray:
    a = np.radians(25.0) * np.arange(T)
    return np.stack([64 + 12 * np.cos(a), 64 + 12 * np.sin(a)], axis=1)


@pytest.mark.parametrize(
    ("centers", "label", "direction"),
    [
        (_steps((15, 0.0, 0.0)), "still", None),
        (_steps((15, 2.0, 0.0)), "linear", "right"),
        (_steps((15, -1.5, -1.5)), "linear", "up and to the left"),
        (_circle(), "circle", None),
        (_steps((7, 2.0, 0.0), (8, -2.0, 0.0)), "bounce", None),
        (_steps((7, 2.0, 0.0), (8, 0.0, 2.0)), "turn", None),
        (_steps((4, 1.5, 1.5), (4, 1.5, -1.5), (4, 1.5, 1.5), (3, 1.5, -1.5)), "zigzag", None),
        (_steps((6, 0.0, -2.0), (9, 0.0, 0.0)), "move_stop", "up"),
        (_steps((5, 0.0, 0.0), (10, 0.0, 2.0)), "wait_move", "down"),
        (_steps((5, 2.0, 0.0), (4, 0.0, 0.0), (6, 2.0, 0.0)), "stop_go", "right"),
        (_steps((15, 0.5, 0.0)), None, None),  # neither clearly still nor clearly moving
        (
            _steps((7, 2.0, 0.0), (8, 2.0 * math.cos(0.5), 2.0 * math.sin(0.5))),
            None,
            None,
        ),  # a 29 degree bend
    ],
)
def test_motion_profile_labels(centers: np.ndarray, label: str | None, direction: str | None) -> None:
    prof = motion_profile(centers, ALL, 1.0)
    assert (prof.label, prof.direction) == (label, direction)


def test_motion_profile_uses_only_visible_frames() -> None:
    turn = _steps((7, 2.0, 0.0), (8, 0.0, 2.0))
    seen = ALL.copy()
    seen[5:10] = False  # the turn happens out of sight: the chord across the gap bends by 45 degrees
    assert motion_profile(turn, seen, 1.0).label is None
    straight = _steps((15, 2.0, 0.0))
    assert motion_profile(straight, seen, 1.0).label == "linear"  # a gap on a straight path is fine
    assert motion_profile(straight, np.arange(T) < 2, 1.0).label is None  # too little seen


def test_lookalikes_need_motion_to_be_told_apart() -> None:
    a = obj(0, still(30, 40))
    b = obj(1, moving(20, 90, 2.0, 0.0))
    ck = checker(a, b)
    appearance = ck.prove(Query(Filter(shape="circle")))
    assert not appearance.proved and appearance.referents == (0, 1)
    assert not ck.prove(Query(Filter(colour="red", shape="circle"))).proved
    still_q = Query(Filter(colour="red"), 1, Motion("still"))
    proof = ck.prove(still_q)
    assert proof.proved and proof.referents == (0,)
    right = Query(Filter(), 1, Motion("linear", "right"))
    assert ck.prove(right).referents == (1,)
    assert "motion_only" in ck.tags(right, ck.prove(right))
    assert ck.prove(Query(Filter(shape="circle"), 2)).proved  # "the two circles"
    assert "multi_object" in ck.tags(
        Query(Filter(shape="circle"), 2), ck.prove(Query(Filter(shape="circle"), 2))
    )


def test_ambiguous_appearance_expression_is_never_proposed() -> None:
    """Two identical red circles: no appearance-only expression may single one out; motion does."""
    ck = checker(
        obj(0, still(30, 40)), obj(1, moving(20, 90, 2.0, 0.0)), obj(2, still(100, 30), "square", "blue")
    )
    candidates = Proposer(ck, np.random.default_rng(0)).candidates()
    texts = {e.text for e in candidates}
    singles = [e for e in candidates if e.kind == "appearance"]
    assert singles and all(e.referents == (2,) for e in singles)  # only the blue square
    assert "the circle" not in texts and "the red circle" not in texts and "the red object" not in texts
    assert any(e.referents == (0,) and "motion_only" in e.tags for e in candidates)
    assert any(e.referents == (1,) and "motion_only" in e.tags for e in candidates)
    for e in candidates:  # every proposal re-proves from its text alone
        proof = ck.prove(parse(e.text))
        assert proof.proved and proof.referents == e.referents


def test_relation_truth_needs_the_whole_video() -> None:
    anchor = obj(0, still(64, 64), "square", "blue")
    left = obj(1, still(30, 64), "circle", "red")
    right = obj(2, still(100, 64), "circle", "green")
    ck = checker(anchor, left, right)
    q = Query(Filter(shape="circle"), 1, Relation("left_of", Filter(colour="blue")))
    assert ck.prove(q).referents == (1,) and ck.prove(q).proved
    above = ck.prove(Query(Filter(shape="circle"), 1, Relation("above", Filter(colour="blue"))))
    assert not above.proved and above.referents == () and above.unclear == ()
    # a circle that crosses from the left of the square to its right makes "left of" unclear
    crossing = obj(2, moving(20, 100, 6.0, 0.0), "circle", "green")
    ck = checker(anchor, left, crossing)
    proof = ck.prove(q)
    assert not proof.proved and proof.unclear == (2,)


def test_anchor_must_be_unique() -> None:
    ck = checker(
        obj(0, still(64, 40), "square", "blue"),
        obj(1, still(64, 100), "square", "blue"),
        obj(2, still(20, 64), "circle"),
    )
    proof = ck.prove(Query(Filter(shape="circle"), 1, Relation("left_of", Filter(shape="square"))))
    assert not proof.proved


WALL = Wall(40, 0, 80, 128, shade=140)


def test_goes_behind_the_wall_and_reappears() -> None:
    # a star reaches 1.14 radii from its centre: wholly behind the wall for x in [51.4, 68.6], frames 9..14
    runner = obj(0, moving(26, 40, 3.0, 0.0), "star", "yellow")
    idle = obj(1, still(110, 100), "hexagon", "green")
    ck = checker(runner, idle, walls=(WALL,))
    assert ck.longest_hidden(0) == 6 and ck.reappears(0)
    q = Query(Filter(), 1, Event("behind_wall"))
    proof = ck.prove(q)
    assert proof.proved and proof.referents == (0,)
    assert {"occluded", "reappears"} <= set(ck.tags(q, proof))
    assert ck.event_truth(Event("behind_wall"), 1, ()) is Truth.FALSE
    # "the star while it is moving" is the whole video: not a time limit
    assert ck.span("moving", 0) is None
    assert ck.span("before_gone", 0) == (0, 9)
    assert ck.span("after_return", 0) is None  # back for one frame only: too short to name


def test_leaving_entering_and_appearing_last() -> None:
    xs = np.asarray([30, 24, 18, 12, 6, 0, -6, -12, -18, -12, -6, 0, 6, 12, 18, 24], dtype=np.float64)
    leaver = obj(0, np.stack([xs, np.full(T, 40.0)], axis=1), "square", "red")
    comer = obj(1, moving(-30, 100, 4.0, 0.0), "circle", "blue")
    ck = checker(leaver, comer)
    assert ck.event_truth(Event("leaves_returns"), 0, ()) is Truth.TRUE
    assert ck.event_truth(Event("leaves_returns"), 1, ()) is Truth.FALSE
    assert ck.event_truth(Event("enters"), 1, ()) is Truth.TRUE
    assert ck.event_truth(Event("enters"), 0, ()) is Truth.UNCLEAR  # it does come back in
    assert ck.event_truth(Event("leaves"), 0, ()) is Truth.UNCLEAR  # it leaves, but not for good
    late = Query(Filter(), 1, Event("appears_last"))
    proof = ck.prove(late)
    assert proof.proved and proof.referents == (1,)
    assert "late_appearance" in ck.tags(late, proof)
    assert "reappears" in ck.tags(Query(Filter(shape="square")), ck.prove(Query(Filter(shape="square"))))


def test_barely_visible_object_makes_its_description_unclear() -> None:
    hidden = obj(0, still(60, 64), "circle", "red", size="small")  # behind the wall but for a sliver
    seen = obj(1, still(110, 30), "circle", "red", size="large")
    wall = Wall(55, 40, 70, 90, shade=140)
    ck = checker(hidden, seen, walls=(wall,))
    assert ck.presence[0] is not Truth.TRUE
    proof = ck.prove(Query(Filter(shape="circle")))
    assert not proof.proved and proof.unclear == (0,)
    assert ck.prove(Query(Filter(size="large"))).proved


def test_crossing_lookalikes_are_tagged() -> None:
    a = obj(0, moving(20, 64, 6.0, 0.0))
    b = obj(1, still(64, 64), depth=5)
    far = obj(2, still(64, 10), "square", "blue")
    ck = checker(a, b, far)
    assert ck.crosses_lookalike(0) and ck.crosses_lookalike(1) and not ck.crosses_lookalike(2)
    apart = checker(obj(0, still(20, 20)), obj(1, still(100, 100)))
    assert not apart.crosses_lookalike(0)


def test_time_limited_spans() -> None:
    mover = obj(0, _steps((6, 0.0, -2.0), (9, 0.0, 0.0)), "triangle", "purple")
    ck = checker(mover)
    assert ck.span("moving", 0) == (0, 7)
    assert ck.span("still", 0) == (6, 16)
    proof = ck.prove(Query(Filter(shape="triangle"), 1, None, "moving"))
    assert proof.proved and proof.span == (0, 7)
    assert not ck.prove(Query(Filter(shape="triangle"), 1, None, "after_return")).proved


def test_kleene_conjunction() -> None:
    assert min(Truth.TRUE, Truth.UNCLEAR) is Truth.UNCLEAR
    assert min(Truth.UNCLEAR, Truth.FALSE) is Truth.FALSE
    assert min(Truth.TRUE, Truth.TRUE) is Truth.TRUE
