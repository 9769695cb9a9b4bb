"""`esc models` (being built: see the weights issue)."""

from __future__ import annotations

import typer

models_app = typer.Typer(help="List, download, verify and convert model weights.", no_args_is_help=True)
