"""The ``sparrow`` command-line entry point.

Each command group lives in its own module and is added here. :func:`main` runs the app and turns
every :class:`~sparrow.errors.SparrowError` into a one-paragraph message and exit code 2, without a
traceback.
"""

from __future__ import annotations

import os
import sys

import typer

from sparrow import __version__
from sparrow.errors import SparrowError

from . import chat, data, demo, ground, info, predict, train, video
from . import eval as eval_cli

app = typer.Typer(
    name="sparrow",
    help="SPARROW: pixel-grounded video grounding -- models, evaluation, data formats and SynRef.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"sparrow {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """SPARROW: pixel-grounded video grounding."""


app.command("info")(info.info)
app.command("train")(train.train)
app.command("export")(train.export)
app.command("ground")(ground.ground)
app.command("chat")(chat.chat)
app.command("predict")(predict.predict)
app.command("demo")(demo.demo)
app.add_typer(video.app, name="video")
app.add_typer(eval_cli.app, name="eval")
app.add_typer(data.app, name="data")


def main() -> None:
    """Console-script entry point: run the app, print user errors without a traceback."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        app()
    except SparrowError as err:
        from rich.console import Console
        from rich.markup import escape

        Console(stderr=True).print(f"[bold red]error:[/] {escape(str(err))}", highlight=False)
        sys.exit(2)
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        sys.exit(130)
