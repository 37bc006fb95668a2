"""Speed of the tiny SPARROW model on this machine: training step, forward, and the inference pieces.

Builds the ``tiny`` preset from scratch (tokenizer trained on SynRef text), makes one SynRef training
sample (8 frames at 128x128, all 8 SAM frames supervised, TSF on), and reports medians over
``--steps`` repetitions after one warm-up:

- training step: forward + backward + AdamW step, per step and per supervised SAM frame;
- forward (no grad): per step and per SAM frame;
- the inference pieces on a ``--clip-frames`` clip (default 64 frames at 128x128): visual tokens,
  greedy generation of the answer (``--new-tokens`` tokens), proposals + filtration on the key frame,
  and SAM2 over every frame, in ``video`` (memory) and ``framewise`` propagation, as frames/s.

    python benchmarks/model_step.py
    python benchmarks/model_step.py --steps 10 --threads 1 --json out/model_step.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from sparrow.data.synref import GenerationRequest, generate_video, preset
from sparrow.models import SparrowModel, SparrowSample


def _median_seconds(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _synref(frames: int, size: int, seed: int, videos: int = 1):
    request = GenerationRequest(
        split="bench", videos=videos, frames=frames, size=(size, size), seed=seed, difficulty="standard",
        knobs=preset("standard"),
    )  # fmt: skip
    return [generate_video(request, i) for i in range(videos)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=5, help="timed repetitions (median reported)")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--clip-frames", type=int, default=64, help="frames of the inference clip")
    parser.add_argument("--new-tokens", type=int, default=8, help="tokens generated in the inference timing")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures to this JSON file")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    corpus_videos = _synref(8, 128, seed=1, videos=8)
    texts = [v.caption.text for v in corpus_videos]
    texts += [f"{q['question']} {q['answer']}" for v in corpus_videos for qa in v.qa for q in qa]
    model = SparrowModel.from_preset("tiny", texts=texts)
    config = model.config
    n_params = sum(p.numel() for p in model.parameters())

    video = _synref(8, 128, seed=0)[0]
    expression = next(e for e in video.expressions if len(e.referents) == 1)
    masks = video.rendering.visible_masks()
    referent = masks[list(expression.referents)].any(axis=0)
    question = f"Please segment {expression.text} in this video."
    batch = model.processor.collate(
        [SparrowSample(video.rendering.frames, question, "Sure, [SEG].", masks=referent[None])]
    )
    sam_frames = int(batch.supervised.sum())
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def train_step() -> None:
        out = model(batch)
        optimizer.zero_grad()
        out.loss.backward()
        optimizer.step()

    def forward() -> None:
        with torch.no_grad():
            model(batch)

    model.train()
    step_s = _median_seconds(train_step, args.steps)
    model.eval()
    forward_s = _median_seconds(forward, args.steps)

    # Inference pieces on a longer clip.
    clip = _synref(args.clip_frames, 128, seed=2)[0].rendering.frames
    p = model.processor
    prompt = p.prompt_ids(question, with_tsf=False)
    with torch.no_grad():
        spatial, temporal = p.encoder_inputs(clip)
        encode_s = _median_seconds(lambda: model.encode_video(spatial[None], temporal[None]), args.steps)
        tokens = model.encode_video(spatial[None], temporal[None])
        hidden = torch.randn(1, model.width)
        generate_s = _median_seconds(lambda: _generate_n(model, prompt, tokens, args.new_tokens), args.steps)
        pixels = p.sam_inputs(clip)
        key = model.sam2.image_features(pixels[:1])
        select_s = _median_seconds(lambda: model.prompts_from_hidden(hidden, hidden, key), args.steps)
        prompts = model.prompts_from_hidden(hidden, hidden, key)
    sam_fps = {}
    for mode in ("video", "framewise"):
        model.config.propagation = mode
        run = lambda: list(  # noqa: E731
            model.propagate(pixels, 0, box=prompts.boxes, seg_embedding=prompts.seg_embeddings)
        )
        sam_fps[mode] = args.clip_frames / _median_seconds(run, max(1, args.steps // 2))
    model.config.propagation = config.propagation
    fixed_s = encode_s + generate_s + select_s
    end_to_end = {m: args.clip_frames / (fixed_s + args.clip_frames / fps) for m, fps in sam_fps.items()}

    figures = {
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(),
            "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(),
        },
        "model": {"preset": "tiny", "parameters": n_params, "sam_frames": sam_frames},
        "train_step_s": step_s,
        "train_step_per_sam_frame_ms": 1000 * step_s / sam_frames,
        "forward_s": forward_s,
        "forward_per_sam_frame_ms": 1000 * forward_s / sam_frames,
        "inference": {
            "clip_frames": args.clip_frames,
            "encode_video_ms": 1000 * encode_s,
            f"generate_{args.new_tokens}_tokens_ms": 1000 * generate_s,
            "proposals_and_filtration_ms": 1000 * select_s,
            "sam2_fps": sam_fps,
            "end_to_end_fps": end_to_end,
        },
    }
    m = figures["machine"]
    print(
        f"machine: {m['platform']} | {m['processor']} | {m['cpu_count']} cores | torch {m['torch']}, {m['torch_threads']} threads"
    )
    print(
        f"tiny model: {n_params / 1e6:.2f} M parameters; one SynRef sample, {sam_frames} supervised SAM frames"
    )
    print(
        f"training step: {step_s * 1000:.0f} ms  ({figures['train_step_per_sam_frame_ms']:.1f} ms per SAM frame)"
    )
    print(
        f"forward:       {forward_s * 1000:.0f} ms  ({figures['forward_per_sam_frame_ms']:.1f} ms per SAM frame)"
    )
    inf = figures["inference"]
    print(
        f"inference on {args.clip_frames} frames at 128x128: visual tokens {inf['encode_video_ms']:.0f} ms, "
        f"{args.new_tokens} tokens {1000 * generate_s:.0f} ms, proposals+filtration {inf['proposals_and_filtration_ms']:.0f} ms"
    )
    for mode in ("video", "framewise"):
        print(f"  SAM2 {mode:9s}: {sam_fps[mode]:.1f} frames/s; end to end {end_to_end[mode]:.1f} frames/s")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(figures, indent=2) + "\n")


def _generate_n(model: SparrowModel, prompt: list[int], tokens: torch.Tensor, n: int) -> None:
    """Exactly ``n`` greedy tokens (no stop token), so the timing does not depend on the weights."""
    from sparrow.models.llm import greedy_generate

    embeds = model.embed_inputs(torch.tensor([prompt]), tokens)
    greedy_generate(model.llm, embeds, max_new_tokens=n, stop_ids=set())


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
