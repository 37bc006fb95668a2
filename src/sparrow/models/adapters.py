"""Projections between the vision side and the language side.

- :class:`VisionLanguageAdapter` (V->L): average-pools a token grid to a smaller square grid and
  maps it to the LLM width with a 2-layer GELU MLP (LLaVA's ``mlp2x_gelu``).
- :class:`LanguageVisionMLP` (L->V): maps the LLM hidden state of a ``[SEG]`` / ``[BOX]`` token
  to a prompt vector (PAPER 1.1: ``3072 -> 3072 -> 256`` for Phi-3-mini and SAM2).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


class VisionLanguageAdapter(nn.Module):
    """Token pooling + MLP.

    Args:
        in_dim: encoder width ``C``.
        out_dim: LLM width ``D``.
        pooled_tokens: tokens kept per grid (a square number ``p * p``).

    ``forward``: ``(N, g, g, C)`` -> ``(N, p * p, D)`` (row-major over the pooled grid).
    """

    def __init__(self, in_dim: int, out_dim: int, pooled_tokens: int) -> None:
        super().__init__()
        self.side = round(pooled_tokens**0.5)
        if self.side * self.side != pooled_tokens:
            raise ValueError(f"pooled_tokens must be a square number, got {pooled_tokens}")
        self.mlp = nn.Sequential(nn.Linear(in_dim, out_dim), nn.GELU(), nn.Linear(out_dim, out_dim))

    @property
    def tokens(self) -> int:
        return self.side * self.side

    def forward(self, grid: Tensor) -> Tensor:
        x = grid.permute(0, 3, 1, 2)
        if x.shape[-2:] != (self.side, self.side):
            x = F.adaptive_avg_pool2d(x, (self.side, self.side))
        return self.mlp(x.flatten(2).transpose(1, 2))


class LanguageVisionMLP(nn.Module):
    """``Linear(D, H) -> ReLU -> Linear(H, P)`` (``-> LayerNorm(P)`` with ``norm``): ``(..., D)`` -> ``(..., P)``."""

    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int, *, norm: bool = False) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Linear(in_dim, hidden_dim), nn.ReLU(), nn.Linear(hidden_dim, out_dim)]
        if norm:
            layers.append(nn.LayerNorm(out_dim))
        self.mlp = nn.Sequential(*layers)

    def forward(self, hidden: Tensor) -> Tensor:
        return self.mlp(hidden)
