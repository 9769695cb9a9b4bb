"""Driver-side bookkeeping shared by the `--devices` and Ray runners: tasks, retries, temp files, frames.

Every image item ends as exactly one `ItemFinished` (a lost or failed task is reported, never
dropped); a retried video segment's frames are taken back before they are counted again.
"""

from __future__ import annotations

import contextlib
import dataclasses
from pathlib import Path
from typing import Callable, Optional, Sequence

from esc_cli.api.events import ItemFinished
from esc_cli.api.outputs import ImageJob
from esc_cli.errors import UsageError
from esc_cli.scale.devices import ENCODER_THREADS
from esc_cli.scale.urls import Pairs, relabel_text
from esc_cli.scale.workers import ImageTask

Notify = Callable[[str], None]


def remove_temp_outputs(output: Optional[Path]) -> None:
    """Delete temp files a killed worker left next to `output` (`.STEM.*.esc-tmpSUFFIX`)."""
    if output is None:
        return
    with contextlib.suppress(OSError):
        for tmp in output.parent.glob(f".{output.stem}.*.esc-tmp{output.suffix}"):
            with contextlib.suppress(OSError):
                tmp.unlink()


def with_urls(task: ImageTask, pairs: Pairs) -> ImageTask:
    """`task` plus its item's input and output URLs (fsspec runs; see esc_cli.scale.remote)."""
    if not pairs:
        return task
    job = task.job
    return dataclasses.replace(task, url_in=relabel_text(str(job.item.path), pairs),
                               url_out=relabel_text(str(job.output), pairs))


def refuse_streams(jobs: Sequence[ImageJob]) -> None:
    """Scale-out works on files: stdin inputs and stdout outputs stay one-device runs."""
    for job in jobs:
        if job.item.path is None or job.output is None:
            raise UsageError("--devices/--ray work on files: stdin (-) and -o - need a one-device run")


class ImageItems:
    """Bookkeeping shared by the image runners: tasks, retries, failures reported as items."""

    def __init__(self, numbered: Sequence[tuple[int, ImageJob]], total: int,
                 finish: Callable[[ItemFinished], None], notify: Notify) -> None:
        self.jobs = {index: job for index, job in numbered}
        self.total = total
        self.finish = finish
        self.notify = notify
        self.existed = {i: (j.output is not None and (j.output.exists() or j.output.is_symlink())) for i, j in numbered}
        self.finished: set[int] = set()

    def task(self, index: int, pairs: Pairs) -> ImageTask:
        """The first attempt's task for item `index`."""
        return with_urls(ImageTask(job=self.jobs[index], index=index, total=self.total), pairs)

    def failed(self, index: int, error: str, device: Optional[str] = None) -> ItemFinished:
        job = self.jobs[index]
        label = job.item.label
        out = "-" if job.output is None else str(job.output)
        return ItemFinished(index=index, total=self.total, status="failed", input=label, output=out, seconds=0.0,
                            device=device, error=f"{label}: {error}")

    def done(self, index: int, event: ItemFinished) -> None:
        if index in self.finished:
            return
        self.finished.add(index)
        self.finish(event)

    def retry_task(self, index: int, pairs: Pairs) -> ImageTask:
        """What a retry sends: the job may overwrite an output its dead worker completed itself."""
        job = self.jobs[index]
        remove_temp_outputs(job.output)
        own = not self.existed[index] and job.output is not None and job.output.exists()
        return with_urls(ImageTask(job=job, index=index, total=self.total, overwrite_own=own), pairs)


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
