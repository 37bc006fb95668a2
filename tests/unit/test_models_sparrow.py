"""The composed tiny model: shapes, loss dict, gradients to every part, the switches, inference pieces."""

from __future__ import annotations

import dataclasses
import math
from collections import Counter

import numpy as np
import pytest
import torch
from models_toys import BOX_QUESTION, CAPTION, CAPTION_QUESTION, QUESTION, clip, tiny, tokenizer

from sparrow.errors import ConfigError
from sparrow.models import (
    STAGES,
    PickBatch,
    SparrowBatch,
    SparrowModel,
    SparrowProcessor,
    SparrowSample,
    collate,
    load_config,
    loss_terms,
)
from sparrow.models.sam2 import MaskDecoderOutput
from sparrow.models.sparrow import BOX_TERMS, CHAIN_MARGIN, DET_TERMS, MASK_TERMS, _follow
from sparrow.models.tokenizer import IGNORE_INDEX
from sparrow.structures.boxes import masks_to_boxes

SUPERVISED_B = [True, False, True, False, False, True, False, True]
PROCESSORS = {
    on: SparrowProcessor(load_config("tiny", [f"box_prompt={on}"]), tokenizer(load_config("tiny")))
    for on in (True, False)
}


def samples() -> list[SparrowSample]:
    """Sample 0: one referent, all 8 SAM frames supervised. Sample 1: a grounded caption with two
    [SEG] (one masklet per phrase), 4 supervised frames, both objects as proposer targets.
    Sample 2: a box answer from box-only data (a lone [BOX], boxes and no masks)."""
    frames, masks = clip()
    boxes = np.stack([masks_to_boxes(m) for m in masks])  # (2, T, 4) xyxy
    return [
        SparrowSample(frames, QUESTION, "Sure, [SEG].", masks=masks[:1]),
        SparrowSample(
            frames,
            CAPTION_QUESTION,
            CAPTION,
            masks=masks,
            supervised=np.array(SUPERVISED_B),
            object_boxes=boxes[:, 0],
        ),
        SparrowSample(frames, BOX_QUESTION, "Sure, [BOX].", boxes=boxes[1:], supervised=np.zeros(8, bool)),
    ]


def make_batch(model: SparrowModel) -> SparrowBatch:
    return model.processor.collate(samples())


@pytest.fixture(scope="module")
def trained_step():
    """One forward + backward of the default tiny model (box prompt on, TSF in training); without the
    random box teacher forcing, so repeated forwards agree (tested on its own below)."""
    model = tiny(["box_teacher_forcing=0"])
    batch = make_batch(model)
    out = model(batch)
    out.loss.backward()
    return model, batch, out


def test_batch_layout(trained_step) -> None:
    model, batch, _ = trained_step
    p = model.processor
    assert p.n_video == 8 * 16 + 4 * 4
    assert batch.spatial_frames.shape == (3, 8, 3, 64, 64)
    assert batch.temporal_frames.shape == (3, 8, 3, 64, 64)
    assert batch.sam_frames.shape == (3, 8, 3, 128, 128)
    assert batch.seg_masks.shape == (3, 8, 128, 128) and batch.seg_sample.tolist() == [0, 1, 1]
    assert batch.boxes.shape == (4, 4) and batch.box_sample.tolist() == [0, 1, 1, 2]
    assert batch.tsf_crops.shape == (3, 8, 3, 64, 64) and bool(batch.tsf_valid.all())
    assert [len(d) for d in batch.det_boxes] == [1, 2, 1]
    ids = model.tokenizer.ids
    for row, (n_box, n_seg) in zip(batch.input_ids, [(1, 1), (2, 2), (1, 0)], strict=True):
        counts = Counter(row.tolist())
        assert counts[ids.video] == p.n_video and counts[ids.tsf] == 4
        assert (counts[ids.box], counts[ids.seg]) == (n_box, n_seg)  # box prompt on: [BOX] before every [SEG]
    # The referent's key-frame box: the red square, 24 px at (4..28, 24..48) of a 96-px frame.
    np.testing.assert_allclose(batch.boxes[0].numpy(), [16 / 96, 36 / 96, 24 / 96, 24 / 96], atol=1e-6)


def test_output_shapes(trained_step) -> None:
    model, batch, out = trained_step
    n_answer = int((batch.labels[:, 1:] != IGNORE_INDEX).sum())
    assert out.answer_logits.shape == (n_answer, len(model.tokenizer))
    n_pairs = 8 + 2 * sum(SUPERVISED_B)
    assert out.mask_logits.shape == (n_pairs, 1, 32, 32)
    assert out.object_score_logits.shape == (n_pairs, 1)
    assert out.mask_pairs.shape == (n_pairs, 2)
    assert out.mask_pairs[8:, 1].tolist() == [t for t, s in enumerate(SUPERVISED_B) if s] * 2
    k = model.config.proposer.top_k
    assert out.proposals.logits.shape == (3, k)
    assert out.proposals.boxes.shape == (3, k, 4)
    assert out.filtration.scores.shape == (4, k) and out.filtration.selected_boxes.shape == (4, 4)


def test_loss_dict_has_every_weighted_term(trained_step) -> None:
    model, batch, out = trained_step
    assert tuple(out.losses) == loss_terms(model.config)
    assert set(out.losses) == {
        "lm_ce", "mask_bce", "mask_dice", "object_score", "proposal_bce", "proposal_rank", "box_l1", "box_giou",
        "det_class", "det_l1", "det_giou",
    }  # fmt: skip
    for name, value in out.losses.items():
        assert value.ndim == 0 and torch.isfinite(value), name
        # a fresh proposer offers no proposal at IoU >= 0.5, so the listwise term has no row yet
        assert value > 0 if name != "proposal_rank" else value == 0, name
    total = sum(float(value.detach()) for value in out.losses.values())
    assert float(out.loss.detach()) == pytest.approx(total, rel=1e-5)
    # The terms are weighted: doubling two weights doubles those terms only.
    weights = model.config.losses
    doubled = dataclasses.replace(weights, mask_bce=2 * weights.mask_bce, det_l1=2 * weights.det_l1)
    model.config.losses = doubled
    try:
        with torch.no_grad():
            again = model(batch)
    finally:
        model.config.losses = weights
    for name, value in out.losses.items():
        factor = 2.0 if name in ("mask_bce", "det_l1") else 1.0
        assert float(again.losses[name]) == pytest.approx(factor * float(value.detach()), rel=1e-4), name


def test_every_part_receives_a_gradient(trained_step) -> None:
    model, _, _ = trained_step

    def has_grad(module: torch.nn.Module) -> bool:
        return any(p.grad is not None and float(p.grad.abs().sum()) > 0 for p in module.parameters())

    for name, part in model.parts().items():
        assert has_grad(part), name
    sam = model.sam2.model
    for name in ("vision_encoder", "prompt_encoder", "mask_decoder"):
        assert has_grad(getattr(sam, name)), f"sam2.{name}"


def _calls(model: SparrowModel) -> Counter:
    """Forward calls per part (the LLM is driven through its decoder stack)."""
    counts: Counter = Counter()
    modules = {**model.parts(), "llm": model.llm.get_decoder()}
    for name, part in modules.items():
        part.register_forward_hook(lambda *_, n=name: counts.update([n]))
    return counts


@pytest.mark.parametrize(
    ("answer", "with_box", "without_box"),
    [
        ("Sure, [SEG].", "Sure, [BOX] [SEG].", "Sure, [SEG]."),
        ("Sure, [BOX] [SEG].", "Sure, [BOX] [SEG].", "Sure, [SEG]."),
        ("Sure, [BOX].", "Sure, [BOX].", "Sure, [SEG]."),
        ("<p> a </p> [SEG] and <p> b </p>[BOX][SEG]", "<p> a </p> [BOX] [SEG] and <p> b </p>[BOX] [SEG]",
         "<p> a </p> [SEG] and <p> b </p>[SEG]"),
        ("No object.", "No object.", "No object."),
    ],
)  # fmt: skip
def test_format_answer_follows_the_box_switch(answer: str, with_box: str, without_box: str) -> None:
    assert PROCESSORS[True].format_answer(answer) == with_box
    assert PROCESSORS[False].format_answer(answer) == without_box


@pytest.mark.parametrize(
    ("answer", "phrases", "named"),
    [
        ("Sure, [SEG].", ["the red star. "], "Sure, <p> the red star </p> [BOX] [SEG]."),
        ("[SEG] and [BOX] [SEG]", ["a", "b"], "<p> a </p> [BOX] [SEG] and <p> b </p> [BOX] [SEG]"),
        ("Sure, [SEG].", [], "Sure, [BOX] [SEG]."),  # nothing to name it with
        ("Sure, [SEG].", ["a", "b"], "Sure, [BOX] [SEG]."),  # slots and phrases do not match
        ("<p> a </p> [SEG]", ["b"], "<p> a </p> [BOX] [SEG]"),  # already named
        ("No object.", ["a"], "No object."),
    ],
)  # fmt: skip
def test_phrase_answers_name_each_slot(answer: str, phrases: list[str], named: str) -> None:
    processor = PROCESSORS[True]
    phrase = SparrowProcessor(processor.config.replace(["phrase_answer=true"]), processor.tokenizer)
    assert phrase.format_answer(answer, phrases) == named
    assert processor.format_answer(answer, phrases) == processor.format_answer(answer)  # switch off
    assert phrase.format_answer(named, phrases) == named  # idempotent


def test_box_prompt_off_removes_the_box_branch() -> None:
    model = tiny(["box_prompt=false", "tsf.mode=off"])  # the VideoGLaMM-style baseline
    box_only = samples()[2]
    with pytest.raises(ValueError, match="no masks"):  # its lone [BOX] becomes a [SEG]
        model.processor.prepare(box_only)
    batch = model.processor.collate(samples()[:2])
    ids = model.tokenizer.ids
    assert not bool((batch.input_ids == ids.box).any()) and not bool((batch.input_ids == ids.tsf).any())
    assert batch.tsf_crops is None
    calls = _calls(model)
    out = model(batch)
    out.loss.backward()
    assert tuple(out.losses) == ("lm_ce", "mask_bce", "mask_dice", "object_score")
    assert out.proposals is None and out.filtration is None
    for name in ("proposer", "filtration", "box_projection"):
        assert calls[name] == 0, name
        assert all(p.grad is None for p in getattr(model, name).parameters()), name
    assert calls["spatial_encoder"] == 1  # frames only, no TSF crops
    prompts = model.prompts_from_hidden(torch.randn(2, model.width), torch.randn(2, model.width), None)
    assert prompts.boxes is None and prompts.seg_embeddings.shape == (2, 1, model.sam2.prompt_dim)
    assert calls["proposer"] == 0


def test_tsf_modes_change_the_prompts_and_the_encoder_calls() -> None:
    model = tiny()
    p = model.processor
    assert p.n_tsf(training=True) == 4 and p.n_tsf(training=False) == 0
    assert model.tokenizer.ids.tsf not in p.prompt_ids(QUESTION, with_tsf=False)
    calls = _calls(model)
    model(make_batch(model))
    assert calls["spatial_encoder"] == 2  # frames + TSF crops
    both = tiny(["tsf.mode=train+infer"]).processor
    assert both.n_tsf(training=False) == 4
    off = tiny(["tsf.mode=off"])
    assert off.processor.n_tsf(training=True) == 0
    with_tsf = model.processor.collate(samples()[:1])
    assert off.tokenizer.ids == model.tokenizer.ids
    with pytest.raises(ValueError, match=r"tsf\.mode is 'off'"):
        off(with_tsf)


def test_propagation_switch(monkeypatch) -> None:
    model = tiny(["propagation=framewise"]).eval()
    frames, _ = clip()
    pixels = model.processor.sam_inputs(frames)
    seg = torch.randn(1, 1, model.sam2.prompt_dim)
    box = torch.tensor([[0.3, 0.4, 0.2, 0.2]])
    monkeypatch.setattr(model.sam2, "propagate", lambda *a, **k: pytest.fail("memory used in framewise"))
    decoded = []
    real_decode = model.sam2.decode
    monkeypatch.setattr(model.sam2, "decode", lambda *a, **k: decoded.append(1) or real_decode(*a, **k))
    order = [t for t, logits, score in model.propagate(pixels, 3, box=box, seg_embedding=seg)]
    assert order == [3, 4, 5, 6, 7, 2, 1, 0] and len(decoded) == 8
    video = tiny(["propagation=video"]).eval()
    memory = []
    real_memory = video.sam2.model.memory_attention.forward
    monkeypatch.setattr(
        video.sam2.model.memory_attention, "forward", lambda *a, **k: memory.append(1) or real_memory(*a, **k)
    )
    steps = list(video.propagate(pixels, 3, box=box, seg_embedding=seg))
    assert [t for t, *_ in steps] == [3, 4, 5, 6, 7, 2, 1, 0] and len(memory) == 7
    assert all(logits.shape == (1, 1, 32, 32) and score.shape == (1, 1) for _, logits, score in steps)


def test_mismatched_targets_and_missing_box_are_errors(trained_step) -> None:
    model, trained_batch, _ = trained_step
    frames, masks = clip()
    with pytest.raises(ValueError, match="2 grounding slot\\(s\\) but 1 masklets"):
        model.processor.prepare(SparrowSample(frames, CAPTION_QUESTION, CAPTION, masks=masks[:1]))
    with pytest.raises(ValueError, match="no masks"):
        model.processor.prepare(SparrowSample(frames, QUESTION, "Sure, [SEG].", boxes=np.zeros((1, 8, 4))))
    batch = dataclasses.replace(trained_batch, input_ids=trained_batch.input_ids.clone())
    ids = model.tokenizer.ids
    row = batch.input_ids[0]
    box_at, seg_at = int((row == ids.box).nonzero()[0, 0]), int((row == ids.seg).nonzero()[0, 0])
    row[box_at], row[seg_at] = ids.seg, ids.box  # "[SEG] [BOX]": the [SEG] has no box before it
    with pytest.raises(ValueError, match="has no \\[BOX\\]"):
        model(batch)
    batch.input_ids[batch.input_ids == ids.box] = ids.p_open
    with pytest.raises(ValueError, match="0 \\[BOX\\] tokens but 4 box targets"):
        model(batch)


def _scripted_answer(model: SparrowModel, monkeypatch, script: list[int]):
    """``model.generate`` on :data:`QUESTION` with its LM made to "say" ``script`` ->
    ``(answer, prompt ids, video tokens)``."""
    tokens = iter(script)
    vocab = len(model.tokenizer)

    def scripted_head(hidden: torch.Tensor) -> torch.Tensor:
        logits = torch.zeros(hidden.shape[0], vocab)
        logits[:, next(tokens)] = 1.0
        return logits

    monkeypatch.setattr(model.llm, "get_output_embeddings", lambda: scripted_head)
    frames, _ = clip()
    spatial, temporal = model.processor.encoder_inputs(frames)
    video = model.encode_video(spatial[None], temporal[None])
    prompt = model.processor.prompt_ids(QUESTION, with_tsf=False)
    return model.generate(prompt, video, max_new_tokens=8), prompt, video


def test_generate_hidden_states_match_teacher_forcing(monkeypatch) -> None:
    """Generated [BOX]/[SEG] hidden states are the ones forward() reads at those tokens."""
    model = tiny(["tsf.mode=off"]).eval()
    ids = model.tokenizer.ids
    answer, prompt, video = _scripted_answer(
        model, monkeypatch, [ids.box, ids.seg, ids.p_open, ids.seg, ids.end]
    )
    assert answer.token_ids.tolist() == [ids.box, ids.seg, ids.p_open, ids.seg] and answer.stopped
    assert answer.text == "[BOX][SEG]<p>[SEG]"
    full = torch.tensor([prompt + answer.token_ids.tolist()])
    with torch.no_grad():
        hidden = model.llm.get_decoder()(inputs_embeds=model.embed_inputs(full, video)).last_hidden_state[0]
    n = len(prompt)
    torch.testing.assert_close(answer.seg_hidden, hidden[[n + 1, n + 3]], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(answer.box_hidden, hidden[[n]], atol=1e-4, rtol=1e-4)


def test_prompts_from_hidden_with_box() -> None:
    model = tiny().eval()
    frames, _ = clip()
    features = model.sam2.image_features(model.processor.sam_inputs(frames[:1]))
    with torch.no_grad():
        prompts = model.prompts_from_hidden(
            torch.randn(2, model.width), torch.randn(2, model.width), features
        )
    k = model.config.proposer.top_k
    assert prompts.seg_embeddings.shape == (2, 1, model.sam2.prompt_dim)
    assert prompts.boxes.shape == (2, 4) and bool(((prompts.boxes >= 0) & (prompts.boxes <= 1)).all())
    assert prompts.proposals.boxes.shape == (1, k, 4) and prompts.filtration.scores.shape == (2, k)
    with pytest.raises(ValueError, match="exactly one key frame"):
        model.prompts_from_hidden(torch.randn(1, model.width), torch.randn(1, model.width), None)


def _trainable(model: SparrowModel) -> set[str]:
    return {name for name, part in model.parts().items() if any(p.requires_grad for p in part.parameters())}


def test_stages_freeze_parts_and_choose_the_losses() -> None:
    model = tiny(["train_from_scratch=false"])
    batch = make_batch(model)
    calls = _calls(model)
    model.set_stage(0)
    assert _trainable(model) == {"proposer"}
    out = model(batch)
    assert tuple(out.losses) == STAGES[0].losses == ("det_class", "det_l1", "det_giou")
    assert calls["llm"] == calls["spatial_encoder"] == calls["filtration"] == 0 and calls["proposer"] == 1
    assert out.answer_logits is None and out.mask_logits is None

    model.set_stage(1)
    assert _trainable(model) == {"spatial_adapter", "temporal_adapter", "llm", "seg_projection"}
    calls.clear()
    out = model(batch)
    assert tuple(out.losses) == ("lm_ce", "mask_bce", "mask_dice", "object_score")
    assert calls["proposer"] == calls["filtration"] == calls["box_projection"] == 0 and calls["llm"] == 1

    model.set_stage(2)
    assert _trainable(model) == {"filtration", "seg_projection", "box_projection"}
    out = model(batch)
    assert tuple(out.losses) == (
        "lm_ce", "mask_bce", "mask_dice", "object_score", "proposal_bce", "proposal_rank", "box_l1", "box_giou"
    )  # fmt: skip
    assert out.filtration is not None

    model.set_stage(3)  # ours: the pick alone on the frozen model, no mask decoding
    assert _trainable(model) == {"filtration", "box_projection"}
    calls.clear()
    out = model(batch)
    assert tuple(out.losses) == BOX_TERMS and out.mask_logits is None and out.filtration is not None
    assert calls["llm"] == calls["proposer"] == calls["filtration"] == 1 and calls["seg_projection"] == 0

    model.set_stage(None)
    assert _trainable(model) == set(model.parts())
    with pytest.raises(ValueError, match="unknown stage"):
        model.set_stage(4)
    for stage in (2, 3):
        with pytest.raises(ValueError, match="box_prompt=true"):
            tiny(["box_prompt=false"]).set_stage(stage)


def test_stages_from_scratch_and_with_lora() -> None:
    scratch = tiny()  # the tiny preset trains from scratch: encoders and SAM2 learn in the stages
    scratch.set_stage(1)
    assert _trainable(scratch) == {
        "spatial_encoder", "spatial_adapter", "temporal_encoder", "temporal_adapter", "llm", "seg_projection", "sam2",
        "proposer",
    }  # fmt: skip
    # the proposer keeps its DETR losses while SAM2's image encoder, its input, trains
    assert loss_terms(scratch.config, 1) == (*MASK_TERMS, *DET_TERMS)
    assert loss_terms(scratch.config.replace(["box_prompt=false"]), 1) == MASK_TERMS
    scratch.set_stage(0)
    assert _trainable(scratch) == {"proposer", "sam2"}
    scratch.set_stage(2)  # the LLM learns to ground without TSF tokens in the filtration stage
    assert _trainable(scratch) == {
        "filtration", "seg_projection", "box_projection", "sam2", "llm", "spatial_adapter", "temporal_adapter",
        "proposer",
    }  # fmt: skip
    assert loss_terms(scratch.config, 2) == (*MASK_TERMS, *BOX_TERMS, *DET_TERMS)
    scratch.set_stage(3)  # the matching stage trains the head alone, from scratch too
    assert _trainable(scratch) == {"filtration", "box_projection"}
    assert loss_terms(scratch.config, 3) == BOX_TERMS
    lora = tiny(["train_from_scratch=false", "llm.lora={r: 2, alpha: 4, targets: [q_proj, v_proj]}"])
    lora.set_stage(1)
    trained = {n for n, p in lora.llm.named_parameters() if p.requires_grad}
    assert trained and all("lora_" in n for n in trained)


def test_a_batch_may_mix_samples_with_and_without_tsf(trained_step) -> None:
    model, _, _ = trained_step
    without = SparrowProcessor(model.config.replace(["tsf.mode=off"]), model.tokenizer)
    sample = samples()[0]
    batch = collate([without.prepare(sample), model.processor.prepare(sample)], model.tokenizer.ids.pad)
    assert batch.tsf_valid.any(dim=1).tolist() == [False, True]
    with torch.no_grad():
        out = model(batch)
    assert torch.isfinite(out.loss)


def test_processor_sam_inputs_match_the_sam2_preprocessing(trained_step) -> None:
    model, _, _ = trained_step
    for h, w in ((96, 106), (200, 150)):  # upscaled and downscaled
        frames = np.random.default_rng(h).integers(0, 256, (2, h, w, 3)).astype(np.uint8)
        torch.testing.assert_close(model.processor.sam_inputs(frames), model.sam2.preprocess(frames))


def _box_prompts(model: SparrowModel, monkeypatch) -> list[torch.Tensor | None]:
    """Record the box prompts of every SAM2 track call (one tensor per clip group)."""
    seen: list[torch.Tensor | None] = []
    real = model.sam2.track
    monkeypatch.setattr(model.sam2, "track", lambda *a, **k: seen.append(k.get("boxes")) or real(*a, **k))
    return seen


def test_stage0_from_scratch_pretrains_sam2_on_true_boxes(monkeypatch) -> None:
    model = tiny()  # train_from_scratch: SAM2 learns box -> masklet next to the proposer
    batch = make_batch(model)
    model.set_stage(0)
    assert loss_terms(model.config, 0) == (*STAGES[0].losses, "sam_bce", "sam_dice", "sam_object_score")
    calls = _calls(model)
    seen = _box_prompts(model, monkeypatch)
    model.eval()  # no jitter: the prompts are the targets' own key-frame boxes
    with torch.no_grad():
        out = model(batch)
    assert tuple(out.losses) == loss_terms(model.config, 0)
    assert calls["llm"] == calls["seg_projection"] == calls["filtration"] == 0
    assert all(float(out.losses[t]) > 0 for t in ("sam_bce", "sam_dice", "sam_object_score"))
    # the three [SEG] with a mask target (sample 0's and sample 1's two), each tracked from key frame 0
    # and prompted with its mask's box there (its [BOX] target, to the SAM-resolution rounding)
    prompted = torch.cat([b for b in seen if b is not None])
    wanted = batch.boxes[batch.box_valid][:3]
    assert prompted.shape[0] == 3
    assert all(bool(torch.isclose(row, wanted, atol=0.01).all(dim=1).any()) for row in prompted)
    # without the box branch (no [BOX] tokens) SAM2 still pretrains on the masks' boxes
    seen.clear()
    plain = tiny(["box_prompt=false"])
    plain.set_stage(0)
    seen_plain = _box_prompts(plain, monkeypatch)
    with torch.no_grad():
        out = plain.eval()(plain.processor.collate(samples()[:2]))
    assert set(out.losses) == {"det_class", "det_l1", "det_giou", "sam_bce", "sam_dice", "sam_object_score"}
    assert torch.cat([b for b in seen_plain if b is not None]).shape == (3, 4)

    model.train()
    out = model(batch)
    out.loss.backward()
    decoder = model.sam2.model.mask_decoder
    assert any(p.grad is not None and bool(p.grad.abs().sum() > 0) for p in decoder.parameters())
    assert all(p.grad is None for p in model.llm.parameters())


def test_seg_prompt_norm_layer_normalises_the_projected_seg() -> None:
    normed = tiny(["seg_prompt_norm=true"]).seg_projection
    plain = tiny(["seg_prompt_norm=false"]).seg_projection  # the paper's L->V MLP
    hidden = 50.0 * torch.randn(5, normed.mlp[0].in_features)
    out = normed(hidden)
    assert isinstance(normed.mlp[-1], torch.nn.LayerNorm) and len(plain.mlp) == 3
    torch.testing.assert_close(out.mean(dim=-1), torch.zeros(5), atol=1e-5, rtol=0)
    torch.testing.assert_close(out.norm(dim=-1), torch.full((5,), out.shape[-1] ** 0.5), rtol=1e-3, atol=0)


@pytest.mark.parametrize("rate", [0.0, 1.0])
def test_box_teacher_forcing_prompts_sam2_with_the_true_box(monkeypatch, rate: float) -> None:
    model = tiny([f"box_teacher_forcing={rate}"])
    batch = make_batch(model)
    model.set_stage(2)
    seen = _box_prompts(model, monkeypatch)
    torch.manual_seed(0)
    out = model(batch)
    prompted = torch.cat([b for b in seen if b is not None])
    chosen = out.filtration.selected_boxes.detach()[batch.box_valid][:3]
    truth = batch.boxes[batch.box_valid][:3]

    def nearest(rows: torch.Tensor, to: torch.Tensor) -> torch.Tensor:
        return torch.cdist(rows, to).min(dim=1).values

    if rate == 0.0:  # the filtration head's choice, as at inference
        assert float(nearest(prompted, chosen).max()) < 1e-6
    else:  # jittered ground truth: near the target, not exactly on it
        assert float(nearest(prompted, truth).max()) < 0.1
        assert float(nearest(prompted, truth).min()) > 0.0
    seen.clear()
    model.eval()  # never in evaluation
    with torch.no_grad():
        evaluated = model(batch)
    prompted = torch.cat([b for b in seen if b is not None])
    assert float(nearest(prompted, evaluated.filtration.selected_boxes[batch.box_valid][:3]).max()) < 1e-6


def test_box_teacher_forcing_must_be_a_probability() -> None:
    with pytest.raises(ConfigError, match="box_teacher_forcing"):
        load_config("tiny", ["box_teacher_forcing=1.5"])


def test_the_sam2_box_mask_prompt_follows_the_config() -> None:
    assert tiny().sam2.box_mask_prompt  # the tiny preset turns it on
    assert not tiny(["sam2.box_mask_prompt=false"]).sam2.box_mask_prompt
    assert not load_config("base").sam2.box_mask_prompt  # SAM2's own box prompt for pretrained SAM2


def test_fine_features_reach_the_filtration_head_in_training_and_inference() -> None:
    model = tiny(["filtration.fine_features=true", "box_teacher_forcing=0"])
    assert model.filtration.fine_channels == (model.sam2.prompt_dim // 8, model.sam2.prompt_dim // 4)
    assert tiny().filtration.fine_proj is None  # off in the preset: the paper's head
    model.set_stage(2)
    out = model(make_batch(model))
    out.loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.filtration.fine_proj.parameters())
    model.eval()
    frames, _ = clip()
    features = model.sam2.image_features(model.processor.sam_inputs(frames[:1]))
    with torch.no_grad():
        prompts = model.prompts_from_hidden(
            torch.randn(2, model.width), torch.randn(2, model.width), features
        )
    assert prompts.filtration.scores.shape == (2, model.config.proposer.top_k)


def test_question_tokens_are_the_prompts_words() -> None:
    model = tiny()
    batch = make_batch(model)
    tok = model.tokenizer
    positions = model.question_tokens(batch)
    assert positions.shape == batch.input_ids.shape and positions.dtype == torch.bool
    newline = set(tok.tokenizer.encode("\n").ids)
    for row, question in enumerate((QUESTION, CAPTION_QUESTION, BOX_QUESTION)):
        assert not (positions[row] & (batch.labels[row] != IGNORE_INDEX)).any()  # never an answer token
        assert not (positions[row] & ~batch.attention_mask[row].bool()).any()  # never padding
        ids = [i for i in batch.input_ids[row, positions[row]].tolist() if i not in newline]
        assert ids == tok.tokenizer.encode(question, add_special_tokens=False).ids  # in order, all


def test_word_decoder_reconstructs_the_question_from_the_filtration_query() -> None:
    model = tiny(["filtration.word_decoder=true"])
    assert tiny().filtration.word_decoder is None  # off in the preset: the paper's head
    assert loss_terms(model.config, 2)[-1] == "query_words"
    assert "query_words" not in loss_terms(model.config, 1)
    assert "query_words" not in loss_terms(model.config.replace(["box_prompt=false"]), 2)
    batch = make_batch(model)
    tok = model.tokenizer
    bags = model._question_words(batch)
    assert bags.shape == (3, len(tok))
    for row, question in enumerate((QUESTION, CAPTION_QUESTION, BOX_QUESTION)):
        expected = set(tok.tokenizer.encode(question, add_special_tokens=False).ids)
        assert set(bags[row].nonzero()[:, 0].tolist()) - set(tok.tokenizer.encode("\n").ids) <= expected
        assert expected <= set(bags[row].nonzero()[:, 0].tolist())
        assert not bags[row, [tok.ids.box, tok.ids.seg, tok.ids.video, tok.ids.user]].any()
    model.set_stage(2)
    out = model(batch)
    assert out.losses["query_words"].item() == pytest.approx(math.log(len(tok)), rel=0.1)  # fresh: ~uniform
    out.losses["query_words"].backward()  # the term alone
    assert model.filtration.word_decoder.weight.grad.abs().sum() > 0
    embeddings = model.llm.get_input_embeddings().weight.grad
    words = list(tok.tokenizer.encode(BOX_QUESTION, add_special_tokens=False).ids)
    assert embeddings[words].abs().sum() > 0  # the term trains the LLM that reads the question


def test_question_bag_adds_the_questions_encoded_words_to_the_box_state(monkeypatch) -> None:
    assert "question_bag" not in tiny().parts()  # off in the preset: the paper's [BOX] state
    model = tiny(["tsf.mode=off", "filtration.question_bag=true"]).eval()
    tok = model.tokenizer
    bag = model.question_bag
    assert not bag.out.weight.any() and not bag.out.bias.any()  # a continued model starts as it was
    model.set_stage(2)
    assert "question_bag" in _trainable(model)
    model.set_stage(1)
    assert "question_bag" not in _trainable(model)

    script = [tok.ids.box, tok.ids.seg, tok.ids.end]
    plain, _, _ = _scripted_answer(model, monkeypatch, script)
    torch.nn.init.normal_(bag.out.weight, std=0.1)
    bagged, _, _ = _scripted_answer(model, monkeypatch, script)
    # the bag forward() adds for a training example of the same question (the answer does not count)
    batch = model.processor.collate(samples()[:1])
    expected = bag(batch.input_ids, model.question_tokens(batch))
    torch.testing.assert_close(bagged.box_hidden - plain.box_hidden, expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(bagged.seg_hidden, plain.seg_hidden)  # [SEG] is the LLM's alone

    monkeypatch.undo()  # the LM's own head again
    model.train().set_stage(2)
    batch = make_batch(model)
    model(batch).loss.backward()
    grad = bag.embedding.weight.grad
    assert grad[tok.tokenizer.encode(BOX_QUESTION, add_special_tokens=False).ids].abs().sum(dim=1).all()
    assert not grad[[tok.ids.box, tok.ids.seg, tok.ids.video]].any()  # never a question word


def test_without_the_box_state_the_query_is_the_question_bag_alone(monkeypatch) -> None:
    with pytest.raises(ConfigError, match="no query"):
        tiny(["filtration.box_state=false"])  # nothing left to query with
    model = tiny(["tsf.mode=off", "filtration.question_bag=true", "filtration.box_state=false"]).eval()
    tok = model.tokenizer
    torch.nn.init.normal_(model.question_bag.out.weight, std=0.1)
    script = [tok.ids.box, tok.ids.seg, tok.ids.box, tok.ids.seg, tok.ids.end]
    answer, _, _ = _scripted_answer(model, monkeypatch, script)
    batch = model.processor.collate(samples()[:1])
    bag = model.question_bag(batch.input_ids, model.question_tokens(batch))
    torch.testing.assert_close(answer.box_hidden, bag.expand(2, -1), atol=1e-5, rtol=1e-5)
    batch = make_batch(model)
    states = model.box_states(batch, torch.randn(*batch.input_ids.shape, model.llm.config.hidden_size))
    bags = model.question_bag(batch.input_ids, model.question_tokens(batch))[batch.box_sample]
    torch.testing.assert_close(states, bags)  # the LLM's states play no part


def _decoded(mask: torch.Tensor, score: float) -> MaskDecoderOutput:
    """A mask-decoder output whose low-res mask is ``mask`` ``(32, 32)`` bool."""
    logits = torch.where(mask, 5.0, -5.0)[None, None]
    return MaskDecoderOutput(logits, torch.ones(1, 1), torch.tensor([[score]]), torch.zeros(1, 8))


def _follow_box(out: MaskDecoderOutput, box: torch.Tensor | None) -> torch.Tensor | None:
    return _follow(out, box, None, with_mask=False)[0]


def test_follow_is_the_widened_box_of_the_mask_and_the_mask() -> None:
    mask = torch.zeros(32, 32, dtype=torch.bool)
    mask[4:12, 8:16] = True  # x 8..15, y 4..11 on the 32-cell grid: xyxy (0.25, 0.125, 0.5, 0.375)
    previous = torch.tensor([[0.5, 0.5, 0.1, 0.1]])
    follow = _follow_box(_decoded(mask, 2.0), previous)
    w, h = 0.25 * (1 + 2 * CHAIN_MARGIN), 0.25 * (1 + 2 * CHAIN_MARGIN)
    assert torch.allclose(follow, torch.tensor([[0.375, 0.25, w, h]]), atol=1e-6)
    assert _follow_box(_decoded(mask, -1.0), previous) is previous  # absent: keep the last box
    assert _follow_box(_decoded(torch.zeros_like(mask), 2.0), previous) is previous  # empty mask
    last = torch.ones(1, 1, 32, 32)
    box, prompt = _follow(_decoded(mask, 2.0), previous, last, with_mask=True)
    assert torch.allclose(box, follow) and prompt.shape == (1, 1, 32, 32)
    assert torch.equal(prompt[0, 0].bool(), mask)
    assert _follow(_decoded(mask, -1.0), previous, last, with_mask=True) == (previous, last)
    mask[:, :] = True  # widening is clipped to the image
    assert torch.allclose(_follow_box(_decoded(mask, 2.0), None), torch.tensor([[0.5, 0.5, 1.0, 1.0]]))


def test_chain_propagation_prompts_each_frame_with_the_previous_frames_box(monkeypatch) -> None:
    model = tiny(["propagation=chain"]).eval()
    frames, _ = clip()
    pixels = model.processor.sam_inputs(frames)
    monkeypatch.setattr(model.sam2, "propagate", lambda *a, **k: pytest.fail("memory used in chain"))
    prompts: list[torch.Tensor] = []

    def decode(features, *, boxes, seg_embeddings, mask_prompts):  # the object moves 2 cells right per call
        assert mask_prompts is None  # chain_mask_prompt off
        prompts.append(boxes)
        mask = torch.zeros(32, 32, dtype=torch.bool)
        x = 2 * len(prompts)
        mask[10:14, x : x + 4] = True
        return _decoded(mask, 1.0 if len(prompts) != 3 else -1.0)  # absent on the third frame

    monkeypatch.setattr(model.sam2, "decode", decode)
    box = torch.tensor([[0.3, 0.4, 0.2, 0.2]])
    seg = torch.randn(1, 1, model.sam2.prompt_dim)
    order = [t for t, *_ in model.propagate(pixels, 3, box=box, seg_embedding=seg)]
    assert order == [3, 4, 5, 6, 7, 2, 1, 0]
    expected = [box]
    for call in range(1, 8):  # the box each call's mask gives, with the 4th and 6th prompts special
        mask = torch.zeros(32, 32, dtype=torch.bool)
        mask[10:14, 2 * call : 2 * call + 4] = True
        expected.append(_follow_box(_decoded(mask, 1.0), None))
    # call 3 (frame 5) is absent: frame 6 keeps frame 5's prompt; frame 2 restarts from the key frame's box
    wanted = [
        expected[0],
        expected[1],
        expected[2],
        expected[2],
        expected[4],
        expected[1],
        expected[6],
        expected[7],
    ]
    for got, want in zip(prompts, wanted, strict=True):
        assert torch.allclose(got, want)


def test_chain_mask_prompt_follows_the_previous_mask(monkeypatch) -> None:
    model = tiny(["propagation=chain", "chain_mask_prompt=true"]).eval()
    pixels = model.processor.sam_inputs(clip()[0])
    given: list[torch.Tensor | None] = []

    def decode(features, *, boxes, seg_embeddings, mask_prompts):  # a square 2 cells right per call
        given.append(mask_prompts)
        mask = torch.zeros(32, 32, dtype=torch.bool)
        mask[10:14, 2 * len(given) : 2 * len(given) + 4] = True
        return _decoded(mask, 1.0 if len(given) != 3 else -1.0)  # absent on the third call

    monkeypatch.setattr(model.sam2, "decode", decode)
    box = torch.tensor([[0.3, 0.4, 0.2, 0.2]])
    list(model.propagate(pixels, 3, box=box, seg_embedding=torch.randn(1, 1, model.sam2.prompt_dim)))
    columns = [None if m is None else m[0, 0].any(dim=0).nonzero()[:, 0].tolist() for m in given]
    square = [list(range(2 * call, 2 * call + 4)) for call in range(8)]
    # key frame 3 (call 1) without; frames 4-7: the previous call's mask, the absent call 3 skipped;
    # frame 2 restarts from the key frame's mask
    assert columns == [None, square[1], square[2], square[2], square[4], square[1], square[6], square[7]]


def test_chain_training_prompts_each_frame_from_the_previous_frames_truth(monkeypatch) -> None:
    model = tiny(["propagation=chain", "chain_mask_prompt=true", "box_teacher_forcing=0"]).eval()
    model.set_stage(1)  # mask terms only: every decode call is a [SEG] pair
    batch = make_batch(model)
    assert batch.key_frames.tolist() == [0, 0, 0]
    calls: list[dict] = []
    real_decode = model.sam2.decode

    def decode(features, **prompts):
        calls.append(prompts)
        return real_decode(features, **prompts)

    monkeypatch.setattr(model.sam2, "decode", decode)
    memory = model.sam2.model.memory_attention
    monkeypatch.setattr(memory, "forward", lambda *a, **k: pytest.fail("memory used in chain training"))
    out = model(batch)
    assert torch.isfinite(out.loss)
    keyed, chained = calls  # key frames first, then every other supervised frame
    # one key frame per [SEG], prompted as at inference (stage 1: [SEG] alone, no box branch)
    assert keyed.get("mask_prompts") is None and keyed["boxes"] is None
    assert keyed["seg_embeddings"].shape[0] == 3
    # The chained rows in pair order: [SEG] 0 on frames 1..7, [SEG] 1 and 2 on the supervised 2, 5, 7.
    sources = [(0, f - 1) for f in range(1, 8)] + [(j, f) for j in (1, 2) for f in (0, 2, 5)]
    truth = torch.stack([batch.seg_masks[j, f] for j, f in sources])
    assert truth.flatten(1).any(dim=1).all()  # the toy objects are visible on every frame
    xyxy = masks_to_boxes(truth) / truth.shape[-1]
    size = (xyxy[:, 2:] - xyxy[:, :2]).repeat(1, 2)
    widened = (xyxy + CHAIN_MARGIN * size * torch.tensor([-1.0, -1.0, 1.0, 1.0])).clamp(0, 1)
    centre, wh = (widened[:, :2] + widened[:, 2:]) / 2, widened[:, 2:] - widened[:, :2]
    assert torch.allclose(chained["boxes"], torch.cat([centre, wh], dim=1), atol=1e-6)
    prompts = chained["mask_prompts"]
    assert prompts.shape == (len(sources), 1, 32, 32)
    coarse = torch.nn.functional.interpolate(truth[:, None].float(), size=(32, 32), mode="area") >= 0.5
    assert torch.equal(prompts.bool(), coarse)


def test_mask_prompt_enters_the_decoder() -> None:
    model = tiny().eval()
    features = model.sam2.image_features(model.processor.sam_inputs(clip()[0][:2]))
    box = torch.tensor([[0.5, 0.5, 0.4, 0.4]] * 2)
    plain = model.sam2.decode(features, boxes=box).mask_logits
    masks = torch.zeros(2, 1, 32, 32)
    masks[:, :, 4:12, 4:12] = 1.0
    prompted = model.sam2.decode(features, boxes=box, mask_prompts=masks).mask_logits
    assert not torch.allclose(plain, prompted)
    with pytest.raises(ValueError, match=r"mask_prompts must be \(N, 1, 32, 32\)"):
        model.sam2.decode(features, boxes=box, mask_prompts=masks[:, :, :16, :16])


def test_the_pick_on_its_cached_inputs_gives_the_full_forwards_box_terms() -> None:
    """Stage 3 on a cache: ``pick_inputs`` takes what the pick reads of a batch once; ``forward`` of
    that :class:`PickBatch` gives exactly the box terms of the full forward, rows split and joined
    again included."""
    model = tiny(["tsf.mode=off", "filtration.fine_features=true", "filtration.question_bag=true"]).eval()
    torch.nn.init.normal_(model.question_bag.out.weight)  # a bag that changes the query
    model.set_stage(3)
    batch = make_batch(model)
    full = model(batch)
    rows = model.pick_inputs(batch)
    assert len(rows) == int(batch.box_valid.sum()) == 4  # every [BOX] with its target on the key frame
    assert rows.fine.shape == (4, model.config.proposer.top_k, model.filtration.fine_dim)
    assert (
        rows.word_mask.sum(dim=1).tolist()
        == model.question_tokens(batch)[batch.box_sample].sum(dim=1).tolist()
    )
    joined = PickBatch.cat([rows.select([3, 1]), rows.select([0, 2])]).select([2, 1, 3, 0])
    for pick in (rows, joined):
        out = model(pick)
        assert tuple(out.losses) == BOX_TERMS
        for name in BOX_TERMS:
            torch.testing.assert_close(out.losses[name], full.losses[name])
    out.loss.backward()
    assert model.question_bag.embedding.weight.grad is not None
    model.set_stage(2)
    with pytest.raises(ValueError, match="stage 3"):
        model(rows)


def test_pick_batches_of_different_models_do_not_join() -> None:
    model = tiny(["tsf.mode=off"]).eval()
    rows = model.pick_inputs(make_batch(model))
    assert rows.fine is None and len(rows.select([])) == 0
    other = tiny(["tsf.mode=off", "filtration.fine_features=true"]).eval()
    with pytest.raises(ValueError, match="different models"):
        PickBatch.cat([rows, other.pick_inputs(make_batch(other))])
    with pytest.raises(ValueError, match="at least one"):
        PickBatch.cat([])
