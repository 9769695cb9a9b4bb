"""Planning a video job and its resume bookkeeping: sizes, encoder choice, segments, the work folder.

A `VideoJob` is everything needed to encode any segment of one video and to join them: the
probed source, the output, the segments (frames `[start, end)` each), the upscaled and encoded
frame sizes and the encoder settings. Its `fingerprint` (source identity, model digest, options,
segment plan) is written to `job.json` in the work folder; with `--resume` a rerun keeps the
finished segments only when the fingerprint matches (`open_workdir`).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import torch
from torch import nn

from esc_cli.io.frames import EncodeSettings, needs_even
from esc_cli.io.probe import VideoInfo

NoticeFn = Callable[[str], None]

JOB_VERSION = 1


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


def choose_codec(output: Path, info: VideoInfo, device: str, available: frozenset[str]) -> tuple[str, Optional[str]]:
    """The default encoder for `output` and a notice when the best one is missing.

    On a CUDA device the CPU encoder would keep the GPU waiting, so NVIDIA's hardware encoder is used when this
    ffmpeg has it (`hevc_nvenc` for 10-bit sources, which H.264 NVENC cannot encode, else `h264_nvenc`).
    """
    if output.suffix.lower() == ".webm":
        return "libvpx-vp9", None
    if not device.startswith("cuda"):
        return "libx264", None
    if info.bit_depth > 8 and "hevc_nvenc" in available:
        return "hevc_nvenc", None
    if "h264_nvenc" in available:
        return "h264_nvenc", None
    return "libx264", ("this ffmpeg has no NVENC encoder: encoding with libx264 on the CPU, which may keep the GPU "
                       "waiting (--codec chooses another)")


def default_settings(output: Path, info: VideoInfo, codec: Optional[str], crf: Optional[int],
                     preset: Optional[str], pix_fmt: Optional[str], *, device: str = "cpu",
                     available: frozenset[str] = frozenset(), say: Optional[Callable[[str], None]] = None) -> EncodeSettings:
    """Encoder choice: H.264 (VP9 for .webm; NVENC on CUDA when ffmpeg has it), CRF 18 (32 for VP9), 10-bit when
    the source is."""
    if codec is None:
        codec, notice = choose_codec(output, info, device, available)
        if notice and say is not None:
            say(notice)
    if codec.endswith("_nvenc"):
        ten_bit = info.bit_depth > 8 and codec == "hevc_nvenc"
        return EncodeSettings(codec=codec, crf=19 if crf is None else crf, preset=preset or "p5",
                              pix_fmt=pix_fmt or ("p010le" if ten_bit else "yuv420p"), extra=("-rc", "vbr", "-b:v", "0"))
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


def model_digest(network: nn.Module) -> str:
    """First 16 hex digits of a sha256 over the network's weights (names and float32 values)."""
    h = hashlib.sha256()
    for name, tensor in sorted(network.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def _source_id(path: Path) -> dict:
    """The source's identity for the job fingerprint: resolved path, size and modification time."""
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


def open_workdir(job: VideoJob, resume: bool, say: NoticeFn) -> int:
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
