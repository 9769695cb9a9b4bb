"""The bundled ffmpeg binary: locating it, running it to completion, and long-running ffmpeg processes.

Every run's exit status is checked; a failure raises `VideoError` carrying, on one line, the last
telling lines ffmpeg printed (`one_line`). `FfmpegProcess` drains stderr on a thread into a bounded tail so a
pipe never blocks. Nothing here imports torch.
"""

from __future__ import annotations

import collections
import functools
import re
import subprocess
import threading
from typing import Optional, Sequence

from esc_cli.errors import VideoError

STDERR_TAIL = 12


def ffmpeg_exe() -> str:
    """Path of the bundled ffmpeg binary."""
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


@functools.lru_cache(maxsize=1)
def video_encoders() -> frozenset[str]:
    """The video encoders this ffmpeg binary has (`ffmpeg -encoders`); empty when it cannot say."""
    try:
        listing = subprocess.run([ffmpeg_exe(), "-hide_banner", "-encoders"], capture_output=True, text=True,
                                 timeout=30, check=False).stdout  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return frozenset()
    names = set()
    for line in listing.splitlines():
        parts = line.split()
        if len(parts) >= 2 and len(parts[0]) == 6 and parts[0].startswith("V"):  # "V....D libx264 ..."
            names.add(parts[1])
    return frozenset(names)


def last_lines(text: str, n: int = STDERR_TAIL) -> str:
    """The last `n` non-blank lines of `text` (ffmpeg's stderr), joined by newlines."""
    lines = [line for line in text.splitlines() if line.strip()]
    return "\n".join(lines[-n:])


_GENERIC = ("conversion failed", "exiting normally", "error opening output file", "error opening input file",
            "nothing was written into output file", "press [q]", "task finished with error code",
            "terminating thread with return code", "error sending frames to consumers", "could not open encoder before eof",
            "at least one output file must be specified", "frame=", "error while filtering", "error while processing")
_CONTEXT_PREFIX = re.compile(r"^(\[[^\]]*@ 0x[0-9a-f]+\]\s*)+")
_TELLING = re.compile(r"error|invalid|not |cannot|could not|no such|unknown|unsupported|fail|divisible|denied|"
                      r"too |missing|corrupt|truncat|refus", re.IGNORECASE)


def one_line(text: str, n: int = 1) -> str:
    """ffmpeg's stderr reduced to one line: the first `n` telling lines of its last `STDERR_TAIL`
    (the cause, not the cascade of "Task finished"/"Conversion failed!" after it), without the
    `[codec @ 0x...]` prefixes, joined by "; "."""
    kept: list[str] = []
    for raw in [line for line in text.splitlines() if line.strip()][-STDERR_TAIL:]:
        line = _CONTEXT_PREFIX.sub("", raw.strip())
        if line and not line.lower().startswith(_GENERIC) and line not in kept:
            kept.append(line)
    telling = [line for line in kept if _TELLING.search(line)]
    return "; ".join((telling or kept[-1:])[:n])


def run_ffmpeg(args: Sequence[str], *, what: str, timeout: Optional[float] = None) -> subprocess.CompletedProcess:
    """Run `ffmpeg args...` to completion; raise `VideoError` naming `what` with ffmpeg's last lines on failure."""
    cmd = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-y", *args]
    proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout)
    if proc.returncode != 0:
        err = one_line(proc.stderr.decode("utf-8", "replace"))
        raise VideoError(f"{what}: ffmpeg exited with status {proc.returncode}" + (f": {err}" if err else ""))
    return proc


class FfmpegProcess:
    """An ffmpeg subprocess whose stderr is drained by a thread into a bounded tail."""

    def __init__(self, args: Sequence[str], *, stdin: bool, stdout: bool, what: str) -> None:
        self.what = what
        self.cmd = [ffmpeg_exe(), "-hide_banner", *([] if stdin else ["-nostdin"]), "-y", "-loglevel", "error", *args]
        self.proc = subprocess.Popen(
            self.cmd,
            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
            stdout=subprocess.PIPE if stdout else subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            bufsize=0,
            start_new_session=True,  # Ctrl-C reaches us only; we decide what ffmpeg does
        )
        self._tail: collections.deque[str] = collections.deque(maxlen=40)
        self._drain = threading.Thread(target=self._read_stderr, daemon=True)
        self._drain.start()

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        for raw in iter(self.proc.stderr.readline, b""):
            self._tail.append(raw.decode("utf-8", "replace").rstrip())

    def stderr_tail(self, n: int = STDERR_TAIL) -> str:
        self._drain.join(timeout=2)
        return last_lines("\n".join(self._tail), n)

    def error(self, rc: Optional[int] = None) -> VideoError:
        rc = self.proc.returncode if rc is None else rc
        tail = one_line(self.stderr_tail())
        return VideoError(f"{self.what}: ffmpeg exited with status {rc}" + (f": {tail}" if tail else ""))

    def kill(self) -> None:
        """Stop ffmpeg at once (used on errors and interruption)."""
        if self.proc.poll() is None:
            try:
                self.proc.kill()
            except OSError:
                pass
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                try:
                    stream.close()
                except OSError:
                    pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:  # pragma: no cover
            pass
        self._drain.join(timeout=2)


    def wait(self) -> int:
        """Wait for ffmpeg to exit and for its stderr to be drained; return its exit status."""
        rc = self.proc.wait()
        self._drain.join(timeout=2)
        return rc

