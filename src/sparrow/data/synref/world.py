"""The SynRef world: objects, their motion programs, static walls and the camera.

Coordinates: the *world* is a canvas at least as large as the view; the camera's integer offset
``camera[t] = (x, y)`` is the world position of the view's top-left corner at frame ``t``, so a world
point ``p`` is seen at screen position ``p - camera[t]``. ``x`` grows to the right, ``y`` downwards,
in pixels of the output frames. Object centres are float and quantised to 1/32 px (so that a scene
is the same on every machine); walls are integer half-open rectangles.

The sampler only *intends* things (a wall on an object's path, a look-alike crossing, a late entry);
what the video really shows is measured after rendering (``checker.Observation``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .presets import Knobs

SHAPES = ("circle", "square", "triangle", "star", "hexagon", "diamond")
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (222, 38, 38),
    "orange": (248, 142, 22),
    "yellow": (242, 222, 40),
    "green": (38, 178, 62),
    "cyan": (40, 206, 226),
    "blue": (52, 92, 238),
    "purple": (164, 72, 214),
    "white": (242, 242, 242),
}
SIZES: dict[str, float] = {"small": 7.0, "medium": 10.0, "large": 14.0}
"""Object radius (half the extent) in px at the reference size 128; areas differ by about 2x."""
TEXTURES = ("plain", "striped", "dotted")
ATTRIBUTES = ("size", "texture", "colour", "shape")
"""Appearance attributes, in the order language puts them ("the small striped red circle")."""

REFERENCE_SIZE = 128.0
_QUANTUM = 32.0
_COMPASS = tuple(
    (round(math.cos(math.radians(a)), 12), round(math.sin(math.radians(a)), 12)) for a in range(0, 360, 45)
)
_AXES = (_COMPASS[0], _COMPASS[2], _COMPASS[4], _COMPASS[6])


@dataclass(frozen=True, eq=False)
class ObjectSpec:
    """One object: its look, its depth and its trajectory.

    Attributes:
        obj_id: id within the video (0-based, MeViS style).
        shape, colour, size, texture: appearance (see ``SHAPES``, ``COLOURS``, ``SIZES``, ``TEXTURES``).
        radius: half the extent in px of the output frames.
        depth: drawing order; a larger depth is nearer the camera (walls are nearer than all objects).
        centers: float64 ``(T, 2)`` world ``(x, y)`` of the centre per frame.
        motion: the motion program the sampler used (intent; the checker re-derives what is seen).
        role: the sampler's intent for this object (``free``, ``hide``, ``enter``, ``cross`` ...).
    """

    obj_id: int
    shape: str
    colour: str
    size: str
    texture: str
    radius: float
    depth: int
    centers: np.ndarray
    motion: str
    role: str

    @property
    def attributes(self) -> dict[str, str]:
        """``{"size", "texture", "colour", "shape"}`` -> value."""
        return {"size": self.size, "texture": self.texture, "colour": self.colour, "shape": self.shape}


@dataclass(frozen=True)
class Wall:
    """A static opaque occluder, nearer the camera than every object: world rect ``[x0, x1) x [y0, y1)``."""

    x0: int
    y0: int
    x1: int
    y1: int
    shade: int


@dataclass(frozen=True, eq=False)
class Scene:
    """Everything needed to render one video.

    Attributes:
        height, width: view (frame) size in px.
        frames: number of frames ``T``.
        objects: the objects, indexed by ``obj_id``.
        walls: static occluders.
        camera: int64 ``(T, 2)`` world ``(x, y)`` of the view's top-left corner per frame.
        world_size: ``(H_w, W_w)`` of the world canvas (background and walls).
        background_seed: seed of the procedural background.
        clutter: number of background clutter strokes.
    """

    height: int
    width: int
    frames: int
    objects: tuple[ObjectSpec, ...]
    walls: tuple[Wall, ...]
    camera: np.ndarray
    world_size: tuple[int, int]
    background_seed: int
    clutter: int

    @property
    def scale(self) -> float:
        """Pixels of this scene per pixel at the reference size 128."""
        return min(self.height, self.width) / REFERENCE_SIZE


def _span(rng: np.random.Generator, low: float, high: float) -> int:
    """An integer in ``[low, high]``, collapsing an empty range to ``low``."""
    low, high = int(low), int(high)
    return low if high <= low else int(rng.integers(low, high + 1))


class _Sampler:
    """Builds one scene; every random draw goes through ``self.rng`` in a fixed order."""

    def __init__(self, rng: np.random.Generator, knobs: Knobs, frames: int, height: int, width: int) -> None:
        self.rng = rng
        self.k = knobs
        self.T = frames
        self.H = height
        self.W = width
        self.s = min(height, width) / REFERENCE_SIZE
        self.walls: list[Wall] = []
        self.placed: list[tuple[np.ndarray, float]] = []
        self.moving = tuple(m for m in knobs.motions if m != "still") or ("linear",)
        t = np.arange(frames, dtype=np.float64)
        self.cam = np.zeros((frames, 2), dtype=np.int64)
        if rng.random() < knobs.p_camera_pan:
            ux, uy = _COMPASS[int(rng.integers(8))]
            speed = rng.uniform(*knobs.pan_speed) * self.s
            raw = np.round(np.stack([t * speed * ux, t * speed * uy], axis=1)).astype(np.int64)
            self.cam = raw - raw.min(axis=0)
        self.world = (height + int(self.cam[:, 1].max()), width + int(self.cam[:, 0].max()))

    def pick(self, options: tuple[str, ...] | list[str]) -> str:
        return str(options[int(self.rng.integers(len(options)))])

    # -- motion programs ---------------------------------------------------------------------------
    def displacement(self, kind: str, speed: float) -> tuple[np.ndarray, np.ndarray, int]:
        """Displacement ``(T, 2)`` from frame 0, the unit direction of the first motion, and the frame
        of the motion's event (bounce, turn; 0 if none)."""
        T, rng = self.T, self.rng
        steps = np.zeros((max(T - 1, 0), 2))
        axial = kind in ("bounce", "zigzag")
        u = np.asarray((_AXES if axial else _COMPASS)[int(rng.integers(4 if axial else 8))])
        event = 0
        if kind == "linear":
            steps[:] = speed * u
        elif kind == "bounce":
            event = _span(rng, 3, T - 4)
            steps[:event] = speed * u
            steps[event:] = -speed * u
        elif kind == "circle":
            omega = math.radians(rng.uniform(20.0, 28.0)) * (1 if rng.random() < 0.5 else -1)
            radius = float(np.clip(1.25 * speed / abs(omega), 8.0 * self.s, 22.0 * self.s))
            ang = rng.uniform(0, 2 * math.pi) + omega * np.arange(T)
            pts = radius * np.stack([np.cos(ang), np.sin(ang)], axis=1)
            return pts - pts[0], u, 0
        elif kind == "zigzag":
            normal = np.asarray([-u[1], u[0]])
            leg = _span(rng, 3, 4)
            sign = 1.0 if rng.random() < 0.5 else -1.0
            for i in range(T - 1):
                if i and i % leg == 0:
                    sign = -sign
                steps[i] = speed * (u + sign * normal) / math.sqrt(2.0)
        elif kind == "move_stop":
            steps[: _span(rng, 3, T - 5)] = speed * u
        elif kind == "wait_move":
            steps[_span(rng, 3, T - 5) :] = speed * u
        elif kind == "stop_go":
            first = _span(rng, 3, max(3, T // 2 - 2))
            steps[:first] = speed * u
            steps[first + _span(rng, 3, 4) :] = speed * u
        elif kind == "turn":
            event = _span(rng, 4, T - 5)
            side = 1.0 if rng.random() < 0.5 else -1.0
            steps[:event] = speed * u
            steps[event:] = speed * np.asarray([-side * u[1], side * u[0]])
        elif kind != "still":
            raise ValueError(f"unknown motion {kind!r}")
        d = np.zeros((T, 2))
        d[1:] = np.cumsum(steps, axis=0)
        return d, u, event

    # -- placement ---------------------------------------------------------------------------------
    def _feasible(
        self, rel: np.ndarray, r: float, frames: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Range of the world anchor ``a`` (per axis) such that ``a + rel[t]`` keeps the object fully
        inside the view, with a 2 px margin, on ``frames`` (all frames by default)."""
        e = rel - self.cam
        if frames is not None:
            e = e[frames]
        m = r + 2.0
        return m - e.min(axis=0), np.asarray([self.W - m, self.H - m]) - e.max(axis=0)

    def _clear(self, pos0: np.ndarray, r: float) -> bool:
        """True if an object at world ``pos0`` on frame 0 overlaps no placed object and no wall."""
        for other, ro in self.placed:
            if np.hypot(*(other[0] - pos0)) < r + ro + 3.0 * self.s:
                return False
        return not any(w.x0 - r < pos0[0] < w.x1 + r and w.y0 - r < pos0[1] < w.y1 + r for w in self.walls)

    def place_free(self, d: np.ndarray, r: float, tries: int = 12) -> np.ndarray | None:
        """World path ``(T, 2)`` inside the view on every frame, clear of others on frame 0."""
        lo, hi = self._feasible(d, r)
        if np.any(lo > hi):
            return None
        for _ in range(tries):
            anchor = lo + self.rng.random(2) * (hi - lo)
            if self._clear(anchor, r):
                return anchor + d
        return None

    def place_at(
        self, d: np.ndarray, r: float, t: int, u: np.ndarray, screen: float, inside: np.ndarray
    ) -> np.ndarray | None:
        """World path whose centre is at screen coordinate ``screen`` on ``u``'s axis at frame ``t``
        (the other coordinate random), fully inside the view on the frames ``inside``."""
        axis = 0 if abs(u[0]) > 0.5 else 1
        rel = d - d[t]
        lo, hi = self._feasible(rel, r, inside)
        if lo[1 - axis] > hi[1 - axis]:
            return None
        anchor = np.zeros(2)
        anchor[axis] = screen + self.cam[t, axis]
        anchor[1 - axis] = lo[1 - axis] + self.rng.random() * (hi[1 - axis] - lo[1 - axis])
        if not lo[axis] - 1e-9 <= anchor[axis] <= hi[axis] + 1e-9:
            return None
        return anchor + rel

    def _behind(self, path: np.ndarray, r: float, wall: Wall) -> np.ndarray:
        """bool ``(T,)``: the object's box lies wholly inside the wall on each frame."""
        return (
            (path[:, 0] - r >= wall.x0)
            & (path[:, 0] + r <= wall.x1)
            & (path[:, 1] - r >= wall.y0)
            & (path[:, 1] + r <= wall.y1)
        )

    def wall_around(self, path: np.ndarray, frames: range, r: float, direction: np.ndarray) -> bool:
        """Add a wall hiding the object fully on ``frames``: the union of its boxes, lengthened across
        the motion so that it reads as a wall rather than a box. Refused (False) when the object, or
        an object already placed, would be wholly behind it on more than half of the frames."""
        pts = path[list(frames)]
        x0, y0 = np.floor(pts.min(axis=0) - r - 1.5).astype(int)
        x1, y1 = np.ceil(pts.max(axis=0) + r + 1.5).astype(int)
        a, b = _span(self.rng, 4 * self.s, 24 * self.s), _span(self.rng, 4 * self.s, 24 * self.s)
        if abs(direction[0]) >= abs(direction[1]):  # mostly horizontal motion: a tall wall
            y0, y1 = y0 - a, y1 + b
        else:
            x0, x1 = x0 - a, x1 + b
        wall = Wall(int(x0), int(y0), int(x1), int(y1), shade=_span(self.rng, 120, 160))
        for other, ro in [(path, r), *self.placed]:
            if self._behind(other, ro, wall).mean() > 0.5:
                return False
        self.walls.append(wall)
        return True

    def random_wall(self) -> None:
        """Add a wall at random (a few tries), unless every try hides a placed object half the time."""
        for _ in range(5):
            thick = _span(self.rng, 9 * self.s, 15 * self.s)
            length = _span(self.rng, 30 * self.s, 64 * self.s)
            w, h = (thick, length) if self.rng.random() < 0.5 else (length, thick)
            x0 = _span(self.rng, 0, max(0, self.world[1] - w))
            y0 = _span(self.rng, 0, max(0, self.world[0] - h))
            wall = Wall(x0, y0, x0 + w, y0 + h, shade=_span(self.rng, 120, 160))
            if all(self._behind(p, r, wall).mean() <= 0.5 for p, r in self.placed):
                self.walls.append(wall)
                return

    # -- roles: each returns (world path, motion) or None when this draw does not fit -----------------
    def free(self, r: float, v: float) -> tuple[np.ndarray, str] | None:
        kind = self.pick(self.k.motions)
        d, u, event = self.displacement(kind, v)
        if kind == "bounce" and 0 < event < self.T - 1:  # touch the frame edge at the reversal
            axis = 0 if abs(u[0]) > 0.5 else 1
            size = (self.W, self.H)[axis]
            screen = size - r - 2.0 if u[axis] > 0 else r + 2.0
            path = self.place_at(d, r, event, u, screen, np.arange(self.T))
        else:
            path = self.place_free(d, r)
        return None if path is None else (path, kind)

    def hide(self, r: float, v: float) -> tuple[np.ndarray, str] | None:
        """Passes behind a wall placed on its path, fully hidden for ``hidden_frames`` frames."""
        kind = self.pick(
            [m for m in ("linear", "move_stop", "stop_go", "turn") if m in self.moving] or self.moving
        )
        d, u, _ = self.displacement(kind, v)
        hidden = _span(self.rng, *self.k.hidden_frames)
        if hidden + 4 > self.T:
            return None
        start = _span(self.rng, 2, self.T - hidden - 2)
        path = self.place_free(d, r, tries=6)
        if path is None or not self.wall_around(path, range(start, start + hidden), r, u):
            return None
        return path, kind

    def emerge(self, r: float, v: float) -> tuple[np.ndarray, str] | None:
        """Starts behind a wall and comes out of it."""
        if self.T < 6:
            return None
        kind = "wait_move" if "wait_move" in self.moving and self.rng.random() < 0.5 else "linear"
        d, u, _ = self.displacement(kind, v)
        path = self.place_free(d, r, tries=6)
        if path is None or not self.wall_around(path, range(0, _span(self.rng, 2, 4)), r, u):
            return None
        return path, kind

    def edge(self, role: str, r: float, v: float) -> tuple[np.ndarray, str] | None:
        """Crosses the frame border: ``enter`` (late), ``exit`` (for good) or ``exit_return``."""
        T = self.T
        u = np.asarray(_AXES[int(self.rng.integers(4))])
        axis = 0 if abs(u[0]) > 0.5 else 1
        size = (self.W, self.H)[axis]
        ahead = u[axis] > 0
        if role == "exit_return":
            v *= 1.5  # a quick excursion
        t = np.arange(T, dtype=np.float64)[:, None]
        n_in = math.ceil((2 * r + 3.0) / v)  # frames from just outside to fully inside
        if role == "exit_return":  # out through an edge, reverse outside (1 or 3 frames), back in
            gap = _span(self.rng, 0, 1)
            t0 = _span(self.rng, n_in + gap, T - 1 - gap - math.ceil(n_in / 2))
            d = (t0 - np.abs(t - t0)) * v * u
            screen = size + r + v * (gap + 0.3) if ahead else -r - v * (gap + 0.3)
            inside, kind = np.asarray([0]), "bounce"
        elif role == "exit":  # fully inside on frame 0, fully outside from frame t0 on
            d = t * v * u
            t0 = _span(self.rng, max(T // 2, n_in), T - 2)
            screen = size + r + 0.4 * v if ahead else -r - 0.4 * v
            inside, kind = np.asarray([0]), "linear"
        else:  # enter: fully outside before frame t0, leading edge just inside on t0
            d = t * v * u
            t0 = _span(self.rng, 2, T - 1 - n_in)
            screen = -r + 0.6 * v if ahead else size + r - 0.6 * v
            inside, kind = np.asarray([T - 1]), "linear"
        if not 1 <= t0 <= T - 2:
            return None
        path = self.place_at(d, r, t0, u, screen, inside)
        return None if path is None else (path, kind)

    def cross(self, r: float, v: float, ref: np.ndarray, ref_kind: str) -> tuple[np.ndarray, str] | None:
        """Moves differently from its look-alike ``ref`` and passes over it at some frame."""
        kind = self.pick([m for m in self.k.motions if m != ref_kind] or self.k.motions)
        d, _, _ = self.displacement(kind, v)
        offset = (self.rng.random(2) - 0.5) * r
        for tc in self.rng.permutation(np.arange(min(2, self.T - 1), max(min(3, self.T), self.T - 2))):
            path = ref[tc] + offset + d - d[tc]
            lo, hi = self._feasible(path - path[0], r)
            behind = [self._behind(path, r, w).mean() > 0.5 for w in self.walls]
            if np.all(path[0] >= lo) and np.all(path[0] <= hi) and not any(behind):
                return path, kind
        return None


def _appearances(
    rng: np.random.Generator, knobs: Knobs, n_objects: int
) -> tuple[list[tuple[str, str, str, str]], list[int]]:
    """Attribute tuples ``(shape, colour, size, texture)`` and the look-alike group of each (-1: none)."""
    looks: list[tuple[str, str, str, str]] = []
    group: list[int] = []

    def fresh() -> tuple[str, str, str, str]:
        while True:
            look = (
                SHAPES[int(rng.integers(len(SHAPES)))],
                tuple(COLOURS)[int(rng.integers(len(COLOURS)))],
                tuple(SIZES)[int(rng.integers(len(SIZES)))],
                TEXTURES[int(rng.integers(len(TEXTURES)))],
            )
            if look not in looks:
                return look

    for g in range(_span(rng, *knobs.lookalike_groups)):
        members = _span(rng, *knobs.lookalike_members)
        if len(looks) + members > n_objects:
            break
        look = fresh()
        looks += [look] * members
        group += [g] * members
    while len(looks) < n_objects:
        looks.append(fresh())
        group.append(-1)
    return looks, group


def sample_scene(rng: np.random.Generator, knobs: Knobs, frames: int, height: int, width: int) -> Scene:
    """Draw one scene.

    Args:
        rng: the video's generator (seeded from the split seed, split name and video index).
        knobs: difficulty knobs.
        frames: ``T``; height, width: view size in px.

    Returns:
        The scene, with object trajectories in world coordinates (see the module docstring).
    """
    sp = _Sampler(rng, knobs, frames, height, width)
    n = _span(rng, *knobs.objects)
    looks, group = _appearances(rng, knobs, n)
    radius = [SIZES[look[2]] * sp.s for look in looks]
    speeds = [rng.uniform(*knobs.speed) * sp.s for _ in range(n)]
    cuts = np.cumsum([knobs.p_hide, knobs.p_exit_return, knobs.p_exit, knobs.p_late / 2, knobs.p_late / 2])
    roles = []
    for i in range(n):  # the first member of a look-alike group acts freely; later ones may cross it
        if group[i] >= 0 and group.index(group[i]) != i and rng.random() < knobs.p_cross:
            roles.append("cross")
        else:
            roles.append(
                ("hide", "exit_return", "exit", "enter", "emerge", "free")[
                    int(np.searchsorted(cuts, rng.random(), side="right"))
                ]
            )

    centers: list[np.ndarray] = [np.zeros((frames, 2))] * n
    motions = ["still"] * n
    staged = [i for i in range(n) if roles[i] not in ("free", "cross")]
    rest = [i for i in range(n) if roles[i] == "free"] + [i for i in range(n) if roles[i] == "cross"]
    for i in [*staged, -1, *rest]:
        if i < 0:  # random walls go in after the staged objects and before the free ones, which avoid them
            for _ in range(_span(rng, *knobs.walls_extra)):
                sp.random_wall()
            continue
        r, v, role = radius[i], speeds[i], roles[i]
        result = None
        for _attempt in range(6):
            if role == "hide":
                result = sp.hide(r, v)
            elif role == "emerge":
                result = sp.emerge(r, v)
            elif role in ("enter", "exit", "exit_return"):
                result = sp.edge(role, r, v)
            elif role == "cross":
                first = group.index(group[i])
                result = sp.cross(r, v, centers[first], motions[first])
            else:
                result = sp.free(r, v)
            if result is not None:
                break
        if result is None:  # fall back to a still object wherever it fits
            role = "free"
            path = sp.place_free(np.zeros((frames, 2)), r, tries=30)
            if path is None:
                lo, hi = sp._feasible(np.zeros((frames, 2)), r)
                path = np.tile((lo + hi) / 2, (frames, 1))
            result = (path, "still")
        roles[i] = role
        centers[i] = np.round(result[0] * _QUANTUM) / _QUANTUM
        motions[i] = result[1]
        sp.placed.append((centers[i], r))

    depth = rng.permutation(n)
    objects = tuple(
        ObjectSpec(
            obj_id=i,
            shape=looks[i][0],
            colour=looks[i][1],
            size=looks[i][2],
            texture=looks[i][3],
            radius=radius[i],
            depth=int(depth[i]),
            centers=centers[i],
            motion=motions[i],
            role=roles[i],
        )
        for i in range(n)
    )
    return Scene(
        height=height,
        width=width,
        frames=frames,
        objects=objects,
        walls=tuple(sp.walls),
        camera=sp.cam,
        world_size=sp.world,
        background_seed=int(rng.integers(2**31)),
        clutter=_span(rng, *knobs.clutter),
    )
