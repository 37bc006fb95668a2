"""Inference speed and memory of ``GroundingPipeline`` (end to end: video decoding, encoders,
generation, key-frame prompts, SAM2 propagation, upsampling and RLE encoding of every mask).

Two measurements:

1. **speed** -- a 64-frame 128x128 mp4, ``pipe(video, prompt)`` timed after one warm-up call
   (median of ``--repeats``); frames/s = frames / seconds (target: >= 25 on the 2-core dev machine).
   The model's saved settings are timed against the paper's key frame 0 (``key_frame="first"``,
   the baseline of the ratio) in the same run.
2. **memory** -- a 3,000-frame and a 300-frame 480p mp4 (854x480), each grounded in its own
   subprocess; peak RSS (``ru_maxrss``) of the long one must stay within 1.25x of the short one.

Usage::

    python benchmarks/infer_speed.py                      # the bundled model
    python benchmarks/infer_speed.py --model runs/synref_tiny/2-filter/final
    python benchmarks/infer_speed.py --random-tiny        # no trained model: a random tiny one

``--random-tiny`` saves a randomly initialised ``tiny``-preset model to a temporary folder: the
figures are then speed / memory only, and the answer is the generated one (``max_new_tokens``
tokens, usually without ``[SEG]``) followed by the template answer, so the timing includes both.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

PROMPT = "the red square"


def moving_square(frames: int, height: int, width: int, seed: int = 0):
    """Frames of a red square crossing a noisy background (a generator: memory stays flat)."""
    rng = np.random.default_rng(seed)
    background = rng.integers(0, 60, (height, width, 3)).astype(np.uint8)
    side = max(8, height // 5)
    for t in range(frames):
        frame = background.copy()
        x = int((width - side) * (0.5 + 0.45 * np.sin(t / 25.0)))
        y = int((height - side) * (0.5 + 0.3 * np.cos(t / 40.0)))
        frame[y : y + side, x : x + side] = (220, 30, 30)
        yield frame


def make_video(path: Path, frames: int, height: int, width: int) -> Path:
    from sparrow.io import write_video

    if not path.exists():
        write_video(path, moving_square(frames, height, width), fps=25)
    return path


def random_tiny(folder: Path) -> Path:
    """A randomly initialised tiny model (tokenizer trained on a few template sentences)."""
    import torch

    from sparrow.models import SparrowModel, load_config, train_tokenizer

    config = load_config("tiny")
    corpus = [
        "Can you segment the red square in this video?",
        "Sure, [BOX] [SEG].",
        "Sure, <p> the red square </p> [BOX] [SEG] moves past <p> a blue circle </p> [BOX] [SEG].",
    ]
    tokenizer = train_tokenizer(corpus * 8, config.llm.template, vocab_size=config.llm.tokenizer_vocab_size)
    torch.manual_seed(0)
    SparrowModel(config, tokenizer).save_pretrained(folder)
    return folder


def pipeline(model: str, max_new_tokens: int, device: str, key_frame: str | None = None):
    """The model's saved settings (``key_frame=None``) or another key-frame choice."""
    from sparrow.inference import GroundingOptions, GroundingPipeline

    options = GroundingOptions(fallback_template=True, max_new_tokens=max_new_tokens, key_frame=key_frame)  # type: ignore[arg-type]
    return GroundingPipeline.from_pretrained(model, options=options, device=device)


def speed(
    model: str, video: Path, repeats: int, max_new_tokens: int, device: str, key_frame: str | None
) -> dict:
    pipe = pipeline(model, max_new_tokens, device, key_frame)
    pipe(video, PROMPT)  # warm-up (lazy imports, allocator, caches)
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = pipe(video, PROMPT)
        times.append(time.perf_counter() - start)
    assert result is not None
    n = len(result.frame_indices)
    seconds = float(np.median(times))
    return {
        "frames": n,
        "size": list(result.size),
        "seconds": round(seconds, 3),
        "frames_per_s": round(n / seconds, 1),
        "runs_s": [round(t, 3) for t in times],
        "key_frame": pipe.options.key_frame,
        "answer": result.raw_text,
        "template_answer": result.meta["template_answer"],
        "phrases": len(result.phrases),
        "stage_timings_s": result.meta["timings"],
    }


def child(model: str, video: Path, max_new_tokens: int, device: str) -> None:
    """Run one grounding and print peak RSS (MiB) and timings as JSON (the memory subprocess)."""
    pipe = pipeline(model, max_new_tokens, device)
    start = time.perf_counter()
    frames = 0
    stream = pipe.stream(video, PROMPT)
    for _ in stream:
        frames += 1
    result = stream.result()
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB
    print(json.dumps({"frames": frames, "seconds": round(seconds, 2), "peak_rss_mib": round(peak, 1),
                      "phrases": len(result.phrases)}))  # fmt: skip


def memory(model: str, long_video: Path, short_video: Path, max_new_tokens: int, device: str) -> dict:
    out = {}
    for name, video in (("short", short_video), ("long", long_video)):
        cmd = [sys.executable, __file__, "--child", str(video), "--model", model,
               "--max-new-tokens", str(max_new_tokens), "--device", device]  # fmt: skip
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode:
            raise SystemExit(f"memory run on {video} failed:\n{proc.stderr[-3000:]}")
        out[name] = json.loads(proc.stdout.strip().splitlines()[-1])
    out["rss_ratio_long_over_short"] = round(out["long"]["peak_rss_mib"] / out["short"]["peak_rss_mib"], 3)
    out["rss_growth_mib"] = round(out["long"]["peak_rss_mib"] - out["short"]["peak_rss_mib"], 1)
    out["within_1.25x"] = out["rss_ratio_long_over_short"] <= 1.25
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="default", help="model folder, or 'default' (bundled)")
    parser.add_argument("--random-tiny", action="store_true", help="use a random tiny model (no trained one)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--frames", type=int, default=64)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--max-new-tokens", type=int, default=8)
    parser.add_argument("--long", type=int, default=3000, help="frames of the long memory video (0: skip)")
    parser.add_argument("--short", type=int, default=300)
    parser.add_argument("--memory-size", default="480x854", help="HxW of the memory videos")
    parser.add_argument("--workdir", type=Path, default=None, help="where the test videos are kept")
    parser.add_argument("--json", type=Path, default=None, help="write the figures as JSON")
    parser.add_argument("--child", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    if args.child is not None:
        child(args.model, args.child, args.max_new_tokens, args.device)
        return

    import torch

    from sparrow.errors import SparrowError
    from sparrow.inference.model_path import resolve_model_path

    work = args.workdir or Path(tempfile.mkdtemp(prefix="sparrow-infer-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    if args.random_tiny:
        model = str(random_tiny(work / "random-tiny"))
        label = f"random tiny model ({model}): speed and memory only, NOT a trained model"
    else:
        try:
            model = str(resolve_model_path(args.model))
        except SparrowError as err:
            raise SystemExit(f"{err}\n(or run with --random-tiny for speed / memory figures)") from None
        label = model
    print(f"model: {label}")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} cores, "
          f"load average {os.getloadavg()[0]:.2f}")  # fmt: skip

    report: dict = {"model": label, "threads": torch.get_num_threads(), "load_average": os.getloadavg()[0]}
    clip = make_video(work / f"speed_{args.frames}x{args.size}.mp4", args.frames, args.size, args.size)
    report["speed_key_frame_0"] = speed(model, clip, args.repeats, args.max_new_tokens, args.device, "first")
    report["speed"] = speed(model, clip, args.repeats, args.max_new_tokens, args.device, None)
    for name in ("speed_key_frame_0", "speed"):
        s = report[name]
        verdict = "meets" if s["frames_per_s"] >= 25 else "below"
        print(f"{name}: {s['frames']} frames {args.size}x{args.size}, key frame {s['key_frame']}, in "
              f"{s['seconds']} s -> {s['frames_per_s']} frames/s end to end ({verdict} the 25 frames/s target)")  # fmt: skip
        print(
            f"  answer {s['answer']!r} (template read: {s['template_answer']}); stages {s['stage_timings_s']}"
        )
    ratio = report["speed"]["frames_per_s"] / report["speed_key_frame_0"]["frames_per_s"]
    report["speed_ratio_saved_over_key_frame_0"] = round(ratio, 3)
    print(f"speed ratio, saved settings / key frame 0: {ratio:.3f}")

    if args.long:
        h, w = (int(v) for v in args.memory_size.split("x"))
        started = time.perf_counter()
        long_video = make_video(work / f"memory_{args.long}_{h}x{w}.mp4", args.long, h, w)
        short_video = make_video(work / f"memory_{args.short}_{h}x{w}.mp4", args.short, h, w)
        print(f"memory videos ready in {time.perf_counter() - started:.0f} s ({work})")
        report["memory"] = memory(model, long_video, short_video, args.max_new_tokens, args.device)
        m = report["memory"]
        print(f"memory: {args.short} frames peak RSS {m['short']['peak_rss_mib']} MiB ({m['short']['seconds']} s); "
              f"{args.long} frames {m['long']['peak_rss_mib']} MiB ({m['long']['seconds']} s) -> ratio "
              f"{m['rss_ratio_long_over_short']} (+{m['rss_growth_mib']} MiB; within 1.25x: {m['within_1.25x']})")  # fmt: skip
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
