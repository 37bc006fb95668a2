"""Options and result output shared by the ``sparrow eval`` commands.

Each constant is a ``typer.Option`` used as a parameter default; :func:`write_results` writes the
``--json`` file. Nothing of the evaluation code is imported here, so ``sparrow --help`` stays fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

WORKERS = typer.Option(
    None, "--workers", min=1, help="Worker processes (default: all CPU cores; 1 runs in-process)."
)
STRICT = typer.Option(
    False,
    "--strict",
    help="Fail with an error naming the file instead of the benchmark's own handling of what is missing "
    "(silent drop, score 0 or exclusion).",
)
JSON_OUT = typer.Option(
    None, "--json", help="Write the full-precision results to this JSON file (atomically)."
)
META = typer.Option(None, "--meta", help="meta_expressions.json (default: in --gt).")
MASK_DICT = typer.Option(None, "--mask-dict", help="mask_dict.json (default: in --gt).")


def write_results(result: Any, json_out: Path | None) -> None:
    """Write ``result.to_json_dict()`` to ``json_out`` atomically (nothing when it is None) and say so."""
    if json_out is None:
        return
    from sparrow.evaluation.report import write_json

    write_json(json_out, result.to_json_dict())
    typer.echo(f"results written to {json_out}")
