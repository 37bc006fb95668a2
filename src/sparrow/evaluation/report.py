"""Reporting of evaluation results: atomic ``--json`` files and rich tables.

JSON files keep full precision (Python floats round-trip exactly through ``json``); NaN and
infinities are written as ``null`` so the file stays valid JSON. Tables round for display only,
with the benchmark's own rounding (e.g. DAVIS 3 decimals, MeViS percentages with 2).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sparrow.io.atomic import write_text_atomic

__all__ = ["format_value", "print_table", "to_jsonable", "write_json"]


def to_jsonable(obj: Any) -> Any:
    """Convert numpy scalars/arrays, tuples, paths and non-finite floats into JSON-ready values."""
    if isinstance(obj, Mapping):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        return to_jsonable(obj.item())
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, Path):
        return str(obj)
    return obj


def write_json(path: str | Path, data: Mapping[str, Any]) -> Path:
    """Write ``data`` as indented JSON to ``path`` atomically (temporary name + ``os.replace``).

    Floats keep full precision. Returns the path written.
    """
    path = Path(path)
    write_text_atomic(path, json.dumps(to_jsonable(data), indent=2, allow_nan=False) + "\n")
    return path


def format_value(value: Any, decimals: int, *, scale: float = 1.0) -> str:
    """Display form of one cell: numbers times ``scale`` rounded to ``decimals``; others via ``str``."""
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (int, np.integer)) and scale == 1.0:
        return str(int(value))
    if isinstance(value, (float, int, np.floating, np.integer)):
        v = float(value) * scale
        return "nan" if math.isnan(v) else f"{v:.{decimals}f}"
    return "" if value is None else str(value)


def print_table(
    title: str,
    columns: Sequence[str],
    rows: Sequence[Sequence[Any]],
    *,
    decimals: int = 3,
    scale: float = 1.0,
    console: Any = None,
) -> None:
    """Print a rich table; numeric cells are multiplied by ``scale`` and rounded to ``decimals``."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    label_first = bool(rows) and isinstance(rows[0][0], str)  # a label column stays left-aligned
    for i, name in enumerate(columns):
        table.add_column(str(name), justify="left" if i == 0 and label_first else "right")
    for row in rows:
        table.add_row(*(format_value(v, decimals, scale=scale) for v in row))
    (console or Console()).print(table)
