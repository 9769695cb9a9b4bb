"""`esc video`: parse, validate, call `esc_cli.api.video.upscale_video`, render progress and events.

Exit codes as for `esc upscale`: 0 done, 2 usage error, 3 nothing could be done (bad input,
no model, ffmpeg failure), 130 interrupted (Ctrl-C), 143 terminated (SIGTERM).
`--json` prints one JSON object per line on stdout: `start`, periodic `progress`, then `done`
or `failed`, then `summary`.
"""

from __future__ import annotations

import contextlib
import json
import signal
import sys
import time
from pathlib import Path
from typing import Annotated, Iterator, Optional

import typer

from esc_cli.cli.console import err_console
from esc_cli.cli.options import (
    DeviceOption,
    DtypeOption,
    JsonOption,
    ModelOption,
    OverlapOption,
    OverwriteOption,
    QuietOption,
    TileOption,
)
from esc_cli.errors import EXIT_INTERRUPTED, EXIT_TERMINATED, EscError


class _Terminated(BaseException):
    """Raised in the main thread by the SIGTERM handler so cleanup runs."""


@contextlib.contextmanager
def _sigterm_raises() -> Iterator[None]:
    def handler(signum, frame):  # noqa: ARG001
        raise _Terminated()

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread (e.g. some test runners)
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _emit(event: dict) -> None:
    sys.stdout.write(json.dumps(event, separators=(",", ":")) + "\n")
    sys.stdout.flush()


class _Reporter:
    """Rich progress on a terminal, plain lines otherwise, nothing with -q; JSON progress events."""

    def __init__(self, *, quiet: bool, as_json: bool) -> None:
        self.quiet = quiet
        self.as_json = as_json
        self.bar = None
        self.task = None
        self._last_json = 0.0
        self._last_line = 0.0

    def start(self, info: dict) -> None:
        if self.as_json:
            _emit({"event": "start", "command": "video", **info})
        if self.quiet:
            return
        err_console.print(
            f"{info['input']} ({info['width']}x{info['height']}, {info['frames']} frames) -> {info['output']} "
            f"({info['out_width']}x{info['out_height']}, {info['codec']} {info['pix_fmt']}) on {info['device']} {info['dtype']}",
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
            self.task = self.bar.add_task("video", total=info["frames"], completed=info.get("frames_done", 0), fps=0.0)

    def progress(self, p) -> None:
        now = time.monotonic()
        if self.as_json and (now - self._last_json >= 1.0 or p.frames_done >= p.frames_total):
            self._last_json = now
            _emit({"event": "progress", "frames_done": p.frames_done, "frames_total": p.frames_total,
                   "fps": round(p.fps, 3), "eta_seconds": None if p.eta_seconds is None else round(p.eta_seconds, 1),
                   "segment": p.segment, "segments": p.segments})
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
        (self.bar.console if self.bar is not None else err_console).print(f"[yellow]note:[/] {msg}", highlight=False, soft_wrap=True)

    def stop(self) -> None:
        if self.bar is not None:
            self.bar.stop()
            self.bar = None


def register(app: typer.Typer) -> None:
    """Add the `video` command to `app`."""

    @app.command("video")
    def video(
        input: Annotated[Path, typer.Argument(help="Video to upscale (anything ffmpeg reads).", show_default=False)],
        output: Annotated[
            Optional[Path], typer.Argument(help="Output video (.mp4, .mkv, .mov, .webm); default INPUT_x{scale}.", show_default=False)
        ] = None,
        scale: Annotated[float, typer.Option("--scale", "-s", min=1.0, help="Upscaling factor (any value >= 1).")] = 2.0,
        model: ModelOption = None,
        device: DeviceOption = "auto",
        dtype: DtypeOption = "auto",
        tile: TileOption = None,
        overlap: OverlapOption = None,
        codec: Annotated[Optional[str], typer.Option("--codec", help="ffmpeg video encoder: libx264 (default; libvpx-vp9 for .webm), libx265, libsvtav1, ffv1, ...")] = None,
        crf: Annotated[Optional[int], typer.Option("--crf", min=0, max=63, help="Constant quality (lower = better; default 18 for x264/x265).")] = None,
        preset: Annotated[Optional[str], typer.Option("--preset", help="Encoder speed preset (x264/x265: ultrafast..veryslow; default medium).")] = None,
        pix_fmt: Annotated[Optional[str], typer.Option("--pix-fmt", help="Output pixel format: yuv420p (default), yuv420p10le (10-bit), yuv444p, ...")] = None,
        batch: Annotated[Optional[int], typer.Option("--batch", min=1, help="Frames per inference call (default 1 on CPU, 4 on GPU).")] = None,
        resume: Annotated[bool, typer.Option("--resume", help="Encode in segments kept next to the output; a rerun continues an interrupted job.")] = False,
        segment_seconds: Annotated[float, typer.Option("--segment-seconds", min=0.01, help="Segment length for --resume.")] = 10.0,
        overwrite: OverwriteOption = False,
        json_: JsonOption = False,
        quiet: QuietOption = False,
    ) -> int:
        """Upscale a video: every audio and subtitle stream kept, timing kept, atomic output, resumable."""
        from esc_cli.api.video import upscale_video

        reporter = _Reporter(quiet=quiet, as_json=json_)
        t0 = time.perf_counter()
        target = output
        failed_error: Optional[str] = None
        try:
            with _sigterm_raises():
                result = upscale_video(
                    input, output, model=model, scale=scale, device=device, dtype=dtype, tile=tile, overlap=overlap,
                    batch_frames=batch, codec=codec, crf=crf, preset=preset, pix_fmt=pix_fmt, overwrite=overwrite,
                    resume=resume, segment_seconds=segment_seconds, progress=reporter.progress, notice=reporter.notice,
                    on_start=reporter.start,
                )
        except EscError as exc:
            failed_error = str(exc)
            raise
        except KeyboardInterrupt:
            failed_error = "interrupted"
            raise
        except _Terminated:
            failed_error = "terminated"
            reporter.stop()
            if not quiet:
                err_console.print("terminated", highlight=False)
            raise typer.Exit(EXIT_TERMINATED) from None
        finally:
            reporter.stop()
            if failed_error is not None and json_:
                _emit({"event": "failed", "input": str(input), "output": str(target) if target else None,
                       "error": failed_error, "seconds": round(time.perf_counter() - t0, 3)})
                _emit({"event": "summary", "done": 0, "failed": 1, "skipped": 0,
                       "seconds": round(time.perf_counter() - t0, 3),
                       **({"interrupted": True} if failed_error in ("interrupted", "terminated") else {})})
        if json_:
            _emit({"event": "done", "input": str(result.input), "output": str(result.output), "seconds": round(result.seconds, 3),
                   "frames": result.frames, "width": result.out_size[0], "height": result.out_size[1], "codec": result.codec,
                   "pix_fmt": result.pix_fmt, "tile": result.tile, "device": result.device, "dtype": result.dtype,
                   "segments": result.segments, "segments_reused": result.segments_reused, "streams": result.streams,
                   "notices": list(result.notices)})
            _emit({"event": "summary", "done": 1, "failed": 0, "skipped": 0, "seconds": round(time.perf_counter() - t0, 3)})
        if not quiet:
            fps = result.frames / result.seconds if result.seconds > 0 else 0.0
            err_console.print(
                f"[green]done:[/] {result.output} ({result.frames} frames, {result.out_size[0]}x{result.out_size[1]}, "
                f"{result.seconds:.1f} s, {fps:.2f} fps)",
                highlight=False,
                soft_wrap=True,
            )
        return 0

    _ = EXIT_INTERRUPTED  # documented: Ctrl-C exits 130 through cli.app.main
