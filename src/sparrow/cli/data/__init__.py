"""``sparrow data ...``: datasets -- SynRef generation, public formats, checks and conversion.

The group object lives here; the commands are defined in :mod:`.synref` (``synref``, ``stats``,
``show``) and :mod:`.formats` (``list``, ``check``, ``convert``), imported at the end so that they
register themselves on ``app``.
"""

from __future__ import annotations

import typer

app = typer.Typer(help="Generate, inspect, check and convert datasets.", no_args_is_help=True)

from . import formats, synref  # noqa: E402,F401  (register the commands)
