"""The worker side of scale-out: what runs in a `--devices` worker process or a Ray actor.

A worker is built once per process by a factory `f(device, state, setup)` named by its
import path (`IMAGE_WORKER`, `URL_IMAGE_WORKER`, `SEGMENT_WORKER`), then answers tasks with
`handle(task, send)`, where `send(message)` streams events or frame counts back. Image
workers run `esc_cli.api.jobs.process_job`, the very code of a one-device run.
"""

from __future__ import annotations

import dataclasses
import posixpath
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import torch

from esc_cli.api.events import ItemFinished
from esc_cli.api.inputs import InputItem
from esc_cli.api.jobs import JobContext, process_job
from esc_cli.api.outputs import ImageJob
from esc_cli.api.processor import ImageProcessor
from esc_cli.scale.urls import Pairs, load_fsspec, relabel_event, upload

IMAGE_WORKER = "esc_cli.scale.workers.image_worker"
URL_IMAGE_WORKER = "esc_cli.scale.workers.url_image_worker"
SEGMENT_WORKER = "esc_cli.scale.workers.segment_worker"

Send = Callable[[object], None]


@dataclass(frozen=True)
class ImageTask:
    """One image item sent to a worker: the job, its number in the batch, and how to treat its output.

    `overwrite_own`: a retry may replace an output its dead worker completed itself.
    `url_in`/`url_out`: for URL runs, where the item's bytes come from and go to.
    """

    job: ImageJob
    index: int
    total: int
    overwrite_own: bool = False
    url_in: Optional[str] = None
    url_out: Optional[str] = None


def weights_of(network: torch.nn.Module) -> dict:
    """The network's weights as a CPU float32 state dict (what each worker rebuilds its copy from)."""
    return {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in network.state_dict().items()}


def network_from_weights(state: dict) -> torch.nn.Module:
    """A worker's own copy of the network, from `weights_of`'s state dict."""
    from esc_cli.api.loading import load_model

    return load_model(state)


class ImageWorker:
    """Worker side of an image batch: one `ImageProcessor` on this worker's device."""

    def __init__(self, device: str, state: dict, setup: dict) -> None:
        self.options = dataclasses.replace(setup["options"], device=device)
        self.input_paths: tuple[Path, ...] = tuple(setup["input_paths"])
        self.processor = ImageProcessor(network_from_weights(state), self.options)

    def context(self, send: Send, *, overwrite: bool = False) -> JobContext:
        """The job context for one task whose events go to `send`."""
        options = dataclasses.replace(self.options, overwrite=True) if overwrite else self.options
        return JobContext(processor=self.processor, options=options, emit=send, input_paths=self.input_paths)

    def handle(self, task: ImageTask, send: Send) -> ItemFinished:
        return process_job(task.job, self.context(send, overwrite=task.overwrite_own), index=task.index,
                           total=task.total)


class UrlImageWorker(ImageWorker):
    """An `ImageWorker` whose item comes from and goes to URLs (`task.url_in`, `task.url_out`)."""

    def handle(self, task: ImageTask, send: Send) -> ItemFinished:
        job, index, total = task.job, task.index, task.total
        if job.skip or job.error or task.url_in is None or task.url_out is None:
            context = dataclasses.replace(self.context(send), input_paths=())
            return process_job(job, context, index=index, total=total)
        fsspec = load_fsspec()
        fs_in, p_in = fsspec.core.url_to_fs(task.url_in)
        fs_out, p_out = fsspec.core.url_to_fs(task.url_out)
        label, out_label = job.item.label, str(job.output)

        def failed(error: str) -> ItemFinished:
            return ItemFinished(index=index, total=total, status="failed", input=label, output=out_label,
                                seconds=0.0, error=error)

        if fs_out.exists(p_out):
            if self.options.skip_existing:
                return ItemFinished(index=index, total=total, status="skipped", input=label, output=out_label,
                                    seconds=0.0, reason="output exists (--skip-existing)")
            if not (self.options.overwrite or task.overwrite_own):
                return failed(f"{out_label}: already exists; pass --overwrite to replace it or --skip-existing to keep it")
        with tempfile.TemporaryDirectory(prefix="esc-url-") as tmp:
            local_in = Path(tmp) / "in" / posixpath.basename(p_in)
            local_out = Path(tmp) / "out" / posixpath.basename(p_out)
            local_in.parent.mkdir()
            pairs: Pairs = [(str(local_in), label), (str(local_out), out_label), (tmp, "<worker temp>")]
            try:
                fs_in.get_file(p_in, str(local_in))
            except Exception as exc:  # noqa: BLE001 - this item fails, the batch goes on
                return failed(f"{label}: cannot read ({type(exc).__name__}: {exc})")
            local_job = ImageJob(item=InputItem(local_in), output=local_out, format=job.format)
            options = dataclasses.replace(self.options, skip_existing=False, overwrite=False)
            context = JobContext(processor=self.processor, options=options,
                                 emit=lambda event: send(relabel_event(event, pairs)), input_paths=(local_in,))
            event = process_job(local_job, context, index=index, total=total)
            if event.status == "done":
                try:
                    upload(fs_out, str(local_out), p_out)
                except Exception as exc:  # noqa: BLE001
                    event = dataclasses.replace(event, status="failed", error=f"{out_label}: cannot write "
                                                f"({type(exc).__name__}: {exc})")
            return relabel_event(event, pairs)


class SegmentWorker:
    """Worker side of a video: an engine on this device and the job's frame processor."""

    def __init__(self, device: str, state: dict, setup: dict) -> None:
        from esc_cli.api.video_pipeline import processor_for
        from esc_cli.engine import Upscaler

        self.job = setup["job"]
        upscaler = Upscaler(network_from_weights(state), device=device, dtype=setup["dtype"], tile=setup["tile"],
                            overlap=setup["overlap"])
        self.processor = processor_for(self.job, upscaler, scale=setup["scale"])
        batch = setup.get("batch_frames")
        self.batch_frames = batch or (1 if device == "cpu" else 4)

    def handle(self, k: int, send):
        from esc_cli.api.video_pipeline import encode_segment

        path = encode_segment(self.job, k, self.processor, batch_frames=self.batch_frames, on_frames=send)
        return str(path)


def image_worker(device: str, state: dict, setup: dict) -> ImageWorker:
    return ImageWorker(device, state, setup)


def url_image_worker(device: str, state: dict, setup: dict) -> UrlImageWorker:
    return UrlImageWorker(device, state, setup)


def segment_worker(device: str, state: dict, setup: dict) -> SegmentWorker:
    return SegmentWorker(device, state, setup)


def image_factory(pairs: Pairs) -> str:
    """The image worker factory for a run: the URL worker when inputs or outputs are URLs."""
    return URL_IMAGE_WORKER if pairs else IMAGE_WORKER
