"""Grounding markup in captions: pure parsers, no I/O.

Two markups occur in our data:

- SPARROW ``nlp.txt``: ``A [red car](1) passes [two dogs](2, 3).`` -- a bracketed phrase followed
  by a parenthesised list of object ids. :func:`parse_grounding_markup` returns the plain text and
  the grounded spans; :func:`format_grounding_markup` writes the canonical form back.
- VideoGLaMM GCG captions: ``<p> red car </p> [SEG]``. :func:`clean_gcg_caption` is VideoGLaMM's
  cleaning (METRICS 4.2; the one implementation, which ``sparrow.evaluation.captions`` uses too);
  :func:`to_gcg_caption` turns SPARROW markup into that form.

Rules of the SPARROW markup (each is a row of the tests):

- ``[phrase](ids)``: ``phrase`` has no ``[`` or ``]`` and is not blank; ``ids`` is one or more
  positive integers separated by commas, spaces allowed around them. The phrase is stripped of
  surrounding spaces; the plain text keeps only the stripped phrase.
- A ``[`` without a later ``]``, or a ``[...]`` not followed at once by ``(``, is literal text.
- ``[phrase](`` followed by anything that is not a valid id list up to ``)`` raises
  :class:`MarkupError`: an empty or non-numeric list, id 0, a repeated id, or a missing ``)``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from sparrow.errors import DataFormatError

_IDS = re.compile(r"\s*\d+\s*(?:,\s*\d+\s*)*")


class MarkupError(DataFormatError):
    """A ``[phrase](ids)`` group is malformed; the message gives the character offset."""


@dataclass(frozen=True)
class GroundedSpan:
    """One grounded phrase: ``text[start:end] == phrase`` in the plain text."""

    phrase: str
    obj_ids: tuple[int, ...]
    start: int
    end: int


@dataclass(frozen=True)
class GroundedText:
    """Plain text (markup removed) and its grounded spans, in order."""

    text: str
    spans: tuple[GroundedSpan, ...] = ()


def _parse_ids(content: str, offset: int) -> tuple[int, ...]:
    if not _IDS.fullmatch(content):
        raise MarkupError(
            f"object id list {content!r} at character {offset} must be integers separated by commas"
        )
    ids = tuple(int(v) for v in content.split(","))
    if any(v <= 0 for v in ids):
        raise MarkupError(
            f"object ids at character {offset} must be positive (0 is the background): {content!r}"
        )
    if len(set(ids)) != len(ids):
        raise MarkupError(f"object id list {content!r} at character {offset} repeats an id")
    return ids


def parse_grounding_markup(source: str) -> GroundedText:
    """Parse SPARROW ``[phrase](1, 2)`` markup.

    Returns:
        The plain text and the spans, with character offsets into the plain text.

    Raises:
        MarkupError: a ``[phrase](`` group is malformed (see the module rules).
    """
    out: list[str] = []
    spans: list[GroundedSpan] = []
    length = 0
    i = 0
    n = len(source)
    while i < n:
        open_at = source.find("[", i)
        if open_at < 0:
            out.append(source[i:])
            break
        close_at = source.find("]", open_at + 1)
        inner_open = source.find("[", open_at + 1)
        if close_at < 0 or (0 <= inner_open < close_at) or close_at + 1 >= n or source[close_at + 1] != "(":
            # literal "[": no closing bracket, a nested "[", or no "(" right after "]"
            out.append(source[i : open_at + 1])
            length += open_at + 1 - i
            i = open_at + 1
            continue
        paren_close = source.find(")", close_at + 2)
        if paren_close < 0:
            raise MarkupError(f"object id list opened at character {close_at + 1} is never closed with ')'")
        ids = _parse_ids(source[close_at + 2 : paren_close], close_at + 1)
        phrase = source[open_at + 1 : close_at].strip()
        if not phrase:
            raise MarkupError(f"empty phrase before the object ids at character {close_at + 1}")
        out.append(source[i:open_at])
        length += open_at - i
        spans.append(GroundedSpan(phrase, ids, length, length + len(phrase)))
        out.append(phrase)
        length += len(phrase)
        i = paren_close + 1
    return GroundedText("".join(out), tuple(spans))


def _render_spans(grounded: GroundedText, render: Callable[[GroundedSpan], str]) -> str:
    """``grounded.text`` with every span replaced by ``render(span)``."""
    parts: list[str] = []
    pos = 0
    for span in grounded.spans:
        parts.append(grounded.text[pos : span.start])
        parts.append(render(span))
        pos = span.end
    parts.append(grounded.text[pos:])
    return "".join(parts)


def format_grounding_markup(grounded: GroundedText) -> str:
    """The canonical markup of ``grounded``: ``[phrase](1, 2)`` at each span."""
    return _render_spans(
        grounded,
        lambda span: f"[{grounded.text[span.start : span.end]}]({', '.join(str(v) for v in span.obj_ids)})",
    )


def gcg_slot(phrase: str) -> str:
    """A phrase grounded in VideoGLaMM GCG form: ``<p> phrase </p> [SEG]``."""
    return f"<p> {phrase} </p> [SEG]"


def to_gcg_caption(grounded: GroundedText) -> str:
    """VideoGLaMM GCG form: every span becomes ``<p> phrase </p> [SEG]`` (one ``[SEG]`` per phrase)."""
    return _render_spans(grounded, lambda span: gcg_slot(span.phrase))


_TAG = re.compile(r"<.*?>")
_PHRASE = re.compile(r"<p>(.*?)</p>")


def clean_gcg_caption(text: str) -> tuple[str, list[str]]:
    """VideoGLaMM's caption cleaning (METRICS 4.2), applied to GT and predictions alike.

    Removes newlines and double spaces, keeps the text after the last ``"ASSISTANT: "``, collects
    the ``<p>...</p>`` phrases (stripped), removes every ``<...>`` tag and ``[SEG]``, collapses
    whitespace and strips ``'`` from both ends.

    Returns:
        ``(cleaned caption, phrases)``.
    """
    t = text.replace("\n", "").replace("  ", " ")
    t = t.split("ASSISTANT: ")[-1]
    phrases = [p.strip() for p in _PHRASE.findall(t)]
    cleaned = _TAG.sub("", t).replace("[SEG]", "")
    cleaned = " ".join(cleaned.split()).strip("'").strip()
    return cleaned, phrases
