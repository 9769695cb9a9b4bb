"""`esc video`: parse, validate, call `esc_cli.api.video.upscale_video`, render progress and events.

Exit codes as for `esc upscale`: 0 done, 2 usage error, 3 nothing could be done (bad input,
no model, ffmpeg failure), 130 interrupted (Ctrl-C), 143 terminated (SIGTERM).
`--json` prints one JSON object per line on stdout, the typed events of `esc_cli.api.events`
with the `esc upscale` contract: `start` (VideoStarted), `item_start`, periodic `progress`
(VideoProgress, frames), one `item` (VideoFinished when done, ItemFinished when failed), then
`summary`. Every field is documented in docs/usage.md ("JSON events").
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from esc_cli.cli.console import err_console
from esc_cli.cli.helpfmt import Command
from esc_cli.cli.signals import sigterm_raises
from esc_cli.cli.options import (
    PANEL_IO,
    PANEL_MODEL,
    PANEL_VIDEO,
    DeviceOption,
    DevicesOption,
    DtypeOption,
    JsonOption,
    ModelOption,
    OverlapOption,
    OverwriteOption,
    QuietOption,
    RayOption,
    TileOption,
)
from esc_cli.api.events import (
    BatchFinished,
    Event,
    ItemFinished,
    ItemStarted,
    VideoFinished,
    VideoProgress,
    VideoStarted,
    event_dict,
)
from esc_cli.errors import EXIT_INTERRUPTED, EXIT_OK, EscError, Terminated

if TYPE_CHECKING:
    from esc_cli.api.video import VideoResult


def _emit(event: Event) -> None:
    """Write one typed event as a line of JSON on stdout (fields as documented in docs/usage.md)."""
    sys.stdout.write(json.dumps(event_dict(event), separators=(",", ":")) + "\n")
    sys.stdout.flush()


class _Reporter:
    """Rich progress on a terminal, plain lines otherwise, nothing with -q; JSON events with --json."""

    def __init__(self, *, quiet: bool, as_json: bool, source: Path, output: Optional[Path]) -> None:
        self.quiet = quiet
        self.as_json = as_json
        self.source = source
        self.output = output
        self.started: Optional[VideoStarted] = None
        self.bar = None
        self.task = None
        self._last_json = 0.0
        self._last_line = 0.0

    def start(self, info: VideoStarted) -> None:
        self.started = info
        self.output = Path(info.output)
        if self.as_json:
            _emit(info)
            _emit(ItemStarted(index=1, total=1, input=info.input, output=info.output))
        if self.quiet:
            return
        err_console.print(
            f"{info.input} ({info.width}x{info.height}, {info.frames} frames) -> {info.output} "
            f"({info.out_width}x{info.out_height}, {info.codec} {info.pix_fmt}) on {info.device} {info.dtype}",
            highlight=False,
            soft_wrap=True,
        )
        if err_console.is_terminal:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

            self.bar = Progress(
                TextColumn("frames"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[fps]:.2f} fps"),
                TimeElapsedColumn(),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                console=err_console,
                transient=False,
            )
            self.bar.start()
            self.task = self.bar.add_task("video", total=info.frames, completed=0, fps=0.0)

    def progress(self, p: VideoProgress) -> None:
        now = time.monotonic()
        if self.as_json and (now - self._last_json >= 1.0 or p.frames_done >= p.frames_total):
            self._last_json = now
            eta = None if p.eta_seconds is None else round(p.eta_seconds, 1)
            _emit(dataclasses.replace(p, fps=round(p.fps, 3), eta_seconds=eta))
        if self.quiet:
            return
        if self.bar is not None:
            self.bar.update(self.task, completed=p.frames_done, fps=p.fps)
        elif now - self._last_line >= 5.0 or p.frames_done >= p.frames_total:
            self._last_line = now
            eta = "?" if p.eta_seconds is None else f"{p.eta_seconds:.0f}s"
            err_console.print(f"frames {p.frames_done}/{p.frames_total}  {p.fps:.2f} fps  ETA {eta}", highlight=False)

    def notice(self, msg: str) -> None:
        if self.quiet:
            return
        console = self.bar.console if self.bar is not None else err_console
        console.print(f"[yellow]note:[/] {msg}", highlight=False, soft_wrap=True)

    def finished(self, result: Optional[VideoResult] = None, *, error: Optional[str] = None, seconds: float = 0.0,
                 exit_code: int = 0, interrupted: bool = False) -> None:
        """Emit the `item` and `summary` events (JSON) for the one video."""
        if not self.as_json:
            return
        if result is not None:
            _emit(VideoFinished(
                index=1, total=1, status="done", input=str(result.input), output=str(result.output),
                seconds=round(result.seconds, 3), tile=result.tile, device=result.device, dtype=result.dtype,
                width=result.in_size[0], height=result.in_size[1], out_width=result.out_size[0],
                out_height=result.out_size[1], notes=list(result.notices), frames=result.frames, codec=result.codec,
                pix_fmt=result.pix_fmt, segments=result.segments, segments_reused=result.segments_reused,
                streams=result.streams,
            ))
        else:
            s = self.started
            _emit(ItemFinished(
                index=1, total=1, status="failed", input=str(self.source),
                output=str(self.output) if self.output else None, seconds=round(seconds, 3),
                tile=s.tile if s else None, device=s.device if s else None, dtype=s.dtype if s else None,
                error=error, width=s.width if s else None, height=s.height if s else None,
                out_width=s.out_width if s else None, out_height=s.out_height if s else None,
            ))
        ok = result is not None
        _emit(BatchFinished(done=int(ok), skipped=0, failed=int(not ok), seconds=round(seconds, 3),
                            exit_code=exit_code, interrupted=interrupted, error=error))

    def stop(self) -> None:
        if self.bar is not None:
            self.bar.stop()
            self.bar = None


EXAMPLES = """Examples:

  esc video in.mp4 out.mp4 -s 2            2x, every audio and subtitle stream kept

  esc video film.mkv -s 4 --resume         rerun after Ctrl-C: finished segments are kept

  esc video in.mp4 out.mkv --codec ffv1    lossless output
"""


def register(app: typer.Typer) -> None:
    """Add the `video` command to `app`."""

    @app.command("video", cls=Command, epilog=EXAMPLES)
    def video(
        input: Annotated[Path, typer.Argument(metavar="INPUT", help="Video to upscale (anything ffmpeg reads).", show_default=False)],
        output: Annotated[
            Optional[Path], typer.Argument(metavar="OUTPUT", help="Output video (.mp4, .mkv, .mov, .webm); default INPUT_x{scale}.", show_default=False)
        ] = None,
        scale: Annotated[float, typer.Option("--scale", "-s", min=1.0, metavar="X", rich_help_panel=PANEL_MODEL, help="Upscaling factor (any value >= 1).")] = 2.0,
        model: ModelOption = None,
        device: DeviceOption = "auto",
        dtype: DtypeOption = "auto",
        tile: TileOption = None,
        overlap: OverlapOption = None,
        codec: Annotated[Optional[str], typer.Option("--codec", metavar="NAME", rich_help_panel=PANEL_VIDEO, help="ffmpeg video encoder: libx264 (default; libvpx-vp9 for .webm), libx265, libsvtav1, ffv1, ...")] = None,
        crf: Annotated[Optional[int], typer.Option("--crf", min=0, max=63, metavar="N", rich_help_panel=PANEL_VIDEO, help="Constant quality (lower = better; default 18 for x264/x265).")] = None,
        preset: Annotated[Optional[str], typer.Option("--preset", metavar="NAME", rich_help_panel=PANEL_VIDEO, help="Encoder speed preset (x264/x265: ultrafast..veryslow; default medium).")] = None,
        pix_fmt: Annotated[Optional[str], typer.Option("--pix-fmt", metavar="FORMAT", rich_help_panel=PANEL_VIDEO, help="Output pixel format: yuv420p (default), yuv420p10le (10-bit), yuv444p, ...")] = None,
        batch: Annotated[Optional[int], typer.Option("--batch", min=1, metavar="N", rich_help_panel=PANEL_VIDEO, help="Frames per inference call (default 1 on CPU, 4 on GPU).")] = None,
        resume: Annotated[bool, typer.Option("--resume", rich_help_panel=PANEL_IO, help="Encode in segments kept next to the output; a rerun continues an interrupted job.")] = False,
        segment_seconds: Annotated[float, typer.Option("--segment-seconds", min=0.01, metavar="SECONDS", rich_help_panel=PANEL_VIDEO, help="Segment length for --resume, --devices and --ray.")] = 10.0,
        strict: Annotated[bool, typer.Option("--strict", rich_help_panel=PANEL_IO, help="Fail when the decoder loses frames of a damaged source (default: a notice).")] = False,
        overwrite: OverwriteOption = False,
        json_: JsonOption = False,
        quiet: QuietOption = False,
        devices: DevicesOption = None,
        ray: RayOption = None,
    ) -> int:
        """Upscale a video: every audio and subtitle stream kept, timing kept, atomic output, resumable."""
        from esc_cli.api.video import upscale_video
        from esc_cli.engine.memory import retain_freed_memory

        retain_freed_memory()  # one job per process: keep freed feature maps (esc_cli/engine/memory.py)

        kwargs = {}
        if devices or ray:
            from esc_cli.scale.cli import segment_runner

            kwargs["segment_runner"] = segment_runner(devices, ray, paths=[str(input), str(output or "")])
        reporter = _Reporter(quiet=quiet, as_json=json_, source=input, output=output)
        t0 = time.perf_counter()
        try:
            with sigterm_raises():
                try:
                    result = upscale_video(
                        input, output, model=model, scale=scale, device=device, dtype=dtype, tile=tile, overlap=overlap,
                        batch_frames=batch, codec=codec, crf=crf, preset=preset, pix_fmt=pix_fmt, overwrite=overwrite,
                        resume=resume, segment_seconds=segment_seconds, strict=strict, progress=reporter.progress,
                        notice=reporter.notice, on_start=reporter.start, **kwargs,
                    )
                finally:
                    reporter.stop()
        except KeyboardInterrupt:
            reporter.finished(error="interrupted", seconds=time.perf_counter() - t0, exit_code=EXIT_INTERRUPTED,
                              interrupted=True)
            err_console.print("interrupted", highlight=False)
            raise typer.Exit(EXIT_INTERRUPTED) from None
        except Terminated as exc:
            reporter.finished(error="terminated", seconds=time.perf_counter() - t0, exit_code=exc.exit_code,
                              interrupted=True)
            err_console.print("terminated", highlight=False)
            raise typer.Exit(exc.exit_code) from None
        except EscError as exc:
            reporter.finished(error=str(exc), seconds=time.perf_counter() - t0, exit_code=exc.exit_code)
            raise
        reporter.finished(result, seconds=time.perf_counter() - t0, exit_code=EXIT_OK)
        if not quiet:
            fps = result.frames / result.seconds if result.seconds > 0 else 0.0
            err_console.print(
                f"[green]done:[/] {result.output} ({result.frames} frames, {result.out_size[0]}x{result.out_size[1]}, "
                f"{result.seconds:.1f} s, {fps:.2f} fps)",
                highlight=False,
                soft_wrap=True,
            )
        return EXIT_OK
