"""`--devices`: one worker process per device on this machine, for image batches and video segments.

`LocalImageRunner` plugs into `esc_cli.api.images.upscale_images(..., runner=...)`: every item
goes through the same `_process` as a one-device run, in whichever worker is free, so outputs,
events and exit codes are those of a one-worker run (items may finish out of order; `index`
names each). `LocalSegmentRunner` plugs into `esc_cli.api.video.upscale_video(...,
segment_runner=...)`: the video's segments are encoded by the workers and joined in order.
"""

from __future__ import annotations

import contextlib
import dataclasses
from pathlib import Path
from typing import Callable, Optional, Sequence

import torch

from esc_cli.errors import UsageError, VideoError
from esc_cli.scale.devices import ENCODER_THREADS, describe
from esc_cli.scale.pool import Task, WorkerPool

Notify = Callable[[str], None]


def weights_of(network: torch.nn.Module) -> dict:
    """The network's weights as a CPU float32 state dict (what each worker rebuilds its copy from)."""
    return {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in network.state_dict().items()}


def _network(state: dict) -> torch.nn.Module:
    from esc_cli.api.loading import load_model

    return load_model(state)


def remove_temp_outputs(output: Optional[Path]) -> None:
    """Delete temp files a killed worker left next to `output` (`.STEM.*.esc-tmpSUFFIX`)."""
    if output is None:
        return
    with contextlib.suppress(OSError):
        for tmp in output.parent.glob(f".{output.stem}.*.esc-tmp{output.suffix}"):
            with contextlib.suppress(OSError):
                tmp.unlink()


# --------------------------------------------------------------------------- images


class ImageWorker:
    """Worker side of an image batch: one `ImageUpscaler` on this worker's device."""

    def __init__(self, device: str, state: dict, setup: dict) -> None:
        from esc_cli.api.images import ImageUpscaler

        self.options = dataclasses.replace(setup["options"], device=device)
        self.input_paths = setup["input_paths"]
        self._send: Callable = lambda message: None
        self.upscaler = ImageUpscaler(_network(state), self.options, progress=lambda event: self._send(event))

    def handle(self, payload, send):
        from esc_cli.api.images import _process

        job, index, total, overwrite_own = payload
        self._send = send
        options = dataclasses.replace(self.options, overwrite=True) if overwrite_own else self.options
        return _process(job, index, total, options, self.upscaler, send, self.input_paths, None, None)


def image_worker(device: str, state: dict, setup: dict) -> ImageWorker:
    return ImageWorker(device, state, setup)


def with_urls(payload: tuple, job, pairs) -> tuple:
    """A task payload plus the item's input and output URLs (fsspec runs; see esc_cli.scale.remote)."""
    if not pairs:
        return payload
    from esc_cli.scale.remote import relabel_text

    return payload + (relabel_text(str(job.item.path), pairs), relabel_text(str(job.output), pairs))


def image_factory(pairs) -> str:
    return "esc_cli.scale.remote.url_image_worker" if pairs else "esc_cli.scale.local.image_worker"


def refuse_streams(jobs: Sequence) -> None:
    """Scale-out works on files: stdin inputs and stdout outputs stay one-device runs."""
    for job in jobs:
        if job.item.path is None or job.output is None:
            raise UsageError("--devices/--ray work on files: stdin (-) and -o - need a one-device run")


class ImageItems:
    """Bookkeeping shared by the image runners: tasks, retries, failures reported as items."""

    def __init__(self, numbered: Sequence[tuple[int, object]], total: int, finish: Callable, notify: Notify) -> None:
        self.jobs = {index: job for index, job in numbered}
        self.total = total
        self.finish = finish
        self.notify = notify
        self.existed = {i: (j.output is not None and (j.output.exists() or j.output.is_symlink())) for i, j in numbered}
        self.finished: set[int] = set()

    def failed(self, index: int, error: str, device: Optional[str] = None):
        from esc_cli.api.events import ItemFinished

        job = self.jobs[index]
        label = job.item.label
        out = "-" if job.output is None else str(job.output)
        return ItemFinished(index, self.total, "failed", label, out, 0.0, device=device, error=f"{label}: {error}")

    def done(self, index: int, event) -> None:
        if index in self.finished:
            return
        self.finished.add(index)
        self.finish(event)

    def retry_payload(self, index: int) -> tuple:
        """What a retry sends: the job may overwrite an output its dead worker completed itself."""
        job = self.jobs[index]
        remove_temp_outputs(job.output)
        own = not self.existed[index] and job.output is not None and job.output.exists()
        return (job, index, self.total, own)


class _LocalRunner:
    """One worker process per device (`--devices`), started by `run`."""

    def __init__(self, devices: Sequence[str]) -> None:
        if not devices:
            raise UsageError("--devices needs at least one device")
        self.devices = list(devices)
        self.pool: Optional[WorkerPool] = None
        self.on_started: Optional[Callable[[WorkerPool], None]] = None  # tests: kill a worker


class LocalImageRunner(_LocalRunner):
    """Runs an image batch on one worker process per device (`--devices`)."""

    def __init__(self, devices: Sequence[str]) -> None:
        super().__init__(devices)
        self.url_pairs: list = []  # set by esc_cli.scale.remote for URL inputs/outputs

    def describe(self, network: torch.nn.Module, options, jobs: Sequence) -> tuple[str, str]:
        """`device`/`dtype` for the start event; refuses stdin/stdout jobs."""
        refuse_streams([j for j in jobs if not j.skip and not j.error])
        return describe(self.devices, options.dtype)

    def run(self, numbered: Sequence[tuple[int, object]], total: int, options, network: torch.nn.Module, *,
            emit: Callable, finish: Callable, notify: Notify, input_paths: Sequence[Path]) -> None:
        """Process every `(index, job)`; each ends as exactly one `finish(ItemFinished)`."""
        items = ImageItems(numbered, total, finish, notify)
        pairs = self.url_pairs
        tasks = [Task(index, with_urls((job, index, total, False), job, pairs)) for index, job in numbered]
        by_key = {t.key: t for t in tasks}
        setup = {"options": options, "input_paths": list(input_paths)}
        self.pool = WorkerPool(self.devices, image_factory(pairs), weights_of(network), setup)

        def on_retry(index: int, reason: str) -> None:
            notify(f"{items.jobs[index].item.label}: {reason}; retrying on another worker")
            by_key[index].payload = with_urls(items.retry_payload(index), items.jobs[index], pairs)

        def on_lost(index: int, reason: str) -> None:
            remove_temp_outputs(items.jobs[index].output)
            items.done(index, items.failed(index, reason))

        self.pool.run(
            tasks,
            on_message=lambda index, event, device: emit(event),
            on_result=lambda index, event, device: items.done(index, event),
            on_error=lambda index, error, device: items.done(index, items.failed(index, error, device)),
            on_lost=on_lost,
            on_retry=on_retry,
            on_started=self.on_started,
        )


# --------------------------------------------------------------------------- video segments


class SegmentWorker:
    """Worker side of a video: an engine on this device and the job's frame processor."""

    def __init__(self, device: str, state: dict, setup: dict) -> None:
        from esc_cli.api.video_pipeline import processor_for
        from esc_cli.engine import Upscaler

        self.job = setup["job"]
        upscaler = Upscaler(_network(state), device=device, dtype=setup["dtype"], tile=setup["tile"],
                            overlap=setup["overlap"])
        self.processor = processor_for(self.job, upscaler, scale=setup["scale"])
        batch = setup.get("batch_frames")
        self.batch_frames = batch or (1 if device == "cpu" else 4)

    def handle(self, k: int, send):
        from esc_cli.api.video_pipeline import encode_segment

        path = encode_segment(self.job, k, self.processor, batch_frames=self.batch_frames, on_frames=send)
        return str(path)


def segment_worker(device: str, state: dict, setup: dict) -> SegmentWorker:
    return SegmentWorker(device, state, setup)


def pin_encoder_threads(settings):
    """The encoder settings with a fixed thread count (x264's bytes depend on it), unless already set."""
    if "-threads" in settings.extra:
        return settings
    return dataclasses.replace(settings, extra=tuple(settings.extra) + ("-threads", str(ENCODER_THREADS)))


class SegmentFrames:
    """Frame accounting across workers: a retried segment's frames are taken back first."""

    def __init__(self, on_frames: Callable[[int], None]) -> None:
        self.on_frames = on_frames
        self.counted: dict[int, int] = {}

    def add(self, k: int, n: int) -> None:
        self.counted[k] = self.counted.get(k, 0) + n
        self.on_frames(n)

    def retract(self, k: int) -> None:
        n = self.counted.pop(k, 0)
        if n:
            self.on_frames(-n)


class LocalSegmentRunner(_LocalRunner):
    """Encodes a video's segments on one worker process per device (`--devices`)."""

    def describe(self, dtype: Optional[torch.dtype]) -> tuple[str, str]:
        return describe(self.devices, dtype)

    encode_settings = staticmethod(pin_encoder_threads)

    def run(self, job, segments: Sequence[int], network: torch.nn.Module, *, scale: float,
            dtype: Optional[torch.dtype], tile: Optional[int], overlap: Optional[int],
            batch_frames: Optional[int], on_frames: Callable[[int], None], notify: Notify) -> None:
        """Encode segments `segments` of `job` (each to `job.segment_path(k)`); raise `VideoError` if one fails."""
        if not segments:
            return
        frames = SegmentFrames(on_frames)
        setup = {"job": job, "scale": scale, "dtype": dtype, "tile": tile, "overlap": overlap,
                 "batch_frames": batch_frames}
        self.pool = WorkerPool(self.devices, "esc_cli.scale.local.segment_worker", weights_of(network), setup)

        def on_error(k: int, error: str, device: str) -> None:
            raise VideoError(f"{job.info.path}: segment {k} failed on {device}: {error}")

        def on_lost(k: int, reason: str) -> None:
            raise VideoError(f"{job.info.path}: segment {k} not encoded: {reason}")

        def on_retry(k: int, reason: str) -> None:
            frames.retract(k)
            notify(f"segment {k}: {reason}; retrying on another worker")

        self.pool.run(
            [Task(k, k) for k in segments],
            on_message=lambda k, n, device: frames.add(k, n),
            on_result=lambda k, path, device: None,
            on_error=on_error,
            on_lost=on_lost,
            on_retry=on_retry,
            on_started=self.on_started,
        )
        missing = [k for k in segments if not job.segment_path(k).is_file()]
        if missing:
            raise VideoError(f"{job.info.path}: segments {missing} were not encoded")
