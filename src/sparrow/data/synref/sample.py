"""One SynRef video end to end: seed -> scene -> rendering -> observation -> proved expressions,
caption, question-answer pairs and the boxes / tubes the box-grounding layouts need.

Seeding: everything about video ``index`` of a request comes from one SHA-256 digest of the
generator version, the split, the seed, the index, the frame count, the size and the knobs. The
video id is the digest's first 16 hex digits, so two splits that differ in any of these (seed or
split name included) never share a video.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from sparrow.errors import ConfigError
from sparrow.structures.boxes import clip_boxes, masks_to_boxes

from .checker import Checker, Observation
from .language import Caption, Expression, Proposer, caption, questions
from .presets import Knobs
from .render import Rendering, render
from .world import Scene, sample_scene

GENERATOR_VERSION = "synref-1.0"


def parse_size(text: str) -> tuple[int, int]:
    """``"HxW"`` -> ``(H, W)``.

    Raises:
        ConfigError: not two positive integers, or smaller than 32 px.
    """
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise ConfigError(f"bad size {text!r}", fix="give the frame size as HxW, e.g. 128x128") from None
    if min(h, w) < 32:
        raise ConfigError(f"size {text!r} is too small", fix="use at least 32x32")
    return h, w


@dataclass(frozen=True)
class GenerationRequest:
    """What ``sparrow data synref`` was asked for (everything that determines the bytes written)."""

    split: str
    videos: int
    frames: int
    size: tuple[int, int]
    seed: int
    difficulty: str
    knobs: Knobs

    def __post_init__(self) -> None:
        if self.videos < 1 or self.frames < 2:
            raise ConfigError(f"need at least 1 video of 2 frames, got {self.videos} of {self.frames}")
        if not self.split or any(c in self.split for c in "/\\"):
            raise ConfigError(
                f"bad split name {self.split!r}", fix="use a plain name such as train, val or test"
            )

    def to_dict(self) -> dict[str, object]:
        return {
            "generator": GENERATOR_VERSION,
            "split": self.split,
            "videos": self.videos,
            "frames": self.frames,
            "size": list(self.size),
            "seed": self.seed,
            "difficulty": self.difficulty,
            "knobs": self.knobs.to_dict(),
        }

    def _digest(self, index: int) -> bytes:
        key = dict(self.to_dict(), index=index)
        del key["videos"]  # video i is the same whatever the split's length
        return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).digest()

    def video_id(self, index: int) -> str:
        """16 hex digits naming video ``index``."""
        return self._digest(index).hex()[:16]

    def seeds(self, index: int) -> tuple[np.random.Generator, np.random.Generator]:
        """Independent generators for the world and for the language of video ``index``."""
        root = np.random.SeedSequence(int.from_bytes(self._digest(index)[:16], "big"))
        world, language = root.spawn(2)
        return np.random.default_rng(world), np.random.default_rng(language)


@dataclass(frozen=True, eq=False)
class VideoSample:
    """One generated video and everything known about it.

    Attributes:
        index, video_id: position in the split and name.
        scene, rendering, checker: the world, its pixels and the prover built on them.
        expressions: the emitted (proved) expressions.
        caption: the grounded caption.
        tubes: per expression, its ``[start, end)`` tube (:func:`expression_tube`) or None.
        qa: per expression, its question-answer pairs.
    """

    index: int
    video_id: str
    scene: Scene
    rendering: Rendering
    checker: Checker
    expressions: tuple[Expression, ...]
    caption: Caption
    tubes: tuple[tuple[int, int] | None, ...]
    qa: tuple[tuple[dict[str, object], ...], ...]

    @cached_property
    def masks(self) -> np.ndarray:
        """Bool ``(K, T, H, W)`` visible (ground-truth) mask of each object on each frame."""
        return self.rendering.visible_masks()

    def track_boxes(self) -> np.ndarray:
        """float32 ``(K, T, 4)`` ``xyxy`` box per frame for box grounding: the visible mask's box where
        the object is seen, else its amodal box clipped to the frame (behind a wall); zeros where it
        is wholly outside the view."""
        ck = self.checker
        k, t, h, w = self.masks.shape
        visible = masks_to_boxes(self.masks.reshape(k * t, h, w)).reshape(k, t, 4)
        clipped = clip_boxes(ck.obs.amodal_box, (h, w))
        boxes = np.where(ck.visible[..., None], visible, clipped)
        return np.where(ck.outside[..., None], 0, boxes).astype(np.float32)


def expression_tube(checker: Checker, expr: Expression) -> tuple[int, int] | None:
    """``[start, end)`` frames of a one-referent expression for spatio-temporal grounding: within
    its span (or the video), the run of in-view frames with the most visible frames, trimmed to its
    first and last visible frame; None for several referents or when nothing is seen."""
    if len(expr.referents) != 1:
        return None
    k = expr.referents[0]
    lo, hi = expr.span if expr.span is not None else (0, checker.T)
    best: tuple[int, int] | None = None
    best_seen = 0
    t = lo
    while t < hi:
        if checker.outside[k, t]:
            t += 1
            continue
        end = t
        while end < hi and not checker.outside[k, end]:
            end += 1
        seen = np.flatnonzero(checker.visible[k, t:end])
        if seen.size > best_seen:
            best, best_seen = (t + int(seen[0]), t + int(seen[-1]) + 1), seen.size
        t = end
    return best


def generate_video(request: GenerationRequest, index: int) -> VideoSample:
    """Generate video ``index`` of ``request`` (pure: the same arguments give the same sample)."""
    world_rng, language_rng = request.seeds(index)
    h, w = request.size
    knobs = request.knobs
    scene = sample_scene(world_rng, knobs, request.frames, h, w)
    rendering = render(scene)
    checker = Checker(Observation.measure(scene, rendering))
    proposer = Proposer(checker, language_rng)
    wanted = int(language_rng.integers(knobs.expressions[0], knobs.expressions[1] + 1))
    expressions = tuple(proposer.sample(proposer.candidates(), wanted, knobs.hard_bias))
    cap = caption(proposer)
    tubes = tuple(expression_tube(checker, e) for e in expressions)
    qa = tuple(tuple(questions(e, tube, language_rng)) for e, tube in zip(expressions, tubes, strict=True))
    return VideoSample(index, request.video_id(index), scene, rendering, checker, expressions, cap, tubes, qa)
