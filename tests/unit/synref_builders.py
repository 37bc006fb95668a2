"""Hand-built SynRef scenes for the checker / language tests: objects with explicit trajectories."""

from __future__ import annotations

import numpy as np

from sparrow.data.synref.checker import Checker, Observation
from sparrow.data.synref.render import render
from sparrow.data.synref.world import SIZES, ObjectSpec, Scene, Wall

T = 16
H = W = 128


def still(x: float, y: float, frames: int = T) -> np.ndarray:
    return np.tile([[x, y]], (frames, 1)).astype(np.float64)


def moving(x: float, y: float, vx: float, vy: float, frames: int = T) -> np.ndarray:
    t = np.arange(frames, dtype=np.float64)[:, None]
    return np.asarray([x, y]) + t * np.asarray([vx, vy])


def obj(
    i: int,
    centers: np.ndarray,
    shape: str = "circle",
    colour: str = "red",
    size: str = "medium",
    texture: str = "plain",
    depth: int | None = None,
) -> ObjectSpec:
    return ObjectSpec(
        i, shape, colour, size, texture, SIZES[size], i if depth is None else depth, centers, "test", "test"
    )


def scene(*objects: ObjectSpec, walls: tuple[Wall, ...] = (), frames: int = T) -> Scene:
    return Scene(H, W, frames, tuple(objects), walls, np.zeros((frames, 2), dtype=np.int64), (H, W), 7, 0)


def checker(*objects: ObjectSpec, walls: tuple[Wall, ...] = (), frames: int = T) -> Checker:
    sc = scene(*objects, walls=walls, frames=frames)
    return Checker(Observation.measure(sc, render(sc)))
