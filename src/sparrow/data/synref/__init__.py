"""SynRef: a procedural referring-video benchmark with exact, proved ground truth.

Pipeline per video (all seeded from the split seed, split name and video index):
:func:`~.world.sample_scene` -> :func:`~.render.render` -> :class:`~.checker.Observation` ->
:class:`~.language.Proposer` (expressions proved by :class:`~.checker.Checker`), captions and QA
(:mod:`.language`) -> :func:`~.writer.write_split` (MeViS, VidSTG and VideoGCG layouts).
See ``docs/synref.md``.
"""

from __future__ import annotations

from .checker import Checker, Observation, Proof, Truth
from .language import Expression, parse, write
from .presets import HARD, PRESETS, STANDARD, Knobs, preset
from .query import Event, Filter, Motion, Query, Relation
from .sample import GENERATOR_VERSION, GenerationRequest, VideoSample, generate_video, parse_size
from .writer import write_split

__all__ = [
    "GENERATOR_VERSION",
    "HARD",
    "PRESETS",
    "STANDARD",
    "Checker",
    "Event",
    "Expression",
    "Filter",
    "GenerationRequest",
    "Knobs",
    "Motion",
    "Observation",
    "Proof",
    "Query",
    "Relation",
    "Truth",
    "VideoSample",
    "generate_video",
    "parse",
    "parse_size",
    "preset",
    "write",
    "write_split",
]
