"""Where the package keeps its bundled files (the default model, configs)."""

from __future__ import annotations

from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent


def assets_dir() -> Path:
    """The package's ``assets/`` folder (bundled model and small data)."""
    return PACKAGE_DIR / "assets"


def bundled_model_dir() -> Path:
    """The folder of the bundled default model (``GroundingPipeline.from_pretrained("default")``)."""
    return assets_dir() / "sparrow-tiny-synref"


def configs_dir() -> Path:
    """The package's preset and recipe YAML files."""
    return PACKAGE_DIR / "configs"
