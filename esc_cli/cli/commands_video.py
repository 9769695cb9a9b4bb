"""`esc video` (being built: see the video issue)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add the `video` command to `app`."""
