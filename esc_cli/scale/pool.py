"""A pool of worker processes, one per device, each with its own model copy.

The parent hands out one task at a time to whichever worker is free, forwards the messages a
worker sends while it works, and watches every worker's process: when one dies (killed, out of
memory, a crash in a native library), the task it held is retried once on another worker (the
same device only when no other is left); a second loss reports the task as lost. A dead
worker is replaced once per device, so a transient loss does not shrink the pool.

Workers start from a fork server that has imported torch and esc once (a worker is ready in
well under a second instead of paying torch's import each; no fork of a process that holds
torch threads or a CUDA context), or are spawned where there is no fork server. A worker gets the model's
weights (a CPU state dict) and a `setup` dict once, builds what it needs in `init(setup)`, then
answers tasks with `handle(task, send)`; `send(message)` streams messages back (progress,
events) before the result. CPU workers use one torch thread each.
"""

from __future__ import annotations

import collections
import multiprocessing
import os
import signal
import time
import traceback
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from typing import Any, Callable, Optional

from esc_cli.errors import Terminated

# how many times one device slot may be restarted after its worker died
RESTARTS_PER_DEVICE = 1


_PRELOAD = ["esc_cli.scale.workers", "esc_cli.api.images", "esc_cli.api.video"]


def _context():
    """A fork-server context preloading torch and esc (spawn where fork servers do not exist)."""
    try:
        ctx = multiprocessing.get_context("forkserver")
    except ValueError:
        return multiprocessing.get_context("spawn")
    ctx.set_forkserver_preload(_PRELOAD)
    return ctx


@dataclass
class Task:
    """A unit of work: `key` identifies it to the caller, `payload` travels to the worker."""

    key: Any
    payload: Any
    attempts: int = 0
    avoid: set = field(default_factory=set)  # slots whose worker died holding it


@dataclass
class _Slot:
    index: int
    device: str
    process: Any = None
    conn: Optional[Connection] = None
    task: Optional[Task] = None
    restarts: int = 0
    alive: bool = False
    pid: Optional[int] = None


def _worker_main(conn: Connection, device: str, factory: str, state: dict, setup: dict) -> None:
    """Entry point of a worker process: build the handler, then answer tasks until told to stop."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides; it sends SIGTERM

    def on_term(signum, frame):  # noqa: ARG001
        raise Terminated()

    signal.signal(signal.SIGTERM, on_term)
    import torch

    if device == "cpu":
        torch.set_num_threads(1)
        try:
            torch.set_num_interop_threads(1)
        except RuntimeError:
            pass
    module_name, _, attr = factory.rpartition(".")
    import importlib

    try:
        handler = getattr(importlib.import_module(module_name), attr)(device, state, setup)
    except BaseException as exc:  # noqa: BLE001 - reported to the parent, which drops this slot
        conn.send(("fatal", f"worker on {device}: {type(exc).__name__}: {exc}"))
        return
    del state
    conn.send(("ready", os.getpid()))
    try:
        while True:
            try:
                message = conn.recv()
            except EOFError:
                return
            if message is None:
                return
            key, payload = message
            try:
                result = handler.handle(payload, lambda m, _k=key: conn.send(("msg", _k, m)))
            except Terminated:
                return
            except BaseException as exc:  # noqa: BLE001 - the task fails, the worker lives on
                conn.send(("error", key, f"{type(exc).__name__}: {exc}", traceback.format_exc(limit=3)))
                continue
            conn.send(("result", key, result))
    except (Terminated, BrokenPipeError, KeyboardInterrupt):
        return


class WorkerPool:
    """Runs `Task`s on one worker process per device (see module docstring).

    `factory` is "module.function"; in each worker `function(device, state, setup)` returns
    an object with `handle(payload, send) -> result`. Callbacks (in the parent):
    `on_message(key, message, device)`, `on_result(key, result, device)`,
    `on_error(key, error, device)` for an exception raised by `handle`, and
    `on_lost(key, reason)` when a task's workers died twice or no worker is left.
    `on_retry(key, reason)` is called when a task is requeued after its worker died.
    """

    def __init__(self, devices: list[str], factory: str, state: dict, setup: dict,
                 *, restarts_per_device: int = RESTARTS_PER_DEVICE) -> None:
        self.devices = list(devices)
        self.factory = factory
        self.state = state
        self.setup = setup
        self.restarts_per_device = restarts_per_device
        self._ctx = _context()
        self.slots = [_Slot(i, d) for i, d in enumerate(self.devices)]
        self.fatal: list[str] = []
        self.deaths: list[str] = []

    # -------------------------------------------------------------- processes

    def _start(self, slot: _Slot) -> None:
        parent, child = self._ctx.Pipe()
        proc = self._ctx.Process(target=_worker_main, name=f"esc-worker-{slot.index}-{slot.device}",
                                 args=(child, slot.device, self.factory, self.state, self.setup), daemon=True)
        proc.start()
        child.close()
        slot.process, slot.conn, slot.alive, slot.task, slot.pid = proc, parent, True, None, proc.pid

    def worker_pids(self) -> list[int]:
        """Process ids of the live workers (tests kill one to check recovery)."""
        return [s.pid for s in self.slots if s.alive and s.pid is not None]

    def stop(self, timeout: float = 10.0) -> None:
        """Ask every worker to stop (SIGTERM for a busy one, so it removes its temp files), then reap."""
        for slot in self.slots:
            if not slot.alive or slot.process is None:
                continue
            try:
                if slot.task is None:
                    slot.conn.send(None)
                else:
                    slot.process.terminate()
            except (OSError, ValueError, BrokenPipeError):
                pass
        deadline = time.monotonic() + timeout
        for slot in self.slots:
            if slot.process is None:
                continue
            slot.process.join(max(0.1, deadline - time.monotonic()))
            if slot.process.is_alive():
                slot.process.kill()
                slot.process.join(2)
            if slot.conn is not None:
                slot.conn.close()
            slot.alive = False

    # -------------------------------------------------------------- scheduling

    def run(
        self,
        tasks: list[Task],
        *,
        on_result: Callable[[Any, Any, str], None],
        on_error: Callable[[Any, str, str], None],
        on_lost: Callable[[Any, str], None],
        on_message: Optional[Callable[[Any, Any, str], None]] = None,
        on_retry: Optional[Callable[[Any, str], None]] = None,
        on_started: Optional[Callable[["WorkerPool"], None]] = None,
    ) -> None:
        """Run every task to a result, an error or a loss; stops the workers in every case."""
        queue: collections.deque[Task] = collections.deque(tasks)
        pending = len(queue)
        try:
            for slot in self.slots:
                self._start(slot)
            if on_started is not None:
                on_started(self)
            while pending:
                live = [s for s in self.slots if s.alive]
                if not live:
                    reason = "; ".join(self.fatal[-1:] or self.deaths[-1:]) or "every worker died"
                    while queue:
                        on_lost(queue.popleft().key, f"no worker left ({reason})")
                        pending -= 1
                    break
                self._dispatch(queue, live)
                waitables = {}
                for s in live:
                    waitables[s.conn] = (s, s.process)
                    waitables[s.process.sentinel] = (s, s.process)
                for ready in wait(list(waitables)):
                    slot, process = waitables[ready]
                    if not slot.alive or slot.process is not process:  # already handled (and maybe restarted)
                        continue
                    if ready is slot.conn:
                        pending -= self._receive(slot, queue, on_result, on_error, on_lost, on_message, on_retry)
                    elif not slot.conn.poll():  # the process ended and left nothing unread
                        pending -= self._died(slot, queue, on_lost, on_retry)
        finally:
            self.stop()

    def _dispatch(self, queue: "collections.deque[Task]", live: list[_Slot]) -> None:
        idle = [s for s in live if s.task is None]
        for slot in idle:
            if not queue:
                return
            others = len(live) > 1
            chosen = None
            for task in queue:  # first task this worker has not failed on (any, when it is the last one)
                if slot.index not in task.avoid or not others:
                    chosen = task
                    break
            if chosen is None:
                continue
            queue.remove(chosen)
            chosen.attempts += 1
            slot.task = chosen
            try:
                slot.conn.send((chosen.key, chosen.payload))
            except (OSError, BrokenPipeError):
                pass  # the death is noticed through the sentinel

    def _receive(self, slot, queue, on_result, on_error, on_lost, on_message, on_retry) -> int:
        try:
            message = slot.conn.recv()
        except (EOFError, OSError):
            return self._died(slot, queue, on_lost, on_retry)
        kind = message[0]
        if kind == "ready":
            slot.pid = message[1]
            return 0
        if kind == "fatal":
            self.fatal.append(message[1])
            slot.restarts = self.restarts_per_device  # not restarted: it would fail the same way
            return self._died(slot, queue, on_lost, on_retry, reason=message[1])
        if kind == "msg":
            if on_message is not None:
                on_message(message[1], message[2], slot.device)
            return 0
        task, slot.task = slot.task, None
        if kind == "result":
            on_result(message[1], message[2], slot.device)
        else:
            on_error(message[1], message[2], slot.device)
        return 1 if task is not None else 0

    def _died(self, slot: _Slot, queue, on_lost, on_retry, reason: Optional[str] = None) -> int:
        """A worker is gone: requeue (or report) its task, restart its device if allowed. Returns tasks ended."""
        slot.alive = False
        proc = slot.process
        proc.join(1)
        code = proc.exitcode
        if reason is None:
            how = f"killed by signal {-code}" if code is not None and code < 0 else f"exit code {code}"
            reason = f"the worker on {slot.device} died ({how})"
            self.deaths.append(reason)
        with_conn = slot.conn
        if with_conn is not None:
            with_conn.close()
        task, slot.task = slot.task, None
        ended = 0
        if task is not None:
            task.avoid.add(slot.index)
            if task.attempts >= 2:
                on_lost(task.key, f"{reason}; it was already retried once")
                ended = 1
            else:
                if on_retry is not None:
                    on_retry(task.key, reason)
                queue.appendleft(task)
        if slot.restarts < self.restarts_per_device:
            slot.restarts += 1
            self._start(slot)
        return ended
