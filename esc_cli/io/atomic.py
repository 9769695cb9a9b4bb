"""Atomic outputs: write to a temp file in the target's folder, move it in only on success.

Temp files are named `.STEM.HOST-PID-XXXXXXXX.esc-tmp.EXT`: hidden (folder scans skip them), with
the output's suffix (format sniffing by extension works), and naming the writer, so a later run on
the same host can tell a temp whose writer was killed (its process is gone) from one in progress.
Without `overwrite` the final move never replaces a file that appeared meanwhile (another run):
it raises `OutputExistsError` instead.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import socket
import tempfile
from pathlib import Path
from typing import Iterable, Iterator

from esc_cli.errors import OutputError, OutputExistsError

TEMP_MARK = ".esc-tmp"
_TEMP_NAME = re.compile(r"^\.(?P<stem>.*)\.(?P<host>[A-Za-z0-9_]+)-(?P<pid>[0-9]+)-[A-Za-z0-9_]+\.esc-tmp(\.[^.]*)?$")


def host_tag() -> str:
    """This machine's name as it appears in temp names (letters, digits and `_` only)."""
    return re.sub(r"[^A-Za-z0-9]", "_", socket.gethostname() or "host")[:40] or "host"


def temp_prefix(output: Path) -> str:
    """The start of this process's temp names for `output`."""
    return f".{output.stem}.{host_tag()}-{os.getpid()}-"


def _pid_running(pid: int) -> bool:
    if pid <= 0:
        return True  # not ours to judge
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: alive, another user's
        return True
    return True


def is_stale_temp(path: Path) -> bool:
    """True for a temp of our naming written on this host by a process that no longer runs.

    Temps of other hosts (a shared folder), of live processes and of other naming are never stale.
    """
    match = _TEMP_NAME.match(path.name)
    if match is None or match.group("host") != host_tag():
        return False
    pid = int(match.group("pid"))
    return pid != os.getpid() and not _pid_running(pid)


def remove_stale_temps(folder: Path) -> list[Path]:
    """Delete the stale temps (see `is_stale_temp`; files, and video work folders named
    `...esc-tmp.d`) directly in `folder`; returns those removed."""
    removed: list[Path] = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        if TEMP_MARK not in entry.name or not entry.name.startswith("."):
            continue
        path = Path(entry.path)
        try:
            if not is_stale_temp(path):
                continue
            if entry.is_dir(follow_symlinks=False):  # a video's private work folder
                shutil.rmtree(path)
            else:
                path.unlink()
            removed.append(path)
        except OSError:
            continue
    return removed


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
    if (output.exists() or output.is_symlink()) and not overwrite:
        raise OutputExistsError(f"{output}: already exists; pass --overwrite to replace it or --skip-existing to keep it")
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
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise output_os_error(output.parent, exc, "cannot create the output folder") from None
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=temp_prefix(output), suffix=f"{TEMP_MARK}{output.suffix}",
                                        dir=output.parent)
    except OSError as exc:
        raise output_os_error(output.parent, exc, "cannot write there") from None
    os.close(fd)
    tmp = Path(tmp_name)
    os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; outputs get the usual mode
    try:
        try:
            yield tmp
        except OSError as exc:  # full disk, quota, read-only: one line naming the output
            if exc.errno not in _WRITE_ERRNOS:
                raise
            raise output_os_error(output, exc, "cannot write") from None
        check_output_path(output, inputs, overwrite=overwrite)
        if overwrite:
            os.replace(tmp, output)
        else:
            move_no_replace(tmp, output)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def move_no_replace(tmp: Path, output: Path) -> None:
    """Move `tmp` to `output` unless `output` exists: `OutputExistsError` then, `tmp` left for the caller.

    A hard link is atomic and fails on an existing name; where the file system has no hard links,
    the move checks and renames (a narrow race remains there only).
    """
    try:
        os.link(tmp, output)
    except FileExistsError:
        raise OutputExistsError(
            f"{output}: appeared while this item ran (another run?); pass --overwrite to replace it"
            " or --skip-existing to keep it") from None
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EXDEV, errno.EMLINK, errno.ENOSYS):
            raise
        if output.exists() or output.is_symlink():
            raise OutputExistsError(f"{output}: appeared while this item ran (another run?); pass --overwrite"
                                    " to replace it or --skip-existing to keep it") from None
        os.rename(tmp, output)
        return
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp)


_OS_HINTS = {
    errno.ENOSPC: "no space left on the device; free space or choose another output folder (-o)",
    errno.EDQUOT: "disk quota exceeded; free space or choose another output folder (-o)",
    errno.EACCES: "permission denied; choose a folder you can write to (-o)",
    errno.EPERM: "permission denied; choose a folder you can write to (-o)",
    errno.EROFS: "read-only file system; choose another output folder (-o)",
    errno.EEXIST: "a file is in the way of a folder of that name; choose another output folder (-o)",
    errno.ENOTDIR: "a file is in the way of a folder of that name; choose another output folder (-o)",
    errno.ENAMETOOLONG: "the name is too long; choose a shorter output name",
    errno.EIO: "input/output error on the device; check the disk or choose another output folder (-o)",
    errno.EFBIG: "the file is too large for this file system; choose another output folder (-o)",
}


_WRITE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EIO, errno.EFBIG})


def output_os_error(path: Path, exc: OSError, what: str) -> OutputError:
    """A one-line `OutputError` naming `path` for an OS error (never the raw `[Errno N]` text)."""
    hint = _OS_HINTS.get(exc.errno or 0) or (exc.strerror or type(exc).__name__).lower()
    return OutputError(f"{path}: {what}: {hint}")


def remove_quietly(path: Path) -> None:
    """Delete `path` if it exists, ignoring errors."""
    try:
        os.unlink(path)
    except OSError:
        pass
