"""`esc upscale`: parse and validate options, call `esc_cli.api.images`, render events (`cli/render.py`).

Human messages and progress go to stderr; stdout carries only `--json` events (one object per line) or the
image itself (`-o -`). Exit codes (docs/usage.md): 0 all done, 1 some failed, 2 usage error, 3 nothing
processed, 130 interrupted (Ctrl-C), 143 terminated (SIGTERM). torch is imported only once the command runs.
"""

from __future__ import annotations

import sys
from typing import Annotated, Optional

import typer

from esc_cli.api.events import BatchFinished
from esc_cli.api.options import DEFAULT_TEMPLATE
from esc_cli.cli.console import err_console
from esc_cli.cli.helpfmt import Command
from esc_cli.cli.options import (
    PANEL_IO,
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
from esc_cli.cli.render import BatchRenderer
from esc_cli.cli.signals import sigterm_raises
from esc_cli.errors import EXIT_INTERRUPTED, EscError, Terminated, UsageError
from esc_cli.io.images import DEFAULT_MAX_PIXELS, DEFAULT_PNG_LEVEL

HELP = """Upscale images, folders, globs or stdin (-) with ESC.

Outputs go next to each input as NAME_x4.EXT unless -o names a file, a folder or - (stdout).
Without --model, a bundled model (x2, x3, x4) or the official one for the scale is used.

Exit codes: 0 all done, 1 some failed, 2 usage error, 3 nothing processed, 130 interrupted.
"""

EXAMPLES = """Examples:

  esc upscale photo.png -s 4               photo_x4.png next to it

  esc upscale shots/ -r -o big/ --json     a folder tree, JSON events on stdout

  esc upscale '*.jpg' --skip-existing      rerun a batch: finished items are skipped

  cat in.png | esc upscale - -o - > out.png
"""


def upscale(
    inputs: Annotated[
        list[str],
        typer.Argument(metavar="INPUT...", help="Image files, folders, glob patterns, or - for stdin.", show_default=False),
    ],
    output: Annotated[
        Optional[str],
        typer.Option("--output", "-o", metavar="PATH", rich_help_panel=PANEL_IO,
                     help="Output file, folder (mirrors input folders), or - for stdout."),
    ] = None,  # fmt: skip
    scale: ScaleOption = 4.0,
    model: ModelOption = None,
    recursive: Annotated[
        bool, typer.Option("--recursive", "-r", rich_help_panel=PANEL_IO, help="Descend into sub-folders (the output mirrors the tree).")
    ] = False,
    fmt: Annotated[
        Optional[str],
        typer.Option("--format", "-f", metavar="FORMAT", rich_help_panel=PANEL_IO,
                     help="Output format: png, jpg, webp or tiff (default: the input's)."),
    ] = None,  # fmt: skip
    quality: Annotated[
        Optional[int],
        typer.Option("--quality", min=1, max=100, metavar="N", rich_help_panel=PANEL_IO,
                     help="JPEG/WebP quality (default 95/90; WebP 100 = lossless)."),
    ] = None,  # fmt: skip
    png_level: Annotated[
        int,
        typer.Option("--png-level", min=0, max=9, metavar="N", rich_help_panel=PANEL_IO,
                     help="PNG compression 0-9: 4 is 2.5x faster than 6 for 3.6 % more bytes (docs/engine.md)."),
    ] = DEFAULT_PNG_LEVEL,  # fmt: skip
    name: Annotated[
        str,
        typer.Option("--name", metavar="TEMPLATE", rich_help_panel=PANEL_IO,
                     help="Output file name template: {stem} {name} {ext} {suffix} {scale}."),
    ] = DEFAULT_TEMPLATE,  # fmt: skip
    overwrite: OverwriteOption = False,
    skip_existing: Annotated[
        bool, typer.Option("--skip-existing", rich_help_panel=PANEL_IO, help="Skip inputs whose output exists (resume).")
    ] = False,
    alpha: Annotated[
        str, typer.Option("--alpha", metavar="MODE", rich_help_panel=PANEL_IO, help="Alpha channel: model (upscale it) or resize.")
    ] = "model",
    max_pixels: Annotated[
        int,
        typer.Option("--max-pixels", min=0, metavar="N", rich_help_panel=PANEL_IO,
                     help="Refuse inputs with more pixels (bomb guard); 0 = no limit."),
    ] = DEFAULT_MAX_PIXELS,  # fmt: skip
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
    from esc_cli.api.images import upscale_images
    from esc_cli.api.options import UpscaleOptions
    from esc_cli.engine.devices import parse_device, parse_dtype
    from esc_cli.engine.memory import retain_freed_memory

    # The CLI is one job per process: keep freed feature maps for the next tile instead of
    # page-faulting them in again (up to 1.4x faster on CPU; esc_cli/engine/memory.py).
    retain_freed_memory()

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
        png_level=png_level,
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
    renderer = BatchRenderer(json_mode=json_mode, quiet=quiet)
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
    app.command("upscale", cls=Command, help=HELP, epilog=EXAMPLES, no_args_is_help=True)(upscale)
