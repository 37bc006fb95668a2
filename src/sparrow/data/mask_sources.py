"""Lazy references to ground-truth masks: nothing is read or decoded until :meth:`load` is called.

Records hold a :class:`MaskSource`; the three kinds cover every layout we read:

- :class:`RleMasks`: anno ids into a COCO-RLE mask dict (MeViS / ReVOS ``mask_dict.json``); the JSON
  file is parsed once, on the first load of any record that shares its :class:`LazyJson`.
- :class:`IndexPngMasks`: per-frame palette PNGs holding object ids (DAVIS, Ref-YouTube-VOS).
- :class:`BinaryPngMasks`: per-frame binary PNGs, one or more per frame (SPARROW sequences, VideoGCG).

Every ``load`` returns bool ``(T, H, W)`` masks at the original frame resolution, one per frame of
the owning video (or per requested position), as the union of the referenced objects.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from sparrow.errors import DataFormatError
from sparrow.io.mask_files import read_index_png
from sparrow.structures.masks import RLE, rle_decode


class LazyJson:
    """A JSON file parsed on first access to :attr:`data` and cached (shared by many records)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._data: Any = None
        self._loaded = False

    @property
    def data(self) -> Any:
        if not self._loaded:
            self._data = load_json(self.path)
            self._loaded = True
        return self._data


def load_json(path: Path) -> Any:
    """Parse a JSON file.

    Raises:
        DataFormatError: the file is missing or is not valid JSON (the message names the line).
    """
    if not path.is_file():
        raise DataFormatError(
            "file not found", path=path, fix="download it, or point --root at the dataset's top folder"
        )
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as err:
        raise DataFormatError(
            f"not valid JSON (line {err.lineno}, column {err.colno}: {err.msg})",
            path=path,
            fix="re-download the file; it must be valid JSON",
        ) from err
    except (OSError, UnicodeDecodeError) as err:
        raise DataFormatError(
            f"cannot read the file ({err})", path=path, fix="check the file's permissions and encoding"
        ) from err


class MaskSource(Protocol):
    """Anything that can produce bool ``(T, H, W)`` masks on demand."""

    num_frames: int

    def load(self, positions: Sequence[int] | None = None) -> np.ndarray:
        """Masks of the frames at ``positions`` (0-based positions in the video's frame list; all if None)."""
        ...


def _positions(num_frames: int, positions: Sequence[int] | None) -> list[int]:
    if positions is None:
        return list(range(num_frames))
    out = [int(p) for p in positions]
    for p in out:
        if not 0 <= p < num_frames:
            raise IndexError(f"frame position {p} outside 0..{num_frames - 1}")
    return out


def _union(acc: np.ndarray | None, mask: np.ndarray, what: str) -> np.ndarray:
    if acc is None:
        return mask
    if acc.shape != mask.shape:
        raise DataFormatError(f"{what}: masks of one frame differ in size ({acc.shape} vs {mask.shape})")
    return acc | mask


def _stack(frames: list[np.ndarray | None], size: tuple[int, int] | None, what: str) -> np.ndarray:
    """Stack per-frame masks, filling ``None`` (no annotation) with empty masks of the common size."""
    known = [m for m in frames if m is not None]
    if size is None:
        if not known:
            raise DataFormatError(
                f"{what}: every frame is empty and the frame size is unknown", fix="pass size=(H, W)"
            )
        size = known[0].shape
    out = np.zeros((len(frames), *size), dtype=bool)
    for i, m in enumerate(frames):
        if m is None:
            continue
        if m.shape != tuple(size):
            raise DataFormatError(
                f"{what}: mask of frame position {i} is {m.shape[1]}x{m.shape[0]} (WxH), expected {size[1]}x{size[0]}",
                fix="re-export the masks at the frame resolution",
            )
        out[i] = m
    return out


class _JsonMaskFile:
    """A JSON file of RLE masks, parsed on first use (:class:`LazyJson`)."""

    def __init__(self, path: str | Path) -> None:
        self.file = LazyJson(path)

    @property
    def path(self) -> Path:
        return self.file.path


class AnnoMaskDict(_JsonMaskFile):
    """``mask_dict.json``: ``{str(anno_id): [per-frame COCO RLE or null]}`` (MeViS, ReVOS)."""

    def _mapping(self) -> dict[str, Any]:
        data = self.file.data
        if not isinstance(data, dict):
            raise DataFormatError(
                "mask dict must be a JSON object {anno_id: [RLE or null, ...]}", path=self.path
            )
        return data

    def __contains__(self, key: str) -> bool:
        return str(key) in self._mapping()

    def track(self, key: str) -> list[RLE | None]:
        """The per-frame RLE list of one anno id (``None`` = not present in that frame)."""
        data = self._mapping()
        if str(key) not in data:
            raise DataFormatError(
                f"anno_id {key} is not in the mask dict", path=self.path, fix="check the expression's anno_id"
            )
        track = data[str(key)]
        if not isinstance(track, list):
            raise DataFormatError(f"entry {key} must be a list of per-frame RLEs", path=self.path)
        return track


class ForegroundDict(_JsonMaskFile):
    """ReVOS ``mask_dict_foreground.json``: ``{video: {"masks_rle": [per-frame RLE], ...}}``."""

    def __contains__(self, key: str) -> bool:
        data = self.file.data
        return isinstance(data, dict) and key in data

    def track(self, key: str) -> list[RLE | None]:
        data = self.file.data
        entry = data.get(key) if isinstance(data, dict) else None
        if not isinstance(entry, dict) or not isinstance(entry.get("masks_rle"), list):
            raise DataFormatError(f"video {key!r} has no 'masks_rle' list", path=self.path)
        return entry["masks_rle"]


class RleStore(Protocol):
    path: Path

    def __contains__(self, key: str) -> bool: ...

    def track(self, key: str) -> list[RLE | None]: ...


class RleMasks:
    """Union of the RLE tracks of ``keys`` in ``store``, per frame.

    Args:
        store: the mask dict (parsed lazily, shared).
        keys: the anno ids (as strings) whose masks are OR-ed.
        num_frames: frames of the owning video.
        size: ``(H, W)`` if known; else taken from the first non-null RLE.
    """

    def __init__(
        self, store: RleStore, keys: Sequence[str], num_frames: int, size: tuple[int, int] | None = None
    ) -> None:
        self.store = store
        self.keys = tuple(str(k) for k in keys)
        self.num_frames = int(num_frames)
        self.size = size

    def tracks(self) -> list[list[RLE | None]]:
        """The raw RLE lists of every key (parses the mask dict on first use; decodes nothing)."""
        return [self.store.track(k) for k in self.keys]

    def load(self, positions: Sequence[int] | None = None) -> np.ndarray:
        """Bool ``(T, H, W)``: the OR of the keys' decoded RLEs (``null`` adds nothing)."""
        tracks = self.tracks()
        frames: list[np.ndarray | None] = []
        for p in _positions(self.num_frames, positions):
            mask = None
            for key, track in zip(self.keys, tracks, strict=True):
                if p >= len(track):
                    raise DataFormatError(
                        f"anno_id {key} has {len(track)} frames, the video {self.num_frames}",
                        path=self.store.path,
                    )
                if track[p] is None:
                    continue
                try:
                    m = rle_decode(track[p])
                except (ValueError, TypeError) as err:
                    raise DataFormatError(
                        f"anno_id {key}, frame {p}: bad RLE ({err})", path=self.store.path
                    ) from err
                mask = _union(mask, m, f"anno ids {list(self.keys)}")
            frames.append(mask)
        return _stack(frames, self.size, f"anno ids {list(self.keys)} in {self.store.path}")


class IndexPngMasks:
    """Pixels whose palette index is one of ``labels``, from one index PNG per frame.

    Args:
        paths: per frame, the PNG path, or ``None`` where the frame has no annotation (empty mask).
        labels: the object ids that count as foreground.
        size: ``(H, W)`` if known (needed only when no frame has a PNG).
    """

    def __init__(
        self, paths: Sequence[Path | None], labels: Sequence[int], size: tuple[int, int] | None = None
    ) -> None:
        self.paths = tuple(paths)
        self.labels = tuple(int(v) for v in labels)
        self.num_frames = len(self.paths)
        self.size = size

    def load(self, positions: Sequence[int] | None = None) -> np.ndarray:
        """Bool ``(T, H, W)``: ``isin(index PNG, labels)`` per frame."""
        frames: list[np.ndarray | None] = []
        for p in _positions(self.num_frames, positions):
            path = self.paths[p]
            frames.append(None if path is None else np.isin(read_index_png(path), self.labels))
        return _stack(frames, self.size, f"objects {list(self.labels)}")


class BinaryPngMasks:
    """Union of binary PNGs (any non-zero value is foreground), several or none per frame.

    Args:
        paths: per frame, the PNG files to OR (an empty tuple means an empty mask).
        size: ``(H, W)`` if known (needed only when no frame has a PNG).
    """

    def __init__(self, paths: Sequence[Sequence[Path]], size: tuple[int, int] | None = None) -> None:
        self.paths = tuple(tuple(p) for p in paths)
        self.num_frames = len(self.paths)
        self.size = size

    def load(self, positions: Sequence[int] | None = None) -> np.ndarray:
        """Bool ``(T, H, W)``: per frame, the OR of its PNGs' non-zero pixels."""
        frames: list[np.ndarray | None] = []
        for p in _positions(self.num_frames, positions):
            mask = None
            for path in self.paths[p]:
                mask = _union(mask, read_index_png(path) > 0, str(path))
            frames.append(mask)
        return _stack(frames, self.size, "binary masks")
