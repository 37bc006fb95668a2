"""The question bag: a bag-of-words encoding of the question added to the ``[BOX]`` state.

A from-scratch LLM loses the expression's words in its layers (docs/training.md, "What limits the
bundled model"), so with ``filtration.question_bag`` the ``[BOX]`` state that makes the filtration
query also gets this direct path from the words: the mean of a learned embedding of the question's
tokens, through a linear map to the LLM width. The map starts at zero, so a trained model given a
bag starts exactly as it was; the embedding starts at unit scale, so the map reads distinct words
from the first step.
"""

from __future__ import annotations

from torch import Tensor, nn


class QuestionBag(nn.Module):
    """Mean word embedding of each row's question tokens, mapped linearly to the LLM width.

    Args:
        vocab_size: the LLM's vocabulary size ``V``.
        width: the embedding width and the LLM width ``D``.

    ``forward(ids, words)``: ``ids`` ``(B, L)`` int64 token ids, ``words`` ``(B, L)`` bool (which
    positions are the question's words) -> ``(B, D)``; a row without words maps to the bias alone.
    """

    def __init__(self, vocab_size: int, width: int) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, width)  # N(0, 1)
        self.out = nn.Linear(width, width)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """The map starts at zero (the embedding keeps its own ``N(0, 1)`` start)."""
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, ids: Tensor, words: Tensor) -> Tensor:
        weights = words.to(self.embedding.weight.dtype)[..., None]
        mean = (self.embedding(ids) * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1)
        return self.out(mean)
