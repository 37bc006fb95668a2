"""The meaning of a SynRef expression: a small typed query that ``language`` writes as English and
``checker`` evaluates against what a video shows.

A :class:`Query` selects ``count`` objects: those whose appearance matches ``target`` and for which
``predicate`` (a motion, an event or a spatial relation to a uniquely described anchor) holds. An
optional ``span`` limits it in time ("... while it is moving"); it then names a frame range.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from .world import ATTRIBUTES

MOTIONS = (
    "still",
    "moving",
    "linear",
    "move_stop",
    "wait_move",
    "stop_go",
    "circle",
    "bounce",
    "turn",
    "zigzag",
)
EVENTS = ("behind_wall", "emerges", "leaves_returns", "leaves", "enters", "appears_late", "appears_last")
RELATIONS = ("left_of", "right_of", "above", "below")
SPANS = ("moving", "still", "before_gone", "after_return")
DIRECTIONS = (
    "right",
    "down and to the right",
    "down",
    "down and to the left",
    "left",
    "up and to the left",
    "up",
    "up and to the right",
)
"""Compass directions in image coordinates (y down): index ``i`` is the angle ``45 * i`` degrees."""
KINDS = ("appearance", "spatial", "motion", "event", "multi", "temporal")


@dataclass(frozen=True)
class Filter:
    """Appearance constraint: every attribute that is not None must match."""

    size: str | None = None
    texture: str | None = None
    colour: str | None = None
    shape: str | None = None

    def matches(self, attributes: Mapping[str, str]) -> bool:
        """True if an object with these ``{"size", "texture", "colour", "shape"}`` fits."""
        return all(v is None or attributes[a] == v for a, v in self.items())

    def items(self) -> list[tuple[str, str | None]]:
        return [(a, getattr(self, a)) for a in ATTRIBUTES]

    @property
    def specificity(self) -> int:
        """Number of attributes it names."""
        return sum(v is not None for _, v in self.items())


@dataclass(frozen=True)
class Motion:
    """How the object moves (``MOTIONS``); ``direction`` (``DIRECTIONS``) for straight motions."""

    kind: str
    direction: str | None = None


@dataclass(frozen=True)
class Event:
    """What happens to the object (``EVENTS``): walls, frame borders, order of appearance."""

    kind: str


@dataclass(frozen=True)
class Relation:
    """Where the object is relative to the one object that ``anchor`` describes (``RELATIONS``)."""

    kind: str
    anchor: Filter


Predicate = Motion | Event | Relation


@dataclass(frozen=True)
class Query:
    """A referring expression's meaning.

    Attributes:
        target: appearance of the referents.
        count: how many objects it refers to ("the two red objects" -> 2).
        predicate: what else must hold, or None for appearance alone.
        span: time limit (``SPANS``) naming the frames of a single referent, or None.
    """

    target: Filter
    count: int = 1
    predicate: Predicate | None = None
    span: str | None = None

    @property
    def kind(self) -> str:
        """``appearance``, ``spatial``, ``motion``, ``event``, ``multi`` or ``temporal``."""
        if self.count > 1:
            return "multi"
        if self.span is not None:
            return "temporal"
        if isinstance(self.predicate, Relation):
            return "spatial"
        if isinstance(self.predicate, Motion):
            return "motion"
        if isinstance(self.predicate, Event):
            return "event"
        return "appearance"
