"""save_pretrained / from_pretrained: identical outputs, atomic writes, strict loading, clear errors."""

from __future__ import annotations

import json

import pytest
import torch
from models_toys import QUESTION, clip, tiny
from safetensors.torch import load_file, save_file

from sparrow.errors import CheckpointError, ConfigError
from sparrow.models import SparrowModel, SparrowSample
from sparrow.models import checkpoint as ckpt


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    model = tiny(seed=3).eval()
    folder = tmp_path_factory.mktemp("ckpt") / "model"
    model.save_pretrained(folder)
    return model, folder


def _outputs(model: SparrowModel):
    frames, masks = clip()
    batch = model.processor.collate([SparrowSample(frames, QUESTION, "Sure, [SEG].", masks=masks[:1])])
    with torch.no_grad():
        out = model(batch)
        spatial, temporal = model.processor.encoder_inputs(frames)
        answer = model.generate(
            model.processor.prompt_ids(QUESTION, with_tsf=False),
            model.encode_video(spatial[None], temporal[None]),
            max_new_tokens=4,
        )
    return out, answer


def test_folder_contents(saved) -> None:
    model, folder = saved
    assert sorted(p.name for p in folder.iterdir()) == [
        "config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"
    ]  # fmt: skip
    config = json.loads((folder / "config.json").read_text())
    assert config["preset"] == "tiny"
    assert config["llm"]["hf"]["vocab_size"] == len(model.tokenizer)
    assert config["spatial"]["path"] is None and config["llm"]["hf"]["hidden_size"] == 256
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(".")]  # no temp folders left


def test_round_trip_gives_identical_outputs(saved) -> None:
    model, folder = saved
    loaded = SparrowModel.from_pretrained(folder).eval()
    assert loaded.config.preset == "tiny" and loaded.tokenizer.ids == model.tokenizer.ids
    for (name, a), b in zip(model.state_dict().items(), loaded.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    out_a, ans_a = _outputs(model)
    out_b, ans_b = _outputs(loaded)
    for name in out_a.losses:
        assert torch.equal(out_a.losses[name], out_b.losses[name]), name
    assert torch.equal(out_a.mask_logits, out_b.mask_logits)
    assert torch.equal(ans_a.token_ids, ans_b.token_ids) and ans_a.text == ans_b.text


def test_overwrite_is_atomic(saved, tmp_path, monkeypatch) -> None:
    model, _ = saved
    folder = tmp_path / "m"
    model.save_pretrained(folder)
    model.save_pretrained(folder)  # replacing an existing folder
    before = (folder / "model.safetensors").read_bytes()

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(ckpt, "save_model", crash)
    with pytest.raises(OSError, match="disk full"):
        model.save_pretrained(folder)
    assert (folder / "model.safetensors").read_bytes() == before  # the old checkpoint is intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]


def _rewrite_weights(folder, edit) -> None:
    path = folder / "model.safetensors"
    tensors = load_file(path)
    edit(tensors)
    save_file(tensors, path)


@pytest.fixture
def copy(saved, tmp_path):
    _, folder = saved
    target = tmp_path / "copy"
    target.mkdir()
    for p in folder.iterdir():
        (target / p.name).write_bytes(p.read_bytes())
    return target


def test_unexpected_key_is_an_error(copy) -> None:
    _rewrite_weights(copy, lambda t: t.update({"extra.weight": torch.zeros(2)}))
    with pytest.raises(CheckpointError, match=r"1 unexpected key\(s\): extra.weight") as info:
        SparrowModel.from_pretrained(copy)
    assert str(copy) in str(info.value)
    SparrowModel.from_pretrained(copy, {"checkpoint": {"allow_unexpected": ["extra.*"]}})


def test_missing_key_is_an_error_unless_allowed(copy) -> None:
    _rewrite_weights(copy, lambda t: t.pop("filtration.score_head.layers.0.weight"))
    with pytest.raises(CheckpointError, match=r"missing key\(s\): filtration.score_head.layers.0.weight"):
        SparrowModel.from_pretrained(copy)
    SparrowModel.from_pretrained(copy, ["checkpoint.allow_missing=[filtration.*]"])


def test_fresh_parts_may_be_missing(copy) -> None:
    """A stage that re-initialises parts loads a folder without them (here: a question bag the
    saved model never had); the other parts stay strict."""
    with pytest.raises(CheckpointError, match="question_bag"):
        SparrowModel.from_pretrained(copy, ["filtration.question_bag=true"])
    model = SparrowModel.from_pretrained(copy, ["filtration.question_bag=true"], fresh=["question_bag"])
    assert model.question_bag is not None and model.config.checkpoint.allow_missing == []
    _rewrite_weights(copy, lambda t: t.pop("filtration.score_head.layers.0.weight"))
    with pytest.raises(CheckpointError, match=r"filtration\.score_head"):
        SparrowModel.from_pretrained(copy, fresh=["question_bag"])


def test_shape_mismatch_is_an_error(copy) -> None:
    with pytest.raises(CheckpointError, match="do not fit the config"):
        SparrowModel.from_pretrained(copy, ["proposer.num_queries=8"])


def test_corrupt_or_missing_files(copy, tmp_path) -> None:
    weights = copy / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="corrupt or unreadable"):
        SparrowModel.from_pretrained(copy)
    weights.unlink()
    with pytest.raises(CheckpointError, match=r"model\.safetensors is missing"):
        SparrowModel.from_pretrained(copy)
    (copy / "config.json").write_text("{broken")
    with pytest.raises(CheckpointError, match=r"cannot read config\.json"):
        SparrowModel.from_pretrained(copy)
    (copy / "config.json").write_text(json.dumps({"preset": "tiny", "wings": 2}))
    with pytest.raises(CheckpointError, match="wings"):
        SparrowModel.from_pretrained(copy)
    (copy / "config.json").unlink()
    with pytest.raises(CheckpointError, match=r"config\.json is missing"):
        SparrowModel.from_pretrained(copy)
    with pytest.raises(CheckpointError, match="model folder not found"):
        SparrowModel.from_pretrained(tmp_path / "nowhere")


def test_parts_from_local_folders_end_up_self_contained(tmp_path) -> None:
    """Parts loaded from their own folders (base-style ``path``) are saved into the one checkpoint."""
    source = tiny(seed=5)
    clip_dir, sam_dir = tmp_path / "clip", tmp_path / "sam2"
    source.spatial_encoder.model.save_pretrained(clip_dir)
    source.sam2.model.save_pretrained(sam_dir)
    model = tiny([f"spatial.path={clip_dir}", f"sam2.path={sam_dir}"], seed=6)
    expected = source.spatial_encoder.state_dict()
    for name, value in model.spatial_encoder.state_dict().items():
        assert torch.equal(value, expected[name]), name
    model.save_pretrained(tmp_path / "ckpt")
    for folder in (clip_dir, sam_dir):
        for p in folder.iterdir():
            p.unlink()
        folder.rmdir()
    config = json.loads((tmp_path / "ckpt" / "config.json").read_text())
    assert config["spatial"]["path"] is None and config["sam2"]["path"] is None
    loaded = SparrowModel.from_pretrained(tmp_path / "ckpt")
    for (name, a), b in zip(model.state_dict().items(), loaded.state_dict().values(), strict=True):
        assert torch.equal(a, b), name


def test_sam2_folder_must_match_the_variant(tmp_path) -> None:
    tiny().sam2.model.save_pretrained(tmp_path / "sam2")
    with pytest.raises(ConfigError, match="does not match"):
        tiny([f"sam2.path={tmp_path / 'sam2'}", "sam2.image_size=256"])


def test_lora_round_trip(tmp_path) -> None:
    model = tiny(["llm.lora={r: 2, alpha: 4, targets: [q_proj, v_proj]}"], seed=7)
    with torch.no_grad():  # LoRA B starts at zero: make the adapters matter
        for name, p in model.llm.named_parameters():
            if "lora_B" in name:
                p.normal_()
    model.save_pretrained(tmp_path / "lora")
    loaded = SparrowModel.from_pretrained(tmp_path / "lora")
    assert loaded.config.llm.lora is not None
    for (name, a), b in zip(model.state_dict().items(), loaded.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
