"""How `esc upscale` shows its events: live Rich bars on a terminal, plain lines otherwise, NDJSON on stdout.

On a terminal, every finished item leaves one line above the live bars (in -> out and seconds, or the failure),
the current item shows its tiles (or an indeterminate bar with the elapsed time when it runs as one tile), the
labels keep one width so the bars never move sideways, and the summary is printed after the bars are gone.
Plain mode (stderr is not a terminal) prints the same item lines without bars; `--json` writes one event per line.
"""

from __future__ import annotations

import json
import sys
from typing import Optional

from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from esc_cli.api.events import BatchFinished, BatchStarted, Event, ItemFinished, ItemProgress, ItemStarted, event_dict
from esc_cli.api.options import format_scale
from esc_cli.cli.console import err_console

LABEL_WIDTH = 28


def fit_label(text: str, width: int = LABEL_WIDTH) -> str:
    """`text` padded or shortened (keeping its end, where a file name is) to exactly `width` characters."""
    if len(text) > width:
        return "…" + text[len(text) - width + 1:]
    return text.ljust(width)


def item_line(event: ItemFinished) -> str:
    """The one line a finished (done) item leaves: `[i/N] in -> out (s)`."""
    return f"[{event.index}/{event.total}] {event.input} -> {event.output} ({event.seconds:.2f} s)"


def summary_line(event: BatchFinished) -> str:
    """`N done, N skipped, N failed in S s`, with what was ignored and whether the run was interrupted."""
    state = " (interrupted)" if event.interrupted else ""
    extra = f", {event.ignored} ignored" if event.ignored else ""
    return f"{event.done} done, {event.skipped} skipped, {event.failed} failed{extra} in {event.seconds:.1f} s{state}"


class BatchRenderer:
    """Receives the batch events (`on_event`), notices (`note`) and download progress (`download`)."""

    def __init__(self, *, json_mode: bool, quiet: bool) -> None:
        self.json_mode = json_mode
        self.quiet = quiet
        self.fancy = not quiet and err_console.is_terminal
        self.progress: Optional[Progress] = None
        self.overall: Optional[TaskID] = None
        self.current: Optional[TaskID] = None

    def __enter__(self) -> "BatchRenderer":
        if self.fancy:
            self.progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=err_console,
                transient=True,  # the bars go; the item lines above them and the summary stay
            )
            # Both bars exist from the start and stay visible, so the live area's height never changes: Rich
            # positions the cursor for a printed line from the last drawn height, and its refresh thread may draw
            # in between (a line printed while the height changes can be erased by the next one).
            self.overall = self.progress.add_task(fit_label("images"), total=None)
            self.current = self.progress.add_task(fit_label(""), total=None)
            self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop_bars()

    def _stop_bars(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None

    def _print(self, text: str, *, markup: bool = False) -> None:
        """A persistent line on stderr, above the live bars when they run."""
        console = self.progress.console if self.progress is not None else err_console
        console.print(text, highlight=False, soft_wrap=True, markup=markup)

    def download(self, done: int, total: Optional[int]) -> None:
        """Model download progress (bytes), shown only with the live bars."""
        if self.progress is None or self.current is None:
            return
        self.progress.update(self.current, description=fit_label("model download"), completed=done, total=total)

    def note(self, message: str) -> None:
        if not self.quiet:
            self._print(f"[yellow]note:[/] {escape(message)}", markup=True)

    def __call__(self, event: Event) -> None:
        if self.json_mode and isinstance(event, (BatchStarted, ItemFinished, BatchFinished)):
            # ASCII escapes keep the stream valid JSON/UTF-8 even for undecodable file names
            sys.stdout.write(json.dumps(event_dict(event)) + "\n")
            sys.stdout.flush()
        if isinstance(event, BatchStarted):
            self._started(event)
        elif isinstance(event, ItemStarted):
            if self.progress is not None and self.current is not None:
                # no total yet: an indeterminate bar and the elapsed time until tiles are known
                self.progress.reset(self.current, total=None, description=fit_label(event.input))
        elif isinstance(event, ItemProgress):
            if event.notice:
                self.note(event.notice)
            if self.progress is not None and self.current is not None and event.total_tiles > 1:
                self.progress.update(self.current, completed=event.done_tiles, total=event.total_tiles)
        elif isinstance(event, ItemFinished):
            self._finished(event)
        elif isinstance(event, BatchFinished):
            self._stop_bars()
            if not self.quiet:
                err_console.print(summary_line(event), highlight=False, markup=False)

    def _started(self, event: BatchStarted) -> None:
        if self.progress is not None and self.overall is not None and self.current is not None:
            self.progress.update(self.overall, total=event.total)
            self.progress.reset(self.current, total=None, description=fit_label(""))
        if not self.quiet:
            self._print(
                f"esc: {event.total} item(s), model {event.model} (x{event.model_scale}), "
                f"-s {format_scale(event.scale)}, {event.device} {event.dtype}"
            )

    def _finished(self, event: ItemFinished) -> None:
        if self.progress is not None and self.overall is not None:
            self.progress.advance(self.overall)
        if event.status == "failed":
            self._print(f"[bold red]failed:[/] {escape(event.error or event.input)}", markup=True)
            return
        if self.quiet:
            return
        for note in event.notes:
            self.note(f"{event.input}: {note}")
        if event.status == "skipped":
            self._print(f"skipped: {event.input}: {event.reason}")
        else:
            self._print(item_line(event))
