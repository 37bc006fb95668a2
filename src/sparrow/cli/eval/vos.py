"""``sparrow eval davis|mevis|refdavis|revos|identity``: video object segmentation benchmarks.

Imports of the evaluation code happen inside the commands, so ``sparrow --help`` stays fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from . import app

_WORKERS_HELP = "Worker processes (default: number of CPU cores; 1 runs in-process)."
_STRICT_HELP = "Fail with an error naming the file instead of the official silent drop / score-0 behaviour."
_JSON_HELP = "Write the full-precision results to this JSON file (atomically)."


@app.command("davis")
def davis(
    davis_root: Path = typer.Option(..., "--davis-root", help="DAVIS-2017 root (JPEGImages/, Annotations/, ImageSets/)."),
    results: Path = typer.Option(..., "--results", help="Results folder: <sequence>/<frame>.png palette PNGs."),
    task: str = typer.Option("semi-supervised", "--task", help="semi-supervised or unsupervised."),
    image_set: str = typer.Option("val", "--set", help="Image set name in ImageSets/2017 (train, val, test-dev...)."),
    workers: Optional[int] = typer.Option(None, "--workers", min=1, help=_WORKERS_HELP),
    strict: bool = typer.Option(False, "--strict", help=_STRICT_HELP),
    json_out: Optional[Path] = typer.Option(None, "--json", help=_JSON_HELP),
) -> None:
    """DAVIS-2017 J&F (official davis2017-evaluation protocol, semi-supervised or unsupervised)."""
    from sparrow.evaluation.davis import evaluate_davis

    result = evaluate_davis(davis_root, results, task=task, image_set=image_set, workers=workers, strict=strict)
    result.print_table()
    if json_out is not None:
        from sparrow.evaluation.report import write_json

        write_json(json_out, result.to_json_dict())
