"""Filtration head: picks the proposal that matches the projected ``[BOX]`` query.

Each proposal is described by its decoder features, the sine embedding of its box and its
objectness logit, projected to ``hidden_dim`` and layer-normalised (``p``); the ``[BOX]`` query goes
through a 2-layer MLP and a layer norm (``q``). An MLP over ``[q; p; q * p]`` scores the pair, and
(optionally) a second MLP over the same input predicts a correction of the proposal box in logit
space, initialised at zero so the refined box starts as the proposal.

Boxes are normalised ``cxcywh`` in ``[0, 1]``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from sparrow.models.proposer import MLP, ProposerOutput, box_sine_embedding, inverse_sigmoid


@dataclass
class FiltrationOutput:
    """Scores of ``Q`` proposals against ``N`` ``[BOX]`` queries.

    Attributes:
        scores: ``(N, Q)`` logits that proposal ``q`` is the queried object.
        refined_boxes: ``(N, Q, 4)`` normalised ``cxcywh`` (proposal + predicted refinement).
        selected: ``(N,)`` int64 argmax of ``scores``.
        selected_boxes: ``(N, 4)`` refined box of the selected proposal.
    """

    scores: Tensor
    refined_boxes: Tensor
    selected: Tensor
    selected_boxes: Tensor


class FiltrationHead(nn.Module):
    """Scores proposals against a ``[BOX]`` query; see the module docstring.

    Args:
        query_dim: width of the projected ``[BOX]`` query.
        proposal_dim: width ``D`` of the proposer's query features.
        hidden_dim: width of the joint space (a multiple of 8).
        refine: predict a box refinement (otherwise refined boxes are the proposals).
    """

    def __init__(self, query_dim: int, proposal_dim: int, hidden_dim: int, refine: bool = True) -> None:
        super().__init__()
        if hidden_dim % 8:
            raise ValueError(f"hidden_dim must be a multiple of 8, got {hidden_dim}")
        self.hidden_dim = hidden_dim
        self.query_proj = nn.Sequential(MLP(query_dim, hidden_dim, hidden_dim, 2), nn.LayerNorm(hidden_dim))
        self.feature_proj = nn.Linear(proposal_dim, hidden_dim)
        self.box_proj = MLP(hidden_dim, hidden_dim, hidden_dim, 2)
        self.objectness_proj = nn.Linear(1, hidden_dim)
        self.proposal_norm = nn.LayerNorm(hidden_dim)
        self.score_head = MLP(3 * hidden_dim, hidden_dim, 1, 2)
        self.refine_head = MLP(3 * hidden_dim, hidden_dim, 4, 2) if refine else None
        if self.refine_head is not None:
            self.refine_head.zero_last()

    def forward(self, box_query: Tensor, proposals: ProposerOutput) -> FiltrationOutput:
        """Score ``proposals`` (``Q`` per image) against ``box_query`` ``(N, query_dim)``."""
        boxes = proposals.boxes
        n, num_q = boxes.shape[:2]
        if box_query.shape[0] != n:
            raise ValueError(f"box_query has {box_query.shape[0]} rows for {n} images of proposals")
        dtype = proposals.features.dtype
        q = self.query_proj(box_query.to(dtype))[:, None].expand(-1, num_q, -1)
        p = (
            self.feature_proj(proposals.features)
            + self.box_proj(box_sine_embedding(boxes, self.hidden_dim).to(dtype))
            + self.objectness_proj(proposals.logits[..., None].to(dtype))
        )
        p = self.proposal_norm(p)
        joint = torch.cat([q, p, q * p], dim=-1)
        scores = self.score_head(joint)[..., 0]
        refined = boxes
        if self.refine_head is not None:
            refined = (inverse_sigmoid(boxes) + self.refine_head(joint)).sigmoid()
        selected = scores.argmax(dim=1)
        selected_boxes = refined[torch.arange(n, device=boxes.device), selected]
        return FiltrationOutput(
            scores=scores, refined_boxes=refined, selected=selected, selected_boxes=selected_boxes
        )
