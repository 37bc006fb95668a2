"""Class-agnostic DETR-style box proposer over SAM2 image embeddings.

A stack of DETR decoder layers (self-attention between queries, cross-attention to the flattened
image embedding with 2-D sine positional encodings, FFN; post-norm) turns ``Q`` learned queries into
boxes and objectness logits. Each query owns a learned content vector (its initial state, as in
Deformable DETR) and a learned anchor box (DAB-DETR style): its positional query is an MLP of the
anchor's sine embedding, and the box head predicts a correction of the anchor in logit space. Both
make a small decoder converge in tens of steps on a toy image instead of DETR's thousands.

With ``query_selection`` (two-stage Deformable DETR / DINO's mixed query selection) every cell of the
image embedding first predicts an objectness logit and a box relative to an anchor centred on the
cell; the ``Q`` cells of highest objectness lend their (detached) boxes to the queries as anchors,
while the content vectors stay learned. The cell predictions are trained with the same set loss
(:attr:`ProposerOutput.encoder`). Local, dense predictions converge far faster than learned anchors
when the image features are themselves trained from scratch.

Boxes are normalised ``cxcywh`` in ``[0, 1]`` of the frame.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn


def inverse_sigmoid(x: Tensor, eps: float = 1e-5) -> Tensor:
    """``logit(x)`` with ``x`` clamped to ``[eps, 1 - eps]``; same shape as ``x``."""
    x = x.clamp(eps, 1 - eps)
    return torch.log(x / (1 - x))


def _sine(values: Tensor, num_features: int, temperature: float = 10000.0) -> Tensor:
    """Sine / cosine features of scalars ``(...)`` (already scaled to radians) -> ``(..., num_features)``,
    interleaved ``sin, cos`` over geometric frequencies."""
    half = num_features // 2
    freq = temperature ** (torch.arange(half, device=values.device, dtype=torch.float32) / half)
    angles = values.float()[..., None] / freq
    return torch.stack((angles.sin(), angles.cos()), dim=-1).flatten(-2).to(values.dtype)


def sine_position_encoding_2d(
    height: int, width: int, dim: int, *, device: torch.device | None = None
) -> Tensor:
    """DETR's 2-D sine positional encoding of an ``height x width`` grid -> ``(height * width, dim)`` float32.

    The first ``dim / 2`` features encode the row, the rest the column, each from the cell centre
    normalised to ``[0, 2 pi]``. Rows are in raster order (row-major), matching ``x.flatten(2)``.
    """
    if dim % 4:
        raise ValueError(f"dim must be a multiple of 4, got {dim}")
    ys = (torch.arange(height, device=device, dtype=torch.float32) + 0.5) / height * 2 * math.pi
    xs = (torch.arange(width, device=device, dtype=torch.float32) + 0.5) / width * 2 * math.pi
    pos_y = _sine(ys, dim // 2)[:, None, :].expand(height, width, dim // 2)
    pos_x = _sine(xs, dim // 2)[None, :, :].expand(height, width, dim // 2)
    return torch.cat([pos_y, pos_x], dim=-1).reshape(height * width, dim)


def box_sine_embedding(boxes: Tensor, dim: int) -> Tensor:
    """Sine embedding of normalised boxes ``(..., 4)`` -> ``(..., dim)``, ``dim / 4`` features per coordinate."""
    if dim % 8:
        raise ValueError(f"dim must be a multiple of 8, got {dim}")
    return _sine(boxes * 2 * math.pi, dim // 4).flatten(-2)


class MLP(nn.Module):
    """``num_layers`` linear layers with ReLU between them: ``(..., in_dim)`` -> ``(..., out_dim)``."""

    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int, num_layers: int) -> None:
        super().__init__()
        dims = [in_dim] + [hidden_dim] * (num_layers - 1) + [out_dim]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in itertools.pairwise(dims))

    def forward(self, x: Tensor) -> Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = torch.relu(x)
        return x

    def zero_last(self) -> None:
        """Start the MLP at output 0 (for residual heads)."""
        nn.init.zeros_(self.layers[-1].weight)
        nn.init.zeros_(self.layers[-1].bias)


@dataclass
class ProposerOutput:
    """Proposals for ``N`` images.

    Attributes:
        boxes: ``(N, Q, 4)`` normalised ``cxcywh`` in ``[0, 1]``.
        logits: ``(N, Q)`` class-agnostic objectness logits.
        features: ``(N, Q, D)`` decoder features of the queries.
        encoder: with query selection, the per-cell proposals ``(N, h*w, ...)`` the queries were
            selected from (trained with the same set loss), else ``None``.
    """

    boxes: Tensor
    logits: Tensor
    features: Tensor
    encoder: ProposerOutput | None = None

    def top_k(self, k: int) -> ProposerOutput:
        """The ``min(k, Q)`` proposals of highest objectness per image, best first."""
        k = min(k, self.logits.shape[1])
        index = self.logits.topk(k, dim=1).indices
        return ProposerOutput(
            boxes=self.boxes.gather(1, index[..., None].expand(-1, -1, 4)),
            logits=self.logits.gather(1, index),
            features=self.features.gather(1, index[..., None].expand(-1, -1, self.features.shape[-1])),
        )


class _DecoderLayer(nn.Module):
    """DETR decoder layer (post-norm): self-attention, cross-attention to the image, FFN."""

    def __init__(self, dim: int, num_heads: int, ffn_dim: int, dropout: float) -> None:
        super().__init__()
        self.self_attn = nn.MultiheadAttention(dim, num_heads, dropout=dropout, batch_first=True)
        self.cross_attn = nn.MultiheadAttention(dim, num_heads, dropout=dropout, batch_first=True)
        self.ffn = nn.Sequential(
            nn.Linear(dim, ffn_dim), nn.ReLU(), nn.Dropout(dropout), nn.Linear(ffn_dim, dim)
        )
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.norm3 = nn.LayerNorm(dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, tgt: Tensor, query_pos: Tensor, memory: Tensor, memory_pos: Tensor) -> Tensor:
        q = tgt + query_pos
        tgt = self.norm1(tgt + self.dropout(self.self_attn(q, q, tgt, need_weights=False)[0]))
        attended = self.cross_attn(tgt + query_pos, memory + memory_pos, memory, need_weights=False)[0]
        tgt = self.norm2(tgt + self.dropout(attended))
        return self.norm3(tgt + self.dropout(self.ffn(tgt)))


class Proposer(nn.Module):
    """Class-agnostic DETR-style proposer over SAM2 image embeddings.

    Args:
        feature_dim: channels ``C`` of the image embeddings.
        hidden_dim: decoder width ``D`` (a multiple of 8 and of ``num_heads``).
        num_queries: ``Q``, proposals per image.
        num_layers: decoder layers.
        num_heads: attention heads.
        dropout: dropout inside the decoder layers (0 by default).
        prior_prob: initial objectness probability (focal-loss prior).
        query_selection: anchors from the top-``Q`` cell proposals (module docstring) instead of
            learned anchors; needs ``h * w >= Q``.
        cell_box_size: side of the cell anchors' boxes (fraction of the frame) with query selection.
    """

    def __init__(
        self,
        feature_dim: int,
        hidden_dim: int,
        num_queries: int,
        num_layers: int,
        num_heads: int,
        *,
        dropout: float = 0.0,
        prior_prob: float = 0.01,
        query_selection: bool = False,
        cell_box_size: float = 0.1,
    ) -> None:
        super().__init__()
        if hidden_dim % 8 or hidden_dim % num_heads:
            raise ValueError(f"hidden_dim {hidden_dim} must be a multiple of 8 and of num_heads {num_heads}")
        self.hidden_dim = hidden_dim
        self.num_queries = num_queries
        self.input_proj = nn.Sequential(nn.Linear(feature_dim, hidden_dim), nn.LayerNorm(hidden_dim))
        if not query_selection:  # learned anchors in logit space: centres over the frame, sizes 5-50 %
            anchors = torch.rand(num_queries, 4)
            anchors[:, :2] = 0.05 + 0.9 * anchors[:, :2]
            anchors[:, 2:] = 0.05 + 0.45 * anchors[:, 2:]
            self.anchor_logits = nn.Parameter(inverse_sigmoid(anchors))
        self.query_pos = MLP(hidden_dim, hidden_dim, hidden_dim, 2)
        self.query_content = nn.Embedding(num_queries, hidden_dim)
        self.layers = nn.ModuleList(
            _DecoderLayer(hidden_dim, num_heads, 4 * hidden_dim, dropout) for _ in range(num_layers)
        )
        self.box_head = MLP(hidden_dim, hidden_dim, 4, 3)
        self.box_head.zero_last()
        self.class_head = nn.Linear(hidden_dim, 1)
        prior = -math.log((1 - prior_prob) / prior_prob)
        nn.init.constant_(self.class_head.bias, prior)
        self.query_selection = query_selection
        self.cell_box_size = cell_box_size
        if query_selection:
            self.cell_norm = nn.LayerNorm(hidden_dim)
            self.cell_box_head = MLP(hidden_dim, hidden_dim, 4, 3)
            self.cell_box_head.zero_last()
            self.cell_class_head = nn.Linear(hidden_dim, 1)
            nn.init.constant_(self.cell_class_head.bias, prior)

    def forward(self, image_embeddings: Tensor) -> ProposerOutput:
        """Proposals from image embeddings ``(N, C, h, w)`` (float) -> :class:`ProposerOutput`."""
        n, _, h, w = image_embeddings.shape
        memory = self.input_proj(image_embeddings.flatten(2).transpose(1, 2))  # (N, h*w, D)
        memory_pos = sine_position_encoding_2d(h, w, self.hidden_dim, device=memory.device).to(memory.dtype)
        encoder = None
        if self.query_selection:
            encoder = self._cell_proposals(memory, h, w)
            top = encoder.logits.topk(self.num_queries, dim=1).indices
            anchor_logits = inverse_sigmoid(
                encoder.boxes.gather(1, top[..., None].expand(-1, -1, 4)).detach()
            )
        else:
            anchor_logits = self.anchor_logits[None].expand(n, -1, -1)
        query_pos = self.query_pos(box_sine_embedding(anchor_logits.sigmoid(), self.hidden_dim)).to(
            memory.dtype
        )
        tgt = self.query_content.weight.to(memory.dtype)[None].expand(n, -1, -1)
        for layer in self.layers:
            tgt = layer(tgt, query_pos, memory, memory_pos[None])
        boxes = (self.box_head(tgt) + anchor_logits).sigmoid()
        return ProposerOutput(boxes=boxes, logits=self.class_head(tgt)[..., 0], features=tgt, encoder=encoder)

    def _cell_proposals(self, memory: Tensor, h: int, w: int) -> ProposerOutput:
        """One proposal per cell of the ``h x w`` grid from the projected image tokens ``(N, h*w, D)``:
        a box predicted as a correction (logit space) of a ``cell_box_size`` box centred on the cell."""
        if h * w < self.num_queries:
            raise ValueError(f"query selection needs h*w >= {self.num_queries} cells, got {h}x{w}")
        ys = (torch.arange(h, device=memory.device, dtype=torch.float32) + 0.5) / h
        xs = (torch.arange(w, device=memory.device, dtype=torch.float32) + 0.5) / w
        centres = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), dim=-1).reshape(h * w, 2)
        sizes = torch.full_like(centres, self.cell_box_size)
        anchors = inverse_sigmoid(torch.cat([centres, sizes], dim=-1)).to(memory.dtype)
        cells = self.cell_norm(memory)
        boxes = (self.cell_box_head(cells) + anchors).sigmoid()
        return ProposerOutput(boxes=boxes, logits=self.cell_class_head(cells)[..., 0], features=cells)
