"""Render a :class:`~.world.Scene` to frames, a per-pixel owner map and per-object measurements.

Anti-aliasing: each object is drawn on a local window supersampled 4x (polygon vertices with
sub-pixel precision) and box-filtered down, which gives its coverage ``alpha`` in 1/16 steps; the
object's binary (amodal) mask is ``alpha >= 0.5``. Objects are composited far to near, walls last,
with integer arithmetic only (so that frames are byte-identical on every machine). The owner map
``labels`` says who is seen at each pixel; an object's *visible* mask is ``labels == obj_id + 1``.

Pixel convention: pixel ``(y, x)`` covers ``[x, x+1) x [y, y+1)``; boxes are ``xyxy`` float in that
pixel-extent convention (``x1`` is one past the last column), screen coordinates of the view.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from sparrow.structures.boxes import masks_to_boxes

from .world import COLOURS, ObjectSpec, Scene, Wall

SUPERSAMPLE = 4
_SHIFT = 4  # fixed-point fraction bits of polygon vertices given to cv2.fillPoly
WALL_LABEL = 255
"""Owner-map value of wall pixels (0 is the background, ``obj_id + 1`` an object)."""


def _regular(n: int, radius: float, phase_deg: float) -> list[tuple[float, float]]:
    return [
        (
            radius * math.cos(math.radians(phase_deg + 360.0 * i / n)),
            radius * math.sin(math.radians(phase_deg + 360.0 * i / n)),
        )
        for i in range(n)
    ]


def _star(points: int, outer: float, inner: float) -> list[tuple[float, float]]:
    return [
        (
            r * math.cos(math.radians(-90.0 + 180.0 * i / points)),
            r * math.sin(math.radians(-90.0 + 180.0 * i / points)),
        )
        for i, r in enumerate([outer, inner] * points)
    ]


def _template(points: list[tuple[float, float]], dy: float = 0.0) -> np.ndarray:
    return np.round(np.asarray([(x, y + dy) for x, y in points], dtype=np.float64), 6)


TEMPLATES: dict[str, np.ndarray] = {
    "circle": _template(_regular(48, 1.0, 0.0)),
    "square": _template([(-0.86, -0.86), (0.86, -0.86), (0.86, 0.86), (-0.86, 0.86)]),
    "triangle": _template(_regular(3, 1.14, -90.0), dy=0.285),
    "star": _template(_star(5, 1.14, 0.47), dy=0.1),
    "hexagon": _template(_regular(6, 1.0, 0.0)),
    "diamond": _template([(0.0, -1.1), (0.8, 0.0), (0.0, 1.1), (-0.8, 0.0)]),
}
"""Unit shapes (radius 1, centred, y down): polygon vertices scaled by the object's radius."""
_EXTENT = 1.2  # every template lies within [-1.2, 1.2]^2
_ROTATIONS = tuple(
    (round(math.cos(k * math.pi / 8), 9), round(math.sin(k * math.pi / 8), 9)) for k in range(8)
)


@dataclass(frozen=True, eq=False)
class Rendering:
    """What one scene looks like and where each object is.

    Attributes:
        frames: uint8 ``(T, H, W, 3)`` RGB.
        labels: uint8 ``(T, H, W)`` owner map: 0 background, ``obj_id + 1`` an object, 255 a wall.
        full_px: int64 ``(K, T)`` pixels of each object's whole binary mask (inside the view or not).
        amodal_px: int64 ``(K, T)`` pixels of that mask inside the view (hidden or not).
        wall_px: int64 ``(K, T)`` pixels of the in-view mask covered by a wall.
        amodal_box: float32 ``(K, T, 4)`` ``xyxy`` box of the whole mask, screen coordinates, not clipped.
    """

    frames: np.ndarray
    labels: np.ndarray
    full_px: np.ndarray
    amodal_px: np.ndarray
    wall_px: np.ndarray
    amodal_box: np.ndarray

    def visible_masks(self) -> np.ndarray:
        """Bool ``(K, T, H, W)``: where each object is seen (its owner-map pixels)."""
        k = self.full_px.shape[0]
        return self.labels[None] == (np.arange(k, dtype=np.uint8) + 1)[:, None, None, None]

    def visible_px(self) -> np.ndarray:
        """int64 ``(K, T)``: visible pixel count of each object per frame."""
        k = self.full_px.shape[0]
        counts = np.stack([np.bincount(lab.ravel(), minlength=256) for lab in self.labels], axis=1)
        return counts[1 : k + 1].astype(np.int64)


def _background(scene: Scene) -> np.ndarray:
    """uint8 ``(3, H_w, W_w)`` (planar RGB) procedural background of the whole world: a dim,
    desaturated base colour, grey low-frequency blotches, grain, a faint pattern and clutter strokes."""
    rng = np.random.default_rng(scene.background_seed)
    hh, ww = scene.world_size
    grey = int(rng.integers(62, 112))
    base = [grey + int(rng.integers(-14, 15)) for _ in range(3)]
    coarse = rng.integers(0, 256, size=(hh // 12 + 2, ww // 12 + 2), dtype=np.uint8)
    blotch = cv2.resize(coarse, (ww, hh), interpolation=cv2.INTER_LINEAR).astype(np.int16)
    shade = (blotch - 128) * int(rng.integers(10, 24)) // 128 + rng.integers(
        -5, 6, size=(hh, ww), dtype=np.int16
    )
    period = int(rng.integers(6, 13))
    yy, xx = np.mgrid[0:hh, 0:ww]
    pattern = int(rng.integers(3))
    if pattern == 1:
        shade += (((xx // period + yy // period) % 2) * 8 - 4).astype(np.int16)
    elif pattern == 2:
        shade += ((((xx + yy) // period) % 2) * 6 - 3).astype(np.int16)
    canvas = np.stack([np.clip(shade + b, 0, 255).astype(np.uint8) for b in base])
    s = min(scene.height, scene.width) / 128.0
    for _ in range(scene.clutter):
        p0 = (int(rng.integers(0, ww)), int(rng.integers(0, hh)))
        length = float(rng.integers(6, 30)) * s
        ang = int(rng.integers(16))
        dx, dy = _ROTATIONS[ang % 8]
        sign = 1 if ang < 8 else -1
        p1 = (int(p0[0] + sign * dx * length), int(p0[1] + sign * dy * length))
        offset = int(rng.integers(-30, 31))
        thickness = int(rng.integers(1, 3))
        for c in range(3):  # each plane of the planar canvas is contiguous: cv2 draws in place
            cv2.line(
                canvas[c],
                p0,
                p1,
                int(np.clip(base[c] + offset, 0, 255)),
                thickness=thickness,
                lineType=cv2.LINE_AA,
            )
    return canvas


def _wall_layer(
    walls: tuple[Wall, ...], world: tuple[int, int], scale: float
) -> tuple[np.ndarray, np.ndarray]:
    """Wall colours uint8 ``(3, H_w, W_w)`` (planar) and wall coverage bool ``(H_w, W_w)`` in world
    pixels: grey bricks with darker mortar and a dark rim."""
    hw, ww = world
    rgb = np.zeros((3, hw, ww), dtype=np.uint8)
    cover = np.zeros((hw, ww), dtype=bool)
    brick_h = max(3, round(5 * scale))
    brick_w = 2 * brick_h + 1
    for wall in walls:
        x0, y0 = max(wall.x0, 0), max(wall.y0, 0)
        x1, y1 = min(wall.x1, ww), min(wall.y1, hw)
        if x0 >= x1 or y0 >= y1:
            continue
        yy, xx = np.mgrid[y0:y1, x0:x1]
        row = (yy - wall.y0) // brick_h
        mortar = ((yy - wall.y0) % brick_h == 0) | (
            ((xx - wall.x0) + (row % 2) * (brick_w // 2)) % brick_w == 0
        )
        rim = (xx == wall.x0) | (xx == wall.x1 - 1) | (yy == wall.y0) | (yy == wall.y1 - 1)
        tone = np.where(rim, wall.shade - 60, np.where(mortar, wall.shade - 35, wall.shade))
        rgb[:, y0:y1, x0:x1] = np.stack([tone, tone, tone + 6]).astype(np.uint8)
        cover[y0:y1, x0:x1] = True
    return rgb, cover


def _coverage(polygons: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """uint8 ``(T, h, w)`` coverage (0..255) of one polygon per window.

    Args:
        polygons: float64 ``(T, V, 2)`` vertices in window pixel coordinates (pixel-extent convention).
        shape: ``(h, w)`` of every window.
    """
    T = polygons.shape[0]
    h, w = shape
    canvas = np.zeros((T * h * SUPERSAMPLE, w * SUPERSAMPLE), dtype=np.uint8)
    pts = polygons * SUPERSAMPLE - 0.5
    pts[:, :, 1] += (np.arange(T) * h * SUPERSAMPLE)[:, None]  # stack the windows vertically
    fixed = np.round(pts * (1 << _SHIFT)).astype(np.int32)
    cv2.fillPoly(canvas, list(fixed), 255, lineType=cv2.LINE_8, shift=_SHIFT)
    return cv2.resize(canvas, (w, T * h), interpolation=cv2.INTER_AREA).reshape(T, h, w)


def _fill_colour(obj: ObjectSpec, local_x: np.ndarray, local_y: np.ndarray) -> np.ndarray:
    """uint16 ``(3, T, h, w)`` (planar) fill colour of the object: its palette colour with darker
    stripes (at 45 degrees) or dots in the object's own frame (they move with it); the same for every
    object, so look-alikes are identical. Arithmetic only, no transcendentals.

    Args:
        local_x: float32 ``(T, 1, w)`` pixel-centre x relative to the object's centre.
        local_y: float32 ``(T, h, 1)`` pixel-centre y relative to the object's centre.
    """
    colour = COLOURS[obj.colour]
    shape = (local_x.shape[0], local_y.shape[1], local_x.shape[2])
    if obj.texture == "plain":
        return np.stack([np.full(shape, c, dtype=np.uint16) for c in colour])
    c, s = (np.float32(v) for v in _ROTATIONS[2 if obj.texture == "striped" else 0])  # 45 degree stripes
    p = local_x * c + local_y * s
    if obj.texture == "striped":
        period = np.float32(max(3.6, 0.5 * obj.radius))
        phase = p / period
        tri = np.abs(phase - np.floor(phase) - np.float32(0.5)) * np.float32(2.0)
        weight = np.clip((tri - np.float32(0.5)) * period + np.float32(0.5), 0.0, 1.0)
    else:
        q = local_y * c - local_x * s
        period = np.float32(max(5.2, 0.7 * obj.radius))
        du = p / period - np.round(p / period)
        dv = q / period - np.round(q / period)
        dist = np.sqrt(du * du + dv * dv) * period
        weight = np.clip(np.float32(0.24) * period - dist + np.float32(0.5), 0.0, 1.0)
    keep = np.float32(1.0) - np.float32(0.58) * weight  # dark marks at 42% of the colour
    return np.stack([np.round(np.float32(v) * keep).astype(np.uint16) for v in colour])


def render(scene: Scene) -> Rendering:
    """Render every frame of ``scene``.

    Objects are drawn one at a time, far to near, each on all frames at once: its ``T`` windows are
    cut from a padded planar frame stack, blended and put back (a window wholly outside the view is
    clamped into the padding, which is cropped away at the end).

    Returns:
        A :class:`Rendering` (frames, owner map and per-object measurements, see its attributes).
    """
    T, H, W = scene.frames, scene.height, scene.width
    k = len(scene.objects)
    wins = [2 * math.ceil(o.radius * _EXTENT + 2.0) + 2 for o in scene.objects]
    pad = max(wins, default=0) + 1
    background = _background(scene)
    wall_rgb, wall_cover = _wall_layer(scene.walls, scene.world_size, scene.scale)
    canvas = np.zeros((3, T, H + 2 * pad, W + 2 * pad), dtype=np.uint8)
    walls = np.zeros((T, H + 2 * pad, W + 2 * pad), dtype=bool)
    views = [(slice(int(cy), int(cy) + H), slice(int(cx), int(cx) + W)) for cx, cy in scene.camera]
    inner_view = (slice(pad, pad + H), slice(pad, pad + W))
    for t, (vy, vx) in enumerate(views):
        canvas[:, t, pad : pad + H, pad : pad + W] = background[:, vy, vx]
        walls[t, pad : pad + H, pad : pad + W] = wall_cover[vy, vx]
    labels = np.zeros(walls.shape, dtype=np.uint8)
    full_px = np.zeros((k, T), dtype=np.int64)
    amodal_px = np.zeros((k, T), dtype=np.int64)
    wall_px = np.zeros((k, T), dtype=np.int64)
    amodal_box = np.zeros((k, T, 4), dtype=np.float32)
    for obj in sorted(scene.objects, key=lambda o: o.depth):
        i, win = obj.obj_id, wins[obj.obj_id]
        span = np.arange(win)
        center = obj.centers - scene.camera  # (T, 2) screen
        origin = np.floor(center - win / 2.0).astype(np.int64)  # (T, 2) window top-left, screen
        rel = center - origin  # the centre inside its window
        template = TEMPLATES[obj.shape]
        alpha = _coverage(rel[:, None, :] + template[None] * obj.radius, (win, win))
        inner_r = max(obj.radius - 1.1 * scene.scale, 1.0)
        inner = np.minimum(_coverage(rel[:, None, :] + template[None] * inner_r, (win, win)), alpha)
        mask = alpha >= 128
        in_y = (origin[:, 1, None] + span >= 0) & (origin[:, 1, None] + span < H)  # (T, win)
        in_x = (origin[:, 0, None] + span >= 0) & (origin[:, 0, None] + span < W)
        in_view = mask & in_y[:, :, None] & in_x[:, None, :]
        # window top-left in the padded stack, clamped into the padding when wholly outside the view
        top = np.clip(origin[:, 1], -pad, H + pad - win) + pad
        left = np.clip(origin[:, 0], -pad, W + pad - win) + pad
        cuts = [(t, slice(top[t], top[t] + win), slice(left[t], left[t] + win)) for t in range(T)]
        full_px[i] = mask.sum(axis=(1, 2))
        amodal_px[i] = in_view.sum(axis=(1, 2))
        wall_px[i] = (in_view & np.stack([walls[c] for c in cuts])).sum(axis=(1, 2))
        amodal_box[i] = np.where(full_px[i, :, None] > 0, masks_to_boxes(mask) + np.tile(origin, 2), 0)
        # a dark rim (alpha - inner) and the textured fill (inner) over what is there, in uint16
        local_x = (span[None, None, :] + 0.5 - rel[:, None, None, 0]).astype(np.float32)
        local_y = (span[None, :, None] + 0.5 - rel[:, None, None, 1]).astype(np.float32)
        fill = _fill_colour(obj, local_x, local_y)
        a, b = alpha.astype(np.uint16), inner.astype(np.uint16)
        keep, edge = 255 - a, a - b
        dst = np.stack([canvas[(slice(None), *c)] for c in cuts], axis=1).astype(np.uint16)
        for ch, value in enumerate(COLOURS[obj.colour]):
            plane = dst[ch] * keep
            plane += edge * np.uint16(value * 35 // 100)
            plane += fill[ch] * b
            plane += 127
            plane //= 255
            dst[ch] = plane
        out = dst.astype(np.uint8)
        for t, c in enumerate(cuts):
            canvas[(slice(None), *c)] = out[:, t]
            labels[c][in_view[t]] = i + 1
    if scene.walls:
        for t, (vy, vx) in enumerate(views):
            here = walls[t, pad : pad + H, pad : pad + W]
            canvas[:, t, pad : pad + H, pad : pad + W][:, here] = wall_rgb[:, vy, vx][:, here]
            labels[t, pad : pad + H, pad : pad + W][here] = WALL_LABEL
    frames = np.ascontiguousarray(canvas[:, :, pad : pad + H, pad : pad + W].transpose(1, 2, 3, 0))
    return Rendering(
        frames,
        np.ascontiguousarray(labels[:, inner_view[0], inner_view[1]]),
        full_px,
        amodal_px,
        wall_px,
        amodal_box,
    )
