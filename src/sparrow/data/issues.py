"""Problems found in a dataset copy, and the sink readers report them to.

A reader called on its own is strict: the first problem raises :class:`~sparrow.errors.DataFormatError`
naming the file. ``sparrow data check`` passes a collecting :class:`Issues` instead, so one run lists
every problem (with its path) rather than stopping at the first.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sparrow.errors import DataFormatError

PROBLEM_KINDS = {
    "missing-file": "a file or folder the layout requires is absent",
    "bad-json": "a JSON file does not parse or has the wrong structure",
    "bad-entry": "one entry of an annotation file is malformed (missing key, wrong type)",
    "missing-frame": "a frame listed by the annotations has no image on disk",
    "bad-image": "an image or mask file cannot be read",
    "mask-size": "a mask's (H, W) differs from its frame's",
    "frame-size": "a frame's (H, W) differs from the size the annotations declare or from the other frames",
    "frame-count": "an annotation lists a different number of frames than the video has",
    "unknown-object": "an expression names an object id the video does not annotate",
    "unknown-anno-id": "an expression names an anno_id missing from the mask dict",
    "missing-mask": "a referent has no mask file",
    "missing-box": "a frame inside a ground-truth tube has no box",
}
"""Every problem kind ``sparrow data check`` reports, with a one-line meaning."""


@dataclass(frozen=True)
class Problem:
    """One problem in a dataset copy.

    Attributes:
        kind: one of :data:`PROBLEM_KINDS`.
        path: the file or folder concerned.
        message: what is wrong, in one sentence.
    """

    kind: str
    path: Path
    message: str

    def to_dict(self) -> dict[str, str]:
        return {"kind": self.kind, "path": str(self.path), "message": self.message}


_FIXES = {
    "missing-file": "download or restore the file, or point --root at the dataset's top folder",
    "bad-json": "re-download the annotation file (it must be valid JSON in the documented layout)",
    "bad-entry": "repair the entry to match the documented layout (docs/data_formats.md)",
    "missing-frame": "restore the frame image or remove it from the annotation's frame list",
    "bad-image": "re-export the image as a PNG/JPEG",
    "mask-size": "re-export the mask at the frame's resolution",
    "frame-size": "re-export the frames at one size, or fix the declared height/width",
    "frame-count": "make the per-frame annotation list as long as the frame list",
    "unknown-object": "fix the object id or add the object's annotation",
    "unknown-anno-id": "fix the anno_id or add its entry to mask_dict.json",
    "missing-mask": "add the mask files of every referent",
    "missing-box": "add the box of every frame of the tube",
}


class Issues:
    """Where readers report problems: strict (raise at once) or collecting (for ``data check``)."""

    def __init__(self, *, strict: bool) -> None:
        self.strict = strict
        self.problems: list[Problem] = []

    @classmethod
    def collect(cls) -> Issues:
        return cls(strict=False)

    def report(self, kind: str, path: str | Path, message: str) -> None:
        """Record a problem; in strict mode raise it as a :class:`DataFormatError` instead."""
        if kind not in PROBLEM_KINDS:
            raise ValueError(f"unknown problem kind {kind!r}")
        if self.strict:
            raise DataFormatError(message, path=path, fix=_FIXES[kind])
        self.problems.append(Problem(kind, Path(path), message))

    def add_error(self, err: DataFormatError, kind: str = "bad-json") -> None:
        """Record a :class:`DataFormatError` raised by a lazy load (collecting mode only)."""
        self.problems.append(Problem(kind, err.path or Path("."), err.message))


def strict_issues(issues: Issues | None) -> Issues:
    """The sink a reader uses: the caller's, or a strict one."""
    return issues if issues is not None else Issues(strict=True)
