"""SynRef language: the grammar round-trips, captions are grounded, QA templates, sampling."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from synref_builders import checker, moving, obj, still

from sparrow.data.synref.language import (
    COUNT_WORDS,
    Proposer,
    caption,
    clean_caption,
    interrogative,
    parse,
    questions,
    write,
)
from sparrow.data.synref.query import (
    DIRECTIONS,
    EVENTS,
    MOTIONS,
    RELATIONS,
    SPANS,
    Event,
    Filter,
    Motion,
    Query,
    Relation,
)
from sparrow.data.synref.world import COLOURS, SHAPES, SIZES, TEXTURES
from sparrow.errors import DataFormatError

filters = st.builds(
    Filter,
    size=st.none() | st.sampled_from(sorted(SIZES)),
    texture=st.none() | st.sampled_from(TEXTURES),
    colour=st.none() | st.sampled_from(sorted(COLOURS)),
    shape=st.none() | st.sampled_from(SHAPES),
)
motions = st.sampled_from(MOTIONS).flatmap(
    lambda kind: st.builds(
        Motion,
        st.just(kind),
        st.sampled_from(DIRECTIONS)
        if kind == "linear"
        else (st.none() | st.sampled_from(DIRECTIONS))
        if kind in ("move_stop", "wait_move")
        else st.none(),
    )
)
predicates = (
    st.none()
    | motions
    | st.builds(Event, st.sampled_from(EVENTS))
    | st.builds(Relation, st.sampled_from(RELATIONS), filters)
)


@st.composite
def queries(draw: st.DrawFn) -> Query:
    predicate = draw(predicates)
    multi = not isinstance(predicate, Relation) and draw(st.booleans())
    count = draw(st.sampled_from(sorted(COUNT_WORDS))) if multi else 1
    span = draw(st.none() | st.sampled_from(SPANS)) if count == 1 and predicate is None else None
    return Query(draw(filters), count, predicate, span)


@settings(max_examples=300, deadline=None)
@given(queries(), st.integers(0, 3))
def test_write_parse_round_trip(query: Query, walls: int) -> None:
    text = write(query, walls)
    assert parse(text) == query
    assert text.startswith("the ")


def test_written_examples() -> None:
    assert write(Query(Filter("small", "striped", None, "triangle")), 0) == "the small striped triangle"
    assert (
        write(Query(Filter(shape="circle"), 1, Relation("left_of", Filter(colour="blue", shape="square"))), 0)
        == "the circle to the left of the blue square"
    )
    assert (
        write(Query(Filter(shape="square"), 1, Motion("move_stop", "up")), 0)
        == "the square that moves up and then stops"
    )
    assert (
        write(Query(Filter(shape="star"), 1, Event("behind_wall")), 1) == "the star that goes behind the wall"
    )
    assert write(Query(Filter(), 1, Event("appears_last")), 0) == "the object that appears last"
    assert write(Query(Filter(colour="red"), 2), 0) == "the two red objects"
    assert write(Query(Filter(shape="circle"), 1, None, "moving"), 0) == "the circle while it is moving"
    assert (
        write(Query(Filter(size="medium"), 3, Motion("still")), 0)
        == "the three medium-sized objects that stay still"
    )


@pytest.mark.parametrize(
    "text",
    [
        "a red circle",
        "the red circles",  # plural without a count
        "the two red circle",  # count without a plural
        "the circle that flies",
        "the circle next to the square",
        "the circle to the left of the two squares",
        "the purple",
    ],
)
def test_parse_rejects_text_outside_the_grammar(text: str) -> None:
    with pytest.raises(DataFormatError):
        parse(text)


def test_interrogative_forms() -> None:
    assert (
        interrogative(Query(Filter(shape="circle"), 1, Motion("circle")), 0)
        == "Which circle moves in a circle?"
    )
    assert (
        interrogative(Query(Filter(), 1, Relation("above", Filter(colour="red"))), 0)
        == "Which object is above the red object?"
    )
    assert interrogative(Query(Filter(shape="circle")), 0) is None
    assert interrogative(Query(Filter(shape="circle"), 2, Motion("still")), 0) is None


def test_clean_caption_follows_videoglamm() -> None:
    text = "'A video. <p> The red circle </p> [SEG] moves  right. <p> Two squares </p>  [SEG] look alike.'"
    assert clean_caption(text) == "A video. The red circle moves right. Two squares look alike."


def _scene_checker():
    return checker(
        obj(0, still(30, 40)),
        obj(1, moving(20, 90, 2.0, 0.0)),
        obj(2, moving(100, 100, 0.0, -3.0), "square", "blue", "large", "striped"),
    )


def test_caption_phrases_are_proved_and_grounded() -> None:
    ck = _scene_checker()
    cap = caption(Proposer(ck, np.random.default_rng(1)))
    assert cap.text.count("[SEG]") == len(cap.phrases) == len(cap.groups) == 2
    assert set(cap.groups) == {(0, 1), (2,)}
    assert "<p> The two circles </p> [SEG] look alike and cross paths." not in cap.text  # they never meet
    assert "<p> The square </p> [SEG] moves up." in cap.text
    assert cap.cleaned.startswith("A video of three objects.")
    assert "[SEG]" not in cap.cleaned and "<p>" not in cap.cleaned


def test_questions_templates() -> None:
    ck = _scene_checker()
    proposer = Proposer(ck, np.random.default_rng(0))
    exprs = proposer.candidates()
    single = next(e for e in exprs if len(e.referents) == 1)
    multi = next(e for e in exprs if len(e.referents) == 2)
    qa = questions(single, (2, 9), np.random.default_rng(0))
    assert [q["task"] for q in qa] == ["segment", "box", "tube"]
    assert all(single.text in q["question"] for q in qa)
    assert qa[0]["answer"] == "Sure, [SEG]." and qa[1]["answer"] == "Sure, [BOX]."
    assert qa[2]["answer"] == "It is visible from frame 2 to frame 8: [BOX] [SEG]." and qa[2]["tube"] == [
        2,
        9,
    ]
    assert [q["task"] for q in questions(multi, None, np.random.default_rng(0))] == ["segment"]


def test_sample_spreads_kinds_and_never_repeats_a_referent_kind() -> None:
    ck = _scene_checker()
    proposer = Proposer(ck, np.random.default_rng(3))
    chosen = proposer.sample(proposer.candidates(), 6, hard_bias=1.0)
    assert 1 <= len(chosen) <= 6
    keys = [(e.kind, e.referents) for e in chosen]
    assert len(keys) == len(set(keys))
    assert len({e.kind for e in chosen}) >= 3
