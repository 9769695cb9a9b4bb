"""`esc upscale`: parse and validate options, call `esc_cli.api.images`, render events.

Human messages and progress go to stderr; stdout carries only `--json` events (one
object per line) or the image itself (`-o -`). Exit codes: 0 all done, 1 some failed,
2 usage error, 3 nothing processed, 130 interrupted (Ctrl-C), 143 terminated (SIGTERM).
"""

from __future__ import annotations

import json
import sys
from typing import Annotated, Optional

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeRemainingColumn

from esc_cli.api.events import BatchFinished, BatchStarted, Event, ItemFinished, ItemProgress, ItemStarted, event_dict
from esc_cli.api.images import upscale_images
from esc_cli.api.options import DEFAULT_TEMPLATE, UpscaleOptions, format_scale
from esc_cli.cli.console import err_console
from esc_cli.cli.signals import sigterm_raises
from esc_cli.cli.options import (
    DeviceOption,
    DevicesOption,
    DtypeOption,
    JsonOption,
    ModelOption,
    OverlapOption,
    OverwriteOption,
    QuietOption,
    RayOption,
    ScaleOption,
    TileOption,
)
from esc_cli.engine.devices import parse_device, parse_dtype
from esc_cli.errors import EXIT_INTERRUPTED, EscError, Terminated, UsageError
from esc_cli.io.images import DEFAULT_MAX_PIXELS

HELP = """Upscale images, folders, globs or stdin (-) with ESC.

Outputs go next to each input as NAME_x4.EXT unless -o names a file, a folder or - (stdout).
Exit codes: 0 all done, 1 some failed, 2 usage error, 3 nothing processed, 130 interrupted.
"""


class _Renderer:
    """Renders batch events: a Rich bar on a terminal, plain lines otherwise, JSON on stdout."""

    def __init__(self, *, json_mode: bool, quiet: bool) -> None:
        self.json_mode = json_mode
        self.quiet = quiet
        self.fancy = not quiet and err_console.is_terminal
        self.progress: Optional[Progress] = None
        self.overall: Optional[TaskID] = None
        self.tiles: Optional[TaskID] = None
        self.download_task: Optional[TaskID] = None

    def __enter__(self) -> "_Renderer":
        if self.fancy:
            self.progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeRemainingColumn(),
                console=err_console,
                transient=False,
            )
            self.progress.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.progress is not None:
            self.progress.stop()

    def download(self, done: int, total: Optional[int]) -> None:
        """Model download progress (bytes), shown only with the Rich display."""
        if self.progress is None:
            return
        if self.download_task is None:
            self.download_task = self.progress.add_task("model download", total=total)
        self.progress.update(self.download_task, completed=done, total=total)

    def note(self, message: str) -> None:
        if self.quiet:
            return
        err_console.print(f"[yellow]note:[/] {escape(message)}", highlight=False, soft_wrap=True, markup=True)

    def _json(self, event: Event) -> None:
        # ASCII escapes keep the stream valid JSON/UTF-8 even for undecodable file names
        sys.stdout.write(json.dumps(event_dict(event)) + "\n")
        sys.stdout.flush()

    def __call__(self, event: Event) -> None:
        if self.json_mode and isinstance(event, (BatchStarted, ItemFinished, BatchFinished)):
            self._json(event)
        if isinstance(event, BatchStarted):
            if self.progress is not None:
                if self.download_task is not None:
                    self.progress.update(self.download_task, visible=False)
                self.overall = self.progress.add_task("images", total=event.total)
                self.tiles = self.progress.add_task("tiles", total=1, visible=False)
            elif not self.quiet:
                err_console.print(
                    f"esc: {event.total} item(s), model {event.model} (x{event.model_scale}), "
                    f"-s {format_scale(event.scale)}, {event.device} {event.dtype}",
                    highlight=False, soft_wrap=True, markup=False,
                )
        elif isinstance(event, ItemStarted):
            if self.progress is not None and self.tiles is not None:
                self.progress.update(self.tiles, description=f"{event.input}", completed=0, total=1, visible=True)
        elif isinstance(event, ItemProgress):
            if event.notice:
                self.note(event.notice)
            if self.progress is not None and self.tiles is not None:
                self.progress.update(
                    self.tiles, description=f"  {event.stage} tiles ({event.tile or 'whole'})",
                    completed=event.done_tiles, total=max(event.total_tiles, 1),
                )
        elif isinstance(event, ItemFinished):
            self._item(event)
        elif isinstance(event, BatchFinished):
            if self.progress is not None and self.tiles is not None:
                self.progress.update(self.tiles, visible=False)
            if not self.quiet:
                state = " (interrupted)" if event.interrupted else ""
                extra = f", {event.ignored} ignored" if event.ignored else ""
                err_console.print(
                    f"{event.done} done, {event.skipped} skipped, {event.failed} failed{extra} "
                    f"in {event.seconds:.1f} s{state}",
                    highlight=False, markup=False,
                )

    def _item(self, event: ItemFinished) -> None:
        if self.progress is not None and self.overall is not None:
            self.progress.advance(self.overall)
        if event.status == "failed":
            err_console.print(f"[bold red]failed:[/] {escape(event.error or event.input)}", highlight=False, soft_wrap=True)
            return
        if self.quiet:
            return
        for note in event.notes:
            self.note(f"{event.input}: {note}")
        if event.status == "skipped":
            err_console.print(f"skipped: {event.input}: {event.reason}", highlight=False, soft_wrap=True, markup=False)
        elif self.progress is None:
            err_console.print(
                f"[{event.index}/{event.total}] {event.input} -> {event.output} ({event.seconds:.2f} s)",
                highlight=False, soft_wrap=True, markup=False,
            )


def upscale(
    inputs: Annotated[list[str], typer.Argument(help="Image files, folders, glob patterns, or - for stdin.", show_default=False)],
    output: Annotated[
        Optional[str],
        typer.Option("--output", "-o", help="Output file, folder (mirrors input folders), or - for stdout."),
    ] = None,
    scale: ScaleOption = 4.0,
    model: ModelOption = None,
    recursive: Annotated[bool, typer.Option("--recursive", "-r", help="Descend into sub-folders (the output mirrors the tree).")] = False,
    fmt: Annotated[
        Optional[str], typer.Option("--format", "-f", help="Output format: png, jpg, webp or tiff (default: the input's).")
    ] = None,
    quality: Annotated[
        Optional[int], typer.Option("--quality", min=1, max=100, help="JPEG/WebP quality (default 95/90; WebP 100 = lossless).")
    ] = None,
    name: Annotated[
        str, typer.Option("--name", help="Output file name template: {stem} {name} {ext} {suffix} {scale}.")
    ] = DEFAULT_TEMPLATE,
    overwrite: OverwriteOption = False,
    skip_existing: Annotated[bool, typer.Option("--skip-existing", help="Skip inputs whose output exists (resume).")] = False,
    alpha: Annotated[str, typer.Option("--alpha", help="Alpha channel: model (upscale it) or resize.")] = "model",
    max_pixels: Annotated[
        int, typer.Option("--max-pixels", min=0, help="Refuse inputs with more pixels (bomb guard); 0 = no limit.")
    ] = DEFAULT_MAX_PIXELS,
    device: DeviceOption = "auto",
    dtype: DtypeOption = "auto",
    tile: TileOption = None,
    overlap: OverlapOption = None,
    json_mode: JsonOption = False,
    quiet: QuietOption = False,
    devices: DevicesOption = None,
    ray: RayOption = None,
) -> None:
    """Upscale images, folders, globs or stdin (-) with ESC (options are validated once, by `upscale_images`)."""
    stdout_image = output == "-" or (output is None and "-" in inputs)
    if json_mode and stdout_image:
        raise UsageError("--json and an image on stdout exclude each other; write the image with -o FILE")
    if stdout_image and sys.stdout.isatty():
        raise UsageError("refusing to write image data to a terminal; redirect stdout or use -o FILE")
    if inputs.count("-") > 1:
        raise UsageError("stdin (-) can be given only once")
    if "-" in inputs and sys.stdin is not None and sys.stdin.isatty():
        raise UsageError("- reads an image from stdin, but stdin is a terminal; pipe an image in")
    options = UpscaleOptions(
        scale=scale,
        model=model,
        device=parse_device(device),
        dtype=parse_dtype(dtype),
        tile=tile,
        overlap=overlap,
        output=output,
        recursive=recursive,
        format=fmt,
        quality=quality,
        name_template=name,
        overwrite=overwrite,
        skip_existing=skip_existing,
        alpha=alpha,
        max_pixels=max_pixels or None,
    )
    runner = None
    run = upscale_images
    if devices or ray:
        from esc_cli.scale.cli import image_runner, needs_urls

        runner = image_runner(devices, ray, stdio=stdout_image or "-" in inputs)
        if needs_urls([*inputs, output]):
            from esc_cli.scale.remote import upscale_urls as run
    renderer = _Renderer(json_mode=json_mode, quiet=quiet)
    try:
        with sigterm_raises(), renderer:
            kwargs = {} if runner is None else {"runner": runner}
            summary = run(
                inputs, options, on_event=renderer, warn=renderer.note, download_progress=renderer.download, **kwargs
            )
    except KeyboardInterrupt:
        err_console.print("interrupted", highlight=False)
        raise typer.Exit(EXIT_INTERRUPTED) from None
    except Terminated as exc:
        err_console.print("terminated", highlight=False)
        raise typer.Exit(exc.exit_code) from None
    except EscError as exc:
        if json_mode:
            renderer(BatchFinished(0, 0, 0, 0.0, exc.exit_code, error=str(exc)))
        raise
    raise typer.Exit(summary.exit_code)


def register(app: typer.Typer) -> None:
    """Add the `upscale` command to `app`."""
    app.command("upscale", help=HELP, no_args_is_help=True)(upscale)
