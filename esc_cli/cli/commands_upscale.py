"""`esc upscale` (being built: see the upscale issue)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add the `upscale` command to `app`."""
