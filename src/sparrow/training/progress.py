"""The training progress display (rank 0): a rich bar with the loss terms and the throughput.

On a terminal it is a live bar; elsewhere (a log file, CI) it prints one plain line every
``every`` steps instead, so batch jobs still show progress.
"""

from __future__ import annotations

from types import TracebackType

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


def format_losses(losses: dict[str, float], limit: int = 6) -> str:
    """``"loss 1.234 | lm_ce 0.5 ..."`` for the first ``limit`` terms (compact, 4 significant digits)."""
    return " ".join(f"{k} {v:.4g}" for k, v in list(losses.items())[:limit])


class TrainProgress:
    """Context manager showing one stage's progress.

    Args:
        description: the stage's label.
        total: optimizer steps of the stage.
        start: steps already done (resumed runs).
        enabled: False on ranks other than 0 or when the recipe turns the bar off.
        every: steps between plain lines when the console is not a terminal.
    """

    def __init__(
        self, description: str, total: int, *, start: int = 0, enabled: bool = True, every: int = 10
    ) -> None:
        self.console = Console(stderr=True)
        self.enabled = enabled
        self.live = enabled and self.console.is_terminal
        self.every = max(1, every)
        self.description = description
        self.total = total
        self._progress: Progress | None = None
        self._task = None
        self._start = start

    def __enter__(self) -> TrainProgress:
        if self.live:
            self._progress = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[losses]}"),
                TextColumn("{task.fields[speed]}"),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                console=self.console,
            )
            self._progress.__enter__()
            self._task = self._progress.add_task(
                self.description, total=self.total, completed=self._start, losses="", speed=""
            )
        return self

    def update(self, step: int, losses: dict[str, float], samples_per_s: float, steps_per_s: float) -> None:
        """Show step ``step`` (1-based) with its loss terms and throughput."""
        if not self.enabled:
            return
        speed = f"{samples_per_s:.2f} samples/s {steps_per_s:.2f} it/s"
        if self._progress is not None:
            self._progress.update(self._task, completed=step, losses=format_losses(losses), speed=speed)
        elif step % self.every == 0 or step == self.total:
            self.console.print(
                f"{self.description} step {step}/{self.total}  {format_losses(losses)}  {speed}",
                highlight=False,
            )

    def message(self, text: str) -> None:
        """Print a line above the bar."""
        if self.enabled:
            self.console.print(text, highlight=False)

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._progress is not None:
            self._progress.__exit__(exc_type, exc, tb)
