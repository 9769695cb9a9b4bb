"""`--devices`: one worker process per device on this machine, for image batches and video segments.

`LocalImageRunner` plugs into `esc_cli.api.images.upscale_images(..., runner=...)`: every item
goes through the same `esc_cli.api.jobs.process_job` as a one-device run, in whichever worker is
free (`esc_cli.scale.workers`), so outputs, events and exit codes are those of a one-worker run
(items may finish out of order; `index` names each). `LocalSegmentRunner` plugs into
`esc_cli.api.video.upscale_video(..., segment_runner=...)`: the video's segments are encoded by
the workers and joined in order.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional, Sequence

import torch

from esc_cli.api.events import ItemFinished
from esc_cli.api.options import UpscaleOptions
from esc_cli.api.outputs import ImageJob
from esc_cli.errors import UsageError, VideoError
from esc_cli.scale.bookkeeping import (
    ImageItems,
    Notify,
    SegmentFrames,
    pin_encoder_threads,
    refuse_streams,
    remove_temp_outputs,
)
from esc_cli.scale.devices import describe
from esc_cli.scale.pool import Task, WorkerPool
from esc_cli.scale.workers import SEGMENT_WORKER, image_factory, weights_of


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

    def describe(self, network: torch.nn.Module, options: UpscaleOptions, jobs: Sequence[ImageJob]) -> tuple[str, str]:
        """`device`/`dtype` for the start event; refuses stdin/stdout jobs."""
        refuse_streams([j for j in jobs if not j.skip and not j.error])
        return describe(self.devices, options.dtype)

    def run(self, numbered: Sequence[tuple[int, ImageJob]], total: int, options: UpscaleOptions,
            network: torch.nn.Module, *, emit: Callable, finish: Callable[[ItemFinished], None], notify: Notify,
            input_paths: Sequence[Path]) -> None:
        """Process every `(index, job)`; each ends as exactly one `finish(ItemFinished)`."""
        items = ImageItems(numbered, total, finish, notify)
        pairs = self.url_pairs
        tasks = [Task(index, items.task(index, pairs)) for index, _job in numbered]
        by_key = {t.key: t for t in tasks}
        setup = {"options": options, "input_paths": list(input_paths)}
        self.pool = WorkerPool(self.devices, image_factory(pairs), weights_of(network), setup)

        def on_retry(index: int, reason: str) -> None:
            notify(f"{items.jobs[index].item.label}: {reason}; retrying on another worker")
            by_key[index].payload = items.retry_task(index, pairs)

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
        self.pool = WorkerPool(self.devices, SEGMENT_WORKER, weights_of(network), setup)

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
