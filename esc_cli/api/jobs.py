"""`process_job`: one planned item from input to output, the contract every runner calls.

The one-device loop of `upscale_images`, the `--devices` worker processes, the URL workers
and the Ray actors all process an item with `process_job(job, context, index=..., total=...)`,
so outputs, events and error messages are the same wherever an item runs.
"""

from __future__ import annotations

import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Optional, Union

from esc_cli.api.events import EventCallback, ItemFinished, ItemStarted
from esc_cli.api.options import UpscaleOptions
from esc_cli.api.outputs import ImageJob
from esc_cli.api.processor import ImageProcessor
from esc_cli.api.resources import ResourceCheck
from esc_cli.errors import EscError, InputError, OutputError, OutputExistsError
from esc_cli.io.atomic import atomic_output, same_file
from esc_cli.io.decode import read_image
from esc_cli.io.canvas import PreparedImage
from esc_cli.io.encode import encode_prepared, write_image
from esc_cli.io.images import ImageData, writable_format


@dataclass(frozen=True)
class JobContext:
    """What processing an item needs besides the job: the same for every item of a worker.

    `processor`: the network on this worker's device. `emit`: receives `ItemStarted` and the
    `ItemProgress` events of the item (not its `ItemFinished`, which `process_job` returns).
    `input_paths`: every input file of the batch (an output must not land on one).
    `stdin`/`stdout`: streams for "-" inputs and `-o -` (None: the process's own).
    """

    processor: ImageProcessor
    options: UpscaleOptions
    emit: EventCallback
    input_paths: tuple[Path, ...] = ()
    stdin: Optional[BinaryIO] = None
    stdout: Optional[BinaryIO] = None


class JobRun:
    """One item's phases, in the order they must run: `check`, `read`, `upscale`, `store`, then `done`.

    `process_job` runs them one after another; the overlapped folder loop (`esc_cli.api.overlap`) runs
    `read` and `store` in worker threads while the model upscales the neighbouring items. Warnings raised
    during a phase are recorded with `note_warnings` by whoever runs it.
    """

    def __init__(self, job: ImageJob, context: JobContext, *, index: int, total: int) -> None:
        self.job, self.context, self.index, self.total = job, context, index, total
        self.label = job.item.label
        self.notes: list[str] = []
        self.data: Optional[ImageData] = None
        self.prepared: Optional[PreparedImage] = None  # the quantised output, between `upscale` and `store`
        self.in_size: Optional[tuple[int, int]] = None  # (width, height), kept when the input is dropped
        self.input_notes: list[str] = []
        self.tile: Optional[int] = None  # how the engine ran it, for the ItemFinished event
        self.device: Optional[str] = None
        self.dtype: Optional[str] = None
        self.out_size: Optional[tuple[int, int]] = None  # (width, height), kept when the output is dropped
        self.started = time.perf_counter()

    @property
    def output_label(self) -> str:
        """The output as events name it: its path, or "-" for stdout."""
        return "-" if self.job.output is None else str(self.job.output)

    def ended(self, status: str, **extra) -> ItemFinished:
        return ItemFinished(index=self.index, total=self.total, status=status, input=self.label,
                            output=self.output_label, seconds=round(time.perf_counter() - self.started, 3), **extra)

    def check(self) -> Optional[ItemFinished]:
        """The outcome when the item ends before any work (skipped, refused); else None after `ItemStarted`."""
        job, options = self.job, self.context.options
        exists = job.output is not None and (job.output.exists() or job.output.is_symlink())
        if job.skip:
            return self.ended("skipped", reason=job.skip)
        if exists and options.skip_existing:
            return self.ended("skipped", reason="output exists (--skip-existing)")
        if job.error:
            return self.ended("failed", error=job.error)
        if job.output is not None and exists:
            if not options.overwrite:
                return self.ended("failed", error=f"{job.output}: already exists; pass --overwrite to replace it or --skip-existing to keep it")
            if job.item.path is not None and same_file(job.output, job.item.path):
                return self.ended("failed", error=f"{job.output}: is the input itself; choose another output")
        self.context.emit(ItemStarted(index=self.index, total=self.total, input=self.label, output=self.output_label))
        return None

    def read(self) -> None:
        """Decode the input (file or stdin), checking memory and disk from its header first."""
        job, options = self.job, self.context.options
        resources = ResourceCheck(options.scale, options.check_resources, self.context.processor.model_scale)
        if job.item.path is None:
            source: Union[Path, bytes] = (self.context.stdin or sys.stdin.buffer).read()
            if not source:
                raise InputError("<stdin>: no data on standard input")
        else:
            source = job.item.path
        self.data = read_image(
            source,
            name=self.label if job.item.path is not None else "<stdin>",
            max_pixels=options.max_pixels or None,
            check=lambda header: resources.check(header, job.output, job.format, self.label),
        )

    def upscale(self) -> None:
        """Run the network on the decoded pixels into the quantised output (the calling thread owns the device).

        The decoded input is dropped afterwards: from here on the item holds only its 8- or 16-bit output.
        """
        assert self.data is not None
        processor = self.context.processor
        processor.set_progress(self.context.emit)
        processor.last_tile = None
        data = self.data
        fmt = self.job.format or writable_format(data.format)
        self.prepared = processor.upscale_prepared(data, fmt, notes=self.notes, index=self.index)
        self.in_size, self.out_size = (data.width, data.height), (self.prepared.width, self.prepared.height)
        self.input_notes = list(data.notes)
        self.data = None
        self.tile = processor.last_tile
        self.device = processor.last_device or processor.device
        self.dtype = processor.last_dtype or processor.dtype

    def store(self) -> None:
        """Encode and write the output atomically (to stdout when the job has no output path), then drop it."""
        assert self.prepared is not None
        job, options = self.job, self.context.options
        prepared, self.prepared = self.prepared, None
        if job.output is None:
            encoded = encode_prepared(prepared, quality=options.quality, png_level=options.png_level,
                                      notes=self.notes)  # fmt: skip
            target = self.context.stdout or sys.stdout.buffer
            target.write(encoded)
            target.flush()
        else:
            _write(job, prepared, prepared.fmt, options, self.context.input_paths, self.notes)

    def note_warnings(self, caught: list[warnings.WarningMessage]) -> None:
        self.notes.extend(str(w.message) for w in caught)

    def done(self) -> ItemFinished:
        assert self.in_size is not None and self.out_size is not None
        return self.ended(
            "done", tile=self.tile, device=self.device, dtype=self.dtype, width=self.in_size[0],
            height=self.in_size[1], out_width=self.out_size[0], out_height=self.out_size[1],
            notes=self.input_notes + self.notes,
        )  # fmt: skip

    def failed(self, exc: Exception) -> ItemFinished:
        """The outcome of an item that raised: `EscError` messages as they are, anything else with its type.

        An output another run finished meanwhile counts as skipped under --skip-existing (two runs at once).
        """
        if isinstance(exc, OutputExistsError) and self.context.options.skip_existing:
            return self.ended("skipped", reason="output exists (--skip-existing; another run wrote it meanwhile)")
        if isinstance(exc, EscError):
            return self.ended("failed", error=str(exc))
        return self.ended("failed", error=f"{self.label}: {type(exc).__name__}: {exc}")


def process_job(job: ImageJob, context: JobContext, *, index: int, total: int) -> ItemFinished:
    """Process one job (`index` of `total` in the batch); every outcome except an interruption
    becomes the returned `ItemFinished` ("done", "skipped" or "failed").

    Reads the input, checks memory and disk from its header, upscales it with
    `context.processor` and writes the output atomically (stdout for `job.output is None`).
    `KeyboardInterrupt` and `Terminated` propagate, with no partial output left behind.
    """
    run = JobRun(job, context, index=index, total=total)
    early = run.check()
    if early is not None:
        return early
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            run.read()
            run.upscale()
            run.store()
        run.note_warnings(caught)
    except Exception as exc:  # an unexpected failure costs this item only
        return run.failed(exc)
    return run.done()


def _write(job: ImageJob, result: PreparedImage, fmt: str, options: UpscaleOptions, input_paths: tuple[Path, ...],
           notes: list[str]) -> None:
    """Write `result` to `job.output` through a temp file; refuse to land on another input."""
    assert job.output is not None
    others = [p for p in input_paths if p != job.item.path]
    with atomic_output(job.output, [job.item.path] if job.item.path is not None else [],
                       overwrite=options.overwrite) as tmp:
        if any(same_file(job.output, p) for p in others if job.output.exists()):
            raise OutputError(f"{job.output}: is another input of this batch; choose another output")
        write_image(result, tmp, fmt, quality=options.quality, png_level=options.png_level, notes=notes)
