"""The bundled sample photo, for a first run on a machine that holds no images of its own."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from esc_cli.errors import OutputError
from esc_cli.io.atomic import atomic_output

SAMPLE_NAME = "photo.png"


def sample_bytes() -> bytes:
    """The sample photo's PNG bytes (192x192 RGB, public domain; see esc_cli/samples/README.md)."""
    return resources.files("esc_cli.samples").joinpath(SAMPLE_NAME).read_bytes()


def write_sample(target: Path, *, overwrite: bool = False) -> bool:
    """Write the sample photo to `target`; return False when `target` already holds exactly it.

    Raises `OutputError` when `target` holds something else and `overwrite` is not set, or is a folder.
    The file is written atomically: no half-written photo is ever left behind.
    """
    data = sample_bytes()
    if target.is_dir():
        raise OutputError(f"{target}: is a folder; name a file, e.g. {target / SAMPLE_NAME}")
    if target.exists() and target.read_bytes() == data:
        return False
    if target.exists() and not overwrite:
        raise OutputError(f"{target}: already exists; pass --overwrite or choose another name")
    with atomic_output(target, overwrite=overwrite) as temporary:
        temporary.write_bytes(data)
    return True
