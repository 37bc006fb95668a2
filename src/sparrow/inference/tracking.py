"""Prompts on a key frame, the key-frame choice, and SAM2 propagation of every target over every frame.

Outputs leave this module at the ORIGINAL resolution: each frame's low-resolution logits are
upsampled bilinearly to ``(H, W)``, thresholded (``> mask_threshold``, 0 by default) and RLE-encoded at
once, so a tracked video costs one RLE per target and frame. A target is present on a frame when its
object score is ``> 0`` (SAM2's gate: the mask is empty otherwise, in both propagation modes) and the
mask is not empty. Boxes are the masks' tight ``xyxy`` boxes in pixels.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from sparrow.models import SparrowModel
from sparrow.models.sam2 import Sam2Features
from sparrow.structures.masks import RLE, empty_rle, rle_encode, rle_to_box

from .answer import Target
from .frames import FrameView, SamFrames
from .options import GroundingOptions


@dataclass(frozen=True)
class TargetPrompt:
    """SAM2 prompts of one target on one frame.

    Attributes:
        seg: ``(1, 1, prompt_dim)`` projected ``[SEG]``.
        box: ``(1, 4)`` normalised ``cxcywh`` box chosen by the filtration head, or ``None``.
        confidence: probability that the target is on that frame: sigmoid of the selected proposal's
            filtration score, or of SAM2's object score for the ``[SEG]`` prompt alone (no box).
    """

    seg: Tensor
    box: Tensor | None
    confidence: float


@dataclass(frozen=True)
class TargetFrame:
    """One target on one frame, at the original resolution.

    Attributes:
        rle: COCO RLE of the bool ``(H, W)`` mask.
        box: ``(4,)`` float32 ``xyxy`` pixel box of the mask (zeros when empty).
        score: sigmoid of SAM2's object score, in ``[0, 1]``.
        present: the object score is ``> 0`` and the mask is not empty.
        reprompted: the memory was restarted on this frame (``reprompt`` option).
    """

    rle: RLE
    box: np.ndarray
    score: float
    present: bool
    reprompted: bool = False


@dataclass(frozen=True)
class FrameResult:
    """Every target of a query on one frame (``targets[i]`` is the answer's ``i``-th target)."""

    frame_index: int
    targets: tuple[TargetFrame, ...]


def sam_features(model: SparrowModel, pixels: Tensor) -> Sam2Features:
    """SAM2 image features of preprocessed frames ``(N, 3, S, S)`` (moved to the model's device)."""
    device = model.sam2.pixel_mean.device
    return model.sam2.image_features(pixels.to(device))


def prompts_on(model: SparrowModel, targets: Sequence[Target], features: Sam2Features) -> list[TargetPrompt]:
    """Prompts of every target on ONE frame (``features`` of one frame).

    Targets with a ``[BOX]`` state (and the box prompt on) get the filtration head's box; the others
    the ``[SEG]`` prompt alone, scored by SAM2's object score.
    """
    out: list[TargetPrompt | None] = [None] * len(targets)
    use_box = model.config.box_prompt
    boxed = [i for i, t in enumerate(targets) if use_box and t.box_hidden is not None]
    plain = [i for i in range(len(targets)) if i not in boxed]
    if boxed:
        seg = torch.stack([targets[i].seg_hidden for i in boxed])
        box = torch.stack([targets[i].box_hidden for i in boxed])  # type: ignore[misc]
        prompts = model.prompts_from_hidden(seg, box, features)
        confidence = torch.sigmoid(prompts.filtration.scores.float().max(dim=1).values)  # type: ignore[union-attr]
        for row, i in enumerate(boxed):
            out[i] = TargetPrompt(
                prompts.seg_embeddings[row : row + 1],
                prompts.boxes[row : row + 1],  # type: ignore[index]
                float(confidence[row]),
            )
    if plain:
        seg = torch.stack([targets[i].seg_hidden for i in plain])
        prompts = model.prompts_from_hidden(seg, None, None)
        for row, i in enumerate(plain):
            embedding = prompts.seg_embeddings[row : row + 1]
            decoded = model.sam2.decode(features, seg_embeddings=embedding)
            out[i] = TargetPrompt(embedding, None, float(torch.sigmoid(decoded.object_score_logits.float())))
    return out  # type: ignore[return-value]


def key_frame_candidates(n: int, k: int) -> list[int]:
    """The frames ``key_frame: best`` chooses among in a clip of ``n``: ``min(k, n)`` spread
    uniformly, first and last included (rounded; duplicates dropped), in order."""
    return np.unique(np.linspace(0, n - 1, min(k, n)).round().astype(np.int64)).tolist()


def choose_key_frame(
    model: SparrowModel,
    frames: SamFrames,
    targets: Sequence[Target],
    options: GroundingOptions,
    cache: dict[int, Sam2Features] | None = None,
) -> tuple[int, list[TargetPrompt], Sam2Features]:
    """The key frame, the targets' prompts on it and its SAM2 features.

    ``options`` as a :class:`~sparrow.inference.session.GroundingSession` holds them (``key_frame``
    resolved against the model). ``first``: frame 0. ``best``: of ``key_frame_candidates`` frames
    spread uniformly (first and last included), the one with the highest mean target confidence
    (ties: the earliest). ``cache`` keeps the candidates' SAM2 features between queries on the same
    video.
    """
    n = len(frames)
    if options.key_frame == "first" or n == 1:
        candidates = [0]
    else:
        candidates = key_frame_candidates(n, options.key_frame_candidates)
    cache = {} if cache is None else cache
    missing = [t for t in candidates if t not in cache]
    for start in range(0, len(missing), options.encoder_chunk):
        chunk = missing[start : start + options.encoder_chunk]
        features = sam_features(model, torch.stack([frames[t] for t in chunk]))
        for row, t in enumerate(chunk):
            cache[t] = features.select(row)
    best: tuple[float, int, list[TargetPrompt]] | None = None
    for t in candidates:
        prompts = prompts_on(model, targets, cache[t])
        score = float(np.mean([p.confidence for p in prompts])) if prompts else 0.0
        if best is None or score > best[0]:
            best = (score, t, prompts)
    assert best is not None
    return best[1], best[2], cache[best[1]]


class SharedFeatures:
    """SAM2 features of ``frames`` by frame index, each frame encoded once while it is kept.

    Targets tracked in lock step ask for the same frame in turn: ``keep=1`` holds only the frame
    last asked for (memory of one frame, for any length of video); ``keep=None`` holds every frame
    asked for (for tracks that start on different frames and revisit them).
    """

    def __init__(self, model: SparrowModel, frames: SamFrames, keep: int | None = None) -> None:
        if keep is not None and keep < 1:
            raise ValueError(f"keep={keep}: keep at least one frame, or None for all")
        self.model = model
        self.frames = frames
        self.keep = keep
        self._cache: dict[int, Sam2Features] = {}

    def __call__(self, t: int) -> Sam2Features:
        if t not in self._cache:
            if self.keep is not None and len(self._cache) >= self.keep:
                del self._cache[next(iter(self._cache))]  # the oldest
            self._cache[t] = sam_features(self.model, self.frames[t][None])
        return self._cache[t]


def to_original(
    logits: Tensor, object_score: Tensor, size: tuple[int, int], threshold: float, reprompted: bool = False
) -> TargetFrame:
    """Low-res logits ``(1, 1, h, w)`` and object score ``(1, 1)`` -> a :class:`TargetFrame` at ``size``."""
    score = float(object_score.float().reshape(()))
    probability = float(torch.sigmoid(torch.tensor(score)))
    if score <= 0:
        return TargetFrame(empty_rle(size), np.zeros(4, np.float32), probability, False, reprompted)
    up = F.interpolate(logits.float(), size=size, mode="bilinear", align_corners=False)
    mask = (up[0, 0] > threshold).cpu().numpy()
    rle = rle_encode(mask)
    present = bool(mask.any())
    box = rle_to_box(rle) if present else np.zeros(4, np.float32)
    return TargetFrame(rle, box, probability, present, reprompted)


def pooled_embedding(embedding: Tensor, mask_logits: Tensor) -> Tensor | None:
    """Mean SAM2 embedding ``(C,)`` inside a mask: ``embedding`` ``(C, h, w)``, ``mask_logits`` ``(H', W')``."""
    weights = F.interpolate((mask_logits > 0).float()[None, None], size=embedding.shape[-2:], mode="area")[
        0, 0
    ]
    total = weights.sum()
    if float(total) <= 0:
        return None
    return (embedding.float() * weights).sum(dim=(1, 2)) / total


class _Reprompter:
    """Finds a lost target again (``reprompt`` option): see :class:`~.options.GroundingOptions`."""

    def __init__(
        self, model: SparrowModel, target: Target, appearance: Tensor | None, options: GroundingOptions
    ) -> None:
        self.model = model
        self.target = target
        self.appearance = appearance
        self.options = options

    def candidate(self, frame: Tensor) -> TargetPrompt | None:
        """Prompts on ``frame`` ``(3, S, S)`` if the target is found there, else ``None``."""
        features = sam_features(self.model, frame[None])
        prompt = prompts_on(self.model, [self.target], features)[0]
        decoded = self.model.sam2.decode(features, boxes=prompt.box, seg_embeddings=prompt.seg)
        if float(decoded.object_score_logits.float().reshape(())) <= 0:
            return None
        if prompt.confidence < self.options.reprompt_min_score:
            return None
        if self.appearance is not None:
            pooled = pooled_embedding(features.image_embeddings[0], decoded.mask_logits[0, 0])
            if pooled is None:
                return None
            similarity = float(F.cosine_similarity(pooled, self.appearance, dim=0))
            if similarity < self.options.reprompt_min_similarity:
                return None
        return prompt


@torch.inference_mode()
def propagate(
    model: SparrowModel,
    frames: SamFrames,
    key_frame: int,
    prompts: Sequence[TargetPrompt],
    targets: Sequence[Target],
    key_features: Sam2Features,
    size: tuple[int, int],
    options: GroundingOptions,
) -> Iterator[FrameResult]:
    """Track every target over every frame; yields one :class:`FrameResult` per frame in the order
    SAM2 visits them: the key frame, ``key+1 .. T-1``, then ``key-1 .. 0``.

    Without ``reprompt`` (or in ``framewise`` / ``chain`` mode) this is :meth:`SparrowModel.propagate`
    per target, all targets in lock step (in ``framewise`` / ``chain`` each frame is encoded once for
    all of them: :class:`SharedFeatures`). With ``reprompt`` each direction is tracked separately so a
    lost target's memory can restart from the frame where it is found again.
    """
    if not prompts:
        return
    if options.reprompt and model.config.propagation == "video":
        yield from _propagate_reprompting(
            model, frames, key_frame, prompts, targets, key_features, size, options
        )
        return
    thr = options.mask_threshold
    shared = None if model.config.propagation == "video" else SharedFeatures(model, frames, keep=1)
    runs = [
        model.propagate(frames, key_frame, box=p.box, seg_embedding=p.seg, features=shared) for p in prompts
    ]
    for steps in zip(*runs, strict=True):
        yield FrameResult(steps[0][0], tuple(to_original(lg, sc, size, thr) for _, lg, sc in steps))


def _propagate_reprompting(
    model: SparrowModel,
    frames: SamFrames,
    key_frame: int,
    prompts: Sequence[TargetPrompt],
    targets: Sequence[Target],
    key_features: Sam2Features,
    size: tuple[int, int],
    options: GroundingOptions,
) -> Iterator[FrameResult]:
    thr = options.mask_threshold
    finders = []
    for p, target in zip(prompts, targets, strict=True):  # how each target looks on the key frame
        key = model.sam2.decode(key_features, boxes=p.box, seg_embeddings=p.seg)
        present = float(key.object_score_logits.float().reshape(())) > 0
        appearance = (
            pooled_embedding(key_features.image_embeddings[0], key.mask_logits[0, 0]) if present else None
        )
        finders.append(_Reprompter(model, target, appearance, options))
    for order in (range(key_frame, len(frames)), range(key_frame, -1, -1)):
        runs = [model.propagate(FrameView(frames, order), 0, box=p.box, seg_embedding=p.seg) for p in prompts]
        first = 0
        if order.step < 0:  # the key frame was given by the forward pass
            for run in runs:
                next(run)
            first = 1
        lost = [0] * len(prompts)
        for pos in range(first, len(order)):
            t = order[pos]
            outputs = []
            for i in range(len(runs)):
                _, logits, score = next(runs[i])
                lost[i] = 0 if float(score.float().reshape(())) > 0 else lost[i] + 1
                restarted = False
                due = lost[i] >= options.reprompt_patience and lost[i] % options.reprompt_every == 0
                found = finders[i].candidate(frames[t]) if due else None
                if found is not None:
                    runs[i] = model.propagate(
                        FrameView(frames, order[pos:]), 0, box=found.box, seg_embedding=found.seg
                    )
                    _, logits, score = next(runs[i])
                    lost[i], restarted = 0, True
                outputs.append(to_original(logits, score, size, thr, restarted))
            yield FrameResult(t, tuple(outputs))
