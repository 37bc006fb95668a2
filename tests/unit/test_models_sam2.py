"""Sam2Adapter on the tiny SAM2 config: shapes, gradients, the train path against transformers' own
video path, propagation order / determinism / key-frame equality, weight loading, the Hiera-L size."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import Sam2Config, Sam2VideoInferenceSession

from sparrow.errors import CheckpointError, ConfigError
from sparrow.models.losses import dice_loss, mask_bce_loss
from sparrow.models.sam2 import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    NO_OBJECT_LOGIT,
    Sam2Adapter,
    Sam2Features,
    as_video_config,
    box_masks,
    sam2_hiera_large_config,
    tiny_sam2_config,
)
from sparrow.structures.boxes import box_convert


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    """Small ops on 2 shared cores: more intra-op threads only add contention (10x slower under load)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


S = 128


def _adapter(seed: int = 0, object_bias: float | None = 5.0) -> Sam2Adapter:
    """A tiny adapter; ``object_bias`` forces the object-score head to say "present", so that masks
    are not blanked by SAM2's object gating and comparisons see real logits."""
    torch.manual_seed(seed)
    adapter = Sam2Adapter.from_config(tiny_sam2_config(S)).eval()
    if object_bias is not None:
        with torch.no_grad():
            adapter.model.mask_decoder.pred_obj_score_head.proj_out.bias.fill_(object_bias)
    return adapter


@pytest.fixture(scope="module")
def adapter() -> Sam2Adapter:
    return _adapter()


def _moving_square(num_frames: int, step: int = 3, size: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 frames ``(T, S, S, 3)`` of a white square moving right on a dark background, and its
    normalised cxcywh boxes ``(T, 4)``."""
    frames = torch.full((num_frames, S, S, 3), 30, dtype=torch.uint8)
    boxes = []
    for t in range(num_frames):
        x0, y0 = 20 + step * t, 40
        frames[t, y0 : y0 + size, x0 : x0 + size] = 230
        boxes.append([x0, y0, x0 + size, y0 + size])
    xyxy = torch.tensor(boxes, dtype=torch.float32) / S
    return frames, box_convert(xyxy, "xyxy", "cxcywh")


def test_tiny_config_is_small_and_consistent() -> None:
    config = tiny_sam2_config(S)
    assert config.image_size == S
    assert config.prompt_encoder_config.image_size == S
    assert config.vision_config.backbone_feature_sizes == [[32, 32], [16, 16], [8, 8]]
    assert config.memory_attention_rope_feat_sizes == [8, 8]
    hidden = config.vision_config.fpn_hidden_size
    assert hidden % 64 == 0 and hidden > 64
    assert config.mask_downsampler_embed_dim == config.memory_fuser_embed_dim == hidden
    assert config.memory_encoder_output_channels == 64
    adapter = Sam2Adapter.from_config(config)
    n_params = sum(p.numel() for p in adapter.parameters())
    assert n_params < 2_000_000  # well under the 8 M budget of the tiny preset
    assert (adapter.image_size, adapter.prompt_dim, adapter.feature_dim) == (S, 128, 128)


@pytest.mark.parametrize("bad", [100, 48, 1000])
def test_image_size_must_be_a_multiple_of_32(bad: int) -> None:
    with pytest.raises(ConfigError, match="multiple of 32"):
        tiny_sam2_config(bad)


def test_large_config_matches_published_size_on_meta_device() -> None:
    # SAM2.1 Hiera-L: 224.4 M parameters (SAM2 README, "Size (M)"); we accept the rounding, +-0.05 M.
    with torch.device("meta"):
        adapter = Sam2Adapter.from_config(sam2_hiera_large_config())
    n_params = sum(p.numel() for p in adapter.parameters())
    assert abs(n_params - 224.4e6) <= 0.05e6, n_params
    assert (adapter.image_size, adapter.prompt_dim, adapter.feature_dim) == (1024, 256, 256)
    assert adapter.model.config.memory_attention_rope_feat_sizes == [64, 64]


def test_image_only_sam2_config_is_accepted() -> None:
    video = tiny_sam2_config(S)
    image_only = Sam2Config(
        vision_config=video.vision_config.to_dict(),
        prompt_encoder_config=video.prompt_encoder_config.to_dict(),
        mask_decoder_config=video.mask_decoder_config.to_dict(),
    )
    converted = as_video_config(image_only)
    assert converted.image_size == S
    assert converted.memory_attention_rope_feat_sizes == [8, 8]
    with pytest.raises(TypeError):
        as_video_config({"image_size": S})  # type: ignore[arg-type]


def test_preprocess_resizes_and_normalises(adapter: Sam2Adapter) -> None:
    frames = np.full((2, 90, 160, 3), 128, dtype=np.uint8)
    frames[1, ..., 0] = 255
    out = adapter.preprocess(frames)
    assert out.shape == (2, 3, S, S) and out.dtype == torch.float32
    expected = (128 / 255 - torch.tensor(IMAGENET_MEAN)) / torch.tensor(IMAGENET_STD)
    assert torch.allclose(out[0, :, 50, 50], expected, atol=1e-5)
    assert torch.allclose(out[1, 0], torch.full((S, S), (1 - IMAGENET_MEAN[0]) / IMAGENET_STD[0]), atol=1e-5)
    with pytest.raises(ValueError, match="uint8"):
        adapter.preprocess(np.zeros((2, 90, 160, 3), dtype=np.float32))
    with pytest.raises(ValueError, match="uint8"):
        adapter.preprocess(np.zeros((90, 160, 3), dtype=np.uint8))


def test_feature_and_decoder_shapes(adapter: Sam2Adapter) -> None:
    pixels = torch.randn(3, 3, S, S)
    features = adapter.image_features(pixels)
    assert features.image_embeddings.shape == (3, 128, 8, 8)
    assert [tuple(f.shape) for f in features.high_res_features] == [(3, 16, 32, 32), (3, 32, 16, 16)]
    assert len(features) == 3 and len(features.select(1)) == 1
    boxes = torch.tensor([[0.5, 0.5, 0.3, 0.3]]).repeat(3, 1)
    seg = torch.randn(3, 2, adapter.prompt_dim)
    for kwargs in ({"boxes": boxes}, {"seg_embeddings": seg}, {"boxes": boxes, "seg_embeddings": seg}, {}):
        out = adapter.decode(features, **kwargs)
        assert out.mask_logits.shape == (3, 1, 32, 32)
        assert out.iou_scores.shape == (3, 1)
        assert out.object_score_logits.shape == (3, 1)
        assert out.mask_tokens.shape == (3, adapter.prompt_dim)
    with pytest.raises(ValueError, match="boxes"):
        adapter.decode(features, boxes=boxes[:2])
    with pytest.raises(ValueError, match="seg_embeddings"):
        adapter.decode(features, seg_embeddings=torch.randn(3, 2, 64))
    with pytest.raises(ValueError, match="pixel_values"):
        adapter.image_features(torch.randn(1, 3, 64, 64))
    up = Sam2Adapter.upsample_logits(out.mask_logits, (90, 160))
    assert up.shape == (3, 1, 90, 160)


def test_decode_is_differentiable_wrt_seg_boxes_and_decoder() -> None:
    adapter = _adapter()
    adapter.train()
    features = adapter.image_features(torch.randn(2, 3, S, S))
    seg = torch.randn(2, 1, adapter.prompt_dim, requires_grad=True)
    boxes = torch.tensor([[0.4, 0.5, 0.3, 0.2], [0.6, 0.4, 0.2, 0.4]], requires_grad=True)
    out = adapter.decode(features, boxes=boxes, seg_embeddings=seg)
    target = (torch.rand(2, 1, 32, 32) > 0.5).float()
    loss = mask_bce_loss(out.mask_logits, target) + dice_loss(out.mask_logits, target)
    loss.backward()
    assert seg.grad is not None and seg.grad.abs().sum() > 0
    assert boxes.grad is not None and boxes.grad.abs().sum() > 0
    decoder = adapter.model.mask_decoder
    for param in (
        decoder.mask_tokens.weight,
        decoder.output_hypernetworks_mlps[0].proj_in.weight,
        decoder.upscale_conv1.weight,
    ):
        assert param.grad is not None and param.grad.abs().sum() > 0
    encoder_grad = adapter.model.vision_encoder.backbone.patch_embed.projection.weight.grad
    assert encoder_grad is not None and encoder_grad.abs().sum() > 0


def test_train_path_equals_transformers_video_path_on_the_key_frame(adapter: Sam2Adapter) -> None:
    frames, boxes = _moving_square(3)
    pixels = adapter.preprocess(frames)
    ours = adapter.decode(adapter.image_features(pixels).select(1), boxes=boxes[1:2])
    # transformers' video path: a box prompt is two points labelled 2 / 3 in SAM2 pixel coordinates.
    session = Sam2VideoInferenceSession(video=pixels, video_height=S, video_width=S, dtype=torch.float32)
    obj = session.obj_id_to_idx(1)
    session.obj_with_new_inputs = [1]
    corners = box_convert(boxes[1], "cxcywh", "xyxy").view(1, 1, 2, 2) * S
    labels = torch.tensor([[[2, 3]]], dtype=torch.int32)
    session.add_point_inputs(obj, 1, {"point_coords": corners, "point_labels": labels})
    with torch.inference_mode():
        reference = adapter.model(session, frame_idx=1)
    assert reference.object_score_logits.item() > 0  # not gated, so the logits are compared
    assert torch.allclose(ours.object_score_logits, reference.object_score_logits, atol=1e-5)
    assert torch.allclose(ours.mask_logits, reference.pred_masks, atol=1e-4)


def test_propagate_order_shapes_determinism_and_key_frame_equality(adapter: Sam2Adapter) -> None:
    frames, boxes = _moving_square(7)
    pixels = adapter.preprocess(frames)
    seg = torch.randn(1, 2, adapter.prompt_dim, generator=torch.Generator().manual_seed(1))
    run = list(adapter.propagate(pixels, 3, box=boxes[3:4], seg_embedding=seg))
    assert [t for t, _, _ in run] == [3, 4, 5, 6, 2, 1, 0]
    for _, logits, score in run:
        assert logits.shape == (1, 1, 32, 32) and score.shape == (1, 1)
        assert torch.isfinite(logits).all()
    # streaming from a plain list of frames gives the same results, bit for bit
    again = list(adapter.propagate(list(pixels), 3, box=boxes[3:4], seg_embedding=seg))
    for (t1, l1, s1), (t2, l2, s2) in zip(run, again, strict=True):
        assert t1 == t2 and torch.equal(l1, l2) and torch.equal(s1, s2)
    # the key frame is the train path's prediction
    with torch.no_grad():
        train = adapter.decode(adapter.image_features(pixels[3:4]), boxes=boxes[3:4], seg_embeddings=seg)
    assert train.object_score_logits.item() > 0
    assert torch.allclose(run[0][1], train.mask_logits, atol=1e-5)
    assert torch.allclose(run[0][2], train.object_score_logits, atol=1e-5)


def test_dropping_outputs_beyond_the_memory_window_changes_nothing(adapter: Sam2Adapter, monkeypatch) -> None:
    pixels = torch.randn(21, 3, S, S, generator=torch.Generator().manual_seed(2))
    box = torch.tensor([[0.5, 0.5, 0.3, 0.3]])
    assert adapter._memory_window() == 16
    bounded = list(adapter.propagate(pixels, 2, box=box, seg_embedding=None))
    monkeypatch.setattr(adapter, "_memory_window", lambda: 10**6)  # keep every output
    unbounded = list(adapter.propagate(pixels, 2, box=box, seg_embedding=None))
    for (t1, l1, s1), (t2, l2, s2) in zip(bounded, unbounded, strict=True):
        assert t1 == t2 and torch.equal(l1, l2) and torch.equal(s1, s2)


def test_propagate_edges_and_object_gating() -> None:
    adapter = _adapter(object_bias=-5.0)  # the object-score head says "absent" everywhere
    adapter.train()
    pixels = torch.randn(3, 3, S, S)
    first = [t for t, _, _ in adapter.propagate(pixels, 0, box=None, seg_embedding=None)]
    last = [t for t, _, _ in adapter.propagate(pixels, 2, box=None, seg_embedding=None)]
    assert first == [0, 1, 2] and last == [2, 1, 0]
    assert adapter.training  # restored after the generator finished
    key = next(iter(adapter.propagate(pixels, 1, box=None, seg_embedding=None)))
    assert key[2].item() < 0 and torch.all(key[1] == NO_OBJECT_LOGIT)
    with pytest.raises(ValueError, match="key_frame"):
        next(iter(adapter.propagate(pixels, 3, box=None, seg_embedding=None)))


def test_one_set_of_weights_trained_through_decode_drives_propagation() -> None:
    adapter = _adapter(object_bias=None)
    n_params = sum(p.numel() for p in adapter.parameters())
    assert n_params == sum(p.numel() for p in adapter.model.parameters())  # nothing duplicated
    frames, boxes = _moving_square(6)
    pixels = adapter.preprocess(frames)
    masks = torch.zeros(6, 1, S, S)
    for t in range(6):
        x1, y1, x2, y2 = (box_convert(boxes[t], "cxcywh", "xyxy") * S).round().int().tolist()
        masks[t, 0, y1:y2, x1:x2] = 1.0
    target = torch.nn.functional.interpolate(masks[:1], size=(32, 32), mode="area")
    decoder = adapter.model.mask_decoder
    optimizer = torch.optim.AdamW(decoder.parameters(), lr=3e-3)
    with torch.no_grad():
        features = adapter.image_features(pixels[:1])
    adapter.train()
    for _ in range(40):
        out = adapter.decode(features, boxes=boxes[:1])
        loss = mask_bce_loss(out.mask_logits, target) + dice_loss(out.mask_logits, target)
        loss = loss + torch.nn.functional.softplus(-out.object_score_logits).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    results = {
        t: (logits, score)
        for t, logits, score in adapter.propagate(pixels, 0, box=boxes[:1], seg_embedding=None)
    }
    assert sorted(results) == list(range(6))
    key_logits, key_score = results[0]
    assert key_score.item() > 0
    predicted = Sam2Adapter.upsample_logits(key_logits, (S, S)) > 0
    iou = (predicted & (masks[:1] > 0)).sum() / (predicted | (masks[:1] > 0)).sum()
    assert predicted.any() and iou > 0.7, float(iou)


def test_from_pretrained_round_trip_and_errors(tmp_path) -> None:
    adapter = _adapter(seed=3)
    folder = tmp_path / "sam2"
    adapter.model.save_pretrained(folder)
    assert any(folder.glob("*.safetensors"))
    loaded = Sam2Adapter.from_pretrained(folder).eval()
    for (name, a), (_, b) in zip(
        adapter.model.state_dict().items(), loaded.model.state_dict().items(), strict=True
    ):
        assert torch.equal(a, b), name
    pixels = torch.randn(1, 3, S, S)
    box = torch.tensor([[0.5, 0.5, 0.4, 0.4]])
    with torch.no_grad():
        expected = adapter.decode(adapter.image_features(pixels), boxes=box).mask_logits
        got = loaded.decode(loaded.image_features(pixels), boxes=box).mask_logits
    assert torch.allclose(expected, got, atol=1e-6)

    with pytest.raises(CheckpointError, match="not found"):
        Sam2Adapter.from_pretrained(tmp_path / "missing")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(CheckpointError, match=r"config\.json"):
        Sam2Adapter.from_pretrained(empty)
    pickled = tmp_path / "pickled"
    pickled.mkdir()
    (pickled / "config.json").write_text((folder / "config.json").read_text())
    (pickled / "pytorch_model.bin").write_bytes(b"not read")
    with pytest.raises(CheckpointError, match="safetensors"):
        Sam2Adapter.from_pretrained(pickled)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text((folder / "config.json").read_text())
    (broken / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="cannot load"):
        Sam2Adapter.from_pretrained(broken)


def test_neck_position_encoding_cache_returns_the_stock_values(adapter: Sam2Adapter) -> None:
    cached = adapter.model.vision_encoder.neck.position_encoding
    shape = torch.Size([2, 128, 16, 16])
    first = cached(shape, torch.device("cpu"), torch.float32)
    assert cached(shape, torch.device("cpu"), torch.float32) is first
    assert torch.equal(first, cached.inner(shape, torch.device("cpu"), torch.float32))


def test_larger_image_size_works() -> None:
    torch.manual_seed(0)
    adapter = Sam2Adapter.from_config(tiny_sam2_config(256)).eval()
    features = adapter.image_features(torch.randn(1, 3, 256, 256))
    assert isinstance(features, Sam2Features)
    assert features.image_embeddings.shape == (1, 128, 16, 16)
    out = adapter.decode(features, boxes=torch.tensor([[0.5, 0.5, 0.2, 0.2]]))
    assert out.mask_logits.shape == (1, 1, 64, 64)
    run = list(
        adapter.propagate(
            torch.randn(3, 3, 256, 256), 1, box=torch.tensor([[0.5, 0.5, 0.2, 0.2]]), seg_embedding=None
        )
    )
    assert [t for t, _, _ in run] == [1, 2, 0]


def test_fresh_sam2_shares_one_positional_embedding_between_prompts_and_image() -> None:
    model = _adapter().model  # as in SAM2: box corners and image cells live in one Fourier space
    torch.testing.assert_close(
        model.prompt_encoder.shared_embedding.positional_embedding,
        model.shared_image_embedding.positional_embedding,
        rtol=0,
        atol=0,
    )


def test_box_masks_fill_the_cells_whose_centre_is_inside() -> None:
    xyxy = torch.tensor([[0.0, 0.0, 0.5, 0.25], [0.3, 0.6, 0.31, 0.61], [0.0, 0.0, 1.0, 1.0]])
    masks = box_masks(xyxy, 8)  # cell centres at 1/16, 3/16, ...
    assert masks.shape == (3, 1, 8, 8) and masks.dtype == torch.float32
    expected = torch.zeros(8, 8)
    expected[:2, :4] = 1.0
    torch.testing.assert_close(masks[0, 0], expected)
    assert float(masks[1].sum()) == 0.0  # smaller than a cell, between centres
    assert float(masks[2].sum()) == 64.0


def test_box_mask_prompt_replaces_the_no_mask_embedding_for_boxes_only() -> None:
    adapter = _adapter()
    frames, boxes = _moving_square(2)
    features = adapter.image_features(adapter.preprocess(frames))
    seg = torch.randn(2, 1, adapter.prompt_dim)
    plain = [adapter.decode(features, boxes=boxes), adapter.decode(features, seg_embeddings=seg)]
    adapter.box_mask_prompt = True
    sparse, dense = adapter._prompt_embeddings(features.image_embeddings, boxes, None)
    grid = box_masks(box_convert(boxes, "cxcywh", "xyxy"), 4 * features.image_embeddings.shape[-1])
    torch.testing.assert_close(dense, adapter.model.prompt_encoder.mask_embed(grid))
    assert sparse.shape == (2, 1, 3, adapter.prompt_dim)  # the corner tokens are still given
    with_mask = adapter.decode(features, boxes=boxes)
    assert not torch.allclose(with_mask.mask_logits, plain[0].mask_logits)
    torch.testing.assert_close(  # no box, no mask prompt
        adapter.decode(features, seg_embeddings=seg).mask_logits, plain[1].mask_logits
    )
