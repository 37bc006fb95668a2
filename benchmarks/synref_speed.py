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


def _cpu_seconds() -> float:
    """User + system CPU time of this process and its finished children (the worker pool)."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


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
        cpu0 = _cpu_seconds()
        start = time.perf_counter()
        counts = write_split(Path(tmp) / "bench", request, workers=args.workers)
        seconds = time.perf_counter() - start
        cpu = _cpu_seconds() - cpu0
        parent = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
        workers = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        files = sum(len(names) for _, _, names in os.walk(tmp))
    return {
        "videos": videos,
        "seconds": seconds,
        "cpu_seconds": cpu,
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
    header = (
        "videos",
        "wall s",
        "videos/s",
        "CPU s",
        "CPU ms/video",
        "expr",
        "files",
        "parent RSS MiB",
        "worker RSS MiB",
    )
    print(" ".join(f"{h:>14}" for h in header))
    for r in rows:
        cells = (
            r["videos"], f"{r['seconds']:.1f}", f"{r['videos'] / r['seconds']:.1f}", f"{r['cpu_seconds']:.1f}",
            f"{1000 * r['cpu_seconds'] / r['videos']:.0f}", r["expressions"], r["files"],
            f"{r['parent_peak_rss_mib']:.0f}", f"{r['worker_peak_rss_mib']:.0f}",
        )  # fmt: skip
        print(" ".join(f"{c:>14}" for c in cells))
    if len(rows) >= 2:
        small, large = rows[0], rows[-1]
        parent = large["parent_peak_rss_mib"] / small["parent_peak_rss_mib"]
        workers = large["worker_peak_rss_mib"] / small["worker_peak_rss_mib"]
        print(
            f"peak RSS, {large['videos']} vs {small['videos']} videos: parent x{parent:.2f}, workers x{workers:.2f}"
        )
    last = rows[-1]
    wall = last["seconds"] * 1000 / last["videos"]
    cores = min(args.workers, os.cpu_count() or 1)
    idle = last["cpu_seconds"] * 1000 / last["videos"] / cores
    verdict = "OK" if wall < args.target else "TOO SLOW"
    print(f"1000 videos: {wall:.1f} s measured wall clock (target < {args.target:.0f} s): {verdict}")
    print(
        f"1000 videos: {idle:.1f} s of CPU per core on {cores} cores (the wall clock on otherwise idle cores)"
    )


if __name__ == "__main__":
    main()
