"""Learning test of the whole inference path on a model that KNOWS the answer.

A tiny model is overfitted on one SynRef sample (one expression, 8 frames of 128x160), then
``GroundingPipeline`` runs on the clip written as mp4 and read back streamed: generation, parsing,
self-TSF (the model is ``train+infer``), proposals + filtration on the key frame, the box and
``[SEG]`` prompts, frame-wise SAM2 decoding (what training supervises), upsampling from 32x32 logits
to the original 128x160 and RLE. The masks must match the referent on every frame.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import torch

from sparrow.data.synref import GenerationRequest, generate_video, preset
from sparrow.inference import GroundingOptions, GroundingPipeline
from sparrow.io import write_video
from sparrow.models import (
    SparrowModel,
    SparrowProcessor,
    SparrowSample,
    collate,
    load_config,
    train_tokenizer,
)
from sparrow.structures import mask_iou, masks_to_boxes

TIME_BUDGET_S = 150.0


@pytest.mark.slow
def test_pipeline_recovers_the_referent_of_an_overfitted_model(tmp_path: Path) -> None:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        request = GenerationRequest(
            split="infer-overfit", videos=8, frames=8, size=(128, 160), seed=5, difficulty="standard",
            knobs=preset("standard"),
        )  # fmt: skip
        video = generate_video(request, 7)
        expression = video.expressions[3]  # one large, always visible referent
        objects = video.rendering.visible_masks()
        referent = objects[list(expression.referents)].any(axis=0)
        frames = video.rendering.frames
        torch.manual_seed(0)
        config = load_config("tiny", ["tsf.mode=train+infer", "propagation=framewise"])
        question = GroundingOptions().question_template.format(phrase=expression.text)
        tokenizer = train_tokenizer([question, "Sure, [SEG]."] * 8, config.llm.template, vocab_size=300)
        model = SparrowModel(config, tokenizer)
        item = SparrowSample(
            frames, question, "Sure, [SEG].", masks=referent[None], object_boxes=masks_to_boxes(objects[:, 0])
        )
        # Both prompts of the self-TSF inference: the first pass has no TSF tokens, the second has
        # TSF tokens from the first pass's masklet. Trained on both, the answer does not hinge on
        # how the LM reacts to a prompt it never saw.
        without_tsf = SparrowProcessor(config.replace(["tsf.mode=off"]), tokenizer).prepare(item)
        batch = collate([model.processor.prepare(item), without_tsf], tokenizer.ids.pad)
        optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.0)
        start = time.monotonic()
        model.train()
        for _ in range(200):
            out = model(batch)
            optimizer.zero_grad()
            out.loss.backward()
            optimizer.step()
            fitted = out.losses["mask_dice"].item() < 0.02 and out.losses["lm_ce"].item() < 0.01
            if fitted or time.monotonic() - start > TIME_BUDGET_S:
                break
        clip = tmp_path / "clip.mp4"
        write_video(clip, frames, fps=5)
        result = GroundingPipeline(model, GroundingOptions(max_new_tokens=12))(clip, expression.text)
    finally:
        torch.set_num_threads(threads)
    assert result.raw_text == "Sure, [BOX] [SEG].", result.raw_text
    assert result.meta["tsf_tokens"] and "self_tsf_first_pass" in result.meta
    (phrase,) = result.phrases
    assert phrase.text == expression.text and phrase.masklet.size == (128, 160)
    masks = phrase.masklet.masks()
    ious = [mask_iou(masks[t], referent[t]) for t in range(8)]
    assert min(ious) >= 0.8, ious
    assert phrase.masklet.spans() == [(0, 7)]
    np.testing.assert_allclose(phrase.masklet.boxes, masks_to_boxes(masks))
