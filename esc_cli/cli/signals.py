"""Signal handling shared by the long-running commands."""

from __future__ import annotations

import contextlib
import signal
from typing import Iterator

from esc_cli.errors import Terminated


@contextlib.contextmanager
def sigterm_raises() -> Iterator[None]:
    """Turn SIGTERM into `Terminated` while inside, so `finally` blocks stop ffmpeg and
    workers and remove temp files, and the command exits 143."""

    def handler(signum, frame):  # noqa: ARG001
        raise Terminated("terminated")

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
