"""``Masklet``: one object's masks, boxes and scores over a set of video frames (RLE-backed)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .boxes import masks_to_boxes
from .masks import RLE, rle_area, rle_decode, rle_encode_stack, rle_to_box


def runs_of_true(
    flags: Sequence[bool] | np.ndarray, positions: Sequence[int] | np.ndarray
) -> list[tuple[int, int]]:
    """Maximal runs of consecutive ``True`` positions in ``flags`` as inclusive ``(first, last)`` pairs.

    ``positions[i]`` is the frame number of ``flags[i]``; a run breaks where a flag is False (a gap
    in the frame numbers does not break it: it reports the spans of the frames that were looked at).
    """
    spans: list[tuple[int, int]] = []
    start: int | None = None
    prev: int | None = None
    for flag, pos in zip(flags, positions, strict=True):
        if flag and start is None:
            start = int(pos)
        if not flag and start is not None:
            spans.append((start, int(prev)))  # type: ignore[arg-type]
            start = None
        prev = int(pos)
    if start is not None:
        spans.append((start, int(prev)))  # type: ignore[arg-type]
    return spans


@dataclass(frozen=True)
class Masklet:
    """One object over ``T`` frames.

    Attributes:
        frame_indices: ``(T,)`` int64, the video's own frame numbers, strictly increasing.
        rles: ``T`` COCO RLEs of bool ``(H, W)`` masks at the original resolution (empty when absent).
        boxes: ``(T, 4)`` float32 ``xyxy`` boxes in absolute pixels; zeros where the mask is empty,
            unless a box is given explicitly (e.g. an amodal or predicted box).
        scores: ``(T,)`` float32 per-frame confidence in ``[0, 1]`` (1 for ground truth).
        size: ``(H, W)`` of the frames.
        object_id: an integer id of the object within its video (``-1`` if unknown).
        label: optional text (the phrase that refers to it).
    """

    frame_indices: np.ndarray
    rles: tuple[RLE, ...]
    boxes: np.ndarray
    scores: np.ndarray
    size: tuple[int, int]
    object_id: int = -1
    label: str | None = None
    _areas: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        fi = np.asarray(self.frame_indices, dtype=np.int64).reshape(-1)
        t = fi.shape[0]
        if t and np.any(np.diff(fi) <= 0):
            raise ValueError("Masklet.frame_indices must be strictly increasing")
        if len(self.rles) != t:
            raise ValueError(f"Masklet has {t} frame indices but {len(self.rles)} masks")
        boxes = np.asarray(self.boxes, dtype=np.float32).reshape(-1, 4) if t else np.zeros((0, 4), np.float32)
        scores = np.asarray(self.scores, dtype=np.float32).reshape(-1)
        if boxes.shape != (t, 4):
            raise ValueError(f"Masklet.boxes must have shape ({t}, 4), got {boxes.shape}")
        if scores.shape != (t,):
            raise ValueError(f"Masklet.scores must have shape ({t},), got {scores.shape}")
        size = (int(self.size[0]), int(self.size[1]))
        for r in self.rles:
            if tuple(r["size"]) != size:
                raise ValueError(f"Masklet mask size {tuple(r['size'])} differs from its size {size}")
        object.__setattr__(self, "frame_indices", fi)
        object.__setattr__(self, "rles", tuple(self.rles))
        object.__setattr__(self, "boxes", boxes)
        object.__setattr__(self, "scores", scores)
        object.__setattr__(self, "size", size)
        object.__setattr__(self, "_areas", np.asarray([rle_area(r) for r in self.rles], dtype=np.int64))

    # ----------------------------------------------------------------- construction
    @classmethod
    def from_masks(
        cls,
        masks: np.ndarray,
        frame_indices: Sequence[int] | np.ndarray | None = None,
        *,
        scores: np.ndarray | None = None,
        boxes: np.ndarray | None = None,
        object_id: int = -1,
        label: str | None = None,
    ) -> Masklet:
        """Build from bool masks ``(T, H, W)``; boxes default to the tight mask boxes."""
        m = np.asarray(masks, dtype=bool)
        if m.ndim != 3:
            raise ValueError(f"masks must have shape (T, H, W), got {m.shape}")
        t = m.shape[0]
        fi = np.arange(t) if frame_indices is None else np.asarray(frame_indices)
        return cls(
            frame_indices=fi,
            rles=tuple(rle_encode_stack(m)),
            boxes=masks_to_boxes(m) if boxes is None else boxes,
            scores=np.ones(t, np.float32) if scores is None else scores,
            size=(m.shape[1], m.shape[2]),
            object_id=object_id,
            label=label,
        )

    @classmethod
    def from_rles(
        cls,
        rles: Sequence[RLE],
        frame_indices: Sequence[int] | np.ndarray,
        size: tuple[int, int],
        *,
        scores: np.ndarray | None = None,
        boxes: np.ndarray | None = None,
        object_id: int = -1,
        label: str | None = None,
    ) -> Masklet:
        """Build from RLEs; boxes default to the tight RLE boxes, scores to 1."""
        t = len(rles)
        if boxes is None:
            boxes = np.stack([rle_to_box(r) for r in rles]) if t else np.zeros((0, 4), np.float32)
        return cls(
            frame_indices=np.asarray(frame_indices),
            rles=tuple(rles),
            boxes=boxes,
            scores=np.ones(t, np.float32) if scores is None else scores,
            size=size,
            object_id=object_id,
            label=label,
        )

    # ----------------------------------------------------------------- access
    def __len__(self) -> int:
        return int(self.frame_indices.shape[0])

    @property
    def areas(self) -> np.ndarray:
        """``(T,)`` int64 foreground pixel count per frame."""
        return self._areas

    @property
    def presence(self) -> np.ndarray:
        """``(T,)`` bool: the mask is non-empty on that frame."""
        return self._areas > 0

    def spans(self) -> list[tuple[int, int]]:
        """Inclusive ``(first, last)`` frame-number spans where the object is present."""
        return runs_of_true(self.presence, self.frame_indices)

    def mask(self, frame: int) -> np.ndarray:
        """Bool ``(H, W)`` mask at the video frame number ``frame``."""
        pos = np.searchsorted(self.frame_indices, frame)
        if pos >= len(self) or self.frame_indices[pos] != frame:
            raise KeyError(f"frame {frame} is not in this masklet")
        return rle_decode(self.rles[pos])

    def masks(self) -> np.ndarray:
        """All masks decoded, bool ``(T, H, W)``."""
        if not len(self):
            return np.zeros((0, *self.size), dtype=bool)
        return np.stack([rle_decode(r) for r in self.rles])

    def select(self, frames: Sequence[int] | np.ndarray) -> Masklet:
        """The masklet restricted to the given frame numbers (each must be present)."""
        wanted = np.asarray(frames, dtype=np.int64)
        pos = np.searchsorted(self.frame_indices, wanted)
        ok = pos < len(self)
        ok[ok] = self.frame_indices[pos[ok]] == wanted[ok]
        if not np.all(ok):
            raise KeyError(f"frames {wanted[~ok].tolist()} are not in this masklet")
        return self._take(pos)

    def _take(self, pos: np.ndarray) -> Masklet:
        return Masklet(
            frame_indices=self.frame_indices[pos],
            rles=tuple(self.rles[i] for i in pos),
            boxes=self.boxes[pos],
            scores=self.scores[pos],
            size=self.size,
            object_id=self.object_id,
            label=self.label,
        )

    def __getitem__(self, key: slice) -> Masklet:
        """Slice by position (``masklet[2:10]``), keeping the frame numbers."""
        if not isinstance(key, slice):
            raise TypeError("index a Masklet with a slice; use .mask(frame) for one frame")
        return self._take(np.arange(len(self))[key])

    # ----------------------------------------------------------------- (de)serialisation
    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict: RLE masks, ``xyxy`` boxes, scores, spans."""
        return {
            "object_id": int(self.object_id),
            "label": self.label,
            "size": list(self.size),
            "frame_indices": self.frame_indices.tolist(),
            "masks": [dict(r) for r in self.rles],
            "boxes_xyxy": np.round(self.boxes.astype(np.float64), 3).tolist(),
            "scores": np.round(self.scores.astype(np.float64), 6).tolist(),
            "spans": [list(s) for s in self.spans()],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Masklet:
        """Inverse of :meth:`to_dict`."""
        return cls(
            frame_indices=np.asarray(data["frame_indices"], dtype=np.int64),
            rles=tuple(data["masks"]),
            boxes=np.asarray(data["boxes_xyxy"], dtype=np.float32).reshape(-1, 4),
            scores=np.asarray(data["scores"], dtype=np.float32),
            size=(int(data["size"][0]), int(data["size"][1])),
            object_id=int(data.get("object_id", -1)),
            label=data.get("label"),
        )
