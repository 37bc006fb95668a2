"""``GroundingResult``: the answer to one (video, prompt) query, with every referent grounded."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .masklet import Masklet


@dataclass(frozen=True)
class GroundedPhrase:
    """One grounded referent: the phrase in the answer and its masklet over the video.

    Attributes:
        text: the phrase (``"the red circle"``); for a plain ``[SEG]`` answer, the prompt's referent.
        masklet: masks, ``xyxy`` boxes and scores over the frames the model looked at.
        char_span: ``(start, end)`` character offsets of the phrase in the answer text, if known.
    """

    text: str
    masklet: Masklet
    char_span: tuple[int, int] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "char_span": list(self.char_span) if self.char_span else None,
            **self.masklet.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GroundedPhrase:
        span = data.get("char_span")
        return cls(
            text=data["text"], masklet=Masklet.from_dict(data), char_span=tuple(span) if span else None
        )


@dataclass(frozen=True)
class GroundingResult:
    """Text answer plus one masklet per grounded phrase.

    Attributes:
        text: the answer with grounding markup removed (``"Sure, it is the red circle."``).
        raw_text: the model's raw output, markup included (``<p> ... </p> [BOX] [SEG]``).
        phrases: the grounded phrases, in the order their ``[SEG]`` tokens appear.
        size: ``(H, W)`` of the original frames.
        frame_indices: ``(T,)`` the frame numbers the result covers.
        fps: frames per second of the source video, if known.
    """

    text: str
    phrases: tuple[GroundedPhrase, ...]
    size: tuple[int, int]
    frame_indices: np.ndarray
    raw_text: str = ""
    fps: float | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        fi = np.asarray(self.frame_indices, dtype=np.int64).reshape(-1)
        object.__setattr__(self, "frame_indices", fi)
        object.__setattr__(self, "phrases", tuple(self.phrases))
        for p in self.phrases:
            if tuple(p.masklet.size) != tuple(self.size):
                raise ValueError(
                    f"phrase {p.text!r} has masks of size {p.masklet.size}, result size is {self.size}"
                )

    @property
    def masklets(self) -> list[Masklet]:
        return [p.masklet for p in self.phrases]

    def boxes(self) -> np.ndarray:
        """``(P, T, 4)`` float32 ``xyxy`` boxes per phrase and frame (zeros where absent)."""
        if not self.phrases:
            return np.zeros((0, len(self.frame_indices), 4), np.float32)
        return np.stack([p.masklet.boxes for p in self.phrases])

    def presence(self) -> np.ndarray:
        """``(P, T)`` bool: phrase ``p`` is visible on frame ``t``."""
        if not self.phrases:
            return np.zeros((0, len(self.frame_indices)), bool)
        return np.stack([p.masklet.presence for p in self.phrases])

    def spans(self) -> list[list[tuple[int, int]]]:
        """Per phrase, the inclusive frame-number spans where it is present."""
        return [p.masklet.spans() for p in self.phrases]

    def to_dict(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "raw_text": self.raw_text,
            "size": list(self.size),
            "fps": self.fps,
            "frame_indices": self.frame_indices.tolist(),
            "phrases": [p.to_dict() for p in self.phrases],
            "meta": self.meta,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GroundingResult:
        return cls(
            text=data["text"],
            raw_text=data.get("raw_text", ""),
            size=(int(data["size"][0]), int(data["size"][1])),
            fps=data.get("fps"),
            frame_indices=np.asarray(data["frame_indices"], dtype=np.int64),
            phrases=tuple(GroundedPhrase.from_dict(p) for p in data["phrases"]),
            meta=dict(data.get("meta", {})),
        )

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    @classmethod
    def from_json(cls, text: str) -> GroundingResult:
        return cls.from_dict(json.loads(text))
