"""Filtration head: picks the proposal that matches the projected ``[BOX]`` query.

Each proposal is described by its decoder features, the sine embedding of its box and its
objectness logit, projected to ``hidden_dim`` and layer-normalised (``p``); the ``[BOX]`` query goes
through a 2-layer MLP and a layer norm (``q``). An MLP over ``[q; p; q * p]`` scores the pair, and
(optionally) a second MLP over the same input predicts a correction of the proposal box in logit
space, initialised at zero so the refined box starts as the proposal.

With ``fine_channels`` the proposal description also gets an MLP of bilinear RoI crops of the key
frame's fine feature maps (SAM2's two finer FPN levels: a 4x4 crop of the first, 2x2 of the second,
:data:`FINE_CROP_SIZES`). A class-agnostic proposer's decoder features hardly encode colour, shape or
pattern, which the expression names; the crops do (``experiments/matching_probe.py``).

With ``vocab_size`` the head also has a word decoder: a linear map from its query ``q`` to logits
over the LLM's vocabulary, trained to reconstruct the bag of the question's words (the
``query_words`` loss term, :func:`~sparrow.models.losses.bag_of_words_loss`). It makes the words
reach the very vector that is matched with the proposals: a from-scratch LLM otherwise lets its
``[BOX]`` state carry only part of the expression.

Boxes are normalised ``cxcywh`` in ``[0, 1]``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sparrow.models.proposer import MLP, ProposerOutput, box_sine_embedding, inverse_sigmoid

FINE_CROP_SIZES = (4, 2)
"""Side of the RoI crop taken of each fine feature map, finest first."""


def roi_crops(maps: Tensor, boxes: Tensor, size: int) -> Tensor:
    """Bilinear ``size x size`` crops of feature maps in boxes, flattened.

    Args:
        maps: ``(N, C, H, W)`` float feature maps (or images).
        boxes: ``(N, Q, 4)`` normalised ``cxcywh`` boxes on those maps.
        size: crop side; samples sit at the centres of a ``size x size`` grid over each box.

    Returns:
        ``(N, Q, C * size * size)`` in ``maps``' dtype (zeros padding outside the map).
    """
    n, num_q = boxes.shape[:2]
    steps = (torch.arange(size, device=boxes.device, dtype=maps.dtype) + 0.5) / size - 0.5
    cx, cy, w, h = boxes.to(maps.dtype).flatten(0, 1).unbind(-1)  # (N*Q,)
    gx = (cx[:, None] + steps * w[:, None]) * 2 - 1  # grid_sample's [-1, 1] frame
    gy = (cy[:, None] + steps * h[:, None]) * 2 - 1
    grid = torch.stack(torch.broadcast_tensors(gx[:, None, :], gy[:, :, None]), dim=-1)
    images = maps.repeat_interleave(num_q, dim=0)
    crops = F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return crops.reshape(n, num_q, -1)


def fine_crops(fine_maps: list[Tensor], boxes: Tensor) -> Tensor:
    """The crops that describe proposals with fine features: :func:`roi_crops` of each map at its
    :data:`FINE_CROP_SIZES` side, concatenated ``(N, Q, sum C_i * k_i * k_i)``, in ``boxes``' dtype.

    Args:
        fine_maps: ``(N, C_i, H_i, W_i)`` per map, finest first.
        boxes: ``(N, Q, 4)`` normalised ``cxcywh``.
    """
    crops = [roi_crops(m.to(boxes.dtype), boxes, k) for m, k in zip(fine_maps, FINE_CROP_SIZES, strict=True)]
    return torch.cat(crops, dim=-1)


@dataclass
class FiltrationOutput:
    """Scores of ``Q`` proposals against ``N`` ``[BOX]`` queries.

    Attributes:
        scores: ``(N, Q)`` logits that proposal ``q`` is the queried object.
        refined_boxes: ``(N, Q, 4)`` normalised ``cxcywh`` (proposal + predicted refinement).
        selected: ``(N,)`` int64 argmax of ``scores``.
        selected_boxes: ``(N, 4)`` refined box of the selected proposal.
        query: ``(N, hidden_dim)`` the projected, normalised query ``q`` the proposals were scored with.
    """

    scores: Tensor
    refined_boxes: Tensor
    selected: Tensor
    selected_boxes: Tensor
    query: Tensor


class FiltrationHead(nn.Module):
    """Scores proposals against a ``[BOX]`` query; see the module docstring.

    Args:
        query_dim: width of the projected ``[BOX]`` query.
        proposal_dim: width ``D`` of the proposer's query features.
        hidden_dim: width of the joint space (a multiple of 8).
        refine: predict a box refinement (otherwise refined boxes are the proposals).
        fine_channels: channels of the fine feature maps whose crops describe the proposals too
            (one per map, finest first, as many as :data:`FINE_CROP_SIZES`); empty: not used.
        vocab_size: size of the vocabulary the word decoder predicts (0: no word decoder).
    """

    def __init__(
        self,
        query_dim: int,
        proposal_dim: int,
        hidden_dim: int,
        refine: bool = True,
        fine_channels: tuple[int, ...] = (),
        vocab_size: int = 0,
    ) -> None:
        super().__init__()
        if hidden_dim % 8:
            raise ValueError(f"hidden_dim must be a multiple of 8, got {hidden_dim}")
        self.hidden_dim = hidden_dim
        self.query_proj = nn.Sequential(MLP(query_dim, hidden_dim, hidden_dim, 2), nn.LayerNorm(hidden_dim))
        self.feature_proj = nn.Linear(proposal_dim, hidden_dim)
        self.box_proj = MLP(hidden_dim, hidden_dim, hidden_dim, 2)
        self.objectness_proj = nn.Linear(1, hidden_dim)
        if fine_channels and len(fine_channels) != len(FINE_CROP_SIZES):
            raise ValueError(f"fine_channels needs {len(FINE_CROP_SIZES)} maps, got {fine_channels}")
        self.fine_channels = tuple(fine_channels)
        self.fine_dim = sum(c * k * k for c, k in zip(self.fine_channels, FINE_CROP_SIZES, strict=False))
        self.fine_proj = MLP(self.fine_dim, hidden_dim, hidden_dim, 2) if self.fine_dim else None
        self.proposal_norm = nn.LayerNorm(hidden_dim)
        self.score_head = MLP(3 * hidden_dim, hidden_dim, 1, 2)
        self.refine_head = MLP(3 * hidden_dim, hidden_dim, 4, 2) if refine else None
        self.word_decoder = nn.Linear(hidden_dim, vocab_size) if vocab_size else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """The head's own initialisation on top of its layers' (``module.apply`` resets those first):
        the refinement starts at zero, so refined boxes start as the proposals."""
        if self.refine_head is not None:
            self.refine_head.zero_last()

    def decode_words(self, query: Tensor) -> Tensor:
        """Logits ``(N, vocab_size)`` of the question's words from ``query`` (``FiltrationOutput.query``)."""
        if self.word_decoder is None:
            raise RuntimeError("this filtration head has no word decoder (built with vocab_size=0)")
        return self.word_decoder(query)

    def forward(
        self, box_query: Tensor, proposals: ProposerOutput, fine: Tensor | None = None
    ) -> FiltrationOutput:
        """Score ``proposals`` (``Q`` per image) against ``box_query`` ``(N, query_dim)``.

        ``fine``: with ``fine_channels``, the proposals' crops of their images' fine feature maps,
        ``(N, Q, fine_dim)`` from :func:`fine_crops` (ignored otherwise). The crops are an input, not
        computed here, so a frozen model's crops can be taken once and reused (stage 3 on a cache).
        """
        boxes = proposals.boxes
        n, num_q = boxes.shape[:2]
        if box_query.shape[0] != n:
            raise ValueError(f"box_query has {box_query.shape[0]} rows for {n} images of proposals")
        dtype = proposals.features.dtype
        query = self.query_proj(box_query.to(dtype))
        q = query[:, None].expand(-1, num_q, -1)
        p = (
            self.feature_proj(proposals.features)
            + self.box_proj(box_sine_embedding(boxes, self.hidden_dim).to(dtype))
            + self.objectness_proj(proposals.logits[..., None].to(dtype))
        )
        if self.fine_proj is not None:
            if fine is None or fine.shape != (n, num_q, self.fine_dim):
                raise ValueError(
                    f"the head reads fine-map crops (N, Q, F) = ({n}, {num_q}, {self.fine_dim}) of "
                    f"maps of {self.fine_channels} channels, got {None if fine is None else tuple(fine.shape)}"
                )
            p = p + self.fine_proj(fine.to(dtype))
        p = self.proposal_norm(p)
        joint = torch.cat([q, p, q * p], dim=-1)
        scores = self.score_head(joint)[..., 0]
        refined = boxes
        if self.refine_head is not None:
            refined = (inverse_sigmoid(boxes) + self.refine_head(joint)).sigmoid()
        selected = scores.argmax(dim=1)
        selected_boxes = refined[torch.arange(n, device=boxes.device), selected]
        return FiltrationOutput(
            scores=scores,
            refined_boxes=refined,
            selected=selected,
            selected_boxes=selected_boxes,
            query=query,
        )
