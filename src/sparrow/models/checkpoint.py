"""SPARROW checkpoints: one folder with ``config.json``, ``model.safetensors`` and the tokenizer.

- ``config.json``: the full :class:`~sparrow.models.config.SparrowConfig` (``preset`` names the
  preset it came from) with every transformers part's architecture written out (``hf``) and no
  ``path`` -- the folder is self-contained.
- ``model.safetensors``: every parameter and persistent buffer (tied weights stored once); loading
  never unpickles.
- ``tokenizer.json`` / ``tokenizer_config.json``.

Writes go to a temporary sibling folder that replaces the target in one rename. Loading is strict:
any missing or unexpected key is a :class:`~sparrow.errors.CheckpointError` naming the folder and
the keys, unless it matches a pattern in ``config.checkpoint.allow_missing`` /
``allow_unexpected`` (e.g. frozen parts loaded from their own ``path`` given as an override).
"""

from __future__ import annotations

import fnmatch
import json
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from safetensors import SafetensorError
from safetensors.torch import load_model, save_model

from sparrow.errors import CheckpointError, ConfigError
from sparrow.models.config import SparrowConfig
from sparrow.models.sparrow import SparrowModel
from sparrow.models.tokenizer import SparrowTokenizer

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
# transformers config entries that describe provenance, not architecture.
_HF_META_KEYS = {"transformers_version", "architectures", "auto_map", "dtype", "torch_dtype", "model_type"}


def hf_architecture(config: Any) -> dict[str, Any]:
    """The non-default architecture arguments of a transformers config (provenance dropped)."""
    return {
        k: v for k, v in config.to_diff_dict().items() if k not in _HF_META_KEYS and not k.startswith("_")
    }


def resolved_config(model: SparrowModel) -> SparrowConfig:
    """The model's config with each transformers part's actual architecture and no weight paths."""
    c = model.config
    return c.replace(
        {
            "spatial": {"hf": hf_architecture(model.spatial_encoder.model.config), "path": None},
            "temporal": {"hf": hf_architecture(model.temporal_encoder.encoder.config), "path": None},
            "llm": {"hf": hf_architecture(model.llm.config), "path": None, "tokenizer": None},
            "sam2": {"path": None},
        }
    )


def save_checkpoint(model: SparrowModel, folder: str | Path) -> Path:
    """Write ``model`` to ``folder`` atomically (an existing folder is replaced as a whole)."""
    folder = Path(folder)
    tokenizer = model._tok()
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}.tmp-"))
    try:
        config = resolved_config(model).to_dict()
        (tmp / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n")
        save_model(model, str(tmp / WEIGHTS_FILE))
        tokenizer.save(tmp)
        if folder.exists():
            old = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}.old-"))
            os.replace(folder, old / folder.name)
            os.replace(tmp, folder)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder


def read_config(folder: str | Path, overrides: dict | list[str] | None = None) -> SparrowConfig:
    """The config of a checkpoint folder (with overrides applied).

    Raises:
        CheckpointError: the folder or its ``config.json`` is missing or unreadable.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise CheckpointError(
            "model folder not found", path=folder, fix="give a folder written by save_pretrained"
        )
    path = folder / CONFIG_FILE
    if not path.is_file():
        training = (folder / "trainer_state.json").is_file()  # a training checkpoint holds weights only
        raise CheckpointError(
            "config.json is missing" + (" (this is a training checkpoint)" if training else ""),
            path=folder,
            fix=f"export it as a model folder: sparrow export {folder} --out DIR"
            if training
            else "the folder is not a SPARROW checkpoint",
        )
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"cannot read config.json: {exc}", path=path, fix="restore the file") from exc
    try:
        config = SparrowConfig.from_dict(data, source=path)
        return config.replace(overrides) if overrides else config
    except ConfigError as exc:
        raise CheckpointError(exc.message, path=path, fix=exc.fix or "check the config keys") from exc


def load_checkpoint(
    folder: str | Path, overrides: dict | list[str] | None = None, fresh: Sequence[str] = ()
) -> SparrowModel:
    """Build the model of ``folder``'s config and load its weights strictly.

    ``fresh``: parts (``filtration``, ...) whose weights may be missing: they keep the new model's
    initialisation (a training stage that re-initialises them).

    Raises:
        CheckpointError: missing/corrupt files, shape mismatches, or missing / unexpected keys not
            allowed by ``config.checkpoint``.
    """
    folder = Path(folder)
    config = read_config(folder, overrides)
    weights = folder / WEIGHTS_FILE
    if not weights.is_file():
        raise CheckpointError(
            "model.safetensors is missing", path=folder, fix="copy the weights file into it"
        )
    tokenizer = SparrowTokenizer.load(folder, config.llm.template)
    model = SparrowModel(config, tokenizer)
    try:
        missing, unexpected = load_model(model, str(weights), strict=False)
    except (SafetensorError, OSError) as exc:
        raise CheckpointError(
            f"model.safetensors is corrupt or unreadable: {exc}",
            path=weights,
            fix="restore or re-save the weights",
        ) from exc
    except RuntimeError as exc:  # shape mismatches
        raise CheckpointError(
            f"weights do not fit the config: {exc}",
            path=weights,
            fix="use the config.json saved with these weights",
        ) from exc
    allowed = config.checkpoint
    may_miss = [*allowed.allow_missing, *(f"{part}.*" for part in fresh)]
    missing = sorted(k for k in missing if not _matches(k, may_miss))
    unexpected = sorted(k for k in unexpected if not _matches(k, allowed.allow_unexpected))
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing key(s): {_show(missing)}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected key(s): {_show(unexpected)}")
        raise CheckpointError(
            "weights do not match the model: " + "; ".join(parts),
            path=folder,
            fix="load with the config saved beside these weights, or allow the keys in checkpoint.allow_missing / allow_unexpected",
        )
    return model


def _matches(key: str, patterns: list[str]) -> bool:
    return any(fnmatch.fnmatchcase(key, p) for p in patterns)


def _show(keys: list[str], limit: int = 12) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f", ... ({len(keys) - limit} more)" if len(keys) > limit else "")
