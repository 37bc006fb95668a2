"""Learning test: the tiny model overfits one SynRef sample (one expression, 8 frames).

From scratch, on CPU (AdamW, lr 2e-3, batch of one): the model's masks on the 8 supervised SAM
frames reach IoU >= 0.9 with the referent (about 50-70 steps, 0.2-0.4 s each on a 2-core machine),
and greedy generation answers with ``[BOX] [SEG]`` whose hidden states, through the inference
pieces (proposals + filtration on the key frame, then SAM2 memory propagation and frame-wise
decoding), give masks of IoU >= 0.9. Training uses ``propagation=video`` (the key frame prompted,
the other frames tracked through SAM2's memory), so propagation runs the trained path. TSF runs in
training and inference (``train+infer``): the inference prompt carries the TSF tokens of the
referent's track, as training did.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from sparrow.data.synref import GenerationRequest, generate_video, preset
from sparrow.models import SparrowModel, SparrowSample, collate
from sparrow.models.tsf import track_boxes
from sparrow.structures.boxes import masks_to_boxes

MAX_STEPS = 300
TIME_BUDGET_S = 150.0


def synref_sample():
    """Video 0 of a small SynRef split and its first one-referent segmentation question."""
    request = GenerationRequest(
        split="overfit",
        videos=1,
        frames=8,
        size=(128, 128),
        seed=0,
        difficulty="standard",
        knobs=preset("standard"),
    )
    video = generate_video(request, 0)
    qa, expression = next(
        (qa, e) for qa, e in zip(video.qa, video.expressions, strict=True) if len(e.referents) == 1
    )
    segment = next(q for q in qa if q["task"] == "segment")
    masks = video.rendering.visible_masks()
    return video, segment["question"], segment["answer"], masks[list(expression.referents)].any(axis=0), masks


def corpus(n_videos: int = 12) -> list[str]:
    """SynRef text of a few videos: questions, answers, expressions and captions."""
    request = GenerationRequest(
        split="corpus",
        videos=n_videos,
        frames=8,
        size=(128, 128),
        seed=1,
        difficulty="standard",
        knobs=preset("standard"),
    )
    texts = []
    for i in range(n_videos):
        video = generate_video(request, i)
        texts.append(video.caption.text)
        for qa in video.qa:
            texts.extend(f"{q['question']} {q['answer']}" for q in qa)
    return texts


def iou(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per-mask IoU of ``logits > 0`` with bool ``targets``, both ``(N, H, W)``."""
    pred = logits > 0
    inter = (pred & targets).flatten(1).sum(1).float()
    union = (pred | targets).flatten(1).sum(1).float()
    return inter / union.clamp(min=1)


def test_tiny_model_overfits_one_synref_sample() -> None:
    torch.manual_seed(0)
    video, question, answer, referent, objects = synref_sample()
    frames = video.rendering.frames
    overrides = ["tsf.mode=train+infer", "propagation=video", "llm.tokenizer_vocab_size=512"]
    model = SparrowModel.from_preset("tiny", overrides, texts=[*corpus(), question, answer])
    tokenizer = model.tokenizer
    sample = SparrowSample(
        frames, question, answer, masks=referent[None], object_boxes=masks_to_boxes(objects[:, 0])
    )
    prepared = model.processor.prepare(sample)
    batch = collate([prepared], tokenizer.ids.pad)
    assert int(batch.supervised.sum()) == 8 and bool(batch.seg_masks.any())

    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.0)
    size = tuple(batch.seg_masks.shape[-2:])
    targets = batch.seg_masks[0]  # (8, S, S): every SAM frame is supervised
    start = time.monotonic()
    model.train()
    for step in range(MAX_STEPS):
        out = model(batch)
        optimizer.zero_grad()
        out.loss.backward()
        optimizer.step()
        if step % 5 == 4:
            with torch.no_grad():
                fitted = iou(model.sam2.upsample_logits(out.mask_logits, size)[:, 0], targets).min()
            if (fitted >= 0.95 and out.losses["lm_ce"] < 0.01) or time.monotonic() - start > TIME_BUDGET_S:
                break

    model.eval()
    with torch.no_grad():
        out = model(batch)
    assert out.mask_pairs[:, 1].tolist() == list(range(8))
    scores = iou(model.sam2.upsample_logits(out.mask_logits, size)[:, 0], targets)
    assert scores.shape == (8,)
    assert float(scores.min()) >= 0.9, (step, scores.tolist())

    spatial, temporal = model.processor.encoder_inputs(frames)
    crops = model.processor.tsf_crops(frames, track_boxes(referent))  # TSF from the referent's track
    with torch.no_grad():
        video_tokens = model.encode_video(spatial[None], temporal[None])
        tsf_tokens = model.tsf_tokens(crops[None])
    prompt = model.processor.prompt_ids(question, with_tsf=True)
    generated = model.generate(prompt, video_tokens, tsf_tokens, max_new_tokens=16)
    assert generated.stopped and generated.text == "Sure, [BOX] [SEG].", generated.text
    assert generated.seg_hidden.shape == generated.box_hidden.shape == (1, model.width)
    assert np.isfinite(generated.seg_hidden.numpy()).all()

    # The inference pieces: prompts from the generated hidden states, then SAM2 memory propagation
    # from the key frame (the path trained) and, with the same prompts, frame-wise and chained decoding.
    pixels = torch.from_numpy(prepared.sam_frames)
    with torch.no_grad():
        key = model.sam2.image_features(pixels[:1])
        prompts = model.prompts_from_hidden(generated.seg_hidden, generated.box_hidden, key)
    for propagation in ("video", "framewise", "chain"):
        model.config = model.config.replace({"propagation": propagation})
        masks = dict(
            (t, logits)
            for t, logits, _ in model.propagate(
                pixels, 0, box=prompts.boxes, seg_embedding=prompts.seg_embeddings
            )
        )
        inferred = torch.cat([masks[t] for t in range(8)])
        inferred_iou = iou(model.sam2.upsample_logits(inferred, size)[:, 0], targets)
        assert float(inferred_iou.min()) >= 0.9, (propagation, inferred_iou.tolist())
