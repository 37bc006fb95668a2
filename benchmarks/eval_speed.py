"""Speed of the J&F core against the straightforward full-frame algorithm, and of ``sparrow eval davis``.

Part 1 (always): on one CPU core (affinity pinned, OpenCV single-threaded), J and F of one object in one
frame -- preparing the annotation and the prediction, then J and F -- for DAVIS-like objects (blobs of
ellipses, 0.5-45 % of the frame, predictions perturbed by shifts and ragged edges), at 480×854 and
1080×1920. The reference is the full-frame algorithm of the official code (``seg2bmap`` on the whole
frame, ``cv2.dilate`` with the disk; :mod:`sparrow.evaluation.jf_reference`), timed in the same run.
Every value is checked to be identical. Exits 1 if the 480p mean exceeds ``--budget-ms`` (1.2 ms).

Part 2 (``--cli``): writes a DAVIS-layout folder of ``--frames`` 480p frames with 3 objects and times
``sparrow eval davis --workers 2`` on it in a fresh process (start-up included).

    python benchmarks/eval_speed.py
    python benchmarks/eval_speed.py --pairs 100 --cli
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from sparrow.evaluation.jf import f_pair, jaccard_pair, prepare_mask
from sparrow.evaluation.jf_reference import reference_f, reference_j

SIZES = {"480p": (480, 854), "1080p": (1080, 1920)}
BANDS = {"small": (0.005, 0.03), "medium": (0.03, 0.15), "large": (0.15, 0.45)}


def _blob(rng: np.random.Generator, shape: tuple[int, int], coverage: float) -> np.ndarray:
    """A union of 1-4 ellipses covering about ``coverage`` of the frame."""
    h, w = shape
    m = np.zeros(shape, np.uint8)
    n = int(rng.integers(1, 5))
    area = coverage * h * w / n
    cy, cx = rng.uniform(0.2, 0.8) * h, rng.uniform(0.2, 0.8) * w
    for _ in range(n):
        aspect = rng.uniform(0.4, 2.5)
        ry = max(2.0, np.sqrt(area / np.pi / aspect))
        rx = max(2.0, ry * aspect)
        y, x = cy + rng.normal(0, ry / 2), cx + rng.normal(0, rx / 2)
        cv2.ellipse(m, (int(x), int(y)), (int(rx), int(ry)), float(rng.uniform(0, 180)), 0, 360, 1, -1)
    return m.astype(bool)


def _perturb(rng: np.random.Generator, gt: np.ndarray) -> np.ndarray:
    """A plausible prediction: shifted by a few pixels, with ragged edges."""
    pred = np.roll(gt, tuple(rng.integers(-6, 7, 2)), axis=(0, 1))
    edge = cv2.morphologyEx(pred.astype(np.uint8), cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8)).astype(bool)
    flip = edge & (rng.random(gt.shape) < 0.3)
    return pred ^ flip


def _pairs(
    rng: np.random.Generator, shape: tuple[int, int], n: int
) -> list[tuple[str, np.ndarray, np.ndarray]]:
    out = []
    for i in range(n):
        band = list(BANDS)[i % len(BANDS)]
        gt = _blob(rng, shape, rng.uniform(*BANDS[band]))
        out.append((band, gt, _perturb(rng, gt)))
    return out


def _time(fn, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def _fast(gt: np.ndarray, pred: np.ndarray) -> tuple[float, float]:
    g, p = prepare_mask(gt), prepare_mask(pred)
    return jaccard_pair(g, p), f_pair(g, p)


def _reference(gt: np.ndarray, pred: np.ndarray) -> tuple[float, float]:
    return reference_j(gt, pred), reference_f(gt, pred)


def bench_core(n_pairs: int, repeat: int, seed: int) -> dict[str, float]:
    rng = np.random.default_rng(seed)
    means = {}
    print(f"{'size':>6} {'objects':>8} {'fast ms':>9} {'reference ms':>13} {'ratio':>7}")
    for name, shape in SIZES.items():
        pairs = _pairs(rng, shape, n_pairs if name == "480p" else max(6, n_pairs // 4))
        per_band: dict[str, list[tuple[float, float]]] = {b: [] for b in BANDS}
        for band, gt, pred in pairs:
            fast_vals, ref_vals = _fast(gt, pred), _reference(gt, pred)
            if fast_vals[0] != ref_vals[0] or abs(fast_vals[1] - ref_vals[1]) > 1e-12:
                raise SystemExit(f"MISMATCH {name} {band}: fast {fast_vals} vs reference {ref_vals}")
            t_fast = _time(lambda gt=gt, pred=pred: _fast(gt, pred), repeat)
            t_ref = _time(lambda gt=gt, pred=pred: _reference(gt, pred), max(2, repeat // 2))
            per_band[band].append((t_fast, t_ref))
        for band, times in [*per_band.items(), ("all", [t for ts in per_band.values() for t in ts])]:
            fast_ms = 1e3 * float(np.mean([t[0] for t in times]))
            ref_ms = 1e3 * float(np.mean([t[1] for t in times]))
            print(f"{name:>6} {band:>8} {fast_ms:9.3f} {ref_ms:13.3f} {ref_ms / fast_ms:6.1f}x")
        means[name] = 1e3 * float(np.mean([t[0] for ts in per_band.values() for t in ts]))
    return means


def bench_unsupervised(repeat: int, seed: int) -> None:
    """One 480p frame, 5 objects × 20 proposals: each mask prepared once, then 100 pairings."""
    from sparrow.evaluation.jf import jf_pairwise

    rng = np.random.default_rng(seed)
    gts = [_blob(rng, SIZES["480p"], rng.uniform(0.01, 0.1)) for _ in range(5)]
    props = [_perturb(rng, gts[i % 5]) for i in range(20)]

    def run() -> None:
        jf_pairwise([prepare_mask(g) for g in gts], [prepare_mask(p) for p in props])

    t = _time(run, repeat)
    print(
        f"unsupervised 480p, 5 objects x 20 proposals: {1e3 * t:.2f} ms per frame ({1e3 * t / 100:.3f} ms per pair)"
    )


def make_davis_folder(root: Path, frames: int, seed: int) -> Path:
    """DAVIS-2017 layout, one 480p sequence of ``frames`` frames with 3 moving objects; returns results dir."""
    from sparrow.io.mask_files import write_index_png

    rng = np.random.default_rng(seed)
    h, w = SIZES["480p"]
    results = root / "results"
    (root / "ImageSets" / "2017").mkdir(parents=True, exist_ok=True)
    (root / "ImageSets" / "2017" / "val.txt").write_text("bench\n")
    centres = rng.uniform([80, 100], [400, 750], size=(3, 2))
    for t in range(frames):
        gt = np.zeros((h, w), np.uint8)
        pred = np.zeros((h, w), np.uint8)
        for k, (cy, cx) in enumerate(centres, start=1):
            y, x = int(cy + 40 * np.sin(t / 15 + k)), int(cx + 60 * np.cos(t / 20 + k))
            cv2.ellipse(gt, (x, y), (60 + 10 * k, 40 + 5 * k), 10.0 * k, 0, 360, k, -1)
            cv2.ellipse(pred, (x + 3, y - 2), (58 + 10 * k, 42 + 5 * k), 10.0 * k, 0, 360, k, -1)
        write_index_png(root / "Annotations" / "480p" / "bench" / f"{t:05d}.png", gt)
        write_index_png(results / "bench" / f"{t:05d}.png", pred)
    return results


def bench_cli(frames: int, seed: int, keep: Path | None) -> float:
    tmp = keep if keep is not None else Path(tempfile.mkdtemp(prefix="sparrow-eval-bench-"))
    try:
        results = make_davis_folder(tmp / "DAVIS", frames, seed)
        exe = Path(sys.executable).with_name("sparrow")
        cmd = (
            [str(exe)]
            if exe.is_file()
            else [sys.executable, "-c", "from sparrow.cli.app import main; main()"]
        )
        cmd += [
            "eval",
            "davis",
            "--davis-root",
            str(tmp / "DAVIS"),
            "--results",
            str(results),
            "--workers",
            "2",
        ]
        cmd += ["--json", str(tmp / "davis.json")]
        start = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
        wall = time.perf_counter() - start
        if proc.returncode != 0:
            raise SystemExit(proc.stdout + proc.stderr)
        jf = json.loads((tmp / "davis.json").read_text())["J&F-Mean"]
        print(
            f"sparrow eval davis, {frames} frames x 3 objects at 480p, --workers 2: {wall:.2f} s wall, start-up included (J&F {jf:.4f})"
        )
        if keep is not None:
            print(f"folder kept: {' '.join(cmd[-9:-2])}")
        return wall
    finally:
        if keep is None:
            shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--pairs", type=int, default=60, help="object/frame pairs at 480p (1080p uses a quarter)"
    )
    parser.add_argument("--repeat", type=int, default=5, help="timing repeats (best of)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--budget-ms", type=float, default=1.2, help="maximum mean ms per frame per object at 480p"
    )
    parser.add_argument(
        "--cli", action="store_true", help="also time `sparrow eval davis` on a generated folder"
    )
    parser.add_argument(
        "--frames", type=int, default=100, help="frames of the generated DAVIS folder (--cli)"
    )
    parser.add_argument(
        "--keep", type=Path, default=None, help="write the DAVIS folder here and keep it (--cli)"
    )
    args = parser.parse_args()

    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    cv2.setNumThreads(1)
    print("J and F of one object in one frame (prepare both masks + J + F), one CPU core:")
    means = bench_core(args.pairs, args.repeat, args.seed)
    bench_unsupervised(args.repeat, args.seed)
    status = 0
    if means["480p"] > args.budget_ms:
        print(f"FAIL: 480p mean {means['480p']:.3f} ms > budget {args.budget_ms} ms")
        status = 1
    else:
        print(f"OK: 480p mean {means['480p']:.3f} ms <= budget {args.budget_ms} ms")
    if args.cli:
        if hasattr(os, "sched_setaffinity"):
            os.sched_setaffinity(0, set(range(os.cpu_count() or 1)))
        bench_cli(args.frames, args.seed, args.keep)
    sys.exit(status)


if __name__ == "__main__":
    main()
