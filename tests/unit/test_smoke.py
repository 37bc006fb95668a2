"""Import every module of the package, and run ``--help`` on every CLI command."""

from __future__ import annotations

import importlib
import pkgutil

import click
import pytest
import typer
from typer.testing import CliRunner

import sparrow


def _all_modules() -> list[str]:
    names = []
    for info in pkgutil.walk_packages(sparrow.__path__, prefix="sparrow."):
        names.append(info.name)
    return sorted(names)


@pytest.mark.parametrize("name", _all_modules())
def test_import(name: str) -> None:
    importlib.import_module(name)


def _all_commands() -> list[list[str]]:
    from sparrow.cli.app import app

    root = typer.main.get_command(app)
    paths: list[list[str]] = []

    def walk(cmd: click.Command, path: list[str]) -> None:
        paths.append(path)
        if isinstance(cmd, click.Group):
            for name, sub in cmd.commands.items():
                walk(sub, [*path, name])

    walk(root, [])
    return paths


@pytest.mark.parametrize("path", _all_commands(), ids=lambda p: " ".join(p) or "sparrow")
def test_help(path: list[str]) -> None:
    from sparrow.cli.app import app

    result = CliRunner().invoke(app, [*path, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output


def test_version() -> None:
    from sparrow.cli.app import app

    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0
    assert sparrow.__version__ in result.output
