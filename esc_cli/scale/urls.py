"""fsspec URLs in a scaled-out image run: spotting them, mapping local placeholders back to them, uploads.

Shared by the driver (`esc_cli.scale.remote`) and the URL workers (`esc_cli.scale.workers`).
fsspec is imported only when a URL is really used.
"""

from __future__ import annotations

import dataclasses
import os
import posixpath
import shutil
import tempfile
from pathlib import Path
from typing import Any, Optional, TypeVar

from esc_cli.errors import UsageError

Pairs = list[tuple[str, str]]
E = TypeVar("E")


def is_url(text: Optional[str]) -> bool:
    """True for "scheme://..." strings."""
    return bool(text) and "://" in str(text)


def load_fsspec() -> Any:
    """The fsspec module, or a `UsageError` saying how to install it."""
    try:
        import fsspec
    except ImportError:
        raise UsageError("URL inputs and outputs need fsspec (pip install fsspec s3fs/gcsfs)") from None
    return fsspec


def relabel_text(text: str, pairs: Pairs) -> str:
    """Replace each local prefix of `pairs` (longest first) by its URL in `text`."""
    for local, url in sorted(pairs, key=lambda p: -len(p[0])):
        text = text.replace(local + os.sep, url + "/").replace(local, url)
    return text


def relabel_event(event: E, pairs: Pairs) -> E:
    """A copy of an event dataclass with every path string mapped through `pairs`."""
    changes = {}
    for f in dataclasses.fields(event):  # type: ignore[arg-type]
        value = getattr(event, f.name)
        if isinstance(value, str):
            changes[f.name] = relabel_text(value, pairs)
        elif isinstance(value, list) and all(isinstance(v, str) for v in value):
            changes[f.name] = [relabel_text(v, pairs) for v in value]
    return dataclasses.replace(event, **changes)  # type: ignore[type-var]


def upload(fs: Any, local: str, target: str) -> None:
    """Copy `local` to `target` on `fs`: local filesystems via a temp file and a rename; object stores: one PUT."""
    parent = posixpath.dirname(target)
    if parent:
        fs.makedirs(parent, exist_ok=True)
    if "file" in (fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,)):
        fd, tmp = tempfile.mkstemp(prefix=f".{Path(target).stem}.", suffix=f".esc-tmp{Path(target).suffix}", dir=parent)
        os.close(fd)
        try:
            shutil.copyfile(local, tmp)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    else:
        fs.put_file(local, target)
