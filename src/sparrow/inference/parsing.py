"""Parsing of grounded model output: ``<p> phrase </p> [BOX] [SEG]`` markup.

The model answers in text that interleaves phrases and grounding tokens, for example::

    Sure, <p> the red circle </p> [BOX] [SEG] moves past <p> a blue square </p> [BOX] [SEG].
    Sure, [BOX] [SEG].

:func:`parse_grounded_text` turns such a string into the clean answer text and one
:class:`ParsedGrounding` per ``[SEG]`` token, in order. The parser is pure and total: it never raises
on malformed model output; it reports what it repaired in :attr:`ParsedAnswer.warnings`.

Rules (one table test per rule in ``tests/unit/test_inference_parsing.py``):

- Each ``[SEG]`` yields one grounding. Its phrase is the closest ``<p> ... </p>`` that closes before
  it and after the previous ``[SEG]``; with no such phrase the phrase is ``None`` (the caller uses the
  prompt's referring expression, as for ``"Sure, [SEG]."``).
- ``has_box`` is true when a ``[BOX]`` token appears between that phrase (or the previous ``[SEG]``)
  and the ``[SEG]``. A ``[BOX]`` with no ``[SEG]`` after it is dropped (warning).
- An unmatched ``<p>`` takes the text up to the next grounding token or the end as its phrase; an
  unmatched ``</p>`` is ignored. A text cut in the middle of a tag (``"<p> red ci"``, ``"[SE"``) is
  repaired by dropping the partial tag.
- ``box_ordinal`` / ``seg_ordinal`` give the 0-based occurrence index of the token among the
  ``[BOX]`` / ``[SEG]`` tokens of the text, which is how the caller finds the matching hidden state.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

SEG_TOKEN = "[SEG]"
BOX_TOKEN = "[BOX]"
P_OPEN = "<p>"
P_CLOSE = "</p>"

_TOKEN_RE = re.compile(r"\[SEG\]|\[BOX\]|<p>|</p>")
_PARTIAL_TAIL_RE = re.compile(r"(\[(S(E(G)?)?|B(O(X)?)?)?|<(/(p)?|p)?)$")


@dataclass(frozen=True)
class ParsedGrounding:
    """One ``[SEG]`` of an answer.

    Attributes:
        phrase: the grounded phrase (stripped), or ``None`` for a bare ``[SEG]``.
        char_span: ``(start, end)`` of the phrase in :attr:`ParsedAnswer.text`, or ``None``.
        has_box: a ``[BOX]`` token precedes this ``[SEG]`` (dual prompt).
        seg_ordinal: index of this ``[SEG]`` among the ``[SEG]`` tokens of the raw text.
        box_ordinal: index of its ``[BOX]`` among the ``[BOX]`` tokens, or ``None``.
    """

    phrase: str | None
    char_span: tuple[int, int] | None
    has_box: bool
    seg_ordinal: int
    box_ordinal: int | None


@dataclass(frozen=True)
class ParsedAnswer:
    """Clean text (markup removed, whitespace collapsed) and the groundings in ``[SEG]`` order."""

    text: str
    groundings: tuple[ParsedGrounding, ...]
    warnings: tuple[str, ...] = field(default=())


class _Builder:
    """Accumulates clean text with single spaces, remembering phrase character spans."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.length = 0
        self.phrase_end = -1  # end of the last phrase added: its characters are never edited

    def add(self, chunk: str, phrase: bool = False) -> tuple[int, int] | None:
        """Append the words of ``chunk`` (a grounded phrase when ``phrase``); returns their
        ``(start, end)`` in the clean text."""
        piece = " ".join(chunk.split())
        if not piece:
            return None
        if self.length and piece[0] not in ".,;:!?)":
            self.parts.append(" ")
            self.length += 1
        elif (
            self.parts
            and piece[0] in ".!?"
            and self.parts[-1].endswith(",")
            and self.length != self.phrase_end
        ):
            # "Sure, [SEG]." -> "Sure."
            self.parts[-1] = self.parts[-1][:-1]
            self.length -= 1
        start = self.length
        self.parts.append(piece)
        self.length += len(piece)
        if phrase:
            self.phrase_end = self.length
        return start, self.length

    def text(self) -> str:
        return "".join(self.parts)


def parse_grounded_text(raw: str) -> ParsedAnswer:
    """Parse one model answer; see the module docstring for the rules. Never raises."""
    warnings: list[str] = []
    text = raw
    tail = _PARTIAL_TAIL_RE.search(text)
    if tail and tail.group(0):
        warnings.append(f"dropped a partial tag at the end: {tail.group(0)!r}")
        text = text[: tail.start()]

    out = _Builder()
    groundings: list[ParsedGrounding] = []
    phrase: str | None = None
    phrase_span: tuple[int, int] | None = None
    open_at: int | None = None  # index in `text` after an unmatched <p>
    pending_box: int | None = None
    seg_count = 0
    box_count = 0
    pos = 0

    def close_phrase(end: int) -> None:
        nonlocal phrase, phrase_span, open_at
        chunk = text[open_at:end]
        span = out.add(chunk, phrase=True)
        phrase = " ".join(chunk.split()) or None
        phrase_span = span if phrase else None
        open_at = None

    for match in _TOKEN_RE.finditer(text):
        token = match.group(0)
        if open_at is None:
            out.add(text[pos : match.start()])
        if token == P_OPEN:
            if open_at is not None:
                warnings.append("a <p> was opened twice; the first one was closed there")
                close_phrase(match.start())
            open_at = match.end()
        elif token == P_CLOSE:
            if open_at is None:
                warnings.append("an unmatched </p> was ignored")
            else:
                close_phrase(match.start())
        else:
            if open_at is not None:
                warnings.append(f"an unclosed <p> was closed at {token}")
                close_phrase(match.start())
            if token == BOX_TOKEN:
                if pending_box is not None:
                    warnings.append("a [BOX] without [SEG] was dropped")
                pending_box = box_count
                box_count += 1
            else:
                groundings.append(
                    ParsedGrounding(
                        phrase=phrase,
                        char_span=phrase_span,
                        has_box=pending_box is not None,
                        seg_ordinal=seg_count,
                        box_ordinal=pending_box,
                    )
                )
                seg_count += 1
                phrase, phrase_span, pending_box = None, None, None
        pos = match.end()

    if open_at is not None:
        warnings.append("an unclosed <p> at the end was kept as text")
        close_phrase(len(text))
    else:
        out.add(text[pos:])
    if pending_box is not None:
        warnings.append("a [BOX] without [SEG] was dropped")
    return ParsedAnswer(text=out.text(), groundings=tuple(groundings), warnings=tuple(warnings))
