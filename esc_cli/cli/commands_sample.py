"""`esc sample`: write the bundled sample photo, so a first run needs no image of the user's."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from esc_cli.cli.console import err_console
from esc_cli.cli.helpfmt import Command
from esc_cli.cli.options import OverwriteOption

HELP = """Write a small sample photo (192x192, public domain) to try esc on.

The photo ships inside the package: no network is needed.
"""

EXAMPLES = """Examples:

  esc sample                               photo.png in the current folder

  esc sample photo.png && esc upscale photo.png -s 4
"""


def sample(
    target: Annotated[Path, typer.Argument(metavar="FILE", help="Where to write the photo (a .png file).")] = Path("photo.png"),
    overwrite: OverwriteOption = False,
) -> None:
    """Write the sample photo to FILE; an existing identical file is left as it is."""
    from esc_cli.api.samples import write_sample

    written = write_sample(target, overwrite=overwrite)
    state = "wrote" if written else "kept (already the sample)"
    err_console.print(f"{state} {target}: astronaut Eileen Collins, NASA, public domain", highlight=False, markup=False)


def register(app: typer.Typer) -> None:
    """Add the `sample` command to `app`."""
    app.command("sample", cls=Command, help=HELP, epilog=EXAMPLES)(sample)
