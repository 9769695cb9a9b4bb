"""The overlapped folder loop: the next input is decoded and the previous output encoded while the model runs.

One device runs the network in the calling thread; a reader thread decodes item k+1 and a writer thread encodes
and writes item k-1 meanwhile (zlib, libjpeg and libwebp release the GIL). At most `MAX_PENDING_WRITES` outputs
wait for the writer, so memory holds at most that many finished images besides the one being computed.

What the caller sees does not change: the events come in the same order as in the plain loop (an item's
events are held back until every earlier item has finished), each output is written atomically, and on
Ctrl-C or SIGTERM the writes already under way complete and are reported before the interruption propagates.
`ESC_OVERLAP=0` selects the plain loop (`process_job` one item after another), e.g. to time both.
"""

from __future__ import annotations

import os
import threading
import warnings
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Callable, Optional, Sequence

from esc_cli.api.events import Event, EventCallback, ItemFinished
from esc_cli.api.jobs import JobContext, JobRun, process_job
from esc_cli.api.outputs import ImageJob

MAX_PENDING_WRITES = 1


def overlap_enabled(jobs: Sequence[ImageJob]) -> bool:
    """Overlap pays only for several file items; stdin/stdout keep the plain loop; `ESC_OVERLAP=0` turns it off."""
    if os.environ.get("ESC_OVERLAP", "1").strip().lower() in ("0", "false", "no", "off"):
        return False
    return len(jobs) > 1 and all(job.item.path is not None and job.output is not None for job in jobs)


class _OrderedEvents:
    """Passes on the events of the item being reported; holds later items' events until their turn."""

    def __init__(self, emit: EventCallback, first: int) -> None:
        self.emit, self.current = emit, first
        self.held: dict[int, list[Event]] = {}
        self.lock = threading.Lock()

    def for_item(self, index: int) -> EventCallback:
        def emit(event: Event) -> None:
            with self.lock:
                if index != self.current:
                    self.held.setdefault(index, []).append(event)
                    return
            self.emit(event)

        return emit

    def advance(self) -> None:
        """The current item has finished: release what the next one said meanwhile."""
        with self.lock:
            self.current += 1
            held = self.held.pop(self.current, [])
        for event in held:
            self.emit(event)


class _WarningsByThread:
    """Routes each warning to the notes of the item its thread is working on (`warnings` state is global)."""

    def __init__(self) -> None:
        self.local = threading.local()

    def __call__(self, message, category, filename, lineno, file=None, line=None) -> None:  # noqa: ANN001
        sink = getattr(self.local, "sink", None)
        if sink is not None:
            sink.append(str(message))

    def phase(self, run: JobRun, work: Callable[[], None]) -> None:
        self.local.sink = run.notes
        try:
            work()
        finally:
            self.local.sink = None


@dataclass
class _Item:
    run: JobRun
    read: Optional[Future] = None  # the decode, running ahead
    writing: bool = False  # handed to the writer: its outcome will come
    outcome: Future = field(default_factory=Future)  # the ItemFinished, once stored or failed


def run_overlapped(
    numbered: Sequence[tuple[int, ImageJob]], total: int, context: JobContext, finish: Callable[[ItemFinished], None]
) -> None:
    """Process `numbered` (index, job) items in order on `context.processor`, reading ahead and writing behind.

    `finish` receives every `ItemFinished`, in index order, as `process_job`'s loop would give them.
    """
    if not numbered:
        return
    events = _OrderedEvents(context.emit, numbered[0][0])
    notes = _WarningsByThread()
    pending: deque[_Item] = deque()
    with warnings.catch_warnings(), ThreadPoolExecutor(1, "esc-read") as reader, \
            ThreadPoolExecutor(1, "esc-write") as writer:  # fmt: skip
        warnings.simplefilter("always")
        warnings.showwarning = notes

        def start(index: int, job: ImageJob) -> _Item:
            run = JobRun(job, replace(context, emit=events.for_item(index)), index=index, total=total)
            item = _Item(run)
            early = run.check()
            if early is not None:
                item.outcome.set_result(early)
            else:
                item.read = reader.submit(notes.phase, run, run.read)
            return item

        def store(item: _Item) -> None:
            try:
                notes.phase(item.run, item.run.store)
                item.outcome.set_result(item.run.done())
            except Exception as exc:  # the write failed: this item only
                item.outcome.set_result(item.run.failed(exc))

        def retire(block: bool) -> None:
            """Report finished items in order; with `block`, wait for the oldest."""
            while pending and (block or pending[0].outcome.done()):
                finish(pending.popleft().outcome.result())
                events.advance()
                block = False

        ahead = start(*numbered[0])
        try:
            for position in range(len(numbered)):
                item = ahead
                pending.append(item)
                if position + 1 < len(numbered):
                    ahead = start(*numbered[position + 1])
                if item.read is not None:
                    try:
                        item.read.result()
                        notes.phase(item.run, item.run.upscale)
                    except Exception as exc:  # unreadable or failed upscale: this item only
                        item.outcome.set_result(item.run.failed(exc))
                    else:
                        writer.submit(store, item)
                        item.writing = True
                retire(block=False)
                while len([p for p in pending if not p.outcome.done()]) > MAX_PENDING_WRITES:
                    retire(block=True)
            while pending:
                retire(block=True)
        except BaseException:
            # Ctrl-C or SIGTERM: the writes under way finish (atomically) and are reported; nothing new starts.
            for item in list(pending):
                if item.writing:
                    item.outcome.result()
            while pending and pending[0].outcome.done():
                finish(pending.popleft().outcome.result())
                events.advance()
            raise


def run_items(
    numbered: Sequence[tuple[int, ImageJob]], total: int, context: JobContext, finish: Callable[[ItemFinished], None]
) -> None:
    """The one-device loop: overlapped when it pays (`overlap_enabled`), else `process_job` item by item."""
    if overlap_enabled([job for _, job in numbered]):
        run_overlapped(numbered, total, context, finish)
        return
    for index, job in numbered:
        finish(process_job(job, context, index=index, total=total))
