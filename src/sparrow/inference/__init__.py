"""Inference: parsing of grounded text, grounding sessions and the public pipeline."""

from __future__ import annotations

from .parsing import ParsedAnswer, ParsedGrounding, parse_grounded_text

__all__ = ["ParsedAnswer", "ParsedGrounding", "parse_grounded_text"]
