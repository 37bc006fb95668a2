"""Vision encoders, V->L / L->V adapters, preprocessing, and loading parts from local folders."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from transformers import CLIPVisionConfig, CLIPVisionModel

from sparrow.errors import CheckpointError, ConfigError
from sparrow.models import load_config
from sparrow.models.adapters import LanguageVisionMLP, VisionLanguageAdapter
from sparrow.models.config import CLIP_MEAN, CLIP_STD
from sparrow.models.vision import SpatialEncoder, TemporalEncoder, resize_normalize


def test_resize_normalize_values_and_shape() -> None:
    frames = np.zeros((2, 30, 50, 3), dtype=np.uint8)
    frames[1] = (255, 128, 0)
    out = resize_normalize(frames, 16, CLIP_MEAN, CLIP_STD)
    assert out.shape == (2, 3, 16, 16) and out.dtype == torch.float32
    expected = (torch.tensor([1.0, 128 / 255, 0.0]) - torch.tensor(CLIP_MEAN)) / torch.tensor(CLIP_STD)
    torch.testing.assert_close(out[1, :, 8, 8], expected)
    torch.testing.assert_close(out[0, :, 0, 0], -torch.tensor(CLIP_MEAN) / torch.tensor(CLIP_STD))
    with pytest.raises(ValueError, match=r"\(T, H, W, 3\)"):
        resize_normalize(np.zeros((30, 50, 3), np.uint8), 16, CLIP_MEAN, CLIP_STD)


def test_spatial_encoder_grid_and_feature_layer() -> None:
    config = load_config("tiny", ["spatial.feature_layer=-2"]).spatial
    torch.manual_seed(0)
    enc = SpatialEncoder(config).eval()
    x = torch.randn(3, 3, 64, 64)
    grid = enc(x)
    assert grid.shape == (3, 8, 8, 128)
    hidden = enc.model(pixel_values=x, output_hidden_states=True).hidden_states[-2][:, 1:]
    torch.testing.assert_close(grid.reshape(3, 64, 128), hidden)


def test_siglip_spatial_encoder_has_no_cls() -> None:
    config = load_config("tiny", ["spatial.kind=siglip"]).spatial
    enc = SpatialEncoder(config)
    assert enc(torch.randn(1, 3, 64, 64)).shape == (1, 8, 8, 128)


def test_temporal_encoder_tubelets() -> None:
    enc = TemporalEncoder(load_config("tiny").temporal)
    out = enc(torch.randn(2, 8, 3, 64, 64))
    assert out.shape == (2, 4, 4, 4, 128)
    assert not hasattr(enc, "predictor") and all("predictor" not in k for k in enc.state_dict())
    with pytest.raises(ValueError, match="multiple of 2"):
        enc(torch.randn(1, 3, 3, 64, 64))


def test_vision_language_adapter_pools_then_projects() -> None:
    torch.manual_seed(0)
    adapter = VisionLanguageAdapter(8, 16, pooled_tokens=4)
    grid = torch.randn(2, 6, 6, 8)
    out = adapter(grid)
    assert out.shape == (2, 4, 16) and adapter.tokens == 4
    pooled = F.adaptive_avg_pool2d(grid.permute(0, 3, 1, 2), 2).flatten(2).transpose(1, 2)
    torch.testing.assert_close(out, adapter.mlp(pooled))
    with pytest.raises(ValueError, match="square"):
        VisionLanguageAdapter(8, 16, pooled_tokens=5)


def test_language_vision_mlp_shape() -> None:
    mlp = LanguageVisionMLP(32, 32, 8)
    assert mlp(torch.randn(5, 32)).shape == (5, 8)
    assert [m.out_features for m in mlp.mlp if isinstance(m, torch.nn.Linear)] == [32, 8]


def test_spatial_encoder_loads_from_a_local_folder(tmp_path) -> None:
    config = load_config("tiny").spatial
    torch.manual_seed(1)
    reference = CLIPVisionModel(CLIPVisionConfig(**config.hf)).eval()
    reference.save_pretrained(tmp_path / "clip")
    loaded = SpatialEncoder(load_config("tiny", [f"spatial.path={tmp_path / 'clip'}"]).spatial).eval()
    x = torch.randn(1, 3, 64, 64)
    expected = reference(pixel_values=x).last_hidden_state[:, 1:].reshape(1, 8, 8, 128)
    torch.testing.assert_close(loaded(x), expected)
    with pytest.raises(ConfigError, match="hidden_size: preset 64 != folder 128"):
        SpatialEncoder(
            load_config("tiny", [f"spatial.path={tmp_path / 'clip'}", "spatial.hf.hidden_size=64"]).spatial
        )
    with pytest.raises(CheckpointError, match=r"no config\.json"):
        SpatialEncoder(load_config("tiny", [f"spatial.path={tmp_path / 'nothing'}"]).spatial)
