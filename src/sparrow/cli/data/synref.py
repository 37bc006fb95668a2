"""``sparrow data synref | stats | show``: generate, summarise and look at SynRef splits."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console

from . import app


@app.command("synref")
def synref(
    out: Path = typer.Option(..., "--out", help="Split folder to create (e.g. data/synref/train)."),
    split: str = typer.Option(
        "train", "--split", help="Split name: train, val or test (part of every video's seed)."
    ),
    videos: int = typer.Option(100, "--videos", min=1, help="Number of videos."),
    frames: int = typer.Option(16, "--frames", min=2, help="Frames per video."),
    size: str = typer.Option("128x128", "--size", help="Frame size HxW in pixels, e.g. 128x128."),
    seed: int = typer.Option(0, "--seed", help="Seed; with --split and the video index it seeds every RNG."),
    difficulty: str = typer.Option("standard", "--difficulty", help="Preset: standard or hard."),
    knob: list[str] | None = typer.Option(
        None, "--knob", help="Override one preset knob, KEY=VALUE (repeatable); see docs/synref.md."
    ),
    workers: int = typer.Option(
        1, "--workers", min=1, help="Processes; the output is identical for any count."
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace --out if it already exists."),
    json_out: Path | None = typer.Option(None, "--json", help="Also write the generation summary as JSON."),
) -> None:
    """Generate a SynRef split in the MeViS, VidSTG and VideoGCG layouts (atomic, deterministic)."""
    from sparrow.data.synref import GenerationRequest, parse_size, preset, write_split
    from sparrow.data.synref.stats import print_stats, split_stats

    knobs = preset(difficulty).with_overrides(knob or [])
    request = GenerationRequest(
        split=split,
        videos=videos,
        frames=frames,
        size=parse_size(size),
        seed=seed,
        difficulty=difficulty,
        knobs=knobs,
    )
    console = Console()
    write_split(out, request, workers=workers, overwrite=overwrite, progress=True)
    stats = split_stats(out)
    print_stats(stats, console, title=f"SynRef {split} -> {out}")
    if json_out is not None:
        _write_json(json_out, stats.to_dict())


@app.command("stats")
def stats(
    root: Path = typer.Argument(..., help="A SynRef split folder (the --out of `sparrow data synref`)."),
    json_out: Path | None = typer.Option(
        None, "--json", help="Also write the counts and tag fractions as JSON."
    ),
) -> None:
    """Print video / expression counts and the fraction of expressions carrying each tag."""
    from sparrow.data.synref.stats import print_stats, split_stats

    result = split_stats(root)
    print_stats(result, Console(), title=f"SynRef split {root}")
    if json_out is not None:
        _write_json(json_out, result.to_dict())


@app.command("show")
def show(
    root: Path = typer.Argument(..., help="A SynRef split folder."),
    video: str = typer.Option(
        ..., "--video", help="Video name (a key of meta_expressions.json), or its index."
    ),
    out: Path | None = typer.Option(
        None,
        "--out",
        help="Output file: .png for a contact sheet, .mp4 for an overlay video (default <video>.png).",
    ),
) -> None:
    """Draw the ground truth of one video (masks, amodal boxes, ids, expressions) as a sheet or video."""
    from sparrow.data.synref.show import show_video

    console = Console()
    target = out if out is not None else Path(f"{video}.png")
    written = show_video(root, video, target, console=console)
    console.print(f"wrote [bold]{written}[/]")


def _write_json(path: Path, payload: dict) -> None:
    from sparrow.io.atomic import write_text_atomic

    write_text_atomic(path, json.dumps(payload, indent=2, sort_keys=True) + "\n")
    Console().print(f"wrote [bold]{path}[/]")
