"""Atomic outputs: write to a temp file in the target's folder, rename only on success."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Iterable, Iterator

from esc_cli.errors import OutputError


def same_file(a: Path, b: Path) -> bool:
    """True when `a` and `b` are the same file on disk (hard links and symlinks included)."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def check_output_path(output: Path, inputs: Iterable[Path] = (), *, overwrite: bool = False) -> None:
    """Refuse an output that is one of the inputs (by inode) or that exists without `overwrite`."""
    for source in inputs:
        if same_file(output, source) or Path(os.path.abspath(output)) == Path(os.path.abspath(source)):
            raise OutputError(f"{output}: is the input {source}; choose another output (-o) so the input is kept")
    if output.exists() and not overwrite:
        raise OutputError(f"{output}: already exists; pass --overwrite to replace it or --skip-existing to keep it")
    if output.is_dir():
        raise OutputError(f"{output}: is a folder, not a file")


def _read_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# Read once at import: os.umask can only be read by setting it, which races with threads.
_UMASK = _read_umask()


@contextlib.contextmanager
def atomic_output(output: Path, inputs: Iterable[Path] = (), *, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temp path next to `output`; on success rename it over `output`, else delete it.

    The temp file keeps `output`'s suffix (so format sniffing by extension works) and
    starts with `.` so folder scans skip it. The checks of `check_output_path` run
    before and again just before the rename.
    """
    inputs = list(inputs)
    check_output_path(output, inputs, overwrite=overwrite)
    output.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{output.stem}.", suffix=f".esc-tmp{output.suffix}", dir=output.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; outputs get the usual mode
    try:
        yield tmp
        check_output_path(output, inputs, overwrite=overwrite)
        os.replace(tmp, output)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def remove_quietly(path: Path) -> None:
    """Delete `path` if it exists, ignoring errors."""
    try:
        os.unlink(path)
    except OSError:
        pass
