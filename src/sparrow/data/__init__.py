"""Datasets: records, public benchmark formats, and the SynRef procedural benchmark (:mod:`.synref`)."""

from __future__ import annotations

from .records import (  # noqa: E402  (formats engineer: the record types)
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
