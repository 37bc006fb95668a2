"""Memory of streamed video reading: peak RSS must not grow with video length.

Writes a short and a long 480p (480x854) H.264 video with :func:`sparrow.io.write_video` into a
temporary folder, then reads each one completely through :meth:`sparrow.io.VideoReader.windows` in a
separate Python process (so the peaks do not mix) and prints, per video, the peak resident set size
(``ru_maxrss``), the growth over the process's RSS after imports, and the decode rate. Exits 1 if
the long video's peak exceeds ``--max-ratio`` times the short one's.

    python benchmarks/io_memory.py                 # 300 and 3,000 frames
    python benchmarks/io_memory.py --frames 100 1000 --window 16
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HEIGHT, WIDTH, FPS = 480, 854, 30.0


def _rss_now_kib() -> int:
    """Current RSS in KiB from /proc (Linux); falls back to the peak elsewhere."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _synthetic_frames(n: int):
    """Moving bars and a drifting gradient: compressible, but every frame differs."""
    yy, xx = np.mgrid[0:HEIGHT, 0:WIDTH]
    base = ((xx + yy) // 4 % 256).astype(np.uint8)
    for i in range(n):
        frame = np.empty((HEIGHT, WIDTH, 3), np.uint8)
        frame[..., 0] = base + np.uint8(i % 256)
        frame[..., 1] = np.uint8((i * 3) % 256)
        frame[..., 2] = base[:, ::-1]
        x = (i * 7) % (WIDTH - 60)
        frame[:, x : x + 60] = 255
        yield frame


def child(path: str, window: int) -> None:
    """Read ``path`` fully through ``windows(window)``; print one JSON line of figures."""
    from sparrow.io import open_video

    baseline = _rss_now_kib()
    start = time.perf_counter()
    frames = 0
    checksum = 0
    with open_video(path) as reader:
        for clip in reader.windows(window):
            frames += len(clip)
            checksum += int(clip.frames[:, ::97, ::97].sum())
    elapsed = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    print(
        json.dumps(
            {
                "frames": frames,
                "seconds": elapsed,
                "peak_kib": peak,
                "baseline_kib": baseline,
                "checksum": checksum,
            }
        )
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--frames", type=int, nargs=2, default=[300, 3000], help="short and long video lengths"
    )
    parser.add_argument("--window", type=int, default=16, help="frames per window")
    parser.add_argument("--max-ratio", type=float, default=1.3, help="allowed peak-RSS ratio long/short")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.window)
        return 0

    from sparrow.io import probe_video, write_video

    print(f"machine: {platform.platform()} | python {platform.python_version()} | {os.cpu_count()} CPUs")
    results = []
    with tempfile.TemporaryDirectory(prefix="sparrow-io-bench-") as tmp:
        for n in args.frames:
            path = Path(tmp) / f"video_{n}.mp4"
            t0 = time.perf_counter()
            write_video(path, _synthetic_frames(n), FPS)
            write_s = time.perf_counter() - t0
            info = probe_video(path)
            assert info.num_frames == n, (info.num_frames, n)
            out = subprocess.run(
                [sys.executable, __file__, "--child", str(path), "--window", str(args.window)],
                check=True,
                capture_output=True,
                text=True,
            )
            r = json.loads(out.stdout.strip().splitlines()[-1])
            assert r["frames"] == n, (r["frames"], n)
            results.append(r)
            print(
                f"{n:>6} frames {WIDTH}x{HEIGHT}: file {path.stat().st_size / 2**20:6.1f} MiB, "
                f"write {n / write_s:6.1f} fps | read: peak RSS {r['peak_kib'] / 1024:7.1f} MiB "
                f"(+{(r['peak_kib'] - r['baseline_kib']) / 1024:5.1f} MiB over imports), "
                f"decode {r['frames'] / r['seconds']:6.1f} fps"
            )
    ratio = results[1]["peak_kib"] / results[0]["peak_kib"]
    growth = (results[1]["peak_kib"] - results[1]["baseline_kib"]) / max(
        1, results[0]["peak_kib"] - results[0]["baseline_kib"]
    )
    verdict = "OK" if ratio <= args.max_ratio else "FAIL"
    print(
        f"peak RSS ratio long/short: {ratio:.3f} (limit {args.max_ratio}) -> {verdict}; growth-over-imports ratio {growth:.3f}"
    )
    return 0 if verdict == "OK" else 1


if __name__ == "__main__":
    sys.exit(main())
