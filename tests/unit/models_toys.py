"""Small inputs for the model tests: a hand-written corpus and clips of moving rectangles."""

from __future__ import annotations

import numpy as np
import torch

from sparrow.models import SparrowModel, load_config, train_tokenizer
from sparrow.models.config import SparrowConfig
from sparrow.models.tokenizer import SparrowTokenizer

CORPUS = [
    "Can you segment the red square in this video?",
    "Please segment the blue square that moves left.",
    "Describe the video in detail with grounded phrases.",
    "Sure, [SEG].",
    "Sure, [BOX] [SEG].",
    "Sure, <p> the red square </p> [SEG] moves right past <p> the blue square </p> [SEG].",
    "What colour is the square on the left? It is red.",
    "Where is the blue square? Answer with a box. Sure, [BOX].",
]
QUESTION = "Can you segment the red square in this video?"
BOX_QUESTION = "Where is the blue square? Answer with a box."
CAPTION_QUESTION = "Describe the video in detail with grounded phrases."
CAPTION = "Sure, <p> the red square </p> [SEG] moves right past <p> the blue square </p> [SEG]."


def tokenizer(config: SparrowConfig) -> SparrowTokenizer:
    return train_tokenizer(CORPUS * 4, config.llm.template, vocab_size=320)


def tiny(overrides: list[str] | None = None, seed: int = 0) -> SparrowModel:
    """A fresh tiny model (optionally with overrides) and its tokenizer."""
    config = load_config("tiny", overrides or [])
    torch.manual_seed(seed)
    return SparrowModel(config, tokenizer(config))


def clip(frames: int = 8, size: int = 96, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A noisy clip with a red square moving right and a blue square moving left.

    Returns frames ``(T, size, size, 3)`` uint8 and masks ``(2, T, size, size)`` bool (red, blue).
    """
    rng = np.random.default_rng(seed)
    video = rng.integers(0, 60, (frames, size, size, 3)).astype(np.uint8)
    masks = np.zeros((2, frames, size, size), dtype=bool)
    side = size // 4
    for t in range(frames):
        x = 4 + (size // 3) * t // max(frames - 1, 1)
        masks[0, t, side : 2 * side, x : x + side] = True
        xb = size - side - 4 - (size // 3) * t // max(frames - 1, 1)
        masks[1, t, 2 * side + 4 : 3 * side + 4, xb : xb + side] = True
    video[masks[0]] = (220, 30, 30)
    video[masks[1]] = (30, 30, 220)
    return video, masks
