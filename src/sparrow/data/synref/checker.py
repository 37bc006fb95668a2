"""The expression prover: evaluates a :class:`~.query.Query` on what a rendered video shows.

Everything here is measured from the rendering -- per-frame visible pixel counts (the ground-truth
masks), in-view and wall-covered pixel counts of each object's amodal mask, amodal boxes -- and from
the objects' world trajectories; nothing is taken from the sampler's intent.

Three-valued logic. Each object gets, for each query, TRUE (the strictest reading of the words holds),
FALSE (even the most lenient reading fails) or UNCLEAR (anything in between: a barely visible object,
a motion half hidden behind a wall, a relation that holds on some frames only). A query is *proved*
when no object is UNCLEAR and exactly ``query.count`` objects are TRUE; only proved queries are ever
emitted, so a reader who takes any reasonable reading of the expression finds the same referents.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum

import numpy as np

from .query import DIRECTIONS, Event, Filter, Motion, Query, Relation
from .render import Rendering
from .world import Scene


class Truth(IntEnum):
    """Kleene truth values; ``min`` over a conjunction gives FALSE < UNCLEAR < TRUE."""

    FALSE = 0
    UNCLEAR = 1
    TRUE = 2


def _truth(true: bool, false: bool) -> Truth:
    return Truth.TRUE if true else Truth.FALSE if false else Truth.UNCLEAR


# Thresholds, in px at the reference size 128 (scaled with the frame) or as fractions / degrees.
STILL_SPEED = 0.3
MOVE_SPEED = 0.8
STRAIGHT_DEG = 6.0
EVENT_DEG = 60.0
PRESENT_FRACTION = 0.4
SEEN_FRACTION = 0.3
MIN_SEEN_FRAMES = 2
TAG_ORDER = ("occluded", "reappears", "crosses_lookalike", "late_appearance", "motion_only", "multi_object")


@dataclass(frozen=True, eq=False)
class Observation:
    """What a rendered video shows, per object ``k`` and frame ``t`` (all arrays ``(K, T, ...)``).

    Attributes:
        height, width: frame size in px; scale: px per px at the reference size 128.
        attributes: per object ``{"size", "texture", "colour", "shape"}``.
        radius: float ``(K,)`` object radius in px.
        visible_px: int ``(K, T)`` pixels of the visible (ground-truth) mask.
        full_px: int ``(K, T)`` pixels of the whole binary amodal mask.
        amodal_px: int ``(K, T)`` pixels of the amodal mask inside the view.
        wall_px: int ``(K, T)`` in-view amodal pixels covered by a wall.
        amodal_box: float ``(K, T, 4)`` ``xyxy`` screen box of the whole amodal mask.
        centers: float ``(K, T, 2)`` world ``(x, y)`` centres (the background's frame, so a camera pan
            does not make a still object move).
        walls: number of walls.
    """

    height: int
    width: int
    scale: float
    attributes: tuple[dict[str, str], ...]
    radius: np.ndarray
    visible_px: np.ndarray
    full_px: np.ndarray
    amodal_px: np.ndarray
    wall_px: np.ndarray
    amodal_box: np.ndarray
    centers: np.ndarray
    walls: int

    @classmethod
    def measure(cls, scene: Scene, rendering: Rendering, visible_px: np.ndarray | None = None) -> Observation:
        """Observation of a rendered scene; ``visible_px`` overrides the counts taken from the owner
        map (e.g. counts of masks decoded back from disk)."""
        return cls(
            height=scene.height,
            width=scene.width,
            scale=scene.scale,
            attributes=tuple(o.attributes for o in scene.objects),
            radius=np.asarray([o.radius for o in scene.objects], dtype=np.float64),
            visible_px=rendering.visible_px()
            if visible_px is None
            else np.asarray(visible_px, dtype=np.int64),
            full_px=rendering.full_px,
            amodal_px=rendering.amodal_px,
            wall_px=rendering.wall_px,
            amodal_box=rendering.amodal_box,
            centers=np.stack([o.centers for o in scene.objects])
            if scene.objects
            else np.zeros((0, scene.frames, 2)),
            walls=len(scene.walls),
        )

    @property
    def num_objects(self) -> int:
        return self.visible_px.shape[0]

    @property
    def num_frames(self) -> int:
        return self.visible_px.shape[1]


@dataclass(frozen=True)
class MotionProfile:
    """How an object is seen to move, from its world centre on the frames where it is visible.

    Attributes:
        label: ``still``, ``linear``, ``circle``, ``bounce``, ``turn``, ``zigzag``, ``move_stop``,
            ``wait_move``, ``stop_go``; None when the motion is not clearly one of them.
        direction: compass name of the first straight stretch (``DIRECTIONS``), when clear.
        states: one letter per step between consecutive visible frames: ``S`` still, ``M`` moving,
            ``?`` in between.
        headings: heading in degrees of each step (NaN unless moving).
    """

    label: str | None
    direction: str | None
    states: str
    headings: tuple[float, ...]


def _compass(dx: float, dy: float, tolerance: float = 10.0) -> str | None:
    angle = math.degrees(math.atan2(dy, dx)) % 360.0
    index = round(angle / 45.0) % 8
    off = abs((angle - 45.0 * index + 180.0) % 360.0 - 180.0)
    return DIRECTIONS[index] if off <= tolerance else None


def _turn(a: float, b: float) -> float:
    """Signed change of heading from ``a`` to ``b`` in degrees, in ``(-180, 180]``."""
    d = (b - a + 180.0) % 360.0 - 180.0
    return 180.0 if d == -180.0 else d


def _after(first: np.ndarray, then: np.ndarray) -> np.ndarray:
    """bool ``(T,)``: ``then[t]`` holds and ``first`` held on some frame before ``t``."""
    return then & (np.cumsum(first) - first > 0)


def _runs(states: str) -> list[tuple[str, int, int]]:
    """Runs of equal letters as ``(letter, start, stop)``."""
    out: list[tuple[str, int, int]] = []
    for i, c in enumerate(states):
        if out and out[-1][0] == c:
            out[-1] = (c, out[-1][1], i + 1)
        else:
            out.append((c, i, i + 1))
    return out


def motion_profile(centers: np.ndarray, visible: np.ndarray, scale: float) -> MotionProfile:
    """Classify a trajectory as seen.

    Args:
        centers: float ``(T, 2)`` world centre per frame.
        visible: bool ``(T,)`` frames where the object is seen.
        scale: px per px at the reference size 128.
    """
    frames = np.flatnonzero(visible)
    if frames.size < 2:
        return MotionProfile(None, None, "", ())
    gaps = np.diff(frames).astype(np.float64)
    velocity = np.diff(centers[frames], axis=0) / gaps[:, None]
    speed = np.hypot(velocity[:, 0], velocity[:, 1])
    states = "".join(
        "S" if v <= STILL_SPEED * scale else "M" if v >= MOVE_SPEED * scale else "?" for v in speed
    )
    headings = tuple(
        math.degrees(math.atan2(vy, vx)) if s == "M" else math.nan
        for (vx, vy), s in zip(velocity, states, strict=True)
    )
    if len(states) < 3 or "?" in states:
        return MotionProfile(None, None, states, headings)
    runs = _runs(states)

    def turns(start: int, stop: int) -> list[float]:
        return [_turn(headings[i], headings[i + 1]) for i in range(start, stop - 1)]

    def straight(start: int, stop: int) -> bool:
        return all(abs(a) <= STRAIGHT_DEG for a in turns(start, stop))

    def heading_of(start: int, stop: int) -> str | None:
        v = velocity[start:stop].mean(axis=0)
        return _compass(float(v[0]), float(v[1]))

    pattern = "".join(r[0] for r in runs)
    label: str | None = None
    direction: str | None = None
    if pattern == "S":
        label = "still"
    elif pattern == "M":
        angles = turns(0, len(states))
        direction = heading_of(0, len(states))
        if all(abs(a) <= STRAIGHT_DEG for a in angles):
            label = "linear"
        elif (
            all(10.0 <= abs(a) <= 50.0 for a in angles)
            and len({a > 0 for a in angles}) == 1
            and abs(sum(angles)) >= 180.0
        ):
            label, direction = "circle", None
        elif all(abs(a) <= STRAIGHT_DEG or abs(a) >= EVENT_DEG for a in angles):
            events = [a for a in angles if abs(a) >= EVENT_DEG]
            if all(abs(a) >= 150.0 for a in events):
                label = "bounce"
            elif all(EVENT_DEG <= abs(a) <= 120.0 for a in events):
                signs = [a > 0 for a in events]
                if len(events) == 1:
                    label = "turn"
                elif all(signs[i] != signs[i + 1] for i in range(len(signs) - 1)):
                    label = "zigzag"
            direction = None
    else:
        moving = [(a, b) for c, a, b in runs if c == "M"]
        if all(straight(a, b) for a, b in moving) and all(b - a >= 2 for c, a, b in runs if c == "S"):
            if pattern == "MS" and runs[0][2] >= 2:
                label, direction = "move_stop", heading_of(*moving[0])
            elif pattern == "SM" and runs[1][2] - runs[1][1] >= 2:
                label, direction = "wait_move", heading_of(*moving[0])
            elif pattern == "MSM":
                label, direction = "stop_go", heading_of(*moving[0])
    return MotionProfile(label, direction, states, headings)


@dataclass(frozen=True)
class Proof:
    """Outcome of checking a query.

    Attributes:
        referents: obj ids that satisfy it (TRUE), sorted.
        unclear: obj ids for which it is UNCLEAR.
        span: ``[start, end)`` frames named by a time-limited query, else None.
        proved: no UNCLEAR object, ``count`` referents, and a span when one is asked for.
    """

    referents: tuple[int, ...]
    unclear: tuple[int, ...]
    span: tuple[int, int] | None
    proved: bool


_TRACK_LABELS = {"still", "linear", "circle", "bounce", "turn", "zigzag", "move_stop", "wait_move", "stop_go"}


class Checker:
    """Evaluates queries on one :class:`Observation` (per-object facts are computed once)."""

    def __init__(self, obs: Observation) -> None:
        self.obs = obs
        self.T = obs.num_frames
        full = np.maximum(obs.full_px, 1)
        self.visible = obs.visible_px > 0
        self.vis_frac = obs.visible_px / full
        self.in_frac = obs.amodal_px / full
        self.outside = obs.amodal_px == 0
        self.hidden = ~self.visible & ~self.outside
        self.wall_hidden = self.hidden & (obs.wall_px == obs.amodal_px)
        self.touches_wall = obs.wall_px > 0
        self.first = [int(np.argmax(v)) if v.any() else -1 for v in self.visible]
        self.last = [self.T - 1 - int(np.argmax(v[::-1])) if v.any() else -1 for v in self.visible]
        seen = self.vis_frac >= SEEN_FRACTION
        self.clearly_seen = [int(np.argmax(v)) if v.any() else self.T for v in seen]
        self.profiles = [
            motion_profile(obs.centers[k], self.visible[k], obs.scale) for k in range(obs.num_objects)
        ]
        self.presence = [
            _truth(
                int((self.vis_frac[k] >= PRESENT_FRACTION).sum()) >= MIN_SEEN_FRAMES,
                not self.visible[k].any(),
            )
            for k in range(obs.num_objects)
        ]
        looks = [tuple(sorted(a.items())) for a in obs.attributes]
        self.lookalikes = [
            [j for j in range(len(looks)) if j != k and looks[j] == looks[k]] for k in range(len(looks))
        ]
        self.object_tags = [
            frozenset(
                tag
                for tag, hit in (
                    ("occluded", self.longest_hidden(k) >= 3),
                    ("reappears", self.reappears(k)),
                    ("crosses_lookalike", self.crosses_lookalike(k)),
                    ("late_appearance", self.first[k] > 0),
                )
                if hit
            )
            for k in range(obs.num_objects)
        ]
        self._cache: dict[Motion | Event | Relation, tuple[list[Truth], Proof | None]] = {}
        self._matches: dict[Filter, list[int]] = {}

    # -- per-object facts ------------------------------------------------------------------------
    def reappears(self, k: int) -> bool:
        """Seen, then not seen on some frame, then seen again."""
        f, l_ = self.first[k], self.last[k]
        return f >= 0 and not self.visible[k, f : l_ + 1].all()

    def leaves_and_returns(self, k: int) -> bool:
        """Seen, then wholly outside the view, then seen again."""
        f, l_ = self.first[k], self.last[k]
        return f >= 0 and bool(self.outside[k, f : l_ + 1].any())

    def longest_hidden(self, k: int) -> int:
        """Longest run of frames where the object is in the view but wholly hidden."""
        runs = [b - a for c, a, b in _runs("".join("h" if h else "." for h in self.hidden[k])) if c == "h"]
        return max(runs, default=0)

    def crosses_lookalike(self, k: int) -> bool:
        """Its amodal box overlaps a look-alike's on a frame where both are in the view."""
        box = self.obs.amodal_box
        for j in self.lookalikes[k]:
            both = (self.obs.amodal_px[k] > 0) & (self.obs.amodal_px[j] > 0)
            ix = np.minimum(box[k, :, 2], box[j, :, 2]) - np.maximum(box[k, :, 0], box[j, :, 0])
            iy = np.minimum(box[k, :, 3], box[j, :, 3]) - np.maximum(box[k, :, 1], box[j, :, 1])
            if np.any(both & (ix > 0) & (iy > 0)):
                return True
        return False

    # -- predicates ------------------------------------------------------------------------------
    def motion_truth(self, m: Motion, k: int) -> Truth:
        prof = self.profiles[k]
        label, states = prof.label, prof.states
        clean = "?" not in states and len(states) > 0
        kind = m.kind
        if kind == "still":
            return _truth(label == "still", clean and "S" not in states)
        if kind == "moving":
            return _truth(states.count("M") >= 2, label == "still")
        if kind == "linear":
            near = any(
                not math.isnan(h) and abs(_turn(h, 45.0 * DIRECTIONS.index(m.direction or "right"))) < 67.5
                for h in prof.headings
            )
            return _truth(label == "linear" and prof.direction == m.direction, clean and not near)
        if kind in ("move_stop", "wait_move", "stop_go"):
            pattern = "".join(c for c, _, _ in _runs(states))
            needed = {"move_stop": "MS", "wait_move": "SM", "stop_go": "MSM"}[kind]
            same_dir = m.direction is None or prof.direction == m.direction
            far_dir = (
                m.direction is not None
                and prof.direction is not None
                and abs(_turn(45.0 * DIRECTIONS.index(prof.direction), 45.0 * DIRECTIONS.index(m.direction)))
                > 67.5
            )
            return _truth(
                label == kind and same_dir, clean and (needed not in pattern or (label == kind and far_dir))
            )
        false_for = {
            "circle": _TRACK_LABELS - {"circle"},
            "bounce": _TRACK_LABELS - {"bounce"},
            "turn": {"still", "linear", "circle", "move_stop", "wait_move", "stop_go"},
            "zigzag": {"still", "linear", "circle", "move_stop", "wait_move", "stop_go", "bounce"},
        }[kind]
        return _truth(label == kind, label in false_for)

    def event_truth(self, e: Event, k: int, candidates: Sequence[int]) -> Truth:
        f, l_, T = self.first[k], self.last[k], self.T
        if f < 0:
            return Truth.FALSE
        kind = e.kind
        if kind == "behind_wall":
            return _truth(bool(self.wall_hidden[k, f + 1 :].any()), not self.touches_wall[k, f:].any())
        if kind == "emerges":
            return _truth(f >= 1 and bool(self.wall_hidden[k, :f].all()), not self.touches_wall[k].any())
        mostly_in = self.in_frac[k] >= 0.5
        went_out = _after(mostly_in, ~mostly_in)  # mostly in the view, later mostly out of it
        if kind == "leaves_returns":
            came_back = bool(went_out.any()) and bool(_after(went_out, self.visible[k]).any())
            return _truth(self.leaves_and_returns(k), not came_back)
        if kind == "leaves":
            gone = l_ < T - 1 and bool(self.outside[k, l_ + 1 :].all())
            return _truth(gone and not self.leaves_and_returns(k), not went_out.any())
        if kind == "enters":
            return _truth(f >= 1 and bool(self.outside[k, :f].all()), not _after(~mostly_in, mostly_in).any())
        if kind == "appears_late":
            return _truth(f >= 2, self.vis_frac[k, 0] >= SEEN_FRACTION)
        if kind == "appears_last":
            others = [j for j in candidates if j != k]
            if not others:
                return Truth.UNCLEAR
            later = all(f >= self.clearly_seen[j] + 2 for j in others)
            beaten = any(self.first[j] >= self.clearly_seen[k] + 2 for j in others)
            return _truth(f >= 1 and later, beaten)
        raise ValueError(f"unknown event {kind!r}")

    def relation_truth(self, r: Relation, k: int, anchor: int) -> Truth:
        if k == anchor:
            return Truth.FALSE
        both = self.visible[k] & self.visible[anchor]
        c = self.obs.centers
        axis, sign = {"left_of": (0, 1), "right_of": (0, -1), "above": (1, 1), "below": (1, -1)}[r.kind]
        d = sign * (c[anchor, :, axis] - c[k, :, axis])[both]
        margin = 0.5 * (self.obs.radius[k] + self.obs.radius[anchor])
        return _truth(d.size >= 3 and bool((d >= margin).all()), d.size == 0 or bool((d <= 0).all()))

    # -- queries ---------------------------------------------------------------------------------
    def matching(self, target: Filter) -> list[int]:
        """Objects whose appearance fits ``target`` and that may be present (presence not FALSE)."""
        if target not in self._matches:
            self._matches[target] = [
                k
                for k, a in enumerate(self.obs.attributes)
                if target.matches(a) and self.presence[k] is not Truth.FALSE
            ]
        return self._matches[target]

    def _per_object(self, pred: Motion | Event | Relation) -> tuple[list[Truth], Proof | None]:
        """Truth of a predicate for every object (cached), with the anchor's proof for a relation
        (everything UNCLEAR when the anchor is not proved unique)."""
        if pred not in self._cache:
            K = self.obs.num_objects
            anchor = None
            if isinstance(pred, Relation):
                anchor = self.prove(Query(pred.anchor))
                a = anchor.referents[0] if anchor.proved else -1
                per = [self.relation_truth(pred, k, a) if a >= 0 else Truth.UNCLEAR for k in range(K)]
            elif isinstance(pred, Motion):
                per = [self.motion_truth(pred, k) for k in range(K)]
            else:
                per = [self.event_truth(pred, k, ()) for k in range(K)]
            self._cache[pred] = (per, anchor)
        return self._cache[pred]

    def truths(self, query: Query) -> tuple[list[Truth], Proof | None]:
        """Per-object truth of ``query`` (ignoring ``count`` and ``span``) and, for a relation, the
        anchor's proof."""
        K = self.obs.num_objects
        candidates = self.matching(query.target)
        pred = query.predicate
        anchor_proof = None
        if pred is None:
            per = [Truth.TRUE] * K
        elif isinstance(pred, Event) and pred.kind == "appears_last":  # depends on the candidates
            per = [self.event_truth(pred, k, candidates) for k in range(K)]
        else:
            per, anchor_proof = self._per_object(pred)
        out = [Truth(min(self.presence[k], per[k])) if k in candidates else Truth.FALSE for k in range(K)]
        return out, anchor_proof

    def prove(self, query: Query) -> Proof:
        """Check ``query`` (see the module docstring)."""
        truths, anchor = self.truths(query)
        referents = tuple(k for k, t in enumerate(truths) if t is Truth.TRUE)
        unclear = tuple(k for k, t in enumerate(truths) if t is Truth.UNCLEAR)
        proved = not unclear and len(referents) == query.count and (anchor is None or anchor.proved)
        span = None
        if query.span is not None:
            span = self.span(query.span, referents[0]) if proved and len(referents) == 1 else None
            proved = proved and span is not None
        return Proof(referents, unclear, span, proved)

    def span(self, kind: str, k: int) -> tuple[int, int] | None:
        """``[start, end)`` of the frames a time limit names for object ``k``, or None when it is not
        one clear stretch (see ``docs/synref.md``)."""
        vis = self.visible[k]
        if kind in ("moving", "still"):
            c = self.obs.centers[k]
            speed = np.hypot(*np.diff(c, axis=0).T)
            s = self.obs.scale
            states = "".join(
                "S" if v <= STILL_SPEED * s else "M" if v >= MOVE_SPEED * s else "?" for v in speed
            )
            letter = "M" if kind == "moving" else "S"
            runs = [(a, b) for ch, a, b in _runs(states) if ch == letter]
            if "?" in states or len(runs) != 1 or runs[0] == (0, len(states)) or runs[0][1] - runs[0][0] < 2:
                return None
            start, end = runs[0][0], runs[0][1] + 1
            inside = vis[start:end]
            if not (vis[start] and vis[end - 1] and inside.mean() >= 0.6):
                return None
            return start, end
        f, l_ = self.first[k], self.last[k]
        if f < 0:
            return None
        if kind == "before_gone":  # from its first sight to its first disappearance
            unseen = np.flatnonzero(~vis[f:])
            if not unseen.size or unseen[0] < 2:
                return None
            return f, f + int(unseen[0])
        if kind == "after_return":  # from its only reappearance to its last sight
            gaps = [
                (a, b) for ch, a, b in _runs("".join("v" if v else "." for v in vis[f : l_ + 1])) if ch == "."
            ]
            if len(gaps) != 1 or l_ + 1 - (f + gaps[0][1]) < 2:
                return None
            return f + gaps[0][1], l_ + 1
        raise ValueError(f"unknown span {kind!r}")

    def tags(self, query: Query, proof: Proof) -> list[str]:
        """The difficulty tags of a proved query (see ``docs/synref.md`` for each definition)."""
        refs = proof.referents
        found = set().union(*(self.object_tags[k] for k in refs))
        if (
            isinstance(query.predicate, (Motion, Event))
            and any(self.lookalikes[k] for k in refs)
            and len(self.matching(query.target)) > query.count
        ):
            found.add("motion_only")
        if query.count > 1:
            found.add("multi_object")
        return [t for t in TAG_ORDER if t in found]
