"""The two vision encoders of the VideoGLaMM-style base: spatial (per frame) and temporal (video).

- :class:`SpatialEncoder`: ``CLIPVisionModel`` or ``SiglipVisionModel``; one frame at a time; returns
  the patch grid of one hidden layer (CLS dropped).
- :class:`TemporalEncoder`: the V-JEPA 2 video encoder (``VJEPA2Model.encoder``; the authors use
  InternVideo2-1B, which transformers does not have; V-JEPA 2 ViT-g has the same width, 1408, and
  about the same size, 1.0 B); attends across frames; returns one token grid per tubelet of frames.
- :func:`resize_normalize`: resize + mean/std of uint8 frames (no torchvision).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from transformers import (
    CLIPVisionConfig,
    CLIPVisionModel,
    PreTrainedConfig,
    SiglipVisionConfig,
    SiglipVisionModel,
    VJEPA2Config,
    VJEPA2Model,
)

from sparrow.models.config import SpatialEncoderConfig, TemporalEncoderConfig
from sparrow.models.pretrained import build_hf_model

_SPATIAL = {"clip": (CLIPVisionModel, CLIPVisionConfig), "siglip": (SiglipVisionModel, SiglipVisionConfig)}


def encoder_hf_config(config: SpatialEncoderConfig | TemporalEncoderConfig) -> PreTrainedConfig:
    """The transformers config of an encoder section (no weights): from ``path`` when set (the folder
    is authoritative), else from the ``hf`` sizes."""
    config_cls = VJEPA2Config if isinstance(config, TemporalEncoderConfig) else _SPATIAL[config.kind][1]
    if config.path is not None:
        return config_cls.from_pretrained(config.path, local_files_only=True)
    return config_cls(**config.hf)


def resize_normalize(
    frames: np.ndarray | Tensor, size: int, mean: Sequence[float], std: Sequence[float]
) -> Tensor:
    """uint8 RGB frames ``(T, H, W, 3)`` -> float32 ``(T, 3, size, size)``, resized and normalised.

    Bilinear resize with antialiasing to a square (no padding: a pure scale per axis), then
    ``(x / 255 - mean) / std`` per channel.
    """
    x = torch.as_tensor(np.ascontiguousarray(frames) if isinstance(frames, np.ndarray) else frames)
    if x.ndim != 4 or x.shape[-1] != 3:
        raise ValueError(f"frames must have shape (T, H, W, 3), got {tuple(x.shape)}")
    x = x.permute(0, 3, 1, 2).float().div_(255.0)
    if x.shape[-2:] != (size, size):
        x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    m = torch.tensor(mean, dtype=x.dtype).view(1, 3, 1, 1)
    s = torch.tensor(std, dtype=x.dtype).view(1, 3, 1, 1)
    return (x - m) / s


class SpatialEncoder(nn.Module):
    """Per-frame image encoder.

    Input ``(N, 3, S, S)`` float (normalised with ``config.mean/std``, ``S = image_size``); output
    ``(N, g, g, C)`` patch features of hidden layer ``config.feature_layer`` (``g = S / patch``).
    """

    def __init__(self, config: SpatialEncoderConfig) -> None:
        super().__init__()
        model_cls, config_cls = _SPATIAL[config.kind]
        self.model = build_hf_model(model_cls, config_cls, config.hf, config.path, "spatial")
        self.feature_layer = config.feature_layer
        self.has_cls = config.kind == "clip"
        vc = self.model.config
        self.image_size = int(vc.image_size)
        self.grid = self.image_size // int(vc.patch_size)
        self.hidden_size = int(vc.hidden_size)

    def forward(self, pixel_values: Tensor) -> Tensor:
        out = self.model(pixel_values=pixel_values, output_hidden_states=True)
        hidden = out.hidden_states[self.feature_layer]
        if self.has_cls:
            hidden = hidden[:, 1:]
        return hidden.reshape(hidden.shape[0], self.grid, self.grid, self.hidden_size)


class TemporalEncoder(nn.Module):
    """Video encoder (V-JEPA 2; the predictor is not kept).

    Input ``(B, T, 3, S, S)`` float (``T`` a multiple of the tubelet size, ``S = crop_size``);
    output ``(B, T / tubelet, g, g, C)``.
    """

    def __init__(self, config: TemporalEncoderConfig) -> None:
        super().__init__()
        # The predictor is discarded: when building from sizes, make it as small as possible.
        small_predictor = {"pred_hidden_size": 8, "pred_num_attention_heads": 1, "pred_num_hidden_layers": 1}
        full = build_hf_model(VJEPA2Model, VJEPA2Config, config.hf, config.path, "temporal", small_predictor)
        self.encoder = full.encoder
        vc = full.config
        self.tubelet = int(vc.tubelet_size)
        self.image_size = int(vc.crop_size)
        self.grid = self.image_size // int(vc.patch_size)
        self.hidden_size = int(vc.hidden_size)

    def forward(self, pixel_values: Tensor) -> Tensor:
        b, t = pixel_values.shape[:2]
        if t % self.tubelet:
            raise ValueError(f"the temporal encoder needs a multiple of {self.tubelet} frames, got {t}")
        hidden = self.encoder(pixel_values_videos=pixel_values).last_hidden_state
        return hidden.reshape(b, t // self.tubelet, self.grid, self.grid, self.hidden_size)
