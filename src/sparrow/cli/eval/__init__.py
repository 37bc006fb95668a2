"""``sparrow eval ...``: benchmark evaluation commands (official-parity metrics).

The group object lives here; the commands are defined in :mod:`.vos` (DAVIS, MeViS, Ref-DAVIS,
ReVOS, identity) and :mod:`.grounding` (STVG, VideoGLaMM grounding, GCG), imported at the end so
that they register themselves on ``app``.
"""

from __future__ import annotations

import typer

app = typer.Typer(help="Evaluate predictions with the official benchmark metrics.", no_args_is_help=True)

from . import grounding, vos  # noqa: E402,F401  (register the commands)
