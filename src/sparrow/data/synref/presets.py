"""SynRef difficulty knobs: one frozen dataclass; the presets ``standard`` and ``hard`` are instances.

Lengths and speeds are given in pixels at the reference frame size of 128 (the shorter side); the
world scales them by ``min(H, W) / 128``. Ranges are inclusive ``(low, high)`` pairs; probabilities
are per object (``p_*``) or per video (``p_camera_pan``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass, fields
from typing import Any

from sparrow.errors import ConfigError

MOTIONS = ("still", "linear", "bounce", "circle", "zigzag", "move_stop", "wait_move", "stop_go", "turn")
"""Motion programs the world can give an object (what the checker can name, see ``checker.py``)."""


@dataclass(frozen=True)
class Knobs:
    """Every free parameter of the SynRef world and of the expression sampler.

    Attributes:
        objects: objects per video.
        lookalike_groups: groups of identical objects (same shape, colour, size and texture).
        lookalike_members: objects per look-alike group.
        walls_extra: static occluders placed at random, on top of those the roles below need.
        p_hide: chance that an object passes behind a wall (a wall is placed on its path).
        hidden_frames: frames such an object stays fully hidden behind the wall.
        p_exit_return: chance that an object leaves the frame and comes back.
        p_exit: chance that an object leaves the frame for good.
        p_late: chance that an object first appears after frame 0 (enters or comes out from a wall).
        p_cross: chance that a look-alike group's members cross each other's path.
        speed: object speed in px/frame (at 128 px).
        motions: the motion programs to draw from.
        p_camera_pan: chance that the camera pans (the background, walls and objects shift).
        pan_speed: camera speed in px/frame (at 128 px).
        clutter: background clutter strokes.
        expressions: expressions emitted per video (fewer when fewer are provably unambiguous).
        hard_bias: extra sampling weight of an expression per hard tag it carries (0 = uniform).
        jpeg_quality: JPEG quality of the frames.
        fps: frame rate written to the annotations (VidSTG ``fps``).
    """

    objects: tuple[int, int] = (3, 6)
    lookalike_groups: tuple[int, int] = (0, 1)
    lookalike_members: tuple[int, int] = (2, 2)
    walls_extra: tuple[int, int] = (0, 1)
    p_hide: float = 0.15
    hidden_frames: tuple[int, int] = (3, 4)
    p_exit_return: float = 0.1
    p_exit: float = 0.05
    p_late: float = 0.1
    p_cross: float = 0.5
    speed: tuple[float, float] = (1.2, 2.4)
    motions: tuple[str, ...] = MOTIONS
    p_camera_pan: float = 0.0
    pan_speed: tuple[float, float] = (0.5, 1.0)
    clutter: tuple[int, int] = (4, 10)
    expressions: tuple[int, int] = (4, 7)
    hard_bias: float = 0.0
    jpeg_quality: int = 90
    fps: float = 5.0

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "motions":
                unknown = sorted(set(value) - set(MOTIONS))
                if not value or unknown:
                    raise ConfigError(
                        f"knob motions: unknown or empty {unknown or list(value)}",
                        fix=f"choose from {', '.join(MOTIONS)}",
                    )
            elif isinstance(value, tuple):
                if len(value) != 2 or value[0] > value[1] or value[0] < 0:
                    raise ConfigError(
                        f"knob {f.name}: {value} is not a range",
                        fix=f"give {f.name}=low,high with 0 <= low <= high",
                    )
            elif f.name.startswith("p_") and not 0.0 <= value <= 1.0:
                raise ConfigError(
                    f"knob {f.name}: probability {value} outside [0, 1]", fix="use a value in [0, 1]"
                )
        if self.objects[0] < 1:
            raise ConfigError(
                "knob objects: a video needs at least one object", fix="use objects=1,<n> or more"
            )
        if self.lookalike_members[0] < 2 and self.lookalike_groups[1] > 0:
            raise ConfigError("knob lookalike_members: a look-alike group has at least 2 members")
        if not 1 <= self.jpeg_quality <= 100:
            raise ConfigError(f"knob jpeg_quality: {self.jpeg_quality} outside 1..100")
        if self.fps <= 0:
            raise ConfigError(f"knob fps: {self.fps} must be positive")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (tuples become lists)."""
        return {f.name: list(v) if isinstance(v := getattr(self, f.name), tuple) else v for f in fields(self)}

    def with_overrides(self, items: Iterable[str]) -> Knobs:
        """A copy with ``KEY=VALUE`` overrides (ranges ``low,high``, motions ``a,b,c``).

        Raises:
            ConfigError: unknown key or unparsable value.
        """
        changes: dict[str, Any] = {}
        kinds = {f.name: getattr(self, f.name) for f in fields(self)}
        for item in items:
            key, sep, raw = item.partition("=")
            key = key.strip()
            if not sep or key not in kinds:
                raise ConfigError(
                    f"bad knob {item!r}", fix=f"use KEY=VALUE with KEY one of {', '.join(kinds)}"
                )
            current = kinds[key]
            try:
                if key == "motions":
                    value: Any = tuple(s.strip() for s in raw.split(",") if s.strip())
                elif isinstance(current, tuple):
                    parts = [p.strip() for p in raw.split(",")]
                    cast = type(current[0])
                    value = tuple(cast(float(p)) if cast is int else cast(p) for p in parts)
                    if len(value) == 1:
                        value = (value[0], value[0])
                elif isinstance(current, int):
                    value = int(raw)
                else:
                    value = float(raw)
            except ValueError as err:
                raise ConfigError(
                    f"bad knob value {item!r} ({err})", fix="ranges are low,high numbers"
                ) from err
            changes[key] = value
        return dataclasses.replace(self, **changes)


STANDARD = Knobs()
"""Moderate scenes: a few objects, at most one look-alike group, occasional occlusion."""

HARD = Knobs(
    objects=(4, 7),
    lookalike_groups=(2, 2),
    lookalike_members=(2, 3),
    walls_extra=(0, 1),
    p_hide=0.35,
    hidden_frames=(3, 6),
    p_exit_return=0.25,
    p_exit=0.05,
    p_late=0.3,
    p_cross=0.9,
    speed=(1.8, 3.2),
    p_camera_pan=0.5,
    pan_speed=(0.5, 1.2),
    clutter=(8, 16),
    expressions=(5, 8),
    hard_bias=1.5,
)
"""More look-alikes, longer occlusions, more re-appearances and late entries, faster motion, pans."""

PRESETS: dict[str, Knobs] = {"standard": STANDARD, "hard": HARD}


def preset(name: str) -> Knobs:
    """The knobs of a named preset.

    Raises:
        ConfigError: unknown preset name.
    """
    try:
        return PRESETS[name]
    except KeyError:
        raise ConfigError(
            f"unknown SynRef difficulty {name!r}", fix=f"use one of {', '.join(PRESETS)}"
        ) from None
