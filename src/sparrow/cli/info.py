"""``sparrow info``: versions, threads, devices and where the bundled model is."""

from __future__ import annotations

import platform

from rich.console import Console
from rich.table import Table


def info() -> None:
    """Print library versions, CPU threads, accelerators and the bundled model's location."""
    import av
    import numpy
    import torch
    import transformers

    from sparrow import __version__
    from sparrow.paths import bundled_model_dir

    table = Table(title="sparrow", show_header=False)
    table.add_row("sparrow", __version__)
    table.add_row("python", platform.python_version())
    table.add_row("platform", platform.platform())
    table.add_row("torch", torch.__version__)
    table.add_row("transformers", transformers.__version__)
    table.add_row("numpy", numpy.__version__)
    table.add_row("av (PyAV)", av.__version__)
    table.add_row("torch threads", str(torch.get_num_threads()))
    cuda = torch.cuda.is_available()
    table.add_row(
        "cuda", f"{torch.cuda.device_count()} x {torch.cuda.get_device_name(0)}" if cuda else "not available"
    )
    model = bundled_model_dir()
    table.add_row("bundled model", str(model) if model.is_dir() else f"{model} (not present)")
    Console().print(table)
