"""Training metrics: one JSON record per line in ``metrics.jsonl`` (plus TensorBoard when installed).

Records carry ``kind`` (``train``, ``val``, ``stage_end``), ``stage_index``, ``stage`` and ``step``.
Each line is flushed as it is written, so a killed run leaves at most one partial last line, which
:func:`read_metrics` skips. When a run resumes from step ``s`` of stage ``i``, the records the killed
run wrote after that point are dropped (:meth:`MetricsLog.rewind`), so the file always tells one
consistent history: the loss curve of a resumed run reads exactly like an uninterrupted one.
"""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path
from typing import Any

from .checkpoint import write_text_durable


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """Every complete record of a ``metrics.jsonl`` file, in order (a torn last line is skipped)."""
    path = Path(path)
    if not path.is_file():
        return []
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


class MetricsLog:
    """Appends metric records of the main process to ``metrics.jsonl`` (other ranks pass ``enabled=False``).

    Args:
        path: the JSONL file.
        enabled: write anything at all (False on ranks other than 0).
        tensorboard: also write scalars to ``<path's folder>/tensorboard`` when the package is installed.
    """

    def __init__(self, path: Path, *, enabled: bool = True, tensorboard: bool = False) -> None:
        self.path = Path(path)
        self.enabled = enabled
        self._file = None
        self._tb = None
        if enabled and tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                warnings.warn(
                    "logging.tensorboard is on but tensorboard is not installed; writing JSONL only",
                    stacklevel=2,
                )
            else:
                self._tb = SummaryWriter(str(self.path.parent / "tensorboard"))

    def rewind(self, stage_index: int, step: int) -> None:
        """Drop the records written after step ``step`` of stage ``stage_index`` (resume point)."""
        if not self.enabled or not self.path.is_file():
            return
        if self._file is not None:  # the file is replaced: later writes must go to the new one
            self._file.close()
            self._file = None
        kept = [
            r
            for r in read_metrics(self.path)
            if r.get("stage_index", -1) < stage_index
            or (
                r.get("stage_index") == stage_index
                and r.get("step", 0) <= step
                and r.get("kind") != "stage_end"
            )
        ]
        write_text_durable(self.path, "".join(json.dumps(r) + "\n" for r in kept))

    def write(self, record: dict[str, Any]) -> None:
        """Append one record (and its numeric entries to TensorBoard)."""
        if not self.enabled:
            return
        if self._file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 -- kept open across steps
        self._file.write(json.dumps(_jsonable(record)) + "\n")
        self._file.flush()
        if self._tb is not None:
            self._to_tensorboard(record)

    def _to_tensorboard(self, record: dict[str, Any]) -> None:
        kind = record.get("kind", "train")
        step = int(record.get("global_step", record.get("step", 0)))
        for key, value in record.items():
            if key in ("step", "global_step", "stage", "stage_index"):
                continue
            if isinstance(value, int | float) and not isinstance(value, bool):
                self._tb.add_scalar(f"{kind}/{key}", value, step)
            elif isinstance(value, dict):
                for sub, v in value.items():
                    if isinstance(v, int | float) and not isinstance(v, bool):
                        self._tb.add_scalar(f"{kind}/{key}/{sub}", v, step)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        if self._tb is not None:
            self._tb.close()
            self._tb = None
