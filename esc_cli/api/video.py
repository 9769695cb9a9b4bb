"""`esc video`: streaming, pipelined video upscaling that keeps every stream and survives interruption.

`upscale_video` checks the paths, probes the source, opens the model and engine, plans a
`VideoJob` (`esc_cli.api.video_job`), encodes its segments through the pipeline of
`esc_cli.api.video_pipeline` (or a `segment_runner` from `esc_cli.scale`, one worker per device
or Ray), then joins them with the source's audio, subtitles, attachments, metadata and chapters
(`esc_cli.api.video_join`). With `resume=True` the work folder persists next to the output and
a rerun skips the segments already complete; without it the whole video is one segment in a
temporary folder, removed in every case. It reports through the typed events of
`esc_cli.api.events`: `VideoStarted` to `on_start`, `VideoProgress` to `progress`.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Union

import torch
from torch import nn

from esc_cli.api.events import VideoProgress, VideoStarted
from esc_cli.api.outputs import clean_stale_temps
from esc_cli.api.video_job import (
    NoticeFn,
    VideoJob,
    default_output,
    default_settings,
    model_digest,
    open_workdir,
    prepare_job,
    resume_dir,
)
from esc_cli.api.video_join import join_segments
from esc_cli.api.video_pipeline import FrameProcessor, encode_segment, frame_dtype_for
from esc_cli.engine.rescale import describe_plan, plan_passes
from esc_cli.errors import InputError, OutputError, UsageError, VideoError
from esc_cli.io.atomic import TEMP_MARK, check_output_path, temp_prefix
from esc_cli.io.ffmpeg import video_encoders
from esc_cli.io.probe import VideoInfo, count_packets, probe

ProgressFn = Callable[[VideoProgress], None]
StartFn = Callable[[VideoStarted], None]

CONTAINERS = (".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".nut", ".ts", ".mts")


@dataclass(frozen=True)
class VideoResult:
    """What one `upscale_video` call did."""

    input: Path
    output: Path
    frames: int
    seconds: float
    in_size: tuple[int, int]
    out_size: tuple[int, int]
    fps_in: float
    codec: str
    pix_fmt: str
    device: str
    dtype: str
    tile: Optional[int]
    segments: int
    segments_reused: int
    streams: dict
    notices: tuple[str, ...]


@dataclass
class _Engine:
    """The model and where it runs: a local `Upscaler`, or None when a segment runner's workers run it."""

    network: nn.Module
    upscaler: object
    torch_dtype: Optional[torch.dtype]
    device_name: str
    dtype_name: str


def _version() -> str:
    from esc_cli import __version__

    return __version__


def _checked_paths(source: Union[str, Path], output: Union[str, Path, None], scale: float,
                   overwrite: bool) -> tuple[Path, Path]:
    """The source and output paths, after the checks that need no ffmpeg (scale, existence, container)."""
    source = Path(source)
    if scale < 1:
        raise UsageError(f"--scale {scale}: must be at least 1")
    out = Path(output) if output is not None else default_output(source, scale)
    if not source.is_file():
        raise InputError(f"{source}: no such file")
    check_output_path(out, [source], overwrite=overwrite)
    if out.suffix.lower() not in CONTAINERS:
        raise UsageError(f"{out}: unknown video container; use .mp4, .mkv, .mov or .webm")
    return source, out


def _open_network(network: Optional[nn.Module], model: Optional[str], *, scale: float, device, dtype,
                  say: NoticeFn) -> tuple[nn.Module, Optional[torch.device], Optional[torch.dtype]]:
    """The network (loaded from `model` on the CPU unless given), and the parsed device and dtype."""
    from esc_cli.engine.devices import parse_device, parse_dtype

    torch_dtype = dtype if isinstance(dtype, torch.dtype) else parse_dtype(dtype)
    dev = parse_device(str(device)) if device is not None else None
    if network is None:
        from esc_cli.api.models import open_model

        network = open_model(model, scale=scale, device="cpu", dtype=torch.float32, warn=say)
    return network, dev, torch_dtype


def _open_engine(network: nn.Module, dev: Optional[torch.device], torch_dtype: Optional[torch.dtype], *,
                 tile: Optional[int], overlap: Optional[int], segment_runner) -> _Engine:
    """The local engine, or (with a segment runner) no engine and the device/dtype its workers use."""
    if segment_runner is not None:
        device_name, dtype_name = segment_runner.describe(torch_dtype)
        return _Engine(network, None, torch_dtype, device_name, dtype_name)
    from esc_cli.engine import Upscaler

    upscaler = Upscaler(network, device=dev, dtype=torch_dtype, tile=tile, overlap=overlap)
    device_name = str(getattr(upscaler, "device", dev or "cpu"))
    dtype_name = str(getattr(upscaler, "dtype", torch_dtype or torch.float32)).removeprefix("torch.")
    return _Engine(network, upscaler, torch_dtype, device_name, dtype_name)


def _plan_job(source: Path, output: Path, info: VideoInfo, *, scale: float, model: Optional[str], network: nn.Module,
              codec: Optional[str], crf: Optional[int], preset: Optional[str], pix_fmt: Optional[str], resume: bool,
              segment_seconds: float, segment_runner, say: NoticeFn, device: str = "cpu") -> VideoJob:
    """Encoder settings, sizes and segments for this run; notices for padding, VFR and extra passes."""
    available = video_encoders() if codec is None and str(device).startswith("cuda") else frozenset()
    settings = default_settings(output, info, codec, crf, preset, pix_fmt, device=str(device), available=available,
                                say=say)
    if segment_runner is not None:
        settings = segment_runner.encode_settings(settings)
    segmented = resume or segment_runner is not None
    seg_frames = max(1, round(segment_seconds * float(info.fps))) if segmented else None
    job = prepare_job(source, output, info=info, scale=scale, settings=settings, segment_frames=seg_frames,
                      workdir=resume_dir(output), model_id=f"{model or ''}:{model_digest(network)}")
    if job.enc_size != job.out_size:
        say(f"{settings.pix_fmt} needs even sizes: {job.out_size[0]}x{job.out_size[1]} padded to "
            f"{job.enc_size[0]}x{job.enc_size[1]} (edge pixels repeated)")
    if info.is_vfr:
        say("variable frame rate: every frame keeps its source timestamp")
    model_scale = int(getattr(network, "scale", 1))
    passes = plan_passes(model_scale, scale)
    if model_scale ** passes != scale:
        say(describe_plan(model_scale, scale))
    return job


def _private_workdir(output: Path) -> Path:
    """A fresh temporary work folder next to `output` (runs without `--resume`)."""
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=temp_prefix(output), suffix=f"{TEMP_MARK}.d", dir=output.parent))
    except OSError as exc:
        raise OutputError(f"{output.parent}: cannot write there ({exc.strerror}); choose another output folder") from None


def _check_lost_frames(job: VideoJob, *, strict: bool, say: NoticeFn) -> int:
    """Frames in the encoded segments; a notice (or, with `strict`, a `VideoError`) when the
    decoder lost some of the source's frames. Counting demuxes the segments only."""
    written = sum(count_packets(job.segment_path(k)) for k in range(len(job.segments)))
    expected = max(job.info.packets, job.info.frame_count)
    if written < expected:
        lost = expected - written
        message = (f"{job.info.path}: {lost} of {expected} frames could not be decoded (the file is damaged"
                   f" there); the output has {written}, each at its own time")
        if strict:
            raise VideoError(message + "; --strict refuses it (drop --strict to keep what decodes)")
        say(message + "; pass --strict to refuse such files")
    return written


def _start_event(job: VideoJob, engine: _Engine, processor: FrameProcessor, *, model: Optional[str], scale: float,
                 tile: Optional[int], segments_done: int) -> VideoStarted:
    """The `VideoStarted` event describing this run."""
    info = job.info
    return VideoStarted(
        total=1, model=model or "default", model_scale=int(getattr(engine.network, "scale", 1)), scale=scale,
        passes=processor.passes, device=engine.device_name, dtype=engine.dtype_name, tile=tile, version=_version(),
        input=str(info.path), output=str(job.output), frames=info.frame_count, fps=float(info.fps),
        width=info.width, height=info.height, out_width=job.enc_size[0], out_height=job.enc_size[1],
        codec=job.settings.codec, pix_fmt=job.settings.pix_fmt, segments=len(job.segments),
        segments_done=segments_done, vfr=info.is_vfr,
    )


class _ProgressCounter:
    """Counts upscaled frames and reports `VideoProgress` (throughput counts this run's frames only)."""

    def __init__(self, job: VideoJob, engine: _Engine, done_set: set[int], progress: Optional[ProgressFn]) -> None:
        self.job = job
        self.engine = engine
        self.progress = progress
        self.total = job.info.frame_count
        self.done = self.base = sum(s.count for s in job.segments if s.index in done_set)
        self.t0 = time.perf_counter()
        self.segment = 0

    def __call__(self, n: int) -> None:
        self.done += n
        if self.progress is None:
            return
        elapsed = time.perf_counter() - self.t0
        fps = (self.done - self.base) / elapsed if elapsed > 0 else 0.0
        eta = (self.total - self.done) / fps if fps > 0 else None
        self.progress(VideoProgress(frames_done=self.done, frames_total=self.total, fps=fps, eta_seconds=eta,
                                    segment=self.segment, segments=len(self.job.segments),
                                    device=self.engine.device_name, dtype=self.engine.dtype_name))


def _encode_segments(job: VideoJob, processor: FrameProcessor, engine: _Engine, done_set: set[int],
                     counter: _ProgressCounter, *, segment_runner, scale: float, tile: Optional[int],
                     overlap: Optional[int], batch_frames: int, say: NoticeFn) -> None:
    """Encode every segment not in `done_set`: on the runner's workers, or here one after another."""
    todo = [seg.index for seg in job.segments if seg.index not in done_set]
    if segment_runner is not None:
        segment_runner.run(job, todo, engine.network, scale=scale, dtype=engine.torch_dtype, tile=tile,
                           overlap=overlap, batch_frames=batch_frames, on_frames=counter, notify=say)
        return
    for k in todo:
        counter.segment = k
        encode_segment(job, k, processor, batch_frames=batch_frames, on_frames=counter)


def upscale_video(
    source: Union[str, Path],
    output: Union[str, Path, None] = None,
    *,
    model: Optional[str] = None,
    network: Optional[nn.Module] = None,
    scale: float = 2.0,
    device: Union[str, torch.device, None] = None,
    dtype: Union[str, torch.dtype, None] = None,
    tile: Optional[int] = None,
    overlap: Optional[int] = None,
    batch_frames: Optional[int] = None,
    codec: Optional[str] = None,
    crf: Optional[int] = None,
    preset: Optional[str] = None,
    pix_fmt: Optional[str] = None,
    overwrite: bool = False,
    resume: bool = False,
    segment_seconds: float = 10.0,
    progress: Optional[ProgressFn] = None,
    notice: Optional[NoticeFn] = None,
    on_start: Optional[StartFn] = None,
    segment_runner=None,
    strict: bool = False,
) -> VideoResult:
    """Upscale the video `source` by `scale` into `output`, keeping audio, subtitles and timing.

    `model` is a model reference for `open_model` (or pass a loaded `network`). Frames go
    through the engine (`device`, `dtype`, `tile`, `overlap`); `batch_frames` frames per call.
    The encoder is `codec`/`crf`/`preset`/`pix_fmt` (defaults: H.264 CRF 18 yuv420p, VP9 for
    .webm, 10-bit when the source is). The output is written atomically and an existing one
    needs `overwrite`. With `resume`, segments of `segment_seconds` are kept in a hidden folder
    next to the output so an interrupted run continues where it stopped.
    `segment_runner` (esc_cli.scale: one worker per device, or Ray) encodes the segments
    (of `segment_seconds`, also without `resume`) on its workers, with a pinned encoder
    thread count so the bytes do not depend on which worker encoded which segment.
    `on_start` receives one `VideoStarted` event, `progress` `VideoProgress` events, `notice`
    one-line notes (also returned in `VideoResult.notices`).
    Frames the decoder loses (a damaged file) are counted: a notice says how many, and `strict`
    makes them a `VideoError` before the output is written.
    Raises InputError, OutputError, UsageError, ModelNotFoundError or VideoError.
    """
    t_start = time.perf_counter()
    notices: list[str] = []

    def say(msg: str) -> None:
        notices.append(msg)
        if notice is not None:
            notice(msg)

    source, output = _checked_paths(source, output, scale, overwrite)
    if output.parent.is_dir():
        clean_stale_temps([output.parent], say)
    info = probe(source)
    network, dev, torch_dtype = _open_network(network, model, scale=scale, device=device, dtype=dtype, say=say)
    engine = _open_engine(network, dev, torch_dtype, tile=tile, overlap=overlap, segment_runner=segment_runner)
    job = _plan_job(source, output, info, scale=scale, model=model, network=network, codec=codec, crf=crf,
                    preset=preset, pix_fmt=pix_fmt, resume=resume, segment_seconds=segment_seconds,
                    segment_runner=segment_runner, say=say, device=engine.device_name)
    processor = FrameProcessor(engine.upscaler, model_scale=int(getattr(network, "scale", 1)), scale=scale,
                               in_size=(info.width, info.height), out_size=job.out_size, enc_size=job.enc_size,
                               frame_dtype=frame_dtype_for(job))
    if batch_frames is None:
        batch_frames = 1 if engine.device_name.startswith("cpu") else 4
    if not resume:  # a private temporary work folder next to the output, removed in every case
        job.workdir = _private_workdir(output)
    workdir = job.workdir
    try:
        try:
            reused = open_workdir(job, resume, say)
        except OSError as exc:
            raise OutputError(f"{job.workdir}: cannot write there ({exc.strerror}); choose another output folder") from None
        done_set = set(job.done_segments()) if resume else set()
        if on_start is not None:
            on_start(_start_event(job, engine, processor, model=model, scale=scale, tile=tile,
                                  segments_done=len(done_set)))
        counter = _ProgressCounter(job, engine, done_set, progress)
        _encode_segments(job, processor, engine, done_set, counter, segment_runner=segment_runner, scale=scale,
                         tile=tile, overlap=overlap, batch_frames=batch_frames, say=say)
        written = _check_lost_frames(job, strict=strict, say=say)
        streams = join_segments(job, overwrite=overwrite, notice=say)
    except BaseException:
        if not resume:
            shutil.rmtree(workdir, ignore_errors=True)
        raise
    shutil.rmtree(workdir, ignore_errors=True)
    last_tile = getattr(engine.upscaler, "last_tile", None)
    return VideoResult(
        input=source, output=output, frames=written, seconds=time.perf_counter() - t_start,
        in_size=(info.width, info.height), out_size=job.enc_size, fps_in=float(info.fps),
        codec=job.settings.codec, pix_fmt=job.settings.pix_fmt, device=engine.device_name, dtype=engine.dtype_name,
        tile=last_tile if last_tile is not None else tile, segments=len(job.segments), segments_reused=reused,
        streams=streams, notices=tuple(notices),
    )


__all__ = ["VideoResult", "upscale_video"]
