"""Atomic outputs: write under a temporary name in the destination's folder, then rename.

This module is the one home of atomic writing: files (:func:`atomic_file`, :func:`write_text_atomic`) and
folders (:func:`atomic_dir`). A crash or an exception leaves either the
previous content or nothing -- never a half-written file or folder. The temporary names start with a
dot and carry the process id, so concurrent writers do not collide and leftovers of a killed process
are easy to spot.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sparrow.errors import OutputExistsError, OutputWriteError


def _temp_sibling(path: Path, suffix: str = "") -> Path:
    return path.with_name(f".{path.name}.tmp{os.getpid()}{suffix}")


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists() or path.is_symlink():
        path.unlink()


def ensure_absent(path: str | Path, *, overwrite: bool) -> None:
    """Refuse to replace an existing ``path`` unless ``overwrite`` is true.

    Raises:
        OutputExistsError: ``path`` exists and ``overwrite`` is False.
    """
    if Path(path).exists() and not overwrite:
        raise OutputExistsError("output already exists", path=path, fix="choose a new path or pass overwrite")


@contextmanager
def atomic_file(path: str | Path, *, keep_suffix: bool = True) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is renamed to ``path``, on error removed.

    ``keep_suffix`` makes the temporary name end with ``path``'s suffix (``.mp4``), for writers that
    pick the format from the extension.

    Raises:
        OutputWriteError: the body finished without creating the temporary file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_sibling(path, path.suffix if keep_suffix else "")
    try:
        yield tmp
        if not tmp.is_file():
            raise OutputWriteError("the writer produced no file", path=path, fix="report this as a bug")
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


@contextmanager
def atomic_dir(path: str | Path, *, overwrite: bool = False) -> Iterator[Path]:
    """Yield an empty temporary folder beside ``path``; on success it becomes ``path``, on error it goes.

    Raises:
        OutputExistsError: ``path`` exists and ``overwrite`` is False.
    """
    path = Path(path)
    ensure_absent(path, overwrite=overwrite)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_sibling(path)
    _remove(tmp)
    tmp.mkdir()
    try:
        yield tmp
        if path.exists():
            old = _temp_sibling(path, ".old")
            _remove(old)
            os.replace(path, old)
            os.replace(tmp, path)
            _remove(old)
        else:
            os.replace(tmp, path)
    finally:
        _remove(tmp)


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` through a temporary file and a rename."""
    with atomic_file(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
