"""The SPARROW ``[phrase](1, 2)`` grounding markup: one table row per rule, plus properties."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sparrow.data.markup import (
    GroundedSpan,
    GroundedText,
    MarkupError,
    format_grounding_markup,
    parse_grounding_markup,
    to_gcg_caption,
)

VALID = [
    ("", "", []),
    ("a red car", "a red car", []),
    ("[red car](1)", "red car", [("red car", (1,), 0, 7)]),
    (
        "A [red car](1) and [two dogs](2, 3).",
        "A red car and two dogs.",
        [("red car", (1,), 2, 9), ("two dogs", (2, 3), 14, 22)],
    ),
    ("[ padded ](4)", "padded", [("padded", (4,), 0, 6)]),
    ("[x](  10 ,2 )", "x", [("x", (10, 2), 0, 1)]),
    ("[sic] text", "[sic] text", []),  # no "(" right after "]": literal
    ("[x] (1)", "[x] (1)", []),  # a space between "]" and "(": literal
    ("open [ bracket", "open [ bracket", []),  # never closed: literal
    ("a [b [c](1)](2)", "a [b c](2)", [("c", (1,), 5, 6)]),  # nested "[": the outer one is literal
    ("f(x) = [y](7)", "f(x) = y", [("y", (7,), 7, 8)]),
    ("]( [z](1)", "]( z", [("z", (1,), 3, 4)]),
    ("naïve [café](1)", "naïve café", [("café", (1,), 6, 10)]),
]


@pytest.mark.parametrize(("source", "text", "spans"), VALID)
def test_valid_markup(source, text, spans):
    parsed = parse_grounding_markup(source)
    assert parsed.text == text
    assert [(s.phrase, s.obj_ids, s.start, s.end) for s in parsed.spans] == spans
    for s in parsed.spans:
        assert parsed.text[s.start : s.end] == s.phrase


INVALID = [
    ("[x]()", "must be integers"),
    ("[x](a)", "must be integers"),
    ("[x](1,)", "must be integers"),
    ("[x](1 2)", "must be integers"),
    ("[x](-1)", "must be integers"),
    ("[x](1.5)", "must be integers"),
    ("[x](0)", "must be positive"),
    ("[x](1, 1)", "repeats an id"),
    ("[x](1", "never closed"),
    ("[](1)", "empty phrase"),
    ("[   ](1)", "empty phrase"),
    ("ok [x](1) then [y](see http://a.b)", "must be integers"),
]


@pytest.mark.parametrize(("source", "message"), INVALID)
def test_invalid_markup(source, message):
    with pytest.raises(MarkupError, match=message):
        parse_grounding_markup(source)


def test_gcg_form():
    parsed = parse_grounding_markup("A [red car](1) passes [two dogs](2, 3).")
    assert to_gcg_caption(parsed) == "A <p> red car </p> [SEG] passes <p> two dogs </p> [SEG]."


_plain = st.text(
    alphabet=st.characters(blacklist_characters="[]()", blacklist_categories=("Cs",)), max_size=12
)
_phrase = _plain.map(str.strip).filter(bool)
_ids = st.lists(st.integers(1, 999), min_size=1, max_size=4, unique=True).map(tuple)


@st.composite
def grounded_texts(draw):
    parts, spans, pos = [], [], 0
    for _ in range(draw(st.integers(0, 4))):
        gap, phrase, ids = draw(_plain), draw(_phrase), draw(_ids)
        parts.append(gap)
        pos += len(gap)
        spans.append(GroundedSpan(phrase, ids, pos, pos + len(phrase)))
        parts.append(phrase)
        pos += len(phrase)
    parts.append(draw(_plain))
    return GroundedText("".join(parts), tuple(spans))


@settings(max_examples=200, deadline=None)
@given(grounded_texts())
def test_format_then_parse_round_trips(grounded):
    assert parse_grounding_markup(format_grounding_markup(grounded)) == grounded


@settings(max_examples=200, deadline=None)
@given(_plain)
def test_text_without_markup_is_unchanged(text):
    assert parse_grounding_markup(text) == GroundedText(text, ())


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=40))
def test_any_text_parses_or_raises_markup_error(text):
    try:
        parsed = parse_grounding_markup(text)
    except MarkupError:
        return
    assert len(parsed.text) <= len(text)
    for s in parsed.spans:
        assert parsed.text[s.start : s.end] == s.phrase and s.obj_ids and min(s.obj_ids) >= 1
