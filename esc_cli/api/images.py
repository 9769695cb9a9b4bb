"""Upscaling image files: `upscale_images` runs a whole batch and reports typed events.

The pipeline behind `esc upscale`, usable from Python:

    from esc_cli.api.images import UpscaleOptions, upscale_images
    summary = upscale_images(["photos/"], UpscaleOptions(scale=4, output="out", recursive=True))

Every item ends as exactly one `ItemFinished` event ("done", "skipped" or "failed"); a
failed item never stops the batch. Outputs are written atomically (temp file in the
target folder, then a rename) and never replace an input.

The steps live beside this module: `options` (UpscaleOptions), `inputs` (collect_inputs),
`outputs` (plan_outputs, ImageJob), `resources` (memory/disk pre-checks), `processor`
(ImageProcessor), `jobs` (process_job, the per-item contract) and `pixels`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Callable, Optional, Protocol, Sequence

import torch

from esc_cli.api.events import BatchFinished, BatchStarted, EventCallback, ItemFinished, exit_code_for
from esc_cli.api.inputs import collect_inputs
from esc_cli.api.jobs import JobContext
from esc_cli.api.overlap import run_items
from esc_cli.api.options import UpscaleOptions
from esc_cli.api.outputs import ImageJob, clean_stale_temps, output_folders, plan_outputs
from esc_cli.api.processor import ImageProcessor
from esc_cli.api.resources import batch_disk_check
from esc_cli.engine.rescale import describe_plan, plan_passes
from esc_cli.errors import EXIT_INTERRUPTED, EXIT_OK, InputError, Terminated

if TYPE_CHECKING:
    from esc_cli.api.inputs import Ignored

__all__ = ["BatchSummary", "ImageRunner", "UpscaleOptions", "upscale_images"]


@dataclass
class BatchSummary:
    """Counts of a finished batch, its exit code and every item's `ItemFinished`."""

    done: int = 0
    skipped: int = 0
    failed: int = 0
    ignored: int = 0
    seconds: float = 0.0
    exit_code: int = EXIT_OK
    items: list[ItemFinished] = field(default_factory=list)


class ImageRunner(Protocol):
    """Where the items of a batch run instead of this process (esc_cli.scale: `--devices`, `--ray`)."""

    def describe(self, network: torch.nn.Module, options: UpscaleOptions,
                 jobs: Sequence[ImageJob]) -> tuple[str, str]:
        """The `device` and `dtype` fields of the start event."""

    def run(self, numbered: Sequence[tuple[int, ImageJob]], total: int, options: UpscaleOptions,
            network: torch.nn.Module, *, emit: EventCallback, finish: Callable[[ItemFinished], None],
            notify: Callable[[str], None], input_paths: Sequence[Path]) -> None:
        """Process every `(index, job)`, each ending as exactly one `finish(ItemFinished)`."""


def model_name(ref: Optional[str], network: torch.nn.Module) -> str:
    """The model name for the start event: the reference given, else the network's own name."""
    if ref:
        return ref
    return str(getattr(network, "name", None) or f"{getattr(network, 'variant', 'esc')}-x{getattr(network, 'scale', '?')}")


def _no_jobs(ignored: Sequence[Ignored], notify: Callable[[str], None]) -> InputError:
    """The error when nothing can be processed (after reporting the non-fatal skips)."""
    failed = [e for e in ignored if e.failed]
    for entry in ignored:
        if not entry.failed:
            notify(f"{entry.path}: {entry.reason}")
    if failed:
        return InputError("; ".join(f"{e.path}: {e.reason}" for e in failed[:3]) + ("; ..." if len(failed) > 3 else ""))
    return InputError("no images to upscale" + (" (only junk or non-image files)" if ignored else ""))


def upscale_images(
    inputs: Sequence[str],
    options: UpscaleOptions,
    *,
    on_event: Optional[EventCallback] = None,
    warn: Optional[Callable[[str], None]] = None,
    stdin: Optional[BinaryIO] = None,
    stdout: Optional[BinaryIO] = None,
    network: Optional[torch.nn.Module] = None,
    download_progress: Optional[Callable[[int, Optional[int]], None]] = None,
    runner: Optional[ImageRunner] = None,
) -> BatchSummary:
    """Run a whole batch: validate, collect, plan, load the model, process each item, summarise.

    Emits `BatchStarted`, then `ItemStarted`/`ItemProgress`/`ItemFinished` per item, then
    `BatchFinished`. `download_progress(done, total)` reports a model download, if any.
    `runner` (esc_cli.scale: one worker per device, or Ray) processes the items instead of
    this process; events and the summary are the same (items may finish out of order).
    Raises `EscError` only for problems that stop everything before the
    first item (usage, no model); `KeyboardInterrupt` and `Terminated` propagate after a
    `BatchFinished(interrupted=True)` event (temp files are already removed).
    """
    emit = on_event or (lambda event: None)
    notify = warn or (lambda message: None)
    started = time.perf_counter()
    options.validate()
    out_path = Path(options.output) if options.output not in (None, "-") else None
    exclude = [out_path] if out_path is not None else []
    items, ignored = collect_inputs(inputs, recursive=options.recursive, exclude=exclude)
    args_have_folder = any(a != "-" and Path(a).is_dir() for a in inputs)
    jobs = plan_outputs(items, options, args_have_folder=args_have_folder) if items else []
    if not jobs:
        raise _no_jobs(ignored, notify)
    clean_stale_temps(output_folders(jobs), notify)

    if network is None:
        from esc_cli.api.models import open_model

        network = open_model(options.model, scale=options.scale, warn=notify, progress=download_progress)
    if options.check_resources:
        batch_disk_check(jobs, options.scale, notify)
    processor: Optional[ImageProcessor] = None
    if runner is None:
        processor = ImageProcessor(network, options, progress=emit)
        model_scale, device_name, dtype_name = processor.model_scale, processor.device, processor.dtype
    else:
        model_scale = int(getattr(network, "scale"))
        device_name, dtype_name = runner.describe(network, options, jobs)
    passes = plan_passes(model_scale, options.scale)
    if model_scale**passes != options.scale:
        notify(describe_plan(model_scale, options.scale))
    total = len(jobs) + len(ignored)
    emit(BatchStarted(total=total, model=model_name(options.model, network), model_scale=model_scale,
                      scale=options.scale, passes=passes, device=device_name, dtype=dtype_name, tile=options.tile))
    summary = BatchSummary()
    index = 0

    def finish(event: ItemFinished, junk: bool = False) -> None:
        summary.items.append(event)
        if junk:
            summary.ignored += 1
        elif event.status == "done":
            summary.done += 1
        elif event.status == "skipped":
            summary.skipped += 1
        else:
            summary.failed += 1
        emit(event)

    try:
        for entry in ignored:
            index += 1
            finish(ItemFinished(index=index, total=total, status="failed" if entry.failed else "skipped",
                                input=entry.path, output=None, seconds=0.0,
                                error=f"{entry.path}: {entry.reason}" if entry.failed else None,
                                reason=None if entry.failed else entry.reason), junk=not entry.failed)
        input_paths = tuple(j.item.path for j in jobs if j.item.path is not None)
        if runner is not None:
            numbered = [(index + i + 1, job) for i, job in enumerate(jobs)]
            runner.run(numbered, total, options, network, emit=emit, finish=finish, notify=notify,
                       input_paths=input_paths)
        else:
            assert processor is not None
            context = JobContext(processor=processor, options=options, emit=emit, input_paths=input_paths,
                                 stdin=stdin, stdout=stdout)
            run_items([(index + i + 1, job) for i, job in enumerate(jobs)], total, context, finish)
    except (KeyboardInterrupt, Terminated) as exc:
        summary.seconds = time.perf_counter() - started
        code = getattr(exc, "exit_code", EXIT_INTERRUPTED)
        summary.exit_code = code
        emit(BatchFinished(done=summary.done, skipped=summary.skipped, failed=summary.failed,
                           seconds=round(summary.seconds, 3), exit_code=code, ignored=summary.ignored,
                           interrupted=True))
        raise
    summary.seconds = time.perf_counter() - started
    summary.exit_code = exit_code_for(summary.done, summary.skipped, summary.failed)
    emit(BatchFinished(done=summary.done, skipped=summary.skipped, failed=summary.failed,
                       seconds=round(summary.seconds, 3), exit_code=summary.exit_code, ignored=summary.ignored))
    return summary
