"""Table tests for the grounded-text parser: one row per well-formed or malformed model output."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sparrow.inference.parsing import parse_grounded_text

# (raw text, clean text, [(phrase, has_box, seg_ordinal, box_ordinal)], expected warning substrings)
CASES = [
    ("Sure, [BOX] [SEG].", "Sure.", [(None, True, 0, 0)], []),
    ("Sure, [SEG].", "Sure.", [(None, False, 0, None)], []),
    (
        "Sure, <p> the red circle </p> [BOX] [SEG] moves past <p> a blue square </p> [BOX] [SEG].",
        "Sure, the red circle moves past a blue square.",
        [("the red circle", True, 0, 0), ("a blue square", True, 1, 1)],
        [],
    ),
    ("There is nothing to ground.", "There is nothing to ground.", [], []),
    ("", "", [], []),
    ("<p> red ci", "red ci", [], ["unclosed <p> at the end"]),
    ("Sure, <p> red circle </p> [BOX] [SE", "Sure, red circle", [], ["partial tag", "[BOX] without [SEG]"]),
    ("Sure <p", "Sure", [], ["partial tag"]),
    ("a </p> b", "a b", [], ["unmatched </p>"]),
    (
        "<p> red circle [SEG] left",
        "red circle left",
        [("red circle", False, 0, None)],
        ["unclosed <p> was closed"],
    ),
    ("<p> a <p> b </p> [SEG]", "a b", [("b", False, 0, None)], ["opened twice"]),
    ("<p> x </p> [SEG] [SEG]", "x", [("x", False, 0, None), (None, False, 1, None)], []),
    ("[BOX] [BOX] [SEG]", "", [(None, True, 0, 1)], ["[BOX] without [SEG]"]),
    ("<p> x </p> then [SEG]", "x then", [("x", False, 0, None)], []),
    ("<p></p>[SEG]", "", [(None, False, 0, None)], []),
    # a comma that ends a phrase is part of it: "Sure, [SEG]." drops its comma, this one keeps it
    ("<p> a, </p> [SEG].", "a,.", [("a,", False, 0, None)], []),
]


@pytest.mark.parametrize(("raw", "text", "groundings", "warns"), CASES)
def test_parse_table(raw: str, text: str, groundings: list, warns: list[str]) -> None:
    answer = parse_grounded_text(raw)
    assert answer.text == text
    got = [(g.phrase, g.has_box, g.seg_ordinal, g.box_ordinal) for g in answer.groundings]
    assert got == groundings
    for w in warns:
        assert any(w in message for message in answer.warnings), (w, answer.warnings)
    if not warns:
        assert answer.warnings == ()


_pieces = st.lists(
    st.one_of(
        st.sampled_from(["[SEG]", "[BOX]", "<p>", "</p>", "[SE", "<", "[B", ".", ",", " "]),
        st.text(alphabet="abc xyz.,", max_size=6),
    ),
    max_size=12,
)


@given(_pieces)
def test_parser_is_total_and_consistent(pieces: list[str]) -> None:
    raw = "".join(pieces)
    answer = parse_grounded_text(raw)
    assert answer.text == " ".join(answer.text.split())
    assert "[SEG]" not in answer.text and "<p>" not in answer.text
    assert [g.seg_ordinal for g in answer.groundings] == list(range(len(answer.groundings)))
    assert len(answer.groundings) <= raw.count("[SEG]")
    for g in answer.groundings:
        if g.char_span is not None:
            assert answer.text[g.char_span[0] : g.char_span[1]] == g.phrase
        assert g.has_box == (g.box_ordinal is not None)
