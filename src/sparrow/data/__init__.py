"""Datasets: records, public benchmark formats, and the SynRef procedural benchmark (:mod:`.synref`)."""

from __future__ import annotations

from .records import (
    CaptionRecord,
    Conversation,
    DatasetSplit,
    ExpressionRecord,
    GroundingTarget,
    LabelMapRecord,
    TubeRecord,
    Turn,
    VideoRecord,
)

__all__ = [
    "CaptionRecord",
    "Conversation",
    "DatasetSplit",
    "ExpressionRecord",
    "GroundingTarget",
    "LabelMapRecord",
    "TubeRecord",
    "Turn",
    "VideoRecord",
]
