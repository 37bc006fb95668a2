"""English for SynRef queries: writing and parsing expressions, proposing proved expressions for a
video, grounded captions (GCG markup) and templated question-answer pairs.

The grammar is small and closed::

    expression := "the" [count] [size] [texture] [colour] noun ["that" clause | relation noun-phrase] [span]
    noun       := shape | "object"   (plural with a count: "the two red objects")

Every clause, relation and span phrase comes from the tables below, and :func:`parse` inverts
:func:`write` exactly (tested), so the text of an emitted expression can always be re-checked.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from itertools import combinations

import numpy as np

from sparrow.data.conversations import english_list
from sparrow.data.markup import gcg_slot
from sparrow.errors import DataFormatError

from .checker import TAG_ORDER, Checker, Truth
from .query import DIRECTIONS, EVENTS, MOTIONS, RELATIONS, SPANS, Event, Filter, Motion, Query, Relation
from .world import ATTRIBUTES, COLOURS, SHAPES, TEXTURES

SIZE_WORDS = {"small": "small", "medium": "medium-sized", "large": "large"}
COUNT_WORDS = {2: "two", 3: "three", 4: "four", 5: "five", 6: "six", 7: "seven", 8: "eight", 9: "nine"}
_DIRECTED = ("linear", "move_stop", "wait_move")
_MOTION_TEXT = {  # singular, plural; {d} is a direction
    "still": ("stays still", "stay still"),
    "moving": ("moves", "move"),
    "linear": ("moves {d}", "move {d}"),
    "move_stop": ("moves {d} and then stops", "move {d} and then stop"),
    "wait_move": ("waits and then moves {d}", "wait and then move {d}"),
    "stop_go": ("stops and then moves again", "stop and then move again"),
    "circle": ("moves in a circle", "move in circles"),
    "bounce": ("bounces back", "bounce back"),
    "turn": ("suddenly turns", "suddenly turn"),
    "zigzag": ("zig-zags", "zig-zag"),
}
_EVENT_TEXT = {  # {w} is "the wall" (one wall in the video) or "a wall"
    "behind_wall": ("goes behind {w}", "go behind {w}"),
    "emerges": ("comes out from behind {w}", "come out from behind {w}"),
    "leaves_returns": ("leaves the frame and comes back", "leave the frame and come back"),
    "leaves": ("leaves the frame", "leave the frame"),
    "enters": ("enters the frame", "enter the frame"),
    "appears_late": ("appears later", "appear later"),
    "appears_last": ("appears last", "appear last"),
}
_RELATION_TEXT = {
    "left_of": "to the left of",
    "right_of": "to the right of",
    "above": "above",
    "below": "below",
}
_SPAN_TEXT = {
    "moving": "while it is moving",
    "still": "while it is standing still",
    "before_gone": "before it disappears",
    "after_return": "after it reappears",
}
TAGS = TAG_ORDER
HARD_TAGS = TAGS[:-1]  # all but multi_object

SEGMENT_QUESTIONS = (
    "Can you segment {exp} in this video?",
    "Please segment {exp} in this video.",
    "Where is {exp}? Please respond with a segmentation mask.",
)
BOX_QUESTIONS = (
    "Please give the bounding box of {exp} in this video.",
    "Can you locate {exp} in this video with a box?",
)
TUBE_QUESTIONS = (
    "When and where is {exp} in this video?",
    "In which frames can you see {exp}, and where is it?",
)
CAPTION_QUESTION = (
    "Could you please give me a detailed description of the video? Please respond with interleaved "
    "segmentation masks for the corresponding parts of the answer."
)


def _wall_word(walls: int) -> str:
    return "the wall" if walls == 1 else "a wall"


def noun_phrase(target: Filter, count: int = 1) -> str:
    """ "the [count] [size] [texture] [colour] noun" (plural when ``count > 1``)."""
    words = ["the"]
    if count > 1:
        words.append(COUNT_WORDS[count])
    if target.size:
        words.append(SIZE_WORDS[target.size])
    words += [w for w in (target.texture, target.colour) if w]
    words.append((target.shape or "object") + ("s" if count > 1 else ""))
    return " ".join(words)


def clause(predicate: Motion | Event, plural: bool, walls: int) -> str:
    """The verb phrase of a motion or event ("moves up and then stops")."""
    table = _MOTION_TEXT if isinstance(predicate, Motion) else _EVENT_TEXT
    text = table[predicate.kind][int(plural)]
    if isinstance(predicate, Motion) and "{d}" in text:
        text = text.replace(" {d}", f" {predicate.direction}" if predicate.direction else "")
    return text.replace("{w}", _wall_word(walls))


def write(query: Query, walls: int) -> str:
    """The English expression of ``query`` (``walls``: number of walls in the video)."""
    text = noun_phrase(query.target, query.count)
    pred = query.predicate
    if isinstance(pred, Relation):
        text += f" {_RELATION_TEXT[pred.kind]} {noun_phrase(pred.anchor)}"
    elif pred is not None:
        text += f" that {clause(pred, query.count > 1, walls)}"
    if query.span is not None:
        text += f" {_SPAN_TEXT[query.span]}"
    return text


def interrogative(query: Query, walls: int) -> str | None:
    """The question form of a one-referent expression with a predicate ("Which circle moves in a
    circle?"), for VidSTG-style ``interrogative`` sentences; None for other queries."""
    pred = query.predicate
    if query.count != 1 or pred is None or query.span is not None:
        return None
    noun = noun_phrase(query.target)[len("the ") :]
    if isinstance(pred, Relation):
        return f"Which {noun} is {_RELATION_TEXT[pred.kind]} {noun_phrase(pred.anchor)}?"
    return f"Which {noun} {clause(pred, False, walls)}?"


# -- parsing -----------------------------------------------------------------------------------
_NOUN = re.compile(
    r"the (?:(?P<count>{})\s)?(?:(?P<size>{})\s)?(?:(?P<texture>{})\s)?(?:(?P<colour>{})\s)?(?P<noun>{})(?P<plural>s?)".format(
        "|".join(COUNT_WORDS.values()),
        "|".join(SIZE_WORDS.values()),
        "|".join(TEXTURES),
        "|".join(COLOURS),
        "|".join((*SHAPES, "object")),
    )
)


def _clauses() -> dict[str, Motion | Event]:
    out: dict[str, Motion | Event] = {}
    for kind in MOTIONS:
        for direction in (None, *DIRECTIONS) if kind in _DIRECTED else (None,):
            if kind == "linear" and direction is None:
                continue
            for plural in (False, True):
                out[clause(Motion(kind, direction), plural, 1)] = Motion(kind, direction)
    for kind in EVENTS:
        for plural in (False, True):
            for walls in (1, 2):
                out[clause(Event(kind), plural, walls)] = Event(kind)
    return out


_CLAUSES = _clauses()


def _parse_noun(text: str) -> tuple[Filter, int, str]:
    m = _NOUN.match(text)
    if m is None:
        raise DataFormatError(f"not a SynRef noun phrase: {text!r}", fix="expressions start with 'the ...'")
    count = next((n for n, w in COUNT_WORDS.items() if w == m["count"]), 1)
    if (count > 1) != bool(m["plural"]):
        raise DataFormatError(f"count and plural disagree in {text!r}")
    size = next((s for s, w in SIZE_WORDS.items() if w == m["size"]), None)
    noun = m["noun"]
    target = Filter(
        size=size, texture=m["texture"], colour=m["colour"], shape=None if noun == "object" else noun
    )
    return target, count, text[m.end() :]


def parse(text: str) -> Query:
    """Recover the query an expression was written from (the inverse of :func:`write`).

    Raises:
        DataFormatError: the text is not in the SynRef grammar.
    """
    span = next((k for k, phrase in _SPAN_TEXT.items() if text.endswith(" " + phrase)), None)
    if span is not None:
        text = text[: -len(_SPAN_TEXT[span]) - 1]
    target, count, rest = _parse_noun(text)
    predicate: Motion | Event | Relation | None = None
    if rest.startswith(" that "):
        predicate = _CLAUSES.get(rest[len(" that ") :])
        if predicate is None:
            raise DataFormatError(f"unknown clause in {text!r}")
    elif rest:
        kind = next((k for k, phrase in _RELATION_TEXT.items() if rest.startswith(f" {phrase} ")), None)
        if kind is None:
            raise DataFormatError(f"cannot parse {rest!r} in {text!r}")
        anchor, anchor_count, tail = _parse_noun(rest[len(_RELATION_TEXT[kind]) + 2 :])
        if tail or anchor_count != 1:
            raise DataFormatError(f"bad relation anchor in {text!r}")
        predicate = Relation(kind, anchor)
    return Query(target, count, predicate, span)


# -- proposing proved expressions --------------------------------------------------------------
@dataclass(frozen=True)
class Expression:
    """A proved expression of one video.

    Attributes:
        query: its meaning; text: its English.
        referents: obj ids it refers to (sorted).
        tags: difficulty tags (``TAGS``), kind: ``query.kind``.
        span: ``[start, end)`` frames of a time-limited expression, else None.
    """

    query: Query
    text: str
    referents: tuple[int, ...]
    tags: tuple[str, ...]
    kind: str
    span: tuple[int, int] | None


_SUBSETS = sorted(
    (frozenset(c) for n in range(len(ATTRIBUTES) + 1) for c in combinations(ATTRIBUTES, n)),
    key=lambda s: (len(s), sorted(("shape", "colour", "size", "texture").index(a) for a in s)),
)


def _filter_of(attributes: dict[str, str], names: frozenset[str]) -> Filter:
    return Filter(**{a: attributes[a] for a in names})


class Proposer:
    """Finds proved expressions for one video and samples a varied set of them."""

    def __init__(self, checker: Checker, rng: np.random.Generator) -> None:
        self.ck = checker
        self.rng = rng
        self.walls = checker.obs.walls
        self.attrs = checker.obs.attributes
        self.present = [k for k, p in enumerate(checker.presence) if p is Truth.TRUE]

    def _minimal_filters(self, k: int, truth: list[Truth]) -> list[Filter]:
        """Smallest attribute sets of object ``k`` that leave out every other object the predicate
        could hold for (``truth`` not FALSE); empty if a look-alike makes it impossible."""
        if truth[k] is not Truth.TRUE:
            return []
        rivals = [
            j
            for j, t in enumerate(truth)
            if j != k and t is not Truth.FALSE and self.ck.presence[j] is not Truth.FALSE
        ]
        best: list[Filter] = []
        for names in _SUBSETS:
            if best and len(names) > best[0].specificity:
                break
            if all(any(self.attrs[j][a] != self.attrs[k][a] for a in names) for j in rivals):
                best.append(_filter_of(self.attrs[k], names))
        return best

    def _propose(self, k: int, predicate: Motion | Event | Relation | None) -> Expression | None:
        """A proved expression for object ``k`` alone with this predicate: the least specific
        appearance that leaves every rival out (ties broken at random), or None."""
        if isinstance(predicate, Event) and predicate.kind == "appears_last":
            if self.ck.first[k] < 1:
                return None
            filters = [
                _filter_of(self.attrs[k], names)
                for names in _SUBSETS
                if self.ck.prove(Query(_filter_of(self.attrs[k], names), 1, predicate)).referents == (k,)
            ]
        else:
            truth, _ = self.ck.truths(Query(Filter(), 1, predicate))
            filters = self._minimal_filters(k, truth)
        for target in self._order(filters):
            expr = self._finish(Query(target, 1, predicate))
            if expr is not None and expr.referents == (k,):
                return expr
        return None

    def _order(self, filters: list[Filter]) -> list[Filter]:
        """Least specific first, ties in random order."""
        if not filters:
            return []
        order = self.rng.permutation(len(filters))
        return sorted((filters[i] for i in order), key=lambda f: f.specificity)

    def _finish(self, query: Query) -> Expression | None:
        proof = self.ck.prove(query)
        if not proof.proved:
            return None
        tags = tuple(self.ck.tags(query, proof))
        return Expression(query, write(query, self.walls), proof.referents, tags, query.kind, proof.span)

    def candidates(self) -> list[Expression]:
        """Every proposal: per present object an appearance, motion, event, relation and time-limited
        expression where one is provable, and multi-object expressions."""
        out: list[Expression] = []
        ck = self.ck
        described: dict[int, Filter] = {}  # objects an appearance alone singles out
        for k in self.present:
            expr = self._propose(k, None)
            if expr is not None:
                out.append(expr)
                described[k] = expr.query.target
                full = _filter_of(self.attrs[k], frozenset(ATTRIBUTES))
                if full != expr.query.target:
                    extra = self._finish(Query(full))
                    if extra is not None:
                        out.append(extra)
        for k in self.present:
            prof = ck.profiles[k]
            motions: list[Motion] = []
            if prof.label is not None:
                direction = prof.direction if prof.label in _DIRECTED else None
                if prof.label != "linear" or direction is not None:
                    motions.append(Motion(prof.label, direction))
                if prof.label in ("move_stop", "wait_move") and direction is not None:
                    motions.append(Motion(prof.label, None))
            motions += [Motion("moving"), Motion("still")]
            events = [Event(kind) for kind in EVENTS]
            for predicate in (*motions, *events):
                expr = self._propose(k, predicate)
                if expr is not None:
                    out.append(expr)
            anchors = [a for a in described if a != k]
            for a in self.rng.permutation(anchors)[:2] if anchors else []:
                for kind in RELATIONS:
                    expr = self._propose(k, Relation(kind, described[int(a)]))
                    if expr is not None:
                        out.append(expr)
            if k in described:
                for span in SPANS:
                    expr = self._finish(Query(described[k], 1, None, span))
                    if expr is not None:
                        out.append(expr)
        out += self._multi()
        by_text: dict[str, Expression] = {}
        for e in out:  # one expression per text, the first proposed
            by_text.setdefault(e.text, e)
        return list(by_text.values())

    def _multi(self) -> list[Expression]:
        """Expressions for several objects: an appearance shared by 2+ objects, alone or with
        "that move" / "that stay still"; the least specific filter per referent set."""
        filters: set[Filter] = set()
        for k in self.present:
            for names in _SUBSETS:
                if 1 <= len(names) <= 2:
                    filters.add(_filter_of(self.attrs[k], names))
        by_refs: dict[tuple[tuple[int, ...], object], Expression] = {}
        for target in sorted(filters, key=lambda f: (f.specificity, repr(f))):
            matches = self.ck.matching(target)
            if len(matches) < 2:
                continue
            for predicate in (None, Motion("moving"), Motion("still")):
                truth, _ = self.ck.truths(Query(target, 2, predicate))
                n = sum(t is Truth.TRUE for t in truth)
                if not 2 <= n <= max(COUNT_WORDS):
                    continue
                expr = self._finish(Query(target, n, predicate))
                if expr is not None and (expr.referents, predicate) not in by_refs:
                    by_refs[(expr.referents, predicate)] = expr
        return list(by_refs.values())

    def sample(self, candidates: list[Expression], n: int, hard_bias: float) -> list[Expression]:
        """Up to ``n`` expressions: weighted by ``1 + hard_bias * (hard tags)``, spread over kinds,
        never two of the same kind for the same referents."""
        chosen: list[Expression] = []
        pool = list(candidates)
        per_kind: dict[str, int] = {}
        while pool and len(chosen) < n:
            weights = np.asarray(
                [
                    (1.0 + hard_bias * sum(t in HARD_TAGS for t in e.tags)) / (1.0 + per_kind.get(e.kind, 0))
                    for e in pool
                ]
            )
            pick = pool[int(self.rng.choice(len(pool), p=weights / weights.sum()))]
            chosen.append(pick)
            per_kind[pick.kind] = per_kind.get(pick.kind, 0) + 1
            pool = [e for e in pool if not (e.kind == pick.kind and e.referents == pick.referents)]
        return chosen


# -- captions and QA ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Caption:
    """A grounded caption: ``text`` in GCG markup, and the obj ids behind each ``<p> phrase </p> [SEG]``."""

    text: str
    phrases: tuple[str, ...]
    groups: tuple[tuple[int, ...], ...]

    @property
    def cleaned(self) -> str:
        """The caption without markup, as VideoGLaMM's evaluation cleans it."""
        return clean_caption(self.text)


def clean_caption(text: str) -> str:
    """Remove ``<...>`` tags and ``[SEG]``, collapse whitespace, strip ``'`` at both ends."""
    text = re.sub(r"<[^>]*>", "", text).replace("[SEG]", "")
    return re.sub(r"\s+", " ", text).strip().strip("'")


def _number(n: int) -> str:
    return {1: "one", **COUNT_WORDS}.get(n, str(n))


def caption(proposer: Proposer, max_phrases: int = 3) -> Caption:
    """Describe up to ``max_phrases`` groups of identical-looking present objects, each phrase a
    proved description of exactly that group, followed by what the checker found them doing."""
    ck, walls = proposer.ck, proposer.walls
    groups: dict[tuple[str, ...], list[int]] = {}
    for k in proposer.present:
        groups.setdefault(tuple(proposer.attrs[k][a] for a in ATTRIBUTES), []).append(k)
    chosen = sorted(groups.values())
    if len(chosen) > max_phrases:
        keep = sorted(proposer.rng.choice(len(chosen), size=max_phrases, replace=False).tolist())
        chosen = [chosen[i] for i in keep]
    sentences, phrases, members = [], [], []
    for group in chosen:
        k = group[0]
        rivals = [j for j, p in enumerate(ck.presence) if j not in group and p is not Truth.FALSE]
        target = next(
            (
                _filter_of(proposer.attrs[k], names)
                for names in _SUBSETS
                if all(any(proposer.attrs[j][a] != proposer.attrs[k][a] for a in names) for j in rivals)
            ),
            None,
        )
        if target is None or ck.prove(Query(target, len(group))).referents != tuple(group):
            continue
        if len(group) == 1:
            prof = ck.profiles[k]
            parts = []
            if prof.label is not None and (prof.label != "linear" or prof.direction):
                parts.append(
                    clause(
                        Motion(prof.label, prof.direction if prof.label in _DIRECTED else None), False, walls
                    )
                )
            for kind in ("enters", "emerges", "behind_wall", "leaves_returns", "leaves"):
                if ck.event_truth(Event(kind), k, ()) is Truth.TRUE:
                    parts.append(clause(Event(kind), False, walls))
            verb = english_list(parts) if parts else ("moves around" if "M" in prof.states else "is visible")
        else:
            crossing = any(ck.crosses_lookalike(j) for j in group)
            verb = "look alike and cross paths" if crossing else "look alike"
        phrase = noun_phrase(target, len(group))
        phrase = phrase[0].upper() + phrase[1:]
        sentences.append(f"{gcg_slot(phrase)} {verb}.")
        phrases.append(phrase)
        members.append(tuple(group))
    n = len(proposer.present)
    scene = f"A video of {_number(n)} object{'s' if n != 1 else ''}"
    scene += f" and {_number(walls)} wall{'s' if walls != 1 else ''}." if walls else "."
    return Caption(" ".join([scene, *sentences]), tuple(phrases), tuple(members))


def questions(
    expr: Expression, tube: tuple[int, int] | None, rng: np.random.Generator
) -> list[dict[str, object]]:
    """Templated QA pairs for one expression: referring segmentation always; box grounding and
    spatio-temporal grounding (with the tube's frames, ``[start, end)``) for one referent."""
    out: list[dict[str, object]] = [
        {
            "task": "segment",
            "question": str(rng.choice(SEGMENT_QUESTIONS)).format(exp=expr.text),
            "answer": "Sure, [SEG].",
        }
    ]
    if len(expr.referents) == 1:
        out.append(
            {
                "task": "box",
                "question": str(rng.choice(BOX_QUESTIONS)).format(exp=expr.text),
                "answer": "Sure, [BOX].",
            }
        )
        if tube is not None:
            answer = f"It is visible from frame {tube[0]} to frame {tube[1] - 1}: [BOX] [SEG]."
            out.append(
                {
                    "task": "tube",
                    "question": str(rng.choice(TUBE_QUESTIONS)).format(exp=expr.text),
                    "answer": answer,
                    "tube": list(tube),
                }
            )
    return out
