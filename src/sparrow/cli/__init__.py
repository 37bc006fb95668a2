"""The ``sparrow`` command: one typer app, one module per command group."""
