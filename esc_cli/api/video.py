"""`esc video`: streaming, pipelined video upscaling that keeps every stream and survives interruption.

Pipeline (per segment): a decode thread (ffmpeg -> raw RGB -> `[3, H, W]` float tensors) feeds a
bounded queue; the calling thread batches frames through the engine (and, when `scale` is not
the model's, more passes and an antialiased bicubic resample); an encode thread converts the
results back to integers and streams them into an ffmpeg encoder. Queues hold a few frames, so
memory does not grow with the video's length. Decoding and encoding overlap inference.

Segments: frames `[start, end)` of the source are encoded to `workdir/seg-NNNNN.nut` (video only,
written to a partial file and renamed when complete). `encode_segment(job, k, ...)` does one and
needs nothing from the others, so segments can run on different workers; `join_segments` concats
them (`-c copy`, exact durations) and muxes the source's audio, subtitles, attachments, metadata
and chapters in. With `resume=True` the work folder persists next to the output and a rerun skips
the segments already complete; without it the whole video is one segment in a temporary folder.

Timing: every frame keeps the presentation timestamp of its source frame (see esc_cli.io.video:
frames travel to the encoder in a Matroska pipe with per-frame timestamps, and the encoder uses
the source's time base). Constant and variable frame rates are both preserved.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import queue
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from esc_cli.engine.rescale import plan_passes, resample
from esc_cli.errors import InputError, OutputError, UsageError, VideoError
from esc_cli.io.atomic import atomic_output, check_output_path
from esc_cli.io.video import (
    EncodeSettings,
    FrameReader,
    FrameWriter,
    VideoInfo,
    concat_list,
    mux,
    needs_even,
    probe,
    remove_quietly,
)

NoticeFn = Callable[[str], None]

JOB_VERSION = 1
_END = object()


# --------------------------------------------------------------------------- options and plan


@dataclass(frozen=True)
class VideoProgress:
    """Progress of a whole video: frames done of total, throughput and estimate."""

    frames_done: int
    frames_total: int
    fps: float
    eta_seconds: Optional[float]
    segment: int
    segments: int
    segments_done: int


ProgressFn = Callable[[VideoProgress], None]


@dataclass(frozen=True)
class Segment:
    """Frames `[start, end)` of the source, encoded to one file."""

    index: int
    start: int
    end: int

    @property
    def count(self) -> int:
        return self.end - self.start


@dataclass
class VideoJob:
    """Everything needed to encode any segment of one video and to join them.

    `out_size` is the upscaled frame size `(W, H)`; `enc_size` is that size padded to even
    dimensions when the pixel format needs it.
    """

    info: VideoInfo
    output: Path
    workdir: Path
    segments: list[Segment]
    out_size: tuple[int, int]
    enc_size: tuple[int, int]
    settings: EncodeSettings
    fingerprint: dict = field(default_factory=dict)

    def segment_path(self, k: int) -> Path:
        return self.workdir / f"seg-{k:05d}.nut"

    def done_segments(self) -> list[int]:
        return [s.index for s in self.segments if self.segment_path(s.index).is_file()]

    def color_args(self) -> list[str]:
        return color_args(self.info)


def default_output(source: Path, scale: float) -> Path:
    """`clip.mp4` at scale 2 -> `clip_x2.mp4` next to it."""
    return source.with_name(f"{source.stem}_x{scale:g}{source.suffix or '.mkv'}")


def default_settings(output: Path, info: VideoInfo, codec: Optional[str], crf: Optional[int],
                     preset: Optional[str], pix_fmt: Optional[str]) -> EncodeSettings:
    """Encoder choice: H.264 (VP9 for .webm), CRF 18 (32 for VP9), 10-bit when the source is."""
    webm = output.suffix.lower() == ".webm"
    codec = codec or ("libvpx-vp9" if webm else "libx264")
    if crf is None:
        crf = 32 if codec in ("libvpx-vp9", "libaom-av1") else 30 if codec == "libsvtav1" else 18
    if preset is None:
        preset = "medium" if codec in ("libx264", "libx264rgb", "libx265") else None
    if pix_fmt is None:
        if codec in ("ffv1",):
            pix_fmt = "yuv444p10le" if info.bit_depth > 8 else "yuv444p"
        elif codec == "libx264rgb":
            pix_fmt = "rgb24"
        else:
            pix_fmt = "yuv420p10le" if info.bit_depth > 8 else "yuv420p"
    return EncodeSettings(codec=codec, crf=crf, preset=preset, pix_fmt=pix_fmt)


def plan_segments(frame_count: int, segment_frames: Optional[int]) -> list[Segment]:
    """Split `frame_count` frames into segments of `segment_frames` (None or 0: one segment)."""
    if not segment_frames or segment_frames >= frame_count:
        return [Segment(0, 0, frame_count)]
    return [Segment(k, s, min(s + segment_frames, frame_count)) for k, s in enumerate(range(0, frame_count, segment_frames))]


def output_size(width: int, height: int, scale: float) -> tuple[int, int]:
    """Upscaled size `(W, H)` for `scale`: rounded, at least 1."""
    return max(1, round(width * scale)), max(1, round(height * scale))


_TRC_FOR = {"bt709": "bt709", "smpte170m": "smpte170m", "bt470bg": "gamma28", "smpte240m": "smpte240m",
            "bt2020nc": "bt2020-10", "bt2020c": "bt2020-10"}
_PRIMARIES_FOR = {"bt709": "bt709", "smpte170m": "smpte170m", "bt470bg": "bt470bg", "smpte240m": "smpte240m",
                  "bt2020nc": "bt2020", "bt2020c": "bt2020"}


def color_args(info: VideoInfo) -> list[str]:
    """Encoder options that tag the output with the source's colour description (when it has one)."""
    space = info.color_space
    if not space or space in ("unknown", "reserved", "gbr", "rgb"):
        return []
    args = ["-colorspace", space]
    prim = info.color_primaries if info.color_primaries and info.color_primaries != space else _PRIMARIES_FOR.get(space)
    trc = info.color_trc if info.color_trc and info.color_trc != space else _TRC_FOR.get(space)
    if prim and prim != "unknown":
        args += ["-color_primaries", prim]
    if trc and trc != "unknown":
        args += ["-color_trc", trc]
    if info.color_range in ("tv", "pc"):
        args += ["-color_range", info.color_range]
    return args


# --------------------------------------------------------------------------- frames


class FrameProcessor:
    """Upscales a batch `[N, 3, H, W]` float `[0, 1]` to `[N, 3, eh, ew]` float `[0, 1]` (host).

    Runs the engine `passes` times, resamples to `out_size` with antialiased bicubic when the
    model's scale does not land on it, then pads to `enc_size` by repeating the last row/column.
    """

    def __init__(self, upscaler, *, model_scale: int, scale: float, in_size: tuple[int, int],
                 out_size: tuple[int, int], enc_size: tuple[int, int]) -> None:
        self.upscaler = upscaler
        self.passes = plan_passes(model_scale, scale)
        self.out_size = out_size
        self.enc_size = enc_size
        self._batch = getattr(upscaler, "upscale_batch", None)

    def _once(self, x: Tensor) -> Tensor:
        if self._batch is not None:
            return self._batch(x)
        return torch.stack([self.upscaler.upscale(img) for img in x])

    def __call__(self, batch: Tensor) -> Tensor:
        x = batch
        for _ in range(self.passes):
            x = self._once(x)
        ow, oh = self.out_size
        x = resample(x, (oh, ow))
        ew, eh = self.enc_size
        if (ew, eh) != (ow, oh):
            x = F.pad(x, (0, ew - ow, 0, eh - oh), mode="replicate")
        return x


def processor_for(job: "VideoJob", upscaler, *, scale: float) -> FrameProcessor:
    """The `FrameProcessor` that turns `job`'s source frames into its encoded frame size."""
    return FrameProcessor(upscaler, model_scale=int(upscaler.scale), scale=scale,
                          in_size=(job.info.width, job.info.height), out_size=job.out_size, enc_size=job.enc_size)


def to_tensor(frame: np.ndarray) -> Tensor:
    """`[H, W, 3]` uint8/uint16 RGB -> `[3, H, W]` float32 in `[0, 1]`."""
    peak = 255.0 if frame.dtype == np.uint8 else 65535.0
    if frame.dtype == np.uint8:
        t = torch.from_numpy(np.array(frame, copy=True)).permute(2, 0, 1).float()
    else:
        t = torch.from_numpy(frame.astype(np.float32)).permute(2, 0, 1)
    return t.mul_(1.0 / peak).contiguous()


def to_array(image: Tensor, dtype: np.dtype) -> np.ndarray:
    """`[3, H, W]` float in `[0, 1]` -> `[H, W, 3]` uint8 or uint16 (rounded, clamped)."""
    if dtype == np.uint8:
        return image.clamp(0, 1).mul(255).round_().to(torch.uint8).permute(1, 2, 0).contiguous().numpy()
    arr = image.clamp(0, 1).mul(65535).round_().to(torch.int32).permute(1, 2, 0).contiguous().numpy()
    return arr.astype(dtype)


# --------------------------------------------------------------------------- one segment


def _put(q: "queue.Queue", item, stop: threading.Event) -> bool:
    while not stop.is_set():
        try:
            q.put(item, timeout=0.1)
            return True
        except queue.Full:
            continue
    return False


def _get(q: "queue.Queue", stop: threading.Event, errors: list):
    while True:
        if errors:
            raise errors[0]
        try:
            return q.get(timeout=0.1)
        except queue.Empty:
            if stop.is_set():
                raise errors[0] if errors else VideoError("pipeline stopped")


def encode_segment(
    job: VideoJob,
    k: int,
    processor: Callable[[Tensor], Tensor],
    *,
    batch_frames: int = 1,
    queue_frames: int = 4,
    on_frames: Optional[Callable[[int], None]] = None,
) -> Path:
    """Decode, upscale and encode segment `k` of `job` to `job.segment_path(k)`; return that path.

    Runs three stages concurrently (decode thread, inference in the calling thread, encode
    thread) joined by queues of `queue_frames` frames. The file appears only when complete
    (partial file + rename); on any error or interruption ffmpeg is killed, the partial file
    deleted and the exception re-raised. `on_frames(n)` is called as frames are upscaled.
    """
    seg = job.segments[k]
    info = job.info
    final = job.segment_path(k)
    partial = job.workdir / f".seg-{k:05d}.partial"
    last = k == len(job.segments) - 1
    stop = threading.Event()
    errors: list[BaseException] = []
    q_in: queue.Queue = queue.Queue(maxsize=max(2, queue_frames))
    q_out: queue.Queue = queue.Queue(maxsize=max(2, queue_frames))
    tb = info.time_base
    ew, eh = job.enc_size
    nominal_ns = int(round(1e9 / float(info.fps))) if info.fps > 0 else 40_000_000
    base_tick = info.tick(seg.start)
    counts = {"decoded": 0, "encoded": 0}
    reader_box: list[FrameReader] = []
    writer_box: list[FrameWriter] = []

    def ns(tick: int) -> int:
        return int(round((tick - base_tick) * tb * 1_000_000_000))

    def decode() -> None:
        try:
            reader = FrameReader(info, start=seg.start, count=None if last else seg.count)
            reader_box.append(reader)
            while not stop.is_set():
                frame = reader.read()
                if frame is None:
                    break
                counts["decoded"] += 1
                if not _put(q_in, to_tensor(frame), stop):
                    return
            _put(q_in, _END, stop)
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread
            errors.append(exc)
            stop.set()

    def encode() -> None:
        try:
            writer = FrameWriter(partial, width=ew, height=eh, settings=job.settings, time_base=tb,
                                 frame_rate=info.fps, default_duration_ns=nominal_ns, fmt="nut",
                                 color_args=job.color_args(), sar=info.sar)
            writer_box.append(writer)
            i = seg.start
            while True:
                item = _get(q_out, stop, errors)
                if item is _END:
                    break
                t0, t1 = info.tick(i), info.tick(i + 1)
                writer.write(to_array(item, writer.dtype), ns(t0), max(1, ns(t1) - ns(t0)))
                counts["encoded"] += 1
                i += 1
            writer.close()
        except BaseException as exc:  # noqa: BLE001
            if not errors:
                errors.append(exc)
            stop.set()

    job.workdir.mkdir(parents=True, exist_ok=True)
    remove_quietly(partial)
    threads = [threading.Thread(target=decode, name=f"esc-decode-{k}", daemon=True),
               threading.Thread(target=encode, name=f"esc-encode-{k}", daemon=True)]
    for t in threads:
        t.start()
    try:
        finished = False
        while not finished:
            batch: list[Tensor] = []
            while len(batch) < batch_frames:
                item = _get(q_in, stop, errors)
                if item is _END:
                    finished = True
                    break
                batch.append(item)
            if batch:
                out = processor(torch.stack(batch))
                for img in out:
                    if not _put(q_out, img, stop):
                        raise errors[0] if errors else VideoError("pipeline stopped")
                if on_frames is not None:
                    on_frames(len(batch))
        if not _put(q_out, _END, stop):
            raise errors[0] if errors else VideoError("pipeline stopped")
        while threads[1].is_alive():
            threads[1].join(timeout=0.1)
        if errors:
            raise errors[0]
        expected = seg.count
        if counts["encoded"] != counts["decoded"] or (not last and counts["encoded"] != expected) or counts["encoded"] == 0:
            raise VideoError(
                f"{info.path}: segment {k} decoded {counts['decoded']} frames and encoded {counts['encoded']}, "
                f"expected {expected}; the file may be damaged"
            )
        os.replace(partial, final)
        return final
    except BaseException:
        stop.set()
        for w in writer_box:
            w.abort()
        for r in reader_box:
            r.close()
        for t in threads:
            t.join(timeout=5)
        remove_quietly(partial)
        raise
    finally:
        for r in reader_box:
            r.close()


# --------------------------------------------------------------------------- join


def join_segments(job: VideoJob, *, overwrite: bool = False, notice: Optional[NoticeFn] = None) -> dict:
    """Concatenate every segment (stream copy) and mux the source's other streams into `job.output`.

    Writes atomically (temp file next to the output, renamed when ffmpeg exits 0). Returns the
    stream summary of `esc_cli.io.video.mux`.
    """
    info = job.info
    paths = [job.segment_path(s.index) for s in job.segments]
    missing = [p.name for p in paths if not p.is_file()]
    if missing:
        raise VideoError(f"{job.output}: cannot join, segments missing: {', '.join(missing)}")
    if len(paths) == 1:
        video_args = ["-i", str(paths[0])]
    else:
        durations = [float((info.tick(s.end) - info.tick(s.start)) * info.time_base) for s in job.segments]
        video_args = concat_list(paths, durations, job.workdir / "segments.ffconcat")
    offset = float(info.timestamps[0] * info.time_base) - info.start_time
    with atomic_output(job.output, [info.path], overwrite=overwrite) as tmp:
        streams = mux(video_args, info, tmp, video_offset=offset if abs(offset) > 1e-6 else 0.0, notice=notice)
        _default_mode(tmp)
    return streams


def _default_mode(path: Path) -> None:
    """Give a temp file (created 0600) the mode a new file would get under the current umask."""
    mask = os.umask(0)
    os.umask(mask)
    with contextlib.suppress(OSError):
        os.chmod(path, 0o666 & ~mask)


# --------------------------------------------------------------------------- whole video


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


def _version() -> str:
    from esc_cli import __version__

    return __version__


def _model_digest(network: nn.Module) -> str:
    h = hashlib.sha256()
    for name, tensor in sorted(network.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def _source_id(path: Path) -> dict:
    st = path.stat()
    return {"path": str(path.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def resume_dir(output: Path) -> Path:
    """Where `--resume` keeps finished segments: a hidden folder next to the output."""
    return output.parent / f".{output.name}.esc-resume"


def prepare_job(
    source: Path,
    output: Path,
    *,
    info: VideoInfo,
    scale: float,
    settings: EncodeSettings,
    segment_frames: Optional[int],
    workdir: Path,
    model_id: str = "",
) -> VideoJob:
    """Plan sizes and segments for upscaling `source` to `output` (no work is done)."""
    out_w, out_h = output_size(info.width, info.height, scale)
    even_w, even_h = needs_even(settings.pix_fmt)
    enc_w = out_w + (out_w % 2 if even_w else 0)
    enc_h = out_h + (out_h % 2 if even_h else 0)
    segments = plan_segments(info.frame_count, segment_frames)
    fingerprint = {
        "version": JOB_VERSION,
        "source": _source_id(source),
        "frames": info.frame_count,
        "scale": scale,
        "model": model_id,
        "encode": [settings.codec, settings.crf, settings.preset, settings.pix_fmt, list(settings.extra)],
        "segments": [[s.start, s.end] for s in segments],
        "size": [enc_w, enc_h],
    }
    return VideoJob(info, output, workdir, segments, (out_w, out_h), (enc_w, enc_h), settings, fingerprint)


def _open_workdir(job: VideoJob, resume: bool, say: NoticeFn) -> int:
    """Create the work folder; with `resume`, keep segments of a matching earlier run. Returns segments reused."""
    if not resume:
        job.workdir.mkdir(parents=True, exist_ok=True)
        return 0
    meta = job.workdir / "job.json"
    if meta.is_file():
        try:
            old = json.loads(meta.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            old = None
        if old == job.fingerprint:
            reused = len(job.done_segments())
            if reused:
                say(f"resuming: {reused} of {len(job.segments)} segments already done")
            return reused
        say(f"{job.workdir}: left by a different job (source, model or options changed); starting over")
        shutil.rmtree(job.workdir, ignore_errors=True)
    job.workdir.mkdir(parents=True, exist_ok=True)
    tmp = job.workdir / ".job.json.partial"
    tmp.write_text(json.dumps(job.fingerprint, indent=1), encoding="utf-8")
    os.replace(tmp, meta)
    return 0


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
    on_start: Optional[Callable[[dict], None]] = None,
    segment_runner=None,
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
    Raises InputError, OutputError, UsageError, ModelNotFoundError or VideoError.
    """
    t_start = time.perf_counter()
    notices: list[str] = []

    def say(msg: str) -> None:
        notices.append(msg)
        if notice is not None:
            notice(msg)

    source = Path(source)
    if scale < 1:
        raise UsageError(f"--scale {scale}: must be at least 1")
    output = Path(output) if output is not None else default_output(source, scale)
    if not source.is_file():
        raise InputError(f"{source}: no such file")
    check_output_path(output, [source], overwrite=overwrite)
    if output.suffix.lower() not in (".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".nut", ".ts", ".mts"):
        raise UsageError(f"{output}: unknown video container; use .mp4, .mkv, .mov or .webm")
    info = probe(source)
    from esc_cli.engine.devices import parse_device, parse_dtype

    torch_dtype = dtype if isinstance(dtype, torch.dtype) else parse_dtype(dtype)
    dev = parse_device(str(device)) if device is not None else None
    if network is None:
        from esc_cli.api.models import open_model

        network = open_model(model, scale=scale, device="cpu", dtype=torch.float32, warn=say)
    from esc_cli.engine import Upscaler

    if segment_runner is None:
        upscaler = Upscaler(network, device=dev, dtype=torch_dtype, tile=tile, overlap=overlap)
    else:
        upscaler = None
    model_scale = int(getattr(network, "scale", 1))
    settings = default_settings(output, info, codec, crf, preset, pix_fmt)
    if segment_runner is not None:
        settings = segment_runner.encode_settings(settings)
    seg_frames = max(1, round(segment_seconds * float(info.fps))) if resume or segment_runner is not None else None
    model_id = f"{model or ''}:{_model_digest(network)}"
    job = prepare_job(source, output, info=info, scale=scale, settings=settings, segment_frames=seg_frames,
                      workdir=resume_dir(output), model_id=model_id)
    if job.enc_size != job.out_size:
        say(f"{settings.pix_fmt} needs even sizes: {job.out_size[0]}x{job.out_size[1]} padded to "
            f"{job.enc_size[0]}x{job.enc_size[1]} (edge pixels repeated)")
    if info.is_vfr:
        say("variable frame rate: every frame keeps its source timestamp")
    passes = plan_passes(model_scale, scale)
    if model_scale ** passes != scale:
        say(f"model is x{model_scale}; -s {scale:g} runs it {passes}x and resamples (antialiased bicubic)")
    processor = FrameProcessor(upscaler, model_scale=model_scale, scale=scale, in_size=(info.width, info.height),
                               out_size=job.out_size, enc_size=job.enc_size)
    if segment_runner is None:
        device_name = str(getattr(upscaler, "device", dev or "cpu"))
        dtype_name = str(getattr(upscaler, "dtype", torch_dtype or torch.float32)).removeprefix("torch.")
    else:
        device_name, dtype_name = segment_runner.describe(torch_dtype)
    if batch_frames is None:
        batch_frames = 1 if device_name.startswith("cpu") else 4
    if not resume:  # a private temporary work folder next to the output, removed in every case
        try:
            output.parent.mkdir(parents=True, exist_ok=True)
            job.workdir = Path(tempfile.mkdtemp(prefix=f".{output.name}.esc-", dir=output.parent))
        except OSError as exc:
            raise OutputError(f"{output.parent}: cannot write there ({exc.strerror}); choose another output folder") from None
    workdir = job.workdir
    try:
        try:
            reused = _open_workdir(job, resume, say)
        except OSError as exc:
            raise OutputError(f"{job.workdir}: cannot write there ({exc.strerror}); choose another output folder") from None
        done_set = set(job.done_segments()) if resume else set()
        total = info.frame_count
        done_frames = sum(s.count for s in job.segments if s.index in done_set)
        if on_start is not None:
            on_start({
                "input": str(source), "output": str(output), "frames": total, "fps": float(info.fps),
                "width": info.width, "height": info.height, "out_width": job.enc_size[0], "out_height": job.enc_size[1],
                "scale": scale, "model_scale": model_scale, "passes": processor.passes, "codec": settings.codec,
                "pix_fmt": settings.pix_fmt, "device": device_name, "dtype": dtype_name, "tile": tile,
                "segments": len(job.segments), "segments_done": len(done_set), "vfr": info.is_vfr,
                "model": model or "default", "version": _version(),
            })
        state = {"done": done_frames, "t0": time.perf_counter(), "base": done_frames, "seg": 0, "segs_done": len(done_set)}

        def on_frames(n: int) -> None:
            state["done"] += n
            if progress is None:
                return
            elapsed = time.perf_counter() - state["t0"]
            fresh = state["done"] - state["base"]
            fps = fresh / elapsed if elapsed > 0 else 0.0
            eta = (total - state["done"]) / fps if fps > 0 else None
            progress(VideoProgress(state["done"], total, fps, eta, state["seg"], len(job.segments), state["segs_done"]))

        if segment_runner is not None:
            todo = [seg.index for seg in job.segments if seg.index not in done_set]
            segment_runner.run(job, todo, network, scale=scale, dtype=torch_dtype, tile=tile, overlap=overlap,
                               batch_frames=batch_frames, on_frames=on_frames, notify=say)
            state["segs_done"] += len(todo)
        for seg in job.segments:
            if segment_runner is not None or seg.index in done_set:
                continue
            state["seg"] = seg.index
            encode_segment(job, seg.index, processor, batch_frames=batch_frames, on_frames=on_frames)
            state["segs_done"] += 1
        streams = join_segments(job, overwrite=overwrite, notice=say)
    except BaseException:
        if not resume:
            shutil.rmtree(workdir, ignore_errors=True)
        raise
    shutil.rmtree(workdir, ignore_errors=True)
    return VideoResult(
        input=source, output=output, frames=total, seconds=time.perf_counter() - t_start,
        in_size=(info.width, info.height), out_size=job.enc_size, fps_in=float(info.fps),
        codec=settings.codec, pix_fmt=settings.pix_fmt, device=device_name, dtype=dtype_name,
        tile=getattr(upscaler, "last_tile", None) if getattr(upscaler, "last_tile", None) is not None else tile,
        segments=len(job.segments), segments_reused=reused,
        streams=streams, notices=tuple(notices),
    )


__all__ = [
    "FrameProcessor", "Segment", "processor_for", "VideoJob", "VideoProgress", "VideoResult", "default_output", "encode_segment",
    "join_segments", "output_size", "plan_segments", "prepare_job", "resume_dir", "upscale_video",
]
