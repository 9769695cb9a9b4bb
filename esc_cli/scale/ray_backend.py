"""`--ray ADDRESS|local`: the same jobs on a Ray cluster (Ray is imported here only, lazily).

One actor per GPU of the cluster (`num_gpus=1` each), or one per CPU slot when it has no GPU
(`num_cpus=1`, one torch thread). Each actor loads the model once (the weights travel once
through Ray's object store) and runs the very code of a local worker (`ImageWorker`,
`SegmentWorker` in esc_cli.scale.workers), so outputs are byte-identical to a local run on the
same kind of device. Items are streamed: at most `IN_FLIGHT_PER_ACTOR` per actor at a time,
so the driver's memory does not grow with the batch. Actors are restarted once and their
tasks retried once by Ray when a worker or node is lost; an item still failing after that
is reported failed (an `ItemFinished` or a `VideoError`), never dropped. Events, progress and
exit codes are produced at the driver by the same pipeline as a local run.

Inputs and outputs are paths that every node sees at the same place (a shared filesystem).
"""

from __future__ import annotations

import importlib
import logging
import os
from typing import Callable, Optional, Sequence

import torch

from esc_cli.errors import UsageError, VideoError
from esc_cli.scale.devices import dtype_label
from esc_cli.api.events import ItemStarted
from esc_cli.api.options import UpscaleOptions
from esc_cli.api.outputs import ImageJob
from esc_cli.scale.bookkeeping import ImageItems, SegmentFrames, pin_encoder_threads, refuse_streams, remove_temp_outputs
from esc_cli.scale.workers import SEGMENT_WORKER, image_factory, weights_of

IN_FLIGHT_PER_ACTOR = 2
ACTOR_RESTARTS = 1
TASK_RETRIES = 1

_ACTOR_CLASS = None


def actors_per_gpu() -> int:
    """Actors sharing each GPU ($ESC_RAY_ACTORS_PER_GPU, default 1): image batches whose decode and
    encode keep one process from filling the GPU gain from 2-4 (docs/scale.md)."""
    try:
        return max(1, int(os.environ.get("ESC_RAY_ACTORS_PER_GPU", "1")))
    except ValueError:
        raise UsageError("ESC_RAY_ACTORS_PER_GPU must be a whole number >= 1") from None


def _ray():
    try:
        import ray
    except ImportError:
        raise UsageError("--ray needs Ray: pip install 'esc-cli[ray]'") from None
    return ray


class _Actor:
    """Ray actor body: builds a local worker (`factory(device, state, setup)`) once and runs its tasks."""

    def __init__(self, factory: str, state: dict, setup: dict, gpu: bool) -> None:
        if not gpu:
            torch.set_num_threads(1)
        if setup.get("cwd") and os.path.isdir(setup["cwd"]):
            os.chdir(setup["cwd"])  # relative paths mean the same as at the driver (shared filesystem)
        device = "cuda" if gpu else "cpu"
        module, _, attr = factory.rpartition(".")
        self.device = device
        self.handler = getattr(importlib.import_module(module), attr)(device, state, setup)

    def pid(self) -> int:
        return os.getpid()

    def handle(self, payload):
        messages: list = []
        try:
            result = self.handler.handle(payload, messages.append)
        except Exception as exc:  # noqa: BLE001 - reported by the driver for this item only
            return ("error", f"{type(exc).__name__}: {exc}", messages)
        return ("result", result, messages)


def _actor_class():
    global _ACTOR_CLASS
    if _ACTOR_CLASS is None:
        _ACTOR_CLASS = _ray().remote(_Actor)
    return _ACTOR_CLASS


class _RayPool:
    """Connects to the cluster, starts the actors, streams tasks with bounded in-flight work."""

    def __init__(self, address: str, *, num_cpus: Optional[int] = None, max_actors: Optional[int] = None) -> None:
        self.address = address
        self.num_cpus = num_cpus
        self.max_actors = max_actors
        self.started_here = False
        self.actors: list = []
        self.gpu = False
        self.on_started: Optional[Callable[["_RayPool"], None]] = None  # tests: actors are up
        self.on_submitted: Optional[Callable[["_RayPool"], None]] = None  # tests: first tasks are in flight

    def connect(self) -> None:
        ray = _ray()
        if ray.is_initialized():
            return
        if self.address == "local":
            ray.init(num_cpus=self.num_cpus, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
            self.started_here = True
        else:
            ray.init(address=self.address, log_to_driver=False, logging_level=logging.ERROR)  # "auto": the running cluster (RAY_ADDRESS)

    def slots(self) -> tuple[int, bool]:
        """How many actors and whether they hold a GPU each."""
        ray = _ray()
        resources = ray.cluster_resources()
        gpus = int(resources.get("GPU", 0))
        if gpus > 0:
            return gpus * actors_per_gpu(), True
        return max(1, int(resources.get("CPU", 1))), False

    def describe(self, dtype: Optional[torch.dtype]) -> tuple[str, str]:
        self.connect()
        count, gpu = self.slots()
        kind = "cuda" if gpu else "cpu"
        return f"ray:{count}x{kind}", dtype_label(kind, dtype)

    def run(self, factory: str, state: dict, setup: dict, tasks: list, *, on_result, on_error, on_lost) -> None:
        """Run `tasks` ((key, payload) pairs) on the actors; every task ends in exactly one callback."""
        ray = _ray()
        self.connect()
        count, self.gpu = self.slots()
        count = max(1, min(count, len(tasks), self.max_actors or count))
        state_ref = ray.put(state)
        options = {"num_gpus": 1 / actors_per_gpu()} if self.gpu else {"num_cpus": 1}
        cls = _actor_class()
        setup = {**setup, "cwd": os.getcwd()}
        self.actors = [cls.options(max_restarts=ACTOR_RESTARTS, max_task_retries=TASK_RETRIES, **options)
                       .remote(factory, state_ref, setup, self.gpu) for _ in range(count)]
        try:
            if self.on_started is not None:
                self.on_started(self)
            pending = list(tasks)
            pending.reverse()
            in_flight: dict = {}
            load = {i: 0 for i in range(count)}
            dead: set[int] = set()
            submitted = False
            while pending or in_flight:
                live = [i for i in range(count) if i not in dead]
                if not live:  # every actor lost for good: nothing is dropped silently
                    while pending:
                        on_lost(pending.pop()[0], "no Ray actor left (all lost after their restarts)")
                    break
                for i in live:  # top up every live actor to the in-flight bound
                    while pending and load[i] < IN_FLIGHT_PER_ACTOR:
                        key, payload = pending.pop()
                        ref = self.actors[i].handle.remote(payload)
                        in_flight[ref] = (key, i)
                        load[i] += 1
                if not submitted and self.on_submitted is not None:
                    submitted = True
                    self.on_submitted(self)
                if not in_flight:
                    continue
                ready, _ = ray.wait(list(in_flight), num_returns=1)
                for ref in ready:
                    key, i = in_flight.pop(ref)
                    load[i] -= 1
                    try:
                        kind, value, messages = ray.get(ref)
                    except ray.exceptions.RayActorError as exc:  # lost after Ray's restart and retry
                        dead.add(i)
                        on_lost(key, f"its Ray actor was lost (after {ACTOR_RESTARTS} restart and "
                                     f"{TASK_RETRIES} retry): {_first_line(exc)}")
                        continue
                    except Exception as exc:  # noqa: BLE001 - a node or object lost after Ray's retries
                        on_lost(key, f"lost on Ray: {type(exc).__name__}: {_first_line(exc)}")
                        continue
                    if kind == "result":
                        on_result(key, value, messages)
                    else:
                        on_error(key, value, messages)
        finally:
            for actor in self.actors:
                try:
                    ray.kill(actor)
                except Exception:  # noqa: BLE001
                    pass
            self.actors = []
            if self.started_here:
                ray.shutdown()
                self.started_here = False

    def actor_pids(self) -> list[int]:
        ray = _ray()
        return ray.get([a.pid.remote() for a in self.actors])


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class RayImageRunner:
    """Runs an image batch on Ray actors (`--ray`); plugs into `upscale_images(..., runner=...)`."""

    def __init__(self, address: str, *, num_cpus: Optional[int] = None, max_actors: Optional[int] = None) -> None:
        self.pool = _RayPool(address, num_cpus=num_cpus, max_actors=max_actors)
        self.url_pairs: list = []  # set by esc_cli.scale.remote for URL inputs/outputs

    def describe(self, network: torch.nn.Module, options: UpscaleOptions, jobs: Sequence[ImageJob]) -> tuple[str, str]:
        refuse_streams([j for j in jobs if not j.skip and not j.error])
        return self.pool.describe(options.dtype)

    def run(self, numbered, total: int, options, network: torch.nn.Module, *, emit: Callable, finish: Callable,
            notify: Callable[[str], None], input_paths) -> None:
        items = ImageItems(numbered, total, finish, notify)
        setup = {"options": options, "input_paths": list(input_paths)}
        tasks = [(index, items.task(index, self.url_pairs)) for index, _job in numbered]

        def replay(messages) -> None:
            for m in messages:
                if isinstance(m, ItemStarted):
                    emit(m)

        def on_result(index, event, messages) -> None:
            replay(messages)
            items.done(index, event)

        def on_error(index, error, messages) -> None:
            replay(messages)
            items.done(index, items.failed(index, error))

        def on_lost(index, reason) -> None:
            items.done(index, items.failed(index, reason))

        try:
            self.pool.run(image_factory(self.url_pairs), weights_of(network), setup, tasks,
                          on_result=on_result, on_error=on_error, on_lost=on_lost)
        finally:
            for _, job in numbered:  # temp files of attempts lost with their worker
                remove_temp_outputs(job.output)


class RaySegmentRunner:
    """Encodes a video's segments on Ray actors (`--ray`); plugs into `upscale_video(..., segment_runner=...)`."""

    def __init__(self, address: str, *, num_cpus: Optional[int] = None, max_actors: Optional[int] = None) -> None:
        self.pool = _RayPool(address, num_cpus=num_cpus, max_actors=max_actors)

    def describe(self, dtype: Optional[torch.dtype]) -> tuple[str, str]:
        return self.pool.describe(dtype)

    encode_settings = staticmethod(pin_encoder_threads)

    def run(self, job, segments: Sequence[int], network: torch.nn.Module, *, scale: float,
            dtype: Optional[torch.dtype], tile: Optional[int], overlap: Optional[int],
            batch_frames: Optional[int], on_frames: Callable[[int], None], notify: Callable[[str], None]) -> None:
        """Encode `segments` of `job` on the actors; raise `VideoError` when one fails for good."""
        if not segments:
            return
        frames = SegmentFrames(on_frames)
        setup = {"job": job, "scale": scale, "dtype": dtype, "tile": tile, "overlap": overlap,
                 "batch_frames": batch_frames}

        def on_result(k, path, messages) -> None:
            for n in messages:
                frames.add(k, n)

        def on_error(k, error, messages) -> None:
            raise VideoError(f"{job.info.path}: segment {k} failed on Ray: {error}")

        def on_lost(k, reason) -> None:
            raise VideoError(f"{job.info.path}: segment {k} not encoded: {reason}")

        self.pool.run(SEGMENT_WORKER, weights_of(network), setup, [(k, k) for k in segments],
                      on_result=on_result, on_error=on_error, on_lost=on_lost)
        missing = [k for k in segments if not job.segment_path(k).is_file()]
        if missing:
            raise VideoError(f"{job.info.path}: segments {missing} were not encoded")
