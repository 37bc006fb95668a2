"""Pieces shared by the format modules: JSON loading into an issue sink, id normalisation, and
atomic tree writers (a folder built under a temporary name, then renamed or zipped into place)."""

from __future__ import annotations

import os
import shutil
import tempfile
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal, Self

import numpy as np
from PIL import Image

from sparrow.errors import DataFormatError
from sparrow.io.atomic import atomic_dir, atomic_file, ensure_absent
from sparrow.io.mask_files import write_binary_png

from ..issues import Issues
from ..mask_sources import load_json

FrameMode = Literal["copy", "link", "symlink"]


def read_json(path: Path, issues: Issues) -> Any | None:
    """Parse ``path``; on a missing or broken file report it (``missing-file`` / ``bad-json``) and return None."""
    try:
        return load_json(path)
    except DataFormatError as err:
        if issues.strict:
            raise
        issues.report("missing-file" if not path.is_file() else "bad-json", path, err.message)
        return None


def json_object(data: Any, key: str | None, path: Path, issues: Issues, what: str) -> dict[str, Any] | None:
    """``data[key]`` (or ``data``) as a dict, else report ``bad-json`` and return None."""
    value = data if key is None else (data.get(key) if isinstance(data, dict) else None)
    if not isinstance(value, dict):
        where = f"key {key!r}" if key else "the top level"
        issues.report("bad-json", path, f"{where} must be an object ({what})")
        return None
    return value


def id_tuple(value: Any) -> tuple[str, ...]:
    """Normalise an id field (``"1"``, ``1``, ``[1, 2]``, ``None``) to a tuple of strings."""
    if value is None:
        return ()
    if isinstance(value, (list, tuple)):
        return tuple(str(v) for v in value)
    return (str(value),)


def span_tuple(value: Any) -> tuple[int, int] | None:
    """``[start, end)`` from a 2-list of ints, else None."""
    if isinstance(value, (list, tuple)) and len(value) == 2 and all(isinstance(v, int) for v in value):
        return int(value[0]), int(value[1])
    return None


def size_of(entry: dict[str, Any]) -> tuple[int, int] | None:
    """``(H, W)`` from ``height``/``width`` keys, when both are positive ints."""
    h, w = entry.get("height"), entry.get("width")
    if isinstance(h, int) and isinstance(w, int) and h > 0 and w > 0:
        return h, w
    return None


def place_file(src: Path, dst: Path, mode: FrameMode) -> None:
    """Put ``src`` at ``dst`` by copying, hard-linking (copy if across devices) or symlinking."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    if mode == "symlink":
        os.symlink(src.resolve(), dst)
        return
    if mode == "link":
        try:
            os.link(src, dst)
            return
        except OSError:
            pass
    shutil.copyfile(src, dst)


def place_jpeg(src: Path, dst: Path, mode: FrameMode) -> None:
    """Put the image ``src`` at ``dst`` (a ``.jpg`` name): JPEG files via :func:`place_file`, other
    images re-encoded as JPEG (quality 95)."""
    if src.suffix.lower() in (".jpg", ".jpeg"):
        place_file(src, dst, mode)
        return
    dst.parent.mkdir(parents=True, exist_ok=True)
    with Image.open(src) as im:
        im.convert("RGB").save(dst, format="JPEG", quality=95)


def frame_key(name: str | int) -> str:
    """Frame file stem: names are kept, numbers become ``{n:05d}`` (DAVIS / YouTube-VOS style)."""
    return f"{name:05d}" if isinstance(name, (int, np.integer)) else str(name)


def _zip_tree(src: Path, zip_path: Path) -> None:
    """Zip the contents of ``src`` (not ``src`` itself), folders included, paths relative to ``src``."""
    with zipfile.ZipFile(zip_path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for folder, dirs, files in os.walk(src):
            dirs.sort()
            rel = Path(folder).relative_to(src)
            if rel != Path("."):
                zf.write(folder, rel.as_posix() + "/")
            for name in sorted(files):
                zf.write(Path(folder) / name, (rel / name).as_posix())


class TreeWriter:
    """A folder of outputs written atomically: use as a context manager.

    Files are written under ``self.dir`` (a temporary folder beside ``out``). On a clean exit the
    folder becomes ``out``, or, with ``as_zip``, is zipped (its contents at the zip's top level) to
    ``out`` through a temporary file and removed. On an exception nothing is left behind.

    Raises:
        OutputExistsError: ``out`` exists and ``overwrite`` is False.
    """

    def __init__(self, out: str | Path, *, as_zip: bool = False, overwrite: bool = False) -> None:
        self.out = Path(out)
        self.as_zip = as_zip
        self.overwrite = overwrite
        self.dir: Path = self.out
        self._ctx: Any = None

    def __enter__(self) -> Self:
        if self.as_zip:
            ensure_absent(self.out, overwrite=self.overwrite)
            self.out.parent.mkdir(parents=True, exist_ok=True)
            self.dir = Path(tempfile.mkdtemp(prefix=f".{self.out.name}.build", dir=self.out.parent))
        else:
            self._ctx = atomic_dir(self.out, overwrite=self.overwrite)
            self.dir = self._ctx.__enter__()
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            try:
                self.finish()
                if self.as_zip:
                    with atomic_file(self.out) as tmp:
                        _zip_tree(self.dir, tmp)
            except BaseException as err:
                self._close(type(err), err, err.__traceback__)
                raise
        self._close(exc_type, exc, tb)

    def _close(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if self.as_zip:
            shutil.rmtree(self.dir, ignore_errors=True)
        else:
            self._ctx.__exit__(exc_type, exc, tb)

    def finish(self) -> None:
        """Hook run before the folder is renamed into place (write index files here)."""


class BinaryMaskTreeWriter(TreeWriter):
    """``[<prefix>/]<video>/<exp_id>/<frame>.png`` L-mode 0/255 masks (MeViS, ReVOS, Ref-YouTube-VOS).

    Args:
        out: the output folder, or the ``.zip`` with ``as_zip``.
        prefix: a folder the tree is put under (``"Annotations"`` for Ref-YouTube-VOS), or ``""``.
        as_zip: zip the tree (contents at the top level of the zip) instead of leaving a folder.
        overwrite: replace an existing ``out``.
    """

    def __init__(
        self, out: str | Path, *, prefix: str = "", as_zip: bool = False, overwrite: bool = False
    ) -> None:
        super().__init__(out, as_zip=as_zip, overwrite=overwrite)
        self.prefix = prefix

    def add(self, video_id: str, exp_id: str, frame_names: Sequence[str | int], masks: np.ndarray) -> None:
        """Write one expression's masks.

        Args:
            video_id: the video folder name.
            exp_id: the expression folder name.
            frame_names: one name per mask (``"00005"``, or an int written ``{n:05d}``).
            masks: bool ``(T, H, W)`` at the original frame resolution.
        """
        masks = np.asarray(masks)
        if masks.ndim != 3 or masks.shape[0] != len(frame_names):
            raise ValueError(
                f"{video_id}/{exp_id}: masks {masks.shape} do not match {len(frame_names)} frame names"
            )
        folder = self.dir / self.prefix / video_id / str(exp_id)
        for name, mask in zip(frame_names, masks, strict=True):
            write_binary_png(folder / f"{frame_key(name)}.png", mask, value=255)
