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
from esc_cli.io.encode import encode_image, write_image
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


def process_job(job: ImageJob, context: JobContext, *, index: int, total: int) -> ItemFinished:
    """Process one job (`index` of `total` in the batch); every outcome except an interruption
    becomes the returned `ItemFinished` ("done", "skipped" or "failed").

    Reads the input, checks memory and disk from its header, upscales it with
    `context.processor` and writes the output atomically (stdout for `job.output is None`).
    `KeyboardInterrupt` and `Terminated` propagate, with no partial output left behind.
    """
    options = context.options
    processor = context.processor
    label = job.item.label
    out_label = "-" if job.output is None else str(job.output)
    t0 = time.perf_counter()

    def ended(status: str, **extra) -> ItemFinished:
        return ItemFinished(index=index, total=total, status=status, input=label, output=out_label,
                            seconds=round(time.perf_counter() - t0, 3), **extra)

    exists = job.output is not None and (job.output.exists() or job.output.is_symlink())
    if job.skip:
        return ended("skipped", reason=job.skip)
    if exists and options.skip_existing:
        return ended("skipped", reason="output exists (--skip-existing)")
    if job.error:
        return ended("failed", error=job.error)
    if job.output is not None and exists:
        if not options.overwrite:
            return ended("failed", error=f"{job.output}: already exists; pass --overwrite to replace it or --skip-existing to keep it")
        if job.item.path is not None and same_file(job.output, job.item.path):
            return ended("failed", error=f"{job.output}: is the input itself; choose another output")
    context.emit(ItemStarted(index=index, total=total, input=label, output=out_label))
    processor.set_progress(context.emit)
    processor.last_tile = None
    notes: list[str] = []
    resources = ResourceCheck(options.scale, options.check_resources)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            if job.item.path is None:
                source: Union[Path, bytes] = (context.stdin or sys.stdin.buffer).read()
                if not source:
                    raise InputError("<stdin>: no data on standard input")
            else:
                source = job.item.path
            data = read_image(
                source,
                name=label if job.item.path is not None else "<stdin>",
                max_pixels=options.max_pixels or None,
                check=lambda header: resources.check(header, job.output, job.format, label),
            )
            result = processor.upscale(data, index)
            fmt = job.format or writable_format(data.format)
            if job.output is None:
                encoded = encode_image(result, fmt, quality=options.quality, notes=notes)
                target = context.stdout or sys.stdout.buffer
                target.write(encoded)
                target.flush()
            else:
                _write(job, result, fmt, options, context.input_paths, notes)
        notes = list(data.notes) + notes + [str(w.message) for w in caught]
    except OutputExistsError as exc:
        if options.skip_existing:  # another run finished this output while we worked on it
            return ended("skipped", reason="output exists (--skip-existing; another run wrote it meanwhile)")
        return ended("failed", error=str(exc))
    except EscError as exc:
        return ended("failed", error=str(exc))
    except Exception as exc:  # an unexpected failure costs this item only
        return ended("failed", error=f"{label}: {type(exc).__name__}: {exc}")
    return ended(
        "done",
        tile=processor.last_tile,
        device=processor.last_device or processor.device,
        dtype=processor.last_dtype or processor.dtype,
        width=data.width,
        height=data.height,
        out_width=result.width,
        out_height=result.height,
        notes=notes,
    )


def _write(job: ImageJob, result: ImageData, fmt: str, options: UpscaleOptions, input_paths: tuple[Path, ...],
           notes: list[str]) -> None:
    """Write `result` to `job.output` through a temp file; refuse to land on another input."""
    assert job.output is not None
    others = [p for p in input_paths if p != job.item.path]
    with atomic_output(job.output, [job.item.path] if job.item.path is not None else [],
                       overwrite=options.overwrite) as tmp:
        if any(same_file(job.output, p) for p in others if job.output.exists()):
            raise OutputError(f"{job.output}: is another input of this batch; choose another output")
        write_image(result, tmp, fmt, quality=options.quality, notes=notes)
