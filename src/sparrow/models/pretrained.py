"""Build a transformers model from preset keyword arguments or from a local Hugging Face folder.

Every transformers-backed part (vision encoders, LLM) goes through :func:`build_hf_model`: with
``path`` it loads config and weights from that folder (``local_files_only``, never the hub) and
checks that the folder's architecture agrees with the preset's ``hf`` sizes; without ``path`` it
builds the architecture from the sizes with fresh weights (also on the ``meta`` device).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from transformers import PreTrainedConfig, PreTrainedModel

from sparrow.errors import CheckpointError, ConfigError


def build_hf_model(
    model_cls: type[PreTrainedModel],
    config_cls: type[PreTrainedConfig],
    hf: dict[str, Any],
    path: str | None,
    what: str,
    fixed: dict[str, Any] | None = None,
) -> PreTrainedModel:
    """Instantiate ``model_cls`` from ``hf`` kwargs (+ ``fixed``), or load it from ``path``.

    Args:
        model_cls: e.g. ``CLIPVisionModel``.
        config_cls: its config class, e.g. ``CLIPVisionConfig``.
        hf: the preset's size arguments.
        path: a local folder with ``config.json`` and safetensors weights, or ``None``.
        what: the config section, for messages (``"spatial"``).
        fixed: arguments that are always set when building from sizes (never checked on load).

    Raises:
        CheckpointError: ``path`` is not a readable model folder.
        ConfigError: the folder's architecture disagrees with a size in ``hf``.
    """
    if path is None:
        return model_cls(config_cls(**{**hf, **(fixed or {})}))
    folder = Path(path)
    if not (folder / "config.json").is_file():
        raise CheckpointError(
            f"{what}.path is not a Hugging Face model folder (no config.json)",
            path=folder,
            fix=f"point {what}.path to a local folder saved with save_pretrained",
        )
    try:
        model = model_cls.from_pretrained(folder, local_files_only=True, use_safetensors=True)
    except (OSError, ValueError) as exc:
        raise CheckpointError(
            f"cannot load {what} weights: {exc}", path=folder, fix="re-download the folder"
        ) from exc
    loaded = model.config
    mismatched = {
        k: (v, getattr(loaded, k, None)) for k, v in hf.items() if _differs(v, getattr(loaded, k, None))
    }
    if mismatched:
        raise ConfigError(
            f"{what}: the folder's architecture differs from the preset: "
            + ", ".join(f"{k}: preset {a!r} != folder {b!r}" for k, (a, b) in mismatched.items()),
            path=folder,
            fix=f"use the preset that matches this folder or override {what}.hf",
        )
    return model


def _differs(preset: Any, loaded: Any) -> bool:
    if isinstance(preset, float) and isinstance(loaded, int | float):
        return abs(preset - loaded) > 1e-6 * max(1.0, abs(preset))
    if isinstance(preset, list | tuple) and isinstance(loaded, list | tuple):
        return list(preset) != list(loaded)
    return preset != loaded
