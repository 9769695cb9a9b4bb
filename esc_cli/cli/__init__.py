"""The `esc` command line. The only layer that imports typer or rich."""

from esc_cli.cli.app import app, main

__all__ = ["app", "main"]
