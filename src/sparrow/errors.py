"""Exception types a user can cause. Every message names the file and the fix.

This module imports nothing of ours, so every layer (``structures`` included) may raise these.
The CLI catches :class:`SparrowError`, prints its message without a traceback and exits non-zero.
"""

from __future__ import annotations

from pathlib import Path


class SparrowError(Exception):
    """Base class of every error a user can cause (bad path, corrupt file, wrong argument).

    Args:
        message: what went wrong.
        path: the file or folder concerned, if any; it is named in the message.
        fix: one sentence telling the user what to do about it.
    """

    def __init__(self, message: str, *, path: str | Path | None = None, fix: str | None = None) -> None:
        self.message = message
        self.path = Path(path) if path is not None else None
        self.fix = fix
        super().__init__(self.__str__())

    def __str__(self) -> str:
        text = self.message
        if self.path is not None:
            text = f"{self.path}: {text}"
        if self.fix:
            text = f"{text}\n  fix: {self.fix}"
        return text


class VideoReadError(SparrowError):
    """A video file or frame folder cannot be read (missing, empty, corrupt, unsupported)."""


class OutputWriteError(SparrowError):
    """An output (video, frame or mask folder, JSON file, archive) cannot be written."""


class OutputExistsError(OutputWriteError):
    """An output file or folder already exists and replacing it was not asked for."""


VideoWriteError = OutputWriteError
"""The first name of :class:`OutputWriteError` (videos were the first outputs), kept for callers."""


class DataFormatError(SparrowError):
    """An annotation or dataset file does not follow its documented layout."""


class CheckpointError(SparrowError):
    """A model folder is missing, incomplete or corrupt, or does not match its config."""


class ConfigError(SparrowError):
    """A preset, recipe or command-line override is invalid."""


class EvaluationError(SparrowError):
    """Predictions cannot be scored (missing frames, wrong sizes) in ``--strict`` mode."""
