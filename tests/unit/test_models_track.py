"""SAM2's memory training path (``Sam2Adapter.track``): it computes what ``propagate`` runs, its
gradients reach the memory modules, it learns to track, and ``SparrowModel`` trains through it with
``propagation=video``."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from models_toys import CAPTION, CAPTION_QUESTION, QUESTION, clip, tiny

from sparrow.errors import ConfigError
from sparrow.models import SparrowSample
from sparrow.models.losses import dice_loss, mask_bce_loss
from sparrow.models.sam2 import NO_OBJECT_LOGIT, Sam2Adapter, tiny_sam2_config
from sparrow.structures.boxes import box_convert

S = 128


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _adapter(multimask: bool = False, seed: int = 0) -> Sam2Adapter:
    """A tiny adapter whose memory embeddings are random (they start at zero) and whose object-score
    head is sharp, so that memory, pointers and the object gate all change the result."""
    torch.manual_seed(seed)
    config = tiny_sam2_config(S)
    config.multimask_output_for_tracking = multimask
    adapter = Sam2Adapter.from_config(config).eval()
    model = adapter.model
    with torch.no_grad():
        for param in (
            model.memory_temporal_positional_encoding,
            model.no_object_pointer,
            model.occlusion_spatial_embedding_parameter,
            model.no_memory_embedding,
        ):
            param.normal_()
        model.mask_decoder.pred_obj_score_head.proj_out.weight.mul_(300.0)
    return adapter


def _moving_square(num_frames: int, step: int, x0: int = 10, y0: int = 50, size: int = 24):
    """uint8 frames ``(T, S, S, 3)`` of a white square moving right, its masks ``(T, S, S)`` float and
    its first-frame box ``(1, 4)`` normalised cxcywh."""
    frames = torch.full((num_frames, S, S, 3), 30, dtype=torch.uint8)
    masks = torch.zeros(num_frames, S, S)
    for t in range(num_frames):
        x = x0 + step * t
        frames[t, y0 : y0 + size, x : x + size] = 230
        masks[t, y0 : y0 + size, x : x + size] = 1.0
    box = torch.tensor([[x0, y0, x0 + size, y0 + size]], dtype=torch.float32) / S
    return frames, masks, box_convert(box, "xyxy", "cxcywh")


def _iou(logits: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    pred = Sam2Adapter.upsample_logits(logits, (S, S))[:, 0] > 0
    target = masks > 0
    return (pred & target).flatten(1).sum(1) / (pred | target).flatten(1).sum(1).clamp(min=1)


@pytest.mark.parametrize("multimask", [False, True])
def test_track_computes_what_propagate_runs(multimask: bool) -> None:
    adapter = _adapter(multimask)
    pixels = torch.randn(9, 3, S, S, generator=torch.Generator().manual_seed(3))
    box = torch.tensor([[0.4, 0.5, 0.3, 0.3]])
    seg = torch.randn(1, 2, adapter.prompt_dim, generator=torch.Generator().manual_seed(4))
    key = 3
    for _ in range(5):  # centre the object scores (the gate feeds back through memory): some frames
        reference = {  # present, some absent
            t: (logits, s) for t, logits, s in adapter.propagate(pixels, key, box=box, seg_embedding=seg)
        }
        scores = torch.cat([s for _, s in reference.values()])
        if bool((scores > 0).any()) and bool((scores <= 0).any()):
            break
        with torch.no_grad():
            adapter.model.mask_decoder.pred_obj_score_head.proj_out.bias.sub_(scores.median())
    assert bool((scores > 0).any()) and bool((scores <= 0).any())  # the gate is exercised
    with torch.no_grad():
        forward = adapter.track(pixels[key:], boxes=box, seg_embeddings=seg)  # key, key+1, .., T-1
        backward = adapter.track(pixels[: key + 1].flip(0), boxes=box, seg_embeddings=seg)  # key .. 0
    for out, frames in ((forward, range(key, 9)), (backward, range(key, -1, -1))):
        assert out.mask_logits.shape == (1, len(frames), 1, 32, 32)
        gated = out.gated_logits()
        for i, t in enumerate(frames):
            torch.testing.assert_close(gated[0, i], reference[t][0][0], atol=1e-4, rtol=0)
            torch.testing.assert_close(out.object_score_logits[0, i], reference[t][1][0], atol=1e-4, rtol=0)
            if reference[t][1].item() <= 0:
                assert bool((gated[0, i] == NO_OBJECT_LOGIT).all())
    # the comparison is sensitive: a smaller memory bank or no memory at all changes the masks
    with torch.no_grad():
        short = adapter.track(pixels[key:], boxes=box, seg_embeddings=seg, max_memory=0)
        framewise = adapter.decode(
            adapter.image_features(pixels[key:]), boxes=box.repeat(6, 1), seg_embeddings=seg.repeat(6, 1, 1)
        )
    assert (short.mask_logits[0, 2:] - forward.mask_logits[0, 2:]).abs().max() > 1e-5
    assert (framewise.mask_logits[1:] - forward.mask_logits[0, 1:]).abs().max() > 1e-3
    torch.testing.assert_close(framewise.mask_logits[:1], forward.mask_logits[0, :1])  # frame 0 = decode()


def test_track_batches_objects_and_checks_its_arguments() -> None:
    adapter = _adapter()
    pixels = torch.randn(5, 3, S, S, generator=torch.Generator().manual_seed(5))
    boxes = torch.tensor([[0.4, 0.5, 0.3, 0.3], [0.6, 0.3, 0.2, 0.4]])
    with torch.no_grad():
        features = adapter.image_features(pixels)
        both = adapter.track(features.select(torch.tensor([0, 1, 2, 3, 4, 4, 3, 2, 1, 0])), boxes=boxes)
        first = adapter.track(features, boxes=boxes[:1])
        second = adapter.track(pixels.flip(0), boxes=boxes[1:])
        unprompted = adapter.track(features)
    assert both.mask_logits.shape == (2, 5, 1, 32, 32)
    assert both.iou_scores.shape == both.object_score_logits.shape == (2, 5, 1)
    assert unprompted.mask_logits.shape == (1, 5, 1, 32, 32)
    torch.testing.assert_close(both.mask_logits[0], first.mask_logits[0], atol=1e-5, rtol=0)
    torch.testing.assert_close(both.mask_logits[1], second.mask_logits[0], atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="N \\* T"):
        adapter.track(features, boxes=boxes)  # 5 frames for 2 objects
    with pytest.raises(ValueError, match="max_memory"):
        adapter.track(features, boxes=boxes[:1], max_memory=7)


def test_track_gradients_reach_the_memory_modules() -> None:
    adapter = _adapter()
    with torch.no_grad():  # object present: the pointer is the projected mask token, not "no object"
        adapter.model.mask_decoder.pred_obj_score_head.proj_out.bias.fill_(1e4)
    adapter.train()
    frames, masks, box = _moving_square(4, step=8)
    seg = torch.randn(1, 1, adapter.prompt_dim, requires_grad=True)
    box = box.requires_grad_(True)
    out = adapter.track(adapter.preprocess(frames), boxes=box, seg_embeddings=seg)
    logits = Sam2Adapter.upsample_logits(out.mask_logits[0, 1:], (S, S))[:, 0]  # tracked frames only
    loss = mask_bce_loss(logits, masks[1:]) + dice_loss(logits, masks[1:])
    loss = loss + F.binary_cross_entropy_with_logits(
        out.object_score_logits, torch.ones_like(out.object_score_logits)
    )
    loss.backward()
    assert seg.grad is not None and seg.grad.abs().sum() > 0  # through the key frame's memory
    assert box.grad is not None and box.grad.abs().sum() > 0
    model = adapter.model
    for name, module in (
        ("memory_encoder", model.memory_encoder),
        ("memory_attention", model.memory_attention),
        ("object_pointer_proj", model.object_pointer_proj),
        ("mask_decoder", model.mask_decoder),
        ("vision_encoder", model.vision_encoder),
        ("prompt_encoder", model.prompt_encoder),
    ):
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in module.parameters()), name
    assert model.memory_temporal_positional_encoding.grad.abs().sum() > 0


def test_training_track_learns_to_follow_a_moving_square() -> None:
    """Key frame prompted with the box, the other 5 frames from memory alone; about 30 steps
    (0.1-0.25 s each on a 2-core machine)."""
    torch.manual_seed(0)
    adapter = Sam2Adapter.from_config(tiny_sam2_config(S))
    frames, masks, box = _moving_square(6, step=10)  # 50 px over the clip, the square is 24 px
    pixels = adapter.preprocess(frames)
    optimizer = torch.optim.AdamW(adapter.parameters(), lr=3e-3, weight_decay=0.0)
    start = time.monotonic()
    adapter.train()
    for step in range(60):
        out = adapter.track(pixels, boxes=box)
        logits = Sam2Adapter.upsample_logits(out.mask_logits[0], (S, S))[:, 0]
        loss = 6 * (2 * mask_bce_loss(logits, masks) + 0.5 * dice_loss(logits, masks))
        loss = loss + F.binary_cross_entropy_with_logits(
            out.object_score_logits, torch.ones_like(out.object_score_logits)
        )
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step >= 19 and float(_iou(out.mask_logits[0].detach(), masks).min()) > 0.85:
            break
    seconds = time.monotonic() - start
    video = {t: logits for t, logits, _ in adapter.propagate(pixels, 0, box=box, seg_embedding=None)}
    tracked = _iou(torch.cat([video[t] for t in range(6)]), masks)
    assert float(tracked[1:].min()) > 0.7, (step + 1, seconds, tracked.tolist())


def test_video_training_tracks_supervised_frames_through_memory(monkeypatch) -> None:
    """``propagation=video``: the key frame is prompted, the other supervised frames are tracked
    (forward and, for a key frame inside the clip, backward), the memory modules get gradients and
    the rows line up with ``mask_pairs``; ``framewise`` never touches the memory."""
    frames, masks = clip()
    samples = [
        SparrowSample(frames, QUESTION, "Sure, [SEG].", masks=masks[:1], key_frame=3),
        SparrowSample(
            frames,
            CAPTION_QUESTION,
            CAPTION,
            masks=masks,
            supervised=np.array([1, 0, 1, 0, 0, 1, 0, 1], bool),
        ),
    ]
    outputs = {}
    for propagation in ("video", "framewise"):
        model = tiny([f"propagation={propagation}", "box_prompt=false", "tsf.mode=off"])
        calls = []
        attention = model.sam2.model.memory_attention
        real = attention.forward
        monkeypatch.setattr(
            attention, "forward", lambda *a, _r=real, _c=calls, **k: _c.append(1) or _r(*a, **k)
        )
        out = model(model.processor.collate(samples))
        out.loss.backward()
        outputs[propagation] = out
        memory = model.sam2.model
        grads = [p.grad for m in (memory.memory_attention, memory.memory_encoder) for p in m.parameters()]
        if propagation == "video":
            # clips of equal length are tracked together: sample 0 forward 3..7 (5 frames) alone,
            # sample 0 backward 3..0 with sample 1's two [SEG] over frames 0, 2, 5, 7 (4 frames)
            assert len(calls) == 4 + 3
            assert any(g is not None and g.abs().sum() > 0 for g in grads)
        else:
            assert not calls and all(g is None for g in grads)
        assert set(out.losses) == {"lm_ce", "mask_bce", "mask_dice", "object_score"}
    video, framewise = outputs["video"], outputs["framewise"]
    assert torch.equal(video.mask_pairs, framewise.mask_pairs)
    assert video.mask_logits.shape == framewise.mask_logits.shape == (8 + 2 * 4, 1, 32, 32)
    assert video.object_score_logits.shape == (16, 1)


def test_pointer_dropout_reads_the_spatial_memory_alone_in_training_only() -> None:
    adapter = _adapter()
    frames, masks, box = _moving_square(4, step=8)
    pixels = adapter.preprocess(frames)
    with torch.no_grad():
        reference = adapter.track(pixels, boxes=box).mask_logits
        adapter.pointer_dropout = 1.0
        assert torch.equal(adapter.track(pixels, boxes=box).mask_logits, reference)  # eval: always both
        adapter.train()
        dropped = adapter.track(pixels, boxes=box).mask_logits
        adapter.pointer_dropout = 0.0
        kept = adapter.track(pixels, boxes=box).mask_logits
    assert torch.equal(dropped[:, 0], kept[:, 0])  # the prompted frame reads no memory
    assert not torch.allclose(dropped[:, 1:], kept[:, 1:])  # tracked frames: without the pointers
    adapter.pointer_dropout = 1.0
    out = adapter.track(pixels, boxes=box)
    logits = Sam2Adapter.upsample_logits(out.mask_logits[0, 1:], (S, S))[:, 0]
    mask_bce_loss(logits, masks[1:]).backward()
    model = adapter.model
    assert all(p.grad is None or not p.grad.any() for p in model.object_pointer_proj.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.memory_encoder.parameters())


def test_pointer_dropout_comes_from_the_config_and_is_a_probability() -> None:
    assert tiny(["sam2.pointer_dropout=0.25"]).sam2.pointer_dropout == 0.25
    with pytest.raises(ConfigError, match=r"sam2\.pointer_dropout=1\.5 is not a probability"):
        tiny(["sam2.pointer_dropout=1.5"])
