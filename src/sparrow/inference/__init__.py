"""Inference: parsing of grounded text, grounding sessions and the public pipeline.

``GroundingPipeline.from_pretrained(path or "default")`` loads a model; ``pipe(video, prompt)``
returns a :class:`~sparrow.structures.GroundingResult`; ``pipe.stream`` yields per-frame results;
``pipe.session(video)`` answers several prompts on one video with cached features.

The parser is imported eagerly (it is pure Python); everything that needs torch is imported on
first use, so ``sparrow.inference.parsing`` stays cheap to import.
"""

from __future__ import annotations

import importlib
from typing import Any

from .parsing import ParsedAnswer, ParsedGrounding, parse_grounded_text

_LAZY = {
    "GroundingOptions": ".options",
    "GroundingPipeline": ".pipeline",
    "resolve_device": ".pipeline",
    "resolve_dtype": ".pipeline",
    "resolve_model_path": ".model_path",
    "GroundingSession": ".session",
    "GroundingStream": ".session",
    "FrameResult": ".tracking",
    "TargetFrame": ".tracking",
}

__all__ = [
    "FrameResult",
    "GroundingOptions",
    "GroundingPipeline",
    "GroundingSession",
    "GroundingStream",
    "ParsedAnswer",
    "ParsedGrounding",
    "TargetFrame",
    "parse_grounded_text",
    "resolve_device",
    "resolve_dtype",
    "resolve_model_path",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module, __name__), name)
