"""Crash-safe training checkpoints: write into a temporary folder, fsync, rename, move a pointer.

Layout of one stage's ``checkpoints/`` folder::

    step-00000010/
        model.safetensors     the model's state dict as trained (LoRA adapters included)
        optimizer.pt          optimizer.state_dict() (torch.save; loaded with weights_only=True)
        scheduler.json        LR scheduler state
        scaler.pt             fp16 grad-scaler state (only with mixed_precision=fp16)
        trainer_state.json    stage, step, sampler (epoch, position), world size, ...
        rng/rank-00000.safetensors   RNG states of rank 0 (python, numpy, torch, CUDA), one per rank
    step-00000020/
    latest                    the name of the newest complete checkpoint (replaced atomically)

A checkpoint folder only ever appears under its final name through ``os.rename`` of a complete,
fsynced temporary folder (``.tmp-step-...``), so a kill at any moment leaves every ``step-*`` folder
readable; ``latest`` is replaced with ``os.replace`` after the rename. Older checkpoints beyond
``keep_last`` are renamed to ``.trash-*`` before they are deleted. Leftover ``.tmp-*`` / ``.trash-*``
folders of a killed run are removed when the next run opens the folder.

Every rank writes its own RNG file into the shared temporary folder; rank 0 writes the rest and
publishes. The folder must therefore be on a file system all ranks share.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from sparrow.data.sampling import SamplerState
from sparrow.errors import CheckpointError

LATEST = "latest"
STATE_FILE = "trainer_state.json"
_STEP_DIR = re.compile(r"^step-(\d{8})$")
STATE_FORMAT = 1


def step_name(step: int) -> str:
    return f"step-{step:08d}"


def fsync_path(path: Path) -> None:
    """Flush a file or a folder entry to disk (a no-op where the OS cannot open folders)."""
    flags = os.O_RDONLY | (os.O_DIRECTORY if path.is_dir() and hasattr(os, "O_DIRECTORY") else 0)
    try:
        fd = os.open(path, flags)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def fsync_tree(root: Path) -> None:
    """fsync every file and folder under ``root`` (and ``root`` itself)."""
    for folder, _, files in os.walk(root):
        for name in files:
            fsync_path(Path(folder) / name)
        fsync_path(Path(folder))


def write_text_durable(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` atomically and durably (temp file, fsync, ``os.replace``)."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_path(path.parent)


@contextmanager
def durable_dir(path: Path) -> Iterator[Path]:
    """Yield an empty temporary folder beside ``path``; on success it is fsynced and renamed to ``path``.

    ``path`` must not exist. On an exception the temporary folder is removed and ``path`` is untouched.
    """
    tmp = path.with_name(f".tmp-{path.name}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        yield tmp
        fsync_tree(tmp)
        os.rename(tmp, path)
        fsync_path(path.parent)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# ---------------------------------------------------------------------------------------------- state


@dataclass
class TrainerState:
    """Where a stage stands after ``step`` optimizer steps.

    Attributes:
        stage_index: index of the stage in the recipe's ``stages``.
        stage: paper stage (0, 1, 2).
        step: optimizer steps done.
        sampler: the next unconsumed position of the data stream.
        world_size: processes that wrote the checkpoint.
        samples_seen: training samples consumed by all ranks together.
        extra: anything else worth keeping (elapsed time, ...).
    """

    stage_index: int
    stage: int
    step: int
    sampler: SamplerState
    world_size: int
    samples_seen: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": STATE_FORMAT,
            "stage_index": self.stage_index,
            "stage": self.stage,
            "step": self.step,
            "sampler": self.sampler.to_dict(),
            "world_size": self.world_size,
            "samples_seen": self.samples_seen,
            "extra": self.extra,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainerState:
        return cls(
            stage_index=int(data["stage_index"]),
            stage=int(data["stage"]),
            step=int(data["step"]),
            sampler=SamplerState.from_dict(data["sampler"]),
            world_size=int(data["world_size"]),
            samples_seen=int(data.get("samples_seen", 0)),
            extra=dict(data.get("extra", {})),
        )


# ------------------------------------------------------------------------------------------------ RNG


def rng_state() -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The process's RNG states as (tensors, string metadata) for one safetensors file."""
    version, py_state, gauss = random.getstate()
    np_state = np.random.get_state(legacy=True)
    assert isinstance(np_state, tuple)
    tensors = {
        "torch": torch.get_rng_state(),
        "numpy_keys": torch.from_numpy(np.asarray(np_state[1], dtype=np.int64)),
        "python": torch.tensor(py_state, dtype=torch.int64),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for i, state in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"cuda_{i}"] = state
    meta = {
        "python": json.dumps({"version": version, "gauss": gauss}),
        "numpy": json.dumps(
            {
                "kind": np_state[0],
                "pos": int(np_state[2]),
                "has_gauss": int(np_state[3]),
                "gauss": float(np_state[4]),
            }
        ),
    }
    return tensors, meta


def set_rng_state(tensors: dict[str, torch.Tensor], meta: dict[str, str]) -> None:
    """Restore what :func:`rng_state` captured."""
    py = json.loads(meta["python"])
    random.setstate((py["version"], tuple(int(v) for v in tensors["python"].tolist()), py["gauss"]))
    npm = json.loads(meta["numpy"])
    keys = tensors["numpy_keys"].numpy().astype(np.uint32)
    np.random.set_state((npm["kind"], keys, npm["pos"], npm["has_gauss"], npm["gauss"]))
    torch.set_rng_state(tensors["torch"])
    cuda = sorted((k for k in tensors if k.startswith("cuda_")), key=lambda k: int(k.split("_")[1]))
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([tensors[k] for k in cuda])


@contextmanager
def preserved_rng() -> Iterator[None]:
    """Run a block (validation, say) without changing the RNG streams training draws from."""
    tensors, meta = rng_state()
    try:
        yield
    finally:
        set_rng_state(tensors, meta)


def _rng_file(folder: Path, rank: int) -> Path:
    return folder / "rng" / f"rank-{rank:05d}.safetensors"


def save_rng(folder: Path, rank: int) -> None:
    path = _rng_file(folder, rank)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors, meta = rng_state()
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(path), metadata=meta)


def load_rng(folder: Path, rank: int) -> bool:
    """Restore this rank's RNG states from checkpoint ``folder``; False if it holds none for ``rank``."""
    path = _rng_file(folder, rank)
    if not path.is_file():
        return False
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
        tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 -- safe_open has no __iter__
    set_rng_state(tensors, meta)
    return True


# -------------------------------------------------------------------------------------------- weights


def unshare(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A state dict safetensors can write: CPU, contiguous, no two names on one storage (tied
    weights are copied)."""
    out: dict[str, torch.Tensor] = {}
    seen: set[int] = set()
    for name, tensor in state.items():
        t = tensor.detach().cpu().contiguous()
        storage = t.untyped_storage()
        if storage.data_ptr() in seen or storage.nbytes() != t.numel() * t.element_size():
            t = t.clone()
        seen.add(t.untyped_storage().data_ptr())
        out[name] = t
    return out


def save_weights(path: Path, state: dict[str, torch.Tensor]) -> None:
    save_file(unshare(state), str(path), metadata={"format": "pt"})


def load_weights(path: Path) -> dict[str, torch.Tensor]:
    """Read a ``model.safetensors`` of a checkpoint (CPU tensors)."""
    try:
        return load_file(str(path))
    except (OSError, SafetensorError) as exc:
        raise CheckpointError(
            f"cannot read the weights: {exc}", path=path, fix="resume from an older checkpoint"
        ) from exc


def save_torch(path: Path, obj: Any) -> None:
    """``torch.save`` for our own optimizer / scaler states (plain containers of tensors and numbers)."""
    torch.save(obj, path)


def load_torch(path: Path) -> Any:
    """Load what :func:`save_torch` wrote, with ``weights_only=True`` (no arbitrary unpickling)."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(
            f"cannot read {path.name}: {exc}", path=path, fix="resume from an older checkpoint"
        ) from exc


# -------------------------------------------------------------------------------------------- manager


class CheckpointManager:
    """Writes and finds the checkpoints of one stage.

    Args:
        folder: the stage's ``checkpoints/`` folder.
        keep_last: how many complete checkpoints to keep.
        rank: this process's rank; rank 0 writes the shared files and publishes.
        barrier: waits for every rank (a no-op in a single process).
    """

    def __init__(
        self, folder: Path, *, keep_last: int, rank: int = 0, barrier: Callable[[], None] = lambda: None
    ) -> None:
        self.folder = Path(folder)
        self.keep_last = keep_last
        self.rank = rank
        self.barrier = barrier
        if rank == 0:
            self.folder.mkdir(parents=True, exist_ok=True)
            for leftover in self.folder.glob(".t*-*"):
                if leftover.name.startswith((".tmp-", ".trash-")):
                    shutil.rmtree(leftover, ignore_errors=True)
        barrier()

    def complete(self) -> list[tuple[int, Path]]:
        """``(step, folder)`` of every published checkpoint, oldest first."""
        return published_checkpoints(self.folder)

    def latest(self) -> Path | None:
        """The newest published checkpoint, or None (:func:`newest_checkpoint`)."""
        return newest_checkpoint(self.folder)

    def save(
        self,
        step: int,
        *,
        write_shared: Callable[[Path], None],
        write_rank: Callable[[Path], None],
        before_publish: Callable[[], None] | None = None,
    ) -> Path:
        """Write checkpoint ``step`` and make it the latest (collective: every rank calls it).

        Args:
            step: the optimizer step the checkpoint is taken after.
            write_shared: called on rank 0 with the temporary folder: model, optimizer, state files.
            write_rank: called on every rank with the temporary folder: per-rank files (RNG).
            before_publish: called on rank 0 once the files are durable, before the rename (fault
                injection for tests).

        Returns:
            The published folder.
        """
        final = self.folder / step_name(step)
        tmp = self.folder / f".tmp-{final.name}"
        if self.rank == 0:
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
        self.barrier()
        write_rank(tmp)
        if self.rank == 0:
            write_shared(tmp)
        self.barrier()
        if self.rank == 0:
            fsync_tree(tmp)
            if before_publish is not None:
                before_publish()
            if final.exists():  # a re-run of a step whose checkpoint was published (resumed at the end)
                self._discard(final)
            os.rename(tmp, final)
            fsync_path(self.folder)
            write_text_durable(self.folder / LATEST, final.name + "\n")
            self._prune()
        self.barrier()
        return final

    def _discard(self, folder: Path) -> None:
        trash = folder.with_name(f".trash-{folder.name}")
        shutil.rmtree(trash, ignore_errors=True)
        os.rename(folder, trash)
        shutil.rmtree(trash, ignore_errors=True)

    def _prune(self) -> None:
        complete = self.complete()
        for _, folder in complete[: max(0, len(complete) - self.keep_last)]:
            self._discard(folder)


def published_checkpoints(folder: Path) -> list[tuple[int, Path]]:
    """``(step, folder)`` of every published checkpoint in a stage's ``checkpoints/`` folder, oldest
    first (none when the folder does not exist). Reads only: safe on a folder another run owns."""
    found = []
    if folder.is_dir():
        for child in folder.iterdir():
            m = _STEP_DIR.match(child.name)
            if m and (child / STATE_FILE).is_file():
                found.append((int(m.group(1)), child))
    return sorted(found)


def newest_checkpoint(folder: Path) -> Path | None:
    """The newest published checkpoint of a ``checkpoints/`` folder, or None.

    Folders only appear complete (see the module docstring), so the highest ``step-*`` folder is
    the answer even when a kill fell between its rename and the update of the ``latest`` pointer
    (which is kept for people and tools).
    """
    complete = published_checkpoints(folder)
    return complete[-1][1] if complete else None


def load_checkpoint_weights(model: torch.nn.Module, folder: Path, fix: str) -> None:
    """Load checkpoint ``folder``'s ``model.safetensors`` into ``model``; every key must match.

    Raises:
        CheckpointError: missing or unexpected keys (``fix`` says what to do about it).
    """
    missing, unexpected = model.load_state_dict(load_weights(folder / "model.safetensors"), strict=False)
    if missing or unexpected:
        raise CheckpointError(
            f"the checkpoint does not match the model (missing {missing[:5]}, unexpected {unexpected[:5]})",
            path=folder,
            fix=fix,
        )


def read_state(folder: Path) -> TrainerState:
    """The :class:`TrainerState` of checkpoint ``folder``."""
    path = folder / STATE_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("format") != STATE_FORMAT:
            raise ValueError(f"format {data.get('format')!r}, expected {STATE_FORMAT}")
        return TrainerState.from_dict(data)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(
            f"unreadable trainer state: {exc}", path=path, fix="resume from an older checkpoint"
        ) from exc


def write_state(folder: Path, state: TrainerState) -> None:
    (folder / STATE_FILE).write_text(json.dumps(state.to_dict(), indent=2), encoding="utf-8")
