"""Presets and the typed model config: defaults, overrides, errors, published sizes of `base`."""

from __future__ import annotations

import pytest
import torch
from transformers import VJEPA2Config, VJEPA2Model

from sparrow.errors import ConfigError
from sparrow.models import SparrowConfig, SparrowModel, available_presets, load_config


def test_presets_ship_with_the_package() -> None:
    assert {"tiny", "base"} <= set(available_presets())


def test_tiny_keeps_the_paper_defaults() -> None:
    c = load_config("tiny")
    assert c.preset == "tiny"
    assert (c.tsf.mode, c.tsf.k, c.tsf.iterations, c.tsf.max_crops) == ("train", 4, 8, 16)
    w = c.losses
    assert (w.lm_ce, w.mask_bce, w.mask_dice, w.proposal_bce) == (1.0, 2.0, 0.5, 1.0)
    assert (w.det_class, w.det_l1, w.det_giou) == (2.0, 5.0, 2.0)
    assert c.box_prompt and c.propagation == "video" and c.key_frame == "first"
    assert c.sam2.variant == "tiny" and c.sam2.image_size >= 128


def test_base_names_the_published_architecture() -> None:
    c = load_config("base")
    assert c.spatial.kind == "clip" and c.spatial.hf["image_size"] == 336 and c.spatial.hf["patch_size"] == 14
    assert c.llm.kind == "phi3" and c.llm.hf["hidden_size"] == 3072
    assert c.sam2.variant == "hiera_large" and c.sam2.image_size == 1024
    assert c.proposer.num_queries == 300 and c.proposer.top_k == 100
    assert c.llm.lora is not None and (c.llm.lora.r, c.llm.lora.alpha) == (8, 16)


def test_overrides_from_strings_and_dicts() -> None:
    c = load_config(
        "tiny", ["tsf.mode=off", "box_prompt=false", "losses.mask_bce=3", "spatial.hf.image_size=32"]
    )
    assert c.tsf.mode == "off" and c.box_prompt is False and c.losses.mask_bce == 3.0
    assert c.spatial.hf["image_size"] == 32 and c.spatial.hf["patch_size"] == 8  # hf dicts merge
    d = c.replace({"propagation": "framewise", "llm": {"path": "/models/x"}})
    assert d.propagation == "framewise" and d.llm.path == "/models/x" and d.llm.kind == "qwen2"
    assert c.propagation == "video"  # replace copies


def test_dict_round_trip() -> None:
    c = load_config("base")
    again = SparrowConfig.from_dict(c.to_dict())
    assert again == c


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["tsf.mode=sometimes"], "tsf.mode"),
        (["spatial.colour=1"], "spatial.colour"),
        (["spatial.pooled_tokens=15"], "square"),
        (["temporal.frames=7"], "tubelet"),
        (["tsf.k=0"], "tsf.k"),
        (["proposer.num_queries=many"], "proposer.num_queries"),
        (["box_prompt=3"], "box_prompt"),
        (["key_frame=last"], "key_frame"),
        (["no_equals_sign"], "key.sub=value"),
    ],
)
def test_invalid_overrides_raise_config_error(overrides: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        load_config("tiny", overrides)


def test_unknown_preset_and_bad_files(tmp_path) -> None:
    with pytest.raises(ConfigError, match="unknown model preset"):
        load_config("huge")
    bad = tmp_path / "bad.yaml"
    bad.write_text("spatial: [1, 2\n")
    with pytest.raises(ConfigError, match="invalid YAML") as info:
        load_config(bad)
    assert str(bad) in str(info.value)
    scalar = tmp_path / "scalar.yaml"
    scalar.write_text("3\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(scalar)
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml")


def test_preset_file_from_a_path(tmp_path) -> None:
    path = tmp_path / "mine.yaml"
    path.write_text("preset: mine\nbox_prompt: false\ntsf: {mode: 'off'}\n")
    c = load_config(path)
    assert c.preset == "mine" and not c.box_prompt and c.tsf.mode == "off"


def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_base_instantiates_on_meta_with_the_published_sizes() -> None:
    """Parameter counts of every part of `base` against the published architectures.

    Published figures: CLIP ViT-L/14 vision encoder 303,965,184 incl. its 1024x768 projection at
    224 px, so 303,178,752 + 320 extra 336-px positions x 1024 = 303,506,432 without it (the HF
    module has 1,024 more), tolerance 0.01 %; Phi-3-mini-4k 3,821,079,552 ("3.82B"), exact, plus
    LoRA r=8 on qkv_proj (8 x (3072 + 9216) x 32 layers); V-JEPA 2 ViT-g/16 1,034.6 M with its
    predictor (tolerance 0.1 %), of which the encoder we keep is about 1.01 B; SAM2.1 Hiera-L 224.4 M
    (tested in detail by test_models_sam2), tolerance 0.5 %; L->V MLPs 3072 -> 3072 -> 256 exact;
    V->L adapters Linear(C, 3072) GELU Linear(3072, 3072) exact.
    """
    with torch.device("meta"):
        model = SparrowModel(load_config("base"))
    parts = {name: _count(module) for name, module in model.parts().items()}
    assert parts["spatial_encoder"] == pytest.approx(303_506_432, rel=1e-4)
    lora = 8 * (3072 + 3 * 3072) * 32
    assert parts["llm"] == 3_821_079_552 + lora
    with torch.device("meta"):  # the published V-JEPA 2 ViT-g (encoder + predictor) of these sizes
        vjepa = VJEPA2Model(VJEPA2Config(**load_config("base").temporal.hf))
    assert _count(vjepa) == pytest.approx(1_034_600_000, rel=1e-3)
    assert parts["temporal_encoder"] == _count(vjepa.encoder) == pytest.approx(1_012_000_000, rel=5e-3)
    assert parts["sam2"] == pytest.approx(224_400_000, rel=5e-3)
    l2v = 3072 * 3072 + 3072 + 3072 * 256 + 256
    assert parts["seg_projection"] == parts["box_projection"] == l2v
    assert parts["spatial_adapter"] == 1024 * 3072 + 3072 + 3072 * 3072 + 3072
    assert parts["temporal_adapter"] == 1408 * 3072 + 3072 + 3072 * 3072 + 3072
    assert model.spatial_encoder.grid == 24 and model.spatial_adapter.tokens == 144
    assert model.temporal_encoder.hidden_size == 1408 and model.temporal_adapter.tokens == 64
    assert model.sam2.prompt_dim == 256 and model.proposer.num_queries == 300
    assert next(model.parameters()).device.type == "meta"


def test_tiny_is_under_30m_parameters() -> None:
    with torch.device("meta"):
        model = SparrowModel(load_config("tiny").replace(["llm.hf.vocab_size=1024"]))
    assert _count(model) < 30_000_000
