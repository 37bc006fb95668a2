"""SynRef generation speed and memory: write splits of N videos and report time and peak RSS.

Each size runs in a fresh process (so that peak RSS belongs to that run alone); the parent process
of a run holds one video's annotations at a time, so its peak RSS should stay flat as N grows.

    python benchmarks/synref_speed.py                      # N = 100 and 1000, 16 frames, 128x128, 2 workers
    python benchmarks/synref_speed.py --videos 100 300 --workers 1 --difficulty hard
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


def _run_one(args: argparse.Namespace, videos: int) -> dict[str, float]:
    from sparrow.data.synref import GenerationRequest, parse_size, preset, write_split

    request = GenerationRequest(
        split="bench",
        videos=videos,
        frames=args.frames,
        size=parse_size(args.size),
        seed=0,
        difficulty=args.difficulty,
        knobs=preset(args.difficulty),
    )
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        start = time.perf_counter()
        counts = write_split(Path(tmp) / "bench", request, workers=args.workers)
        seconds = time.perf_counter() - start
        parent = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
        workers = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        files = sum(len(names) for _, _, names in os.walk(tmp))
    return {
        "videos": videos,
        "seconds": seconds,
        "expressions": counts["expressions"],
        "files": files,
        "parent_peak_rss_mib": parent,
        "worker_peak_rss_mib": workers,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--videos", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--size", default="128x128")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--difficulty", default="standard")
    parser.add_argument(
        "--dir", default=None, help="Folder for the temporary splits (default: the system temp)."
    )
    parser.add_argument("--target", type=float, default=60.0, help="Seconds allowed for 1000 videos.")
    parser.add_argument("--one", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one is not None:
        print(json.dumps(_run_one(args, args.one)))
        return
    rows = []
    for n in args.videos:
        cmd = [
            sys.executable,
            __file__,
            "--one",
            str(n),
            "--frames",
            str(args.frames),
            "--size",
            args.size,
            "--workers",
            str(args.workers),
            "--difficulty",
            args.difficulty,
        ]
        if args.dir:
            cmd += ["--dir", args.dir]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        rows.append(json.loads(out.strip().splitlines()[-1]))
    print(f"SynRef {args.difficulty}, {args.frames} frames at {args.size}, {args.workers} workers")
    print(
        f"{'videos':>7} {'seconds':>8} {'videos/s':>9} {'expr':>6} {'files':>7} {'parent RSS MiB':>15} {'worker RSS MiB':>15}"
    )
    for r in rows:
        print(
            f"{r['videos']:>7} {r['seconds']:>8.1f} {r['videos'] / r['seconds']:>9.1f} {r['expressions']:>6} {r['files']:>7}"
            f" {r['parent_peak_rss_mib']:>15.0f} {r['worker_peak_rss_mib']:>15.0f}"
        )
    if len(rows) >= 2:
        small, large = rows[0], rows[-1]
        print(
            f"peak RSS {large['videos']} vs {small['videos']} videos: parent x{large['parent_peak_rss_mib'] / small['parent_peak_rss_mib']:.2f}, "
            f"workers x{large['worker_peak_rss_mib'] / small['worker_peak_rss_mib']:.2f}"
        )
    per_1000 = rows[-1]["seconds"] * 1000 / rows[-1]["videos"]
    verdict = "OK" if per_1000 < args.target else "TOO SLOW"
    print(f"1000 videos take {per_1000:.1f} s at this rate (target < {args.target:.0f} s): {verdict}")


if __name__ == "__main__":
    main()
