"""``sparrow video``: probe videos and extract frames."""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

app = typer.Typer(help="Inspect videos and frame folders; extract frames.", no_args_is_help=True)

_SOURCE_FPS_HELP = "Frame rate of a frame folder (folders store none; default 30). Overrides a file's rate."
_JSON_HELP = "Also write the result as JSON to this file."


class ImageExt(StrEnum):
    jpg = "jpg"
    png = "png"


@app.command("probe")
def probe(
    path: Path = typer.Argument(
        ..., help="A video file (.mp4 .mkv .webm .avi .mov) or a folder of jpg/png frames."
    ),
    source_fps: float | None = typer.Option(None, "--source-fps", help=_SOURCE_FPS_HELP),
    json_out: Path | None = typer.Option(None, "--json", help=_JSON_HELP),
) -> None:
    """Print a video's frame count, frame rate, size, duration and codec (exact frame count)."""
    from sparrow.io import probe_video
    from sparrow.io.atomic import write_text_atomic

    info = probe_video(path, fps=source_fps)
    table = Table(title=str(info.path), show_header=False)
    table.add_row("kind", info.kind)
    table.add_row("frames", str(info.num_frames))
    table.add_row("fps", f"{info.fps:g}")
    table.add_row("size (W x H)", f"{info.width} x {info.height}")
    table.add_row("duration", f"{info.duration_s:.3f} s")
    table.add_row("codec", info.codec)
    Console().print(table)
    if json_out is not None:
        write_text_atomic(json_out, json.dumps(info.to_dict(), indent=2) + "\n")


@app.command("frames")
def frames(
    path: Path = typer.Argument(..., help="A video file or a folder of jpg/png frames."),
    out: Path = typer.Argument(
        ..., help="Folder to create; images are named by source frame number (00042.jpg)."
    ),
    fps: float | None = typer.Option(None, "--fps", help="Sample at this rate (frames per second)."),
    every: int | None = typer.Option(None, "--every", help="Keep every K-th frame (0, K, 2K, ...)."),
    num: int | None = typer.Option(
        None, "--num", help="Keep N frames spread uniformly, first and last included."
    ),
    ext: ImageExt = typer.Option(ImageExt.jpg, "--ext", help="Image format."),
    source_fps: float | None = typer.Option(None, "--source-fps", help=_SOURCE_FPS_HELP),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace OUT if it exists."),
    json_out: Path | None = typer.Option(
        None, "--json", help="Write the source info and frame numbers as JSON."
    ),
) -> None:
    """Extract all frames, or a sample of them, into a new frame folder (atomically: all or nothing)."""
    from sparrow.io import open_video, sample_frame_indices, write_frame_folder
    from sparrow.io.atomic import write_text_atomic

    if sum(x is not None for x in (fps, every, num)) > 1:
        raise typer.BadParameter("give at most one of --fps, --every, --num")
    console = Console(stderr=True)
    with open_video(path, fps=source_fps) as reader:
        try:
            indices = sample_frame_indices(
                reader.info.num_frames, reader.info.fps, every=every, at_fps=fps, num=num
            )
        except ValueError as err:
            raise typer.BadParameter(str(err)) from err
        columns = (TextColumn("frames"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
        with Progress(*columns, console=console, disable=not console.is_terminal) as progress:
            task = progress.add_task("frames", total=len(indices))

            def counted():  # advance the bar as frames are decoded
                for item in reader.iter_frames(indices):
                    yield item
                    progress.advance(task)

            count = write_frame_folder(out, counted(), ext=ext.value, overwrite=overwrite)
        info = reader.info
    Console().print(f"wrote {count} of {info.num_frames} frames to [bold]{out}[/] ({ext.value})")
    if json_out is not None:
        payload = {
            "source": info.to_dict(),
            "out": str(out),
            "ext": ext.value,
            "frame_indices": indices.tolist(),
        }
        write_text_atomic(json_out, json.dumps(payload) + "\n")
