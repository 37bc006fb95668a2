"""Order-preserving parallel map with a rich progress bar, shared by every evaluation protocol.

``parallel_map(fn, items, workers=..., description=...)`` runs ``fn`` over ``items`` in a process pool
(``workers > 1``) or in the calling process (``workers == 1``; also used when there are fewer than two
items), shows one progress bar, and returns the results in input order. ``fn`` and the items must be
picklable for the pool (module-level functions, plain data). An exception raised by ``fn`` propagates
to the caller: a :class:`~sparrow.errors.SparrowError` unchanged (its message already names the file),
anything else wrapped in :class:`ItemError` naming the item that failed.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from typing import Any, TypeVar

from sparrow.errors import SparrowError

T = TypeVar("T")
R = TypeVar("R")

__all__ = ["ItemError", "default_workers", "parallel_map"]


class ItemError(RuntimeError):
    """``fn(item)`` raised a non-user error; the message names the item, ``__cause__`` is the original."""


def default_workers() -> int:
    """The number of CPU cores this process may use (the ``--workers`` default)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def _describe(item: Any) -> str:
    text = repr(item)
    return text if len(text) <= 200 else text[:197] + "..."


def _reraise(item: Any, err: BaseException) -> None:
    if isinstance(err, SparrowError):
        raise err
    raise ItemError(f"failed on item {_describe(item)}: {type(err).__name__}: {err}") from err


def _progress(description: str, total: int):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    return Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        transient=True,
    )


def parallel_map(
    fn: Callable[[T], R],
    items: Iterable[T],
    *,
    workers: int | None,
    description: str,
) -> list[R]:
    """Apply ``fn`` to every item; results in input order.

    Args:
        fn: a picklable (module-level) function of one argument.
        items: the inputs; materialised into a list first.
        workers: processes to use; ``None`` means :func:`default_workers`; ``1`` runs in-process.
        description: label of the progress bar (e.g. ``"DAVIS sequences"``).

    Returns:
        ``[fn(item) for item in items]``.

    Raises:
        SparrowError: re-raised unchanged from ``fn``.
        ItemError: any other exception of ``fn``, naming the item.
    """
    seq: Sequence[T] = list(items)
    n_workers = default_workers() if workers is None else int(workers)
    if n_workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    n_workers = min(n_workers, len(seq))
    results: list[Any] = [None] * len(seq)
    with _progress(description, len(seq)) as progress:
        task = progress.add_task(description, total=len(seq))
        if n_workers <= 1:
            for i, item in enumerate(seq):
                try:
                    results[i] = fn(item)
                except Exception as err:
                    _reraise(item, err)
                progress.advance(task)
            return results
        # spawn, not fork: the caller may hold threads (the progress bar, OpenCV's pool, pytest-xdist)
        # whose locks a forked child would inherit locked.
        with ProcessPoolExecutor(
            max_workers=n_workers, mp_context=multiprocessing.get_context("spawn")
        ) as pool:
            pending: dict[Future, int] = {pool.submit(fn, item): i for i, item in enumerate(seq)}
            try:
                while pending:
                    done, _ = wait(pending, return_when=FIRST_COMPLETED)
                    for fut in done:
                        i = pending.pop(fut)
                        err = fut.exception()
                        if err is not None:
                            _reraise(seq[i], err)
                        results[i] = fut.result()
                        progress.advance(task)
            except BaseException:
                for fut in pending:
                    fut.cancel()
                raise
    return results
