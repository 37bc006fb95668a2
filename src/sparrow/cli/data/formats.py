"""``sparrow data list | check | convert``: the public dataset formats (readers, checks, conversion).

Imports of the data code happen inside the commands, so ``sparrow --help`` stays fast.
"""

from __future__ import annotations

from pathlib import Path

import typer

from . import app

_JSON_HELP = "Also write the result to this JSON file (atomically)."


def _write_json(path: Path, data: object) -> None:
    from sparrow.evaluation.report import write_json

    write_json(path, data)  # type: ignore[arg-type]


def _progress(label: str):
    """A rich progress wrapper for an iterable of ids (quiet when stdout is not a terminal)."""
    from rich.console import Console
    from rich.progress import track

    console = Console()

    def wrap(items):
        return track(
            items, description=label, console=console, disable=not console.is_terminal, transient=True
        )

    return wrap


@app.command("list")
def list_formats(json_out: Path | None = typer.Option(None, "--json", help=_JSON_HELP)) -> None:
    """List the dataset formats: name, task, splits, layout, what the reader needs, what we write."""
    from rich.console import Console
    from rich.table import Table

    from sparrow.data.registry import FORMATS

    table = Table(title="dataset formats", show_lines=True)
    for col in ("name", "task", "splits", "layout", "reader needs", "we write"):
        table.add_column(col, overflow="fold")
    for spec in FORMATS.values():
        table.add_row(spec.name, spec.task, ", ".join(spec.splits), spec.layout, spec.needs, spec.writes)
    Console().print(table)
    if json_out is not None:
        _write_json(json_out, {"formats": [spec.to_dict() for spec in FORMATS.values()]})


@app.command("check")
def check(
    name: str = typer.Argument(..., help="Format name (see `sparrow data list`)."),
    root: Path = typer.Option(
        ..., "--root", help="The local copy's folder (see `sparrow data list` for which one)."
    ),
    split: str | None = typer.Option(None, "--split", help="Split to check (default: the format's first)."),
    json_out: Path | None = typer.Option(None, "--json", help=_JSON_HELP),
) -> None:
    """Validate a local copy: missing frames, wrong mask sizes, unknown objects / anno ids, broken JSON.

    Every problem is listed with its path. Exits 1 when there are problems, 0 when there are none.
    """
    from rich.console import Console
    from rich.table import Table

    from sparrow.data.check import check_dataset

    problems = check_dataset(name, root, split, progress=_progress(f"checking {name}"))
    console = Console()
    if problems:
        table = Table(title=f"{len(problems)} problem(s) in {root}", show_lines=False)
        table.add_column("kind", style="bold red", no_wrap=True)
        table.add_column("path", overflow="fold")
        table.add_column("problem", overflow="fold")
        for p in problems:
            table.add_row(p.kind, str(p.path), p.message)
        console.print(table)
    else:
        console.print(f"[green]no problems found[/] in {root} ({name})")
    if json_out is not None:
        _write_json(
            json_out,
            {"format": name, "root": str(root), "split": split, "problems": [p.to_dict() for p in problems]},
        )
    if problems:
        raise typer.Exit(1)


@app.command("convert")
def convert(
    source: str = typer.Argument(
        ...,
        help="Source format: sparrow-seq, ref-davis17, ref-youtube-vos (train), davis17, davis17-unsupervised.",
    ),
    target: str = typer.Argument(..., help="Target format (mevis)."),
    root: Path = typer.Option(..., "--root", help="The source dataset's folder."),
    out: Path = typer.Option(..., "--out", help="Output folder (a MeViS split folder); written atomically."),
    split: str | None = typer.Option(None, "--split", help="Source split (default: the format's first)."),
    frames: str = typer.Option(
        "link", "--frames", help="How frames are placed: link (hard link, else copy), copy, symlink."
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing output folder."),
    json_out: Path | None = typer.Option(None, "--json", help=_JSON_HELP),
) -> None:
    """Convert a dataset into another of our layouts (e.g. SPARROW sequence folders -> MeViS layout)."""
    from rich.console import Console

    from sparrow.data.convert import convert as run_convert
    from sparrow.errors import ConfigError

    if frames not in ("link", "copy", "symlink"):
        raise ConfigError(
            f"--frames {frames!r} is not one of link, copy, symlink", fix="use --frames link|copy|symlink"
        )
    report = run_convert(
        source,
        target,
        root,
        out,
        split=split,
        frames=frames,
        overwrite=overwrite,
        progress=_progress("converting"),
    )  # type: ignore[arg-type]
    Console().print(
        f"[green]wrote[/] {report.out}: {report.videos} videos, {report.expressions} expressions, {report.objects} objects"
    )
    if json_out is not None:
        _write_json(json_out, report.to_dict())
