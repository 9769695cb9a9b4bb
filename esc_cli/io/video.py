"""Video I/O through the ffmpeg binary that imageio-ffmpeg bundles (no ffprobe needed).

- `probe(path)` parses `ffmpeg -i` for the streams and a packet listing (`-c copy -f framecrc`,
  no decoding) for the exact frame count and every frame's presentation timestamp.
- `FrameReader` decodes one video stream to raw RGB frames (`[H, W, 3]` uint8 or uint16
  numpy arrays) through a pipe, optionally from frame k of a known timestamp list.
- `FrameWriter` encodes RGB frames through a pipe. Frames travel inside a minimal
  Matroska stream written here, so every frame carries its own timestamp and duration
  (nanoseconds): variable frame rates survive, and the encoder is given the source's time
  base so constant rates come out exact.
- `mux(...)` joins encoded video with the audio, subtitle and attachment streams of the
  source, copying each and falling back to a transcode per stream the container refuses.

Every ffmpeg run's exit status is checked; a failure raises `VideoError` carrying the last
lines ffmpeg printed. Nothing here imports torch.
"""

from __future__ import annotations

import collections
import os
import re
import struct
import subprocess
import threading
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np

from esc_cli.errors import InputError, VideoError

STDERR_TAIL = 12


def ffmpeg_exe() -> str:
    """Path of the bundled ffmpeg binary."""
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def _tail(text: str, n: int = STDERR_TAIL) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    return "\n".join(lines[-n:])


def run_ffmpeg(args: Sequence[str], *, what: str, timeout: Optional[float] = None) -> subprocess.CompletedProcess:
    """Run `ffmpeg args...` to completion; raise `VideoError` naming `what` with ffmpeg's last lines on failure."""
    cmd = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-y", *args]
    proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout)
    if proc.returncode != 0:
        err = _tail(proc.stderr.decode("utf-8", "replace"))
        raise VideoError(f"{what}: ffmpeg exited with status {proc.returncode}:\n{err}")
    return proc


# --------------------------------------------------------------------------- probing


@dataclass(frozen=True)
class StreamInfo:
    """One stream of a media file, as `ffmpeg -i` lists it."""

    index: int
    kind: str  # "video", "audio", "subtitle", "data", "attachment"
    codec: str
    language: Optional[str] = None
    attached_pic: bool = False
    description: str = ""


@dataclass(frozen=True)
class VideoInfo:
    """What `esc video` needs to know about a source file.

    `width`/`height` are the displayed (decoded, auto-rotated) frame size. `timestamps`
    holds each frame's presentation time in `time_base` units, sorted, one per packet of
    the video stream; `frame_count == len(timestamps)`. `fps` is the nominal rate.
    """

    path: Path
    video_index: int
    codec: str
    width: int
    height: int
    pix_fmt: str
    fps: Fraction
    time_base: Fraction
    timestamps: tuple[int, ...]
    frame_duration: int  # nominal frame duration in time_base units (last frame's length)
    start_time: float  # the container's start time, seconds
    duration: float  # container duration, seconds (0 if unknown)
    rotation: int = 0
    sar: Fraction = Fraction(1)
    color_range: Optional[str] = None
    color_space: Optional[str] = None
    color_primaries: Optional[str] = None
    color_trc: Optional[str] = None
    streams: tuple[StreamInfo, ...] = field(default_factory=tuple)

    @property
    def frame_count(self) -> int:
        return len(self.timestamps)

    @property
    def bit_depth(self) -> int:
        """Bits per component of the source's pixel format (8 when unknown)."""
        return pix_fmt_depth(self.pix_fmt)

    @property
    def is_vfr(self) -> bool:
        """True when frame durations differ by more than one time-base tick."""
        ts = self.timestamps
        if len(ts) < 3:
            return False
        d = [b - a for a, b in zip(ts, ts[1:])]
        return max(d) - min(d) > 1

    def seconds(self, k: int) -> float:
        """Presentation time of frame `k` (k == frame_count: end of the last frame), from the first frame."""
        return float(self.tick(k) * self.time_base)

    def tick(self, k: int) -> int:
        """Timestamp of frame `k` in time-base units relative to the first frame; k may equal frame_count."""
        ts = self.timestamps
        if k < len(ts):
            return ts[k] - ts[0]
        return ts[-1] - ts[0] + self.frame_duration * (k - len(ts) + 1)

    def others(self, kinds: Sequence[str] = ("audio", "subtitle", "attachment")) -> list[StreamInfo]:
        """The streams of `kinds` (cover art excluded) that a remux should carry over."""
        return [s for s in self.streams if s.kind in kinds and not s.attached_pic and s.index != self.video_index]


def pix_fmt_depth(pix_fmt: str) -> int:
    """Bits per component of an ffmpeg pixel format name (e.g. yuv420p10le -> 10, p010le -> 10)."""
    m = re.search(r"p(\d{2})(?:le|be)?$", pix_fmt) or re.search(r"^p0(\d{2})", pix_fmt)
    if m:
        return int(m.group(1))
    if pix_fmt in ("rgb48le", "rgb48be", "gray16le", "gray16be", "rgba64le", "rgba64be"):
        return 16
    return 8


_STREAM_RE = re.compile(r"^\s*Stream #\d+:(\d+)(?:\[0x[0-9a-f]+\])?(?:\(([^)]*)\))?: (\w+): (\S+?),?(?: |$)(.*)$")
_DURATION_RE = re.compile(r"Duration: (\d+):(\d+):(\d+(?:\.\d+)?), start: (-?\d+(?:\.\d+)?)")
_DURATION_NA_RE = re.compile(r"Duration: N/A, start: (-?\d+(?:\.\d+)?)")
_SIZE_RE = re.compile(r"(?:^|[ ,])([1-9]\d{0,5})x([1-9]\d{0,5})(?=[ ,\[]|$)")
_FPS_RE = re.compile(r"(\d+(?:\.\d+)?k?) (fps|tbr)\b")
_SAR_RE = re.compile(r"\[SAR (\d+):(\d+)")
_ROT_RE = re.compile(r"rotation of (-?\d+(?:\.\d+)?) degrees")
_FRAMECRC_TB_RE = re.compile(r"^#tb \d+: (\d+)/(\d+)")


def _parse_rate(text: str) -> Fraction:
    mult = 1000 if text.endswith("k") else 1
    value = Fraction(text.rstrip("k")) * mult
    # ffmpeg prints 29.97 for 30000/1001 and 23.98 for 24000/1001
    for num in (24000, 30000, 48000, 60000, 120000):
        ntsc = Fraction(num, 1001)
        if abs(float(value) - float(ntsc)) < 0.006:
            return ntsc
    return value.limit_denominator(1001)


def _parse_listing(path: Path, text: str) -> tuple[list[StreamInfo], dict, float, float]:
    """Streams, the first real video stream's fields, start time and duration from `ffmpeg -i` text."""
    streams: list[StreamInfo] = []
    video: dict = {}
    start = duration = 0.0
    lines = text.splitlines()
    for i, line in enumerate(lines):
        m = _DURATION_RE.search(line)
        if m:
            h, mi, s, st = m.groups()
            duration, start = int(h) * 3600 + int(mi) * 60 + float(s), float(st)
            continue
        m = _DURATION_NA_RE.search(line)
        if m:
            start = float(m.group(1))
            continue
        m = _STREAM_RE.match(line)
        if not m:
            continue
        index, lang, kind, codec, rest = int(m.group(1)), m.group(2), m.group(3).lower(), m.group(4), m.group(5)
        attached = "(attached pic)" in rest
        streams.append(StreamInfo(index, kind, codec, lang, attached, line.strip()))
        if kind == "video" and not attached and not video:
            video = {"index": index, "codec": codec, "rest": rest}
            # side data (display matrix) follows on the next indented lines
            for follow in lines[i + 1 : i + 12]:
                if _STREAM_RE.match(follow):
                    break
                r = _ROT_RE.search(follow)
                if r:
                    video["rotation"] = int(round(float(r.group(1)))) % 360
    if not video:
        raise InputError(f"{path}: has no video stream; give a video file")
    rest = video["rest"]
    # the pixel format is the first field after the codec description, with optional (range, space...)
    fields = _split_top(rest)
    pix = next((f for f in fields if re.match(r"^[a-z0-9_]+(\(.*\))?$", f) and not _SIZE_RE.search(f)), "yuv420p")
    pix_fmt, props = (pix.split("(", 1) + [""])[:2]
    props_list = [p.strip() for p in props.rstrip(")").split(",") if p.strip()]
    size = _SIZE_RE.search(rest)
    if not size:
        raise InputError(f"{path}: cannot read the video's frame size")
    video["width"], video["height"] = int(size.group(1)), int(size.group(2))
    video["pix_fmt"] = pix_fmt
    video["color_range"] = next((p for p in props_list if p in ("tv", "pc")), None)
    spaces = [p for p in props_list if p not in ("tv", "pc", "progressive", "top first", "bottom first", "top coded first (swapped)", "bottom coded first (swapped)")]
    if spaces:
        parts = spaces[0].split("/")
        video["color_space"] = parts[0]
        video["color_primaries"] = parts[1] if len(parts) > 1 else parts[0]
        video["color_trc"] = parts[2] if len(parts) > 2 else parts[0]
    rates = {kind: text for text, kind in _FPS_RE.findall(rest)}
    video["fps"] = _parse_rate(rates.get("fps") or rates.get("tbr") or "25")
    sar = _SAR_RE.search(rest)
    if sar and int(sar.group(1)) > 0 and int(sar.group(2)) > 0:
        video["sar"] = Fraction(int(sar.group(1)), int(sar.group(2)))
    return streams, video, start, duration


def _split_top(text: str) -> list[str]:
    """Split on commas that are not inside parentheses or brackets."""
    out, depth, cur = [], 0, []
    for ch in text:
        if ch in "([":
            depth += 1
        elif ch in ")]":
            depth -= 1
        if ch == "," and depth == 0:
            out.append("".join(cur).strip())
            cur = []
        else:
            cur.append(ch)
    out.append("".join(cur).strip())
    return out


def probe(path: Path) -> VideoInfo:
    """Describe `path`: streams, frame size, pixel format, rate and every frame's timestamp.

    Raises `InputError` when the file is missing, unreadable or has no video stream.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    proc = subprocess.run(
        [ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", str(path)],
        stdin=subprocess.DEVNULL,
        capture_output=True,
    )
    text = proc.stderr.decode("utf-8", "replace")
    if "Input #0" not in text:
        raise InputError(f"{path}: not a readable video ({_tail(text, 2) or 'ffmpeg could not open it'})")
    streams, video, start, duration = _parse_listing(path, text)
    index = video["index"]
    crc = subprocess.run(
        [ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", str(path), "-map", f"0:{index}", "-c", "copy", "-f", "framecrc", "-"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
    )
    if crc.returncode != 0:
        raise InputError(f"{path}: cannot read the video stream: {_tail(crc.stderr.decode('utf-8', 'replace'), 3)}")
    time_base = Fraction(1, 1000)
    pts: list[int] = []
    durations: list[int] = []
    for line in crc.stdout.decode("ascii", "replace").splitlines():
        if line.startswith("#"):
            m = _FRAMECRC_TB_RE.match(line)
            if m:
                time_base = Fraction(int(m.group(1)), int(m.group(2)))
            continue
        parts = [p.strip() for p in line.split(",")]
        if len(parts) >= 5 and parts[0].isdigit():
            pts.append(int(parts[2]))
            durations.append(int(parts[3]))
    if not pts:
        raise InputError(f"{path}: the video stream holds no frames")
    fps: Fraction = video["fps"]
    nominal = max(1, round(1 / (fps * time_base))) if fps > 0 else max(1, max(durations) or 1)
    missing = any(p <= -(2**62) for p in pts)  # AV_NOPTS_VALUE: stream without timestamps
    if missing:
        timestamps = tuple(i * nominal for i in range(len(pts)))
    else:
        timestamps = tuple(sorted(pts))
        if len(set(timestamps)) != len(timestamps):  # duplicated stamps: fall back to the nominal rate
            timestamps = tuple(timestamps[0] + i * nominal for i in range(len(pts)))
    last = durations[pts.index(max(pts))] if not missing else nominal
    width, height = video["width"], video["height"]
    rotation = video.get("rotation", 0)
    if rotation in (90, 270):
        width, height = height, width
    return VideoInfo(
        path=path,
        video_index=index,
        codec=video["codec"],
        width=width,
        height=height,
        pix_fmt=video["pix_fmt"],
        fps=fps,
        time_base=time_base,
        timestamps=timestamps,
        frame_duration=last if last > 0 else nominal,
        start_time=start,
        duration=duration,
        rotation=rotation,
        sar=video.get("sar", Fraction(1)),
        color_range=video.get("color_range"),
        color_space=video.get("color_space"),
        color_primaries=video.get("color_primaries"),
        color_trc=video.get("color_trc"),
        streams=tuple(streams),
    )


# --------------------------------------------------------------------------- processes


class _Proc:
    """An ffmpeg subprocess whose stderr is drained by a thread into a bounded tail."""

    def __init__(self, args: Sequence[str], *, stdin: bool, stdout: bool, what: str) -> None:
        self.what = what
        self.cmd = [ffmpeg_exe(), "-hide_banner", *([] if stdin else ["-nostdin"]), "-y", "-loglevel", "error", *args]
        self.proc = subprocess.Popen(
            self.cmd,
            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
            stdout=subprocess.PIPE if stdout else subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            bufsize=0,
            start_new_session=True,  # Ctrl-C reaches us only; we decide what ffmpeg does
        )
        self._tail: collections.deque[str] = collections.deque(maxlen=40)
        self._drain = threading.Thread(target=self._read_stderr, daemon=True)
        self._drain.start()

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        for raw in iter(self.proc.stderr.readline, b""):
            self._tail.append(raw.decode("utf-8", "replace").rstrip())

    def stderr_tail(self, n: int = STDERR_TAIL) -> str:
        self._drain.join(timeout=2)
        return _tail("\n".join(self._tail), n)

    def error(self, rc: Optional[int] = None) -> VideoError:
        rc = self.proc.returncode if rc is None else rc
        tail = self.stderr_tail()
        return VideoError(f"{self.what}: ffmpeg exited with status {rc}" + (f":\n{tail}" if tail else ""))

    def kill(self) -> None:
        """Stop ffmpeg at once (used on errors and interruption)."""
        if self.proc.poll() is None:
            try:
                self.proc.kill()
            except OSError:
                pass
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                try:
                    stream.close()
                except OSError:
                    pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:  # pragma: no cover
            pass
        self._drain.join(timeout=2)


def raw_pix_fmt(depth: int) -> tuple[str, np.dtype]:
    """The raw RGB format used on pipes for a bit depth: rgb24 (uint8) or rgb48le (uint16)."""
    return ("rgb24", np.dtype(np.uint8)) if depth <= 8 else ("rgb48le", np.dtype("<u2"))


class FrameReader:
    """Decode frames `[start, start + count)` of `info`'s video stream as `[H, W, 3]` RGB arrays.

    Frames come out in presentation order, uint8 for 8-bit sources and uint16 otherwise
    (`dtype`). Seeking uses the known timestamps: ffmpeg seeks to the keyframe before and
    drops frames until the midpoint between frame `start - 1` and `start`, so it is frame exact.
    """

    def __init__(self, info: VideoInfo, *, start: int = 0, count: Optional[int] = None, depth: Optional[int] = None) -> None:
        self.info = info
        self.width, self.height = info.width, info.height
        self.pix_fmt, self.dtype = raw_pix_fmt(info.bit_depth if depth is None else depth)
        self.frame_bytes = self.width * self.height * 3 * self.dtype.itemsize
        args: list[str] = []
        if start > 0:
            first = info.timestamps[0]
            mid = (info.timestamps[start - 1] + info.timestamps[start]) / 2
            # -ss counts from the file's start time; timestamps are raw stream ticks
            seek = float((Fraction(mid) - first) * info.time_base) + (float(first * info.time_base) - info.start_time)
            args += ["-ss", f"{max(seek, 0.0):.9f}"]
        args += ["-i", str(info.path), "-map", f"0:{info.video_index}", "-fps_mode", "passthrough"]
        if count is not None:
            args += ["-frames:v", str(count)]
        args += ["-f", "rawvideo", "-pix_fmt", self.pix_fmt, "-"]
        self._proc = _Proc(args, stdin=False, stdout=True, what=f"decoding {info.path}")
        self.frames_read = 0

    def read(self) -> Optional[np.ndarray]:
        """The next frame `[H, W, 3]` (uint8 or uint16), or None at the end; raises VideoError if ffmpeg failed."""
        stdout = self._proc.proc.stdout
        assert stdout is not None
        chunks, got = [], 0
        while got < self.frame_bytes:
            chunk = stdout.read(self.frame_bytes - got)
            if not chunk:
                break
            chunks.append(chunk)
            got += len(chunk)
        if got < self.frame_bytes:
            rc = self._proc.proc.wait()
            if rc != 0:
                raise self._proc.error(rc)
            if got:
                raise VideoError(f"decoding {self.info.path}: ffmpeg ended inside a frame ({got} of {self.frame_bytes} bytes)")
            return None
        self.frames_read += 1
        buf = b"".join(chunks) if len(chunks) > 1 else chunks[0]
        return np.frombuffer(buf, dtype=self.dtype).reshape(self.height, self.width, 3)

    def close(self) -> None:
        self._proc.kill()


# --------------------------------------------------------------------------- Matroska pipe


def _vint_size(n: int) -> bytes:
    """An EBML size as an 8-byte vint (always valid, simplest to compute)."""
    return b"\x01" + n.to_bytes(7, "big")


def _uint(n: int) -> bytes:
    return n.to_bytes(max(1, (n.bit_length() + 7) // 8), "big")


def _el(eid: int, payload: bytes) -> bytes:
    return eid.to_bytes((eid.bit_length() + 7) // 8, "big") + _vint_size(len(payload)) + payload


def mkv_header(width: int, height: int, pix_fmt: str, default_duration_ns: int) -> bytes:
    """EBML header, a Segment of unknown size, Info (1 ns ticks) and one raw RGB video track."""
    fourcc = {"rgb24": b"RGB\x18", "rgb48le": b"RGB\x30"}[pix_fmt]
    ebml = _el(
        0x1A45DFA3,
        _el(0x4286, _uint(1)) + _el(0x42F7, _uint(1)) + _el(0x42F2, _uint(4)) + _el(0x42F3, _uint(8))
        + _el(0x4282, b"matroska") + _el(0x4287, _uint(4)) + _el(0x4285, _uint(2)),
    )
    info = _el(0x1549A966, _el(0x2AD7B1, _uint(1)) + _el(0x4D80, b"esc") + _el(0x5741, b"esc"))
    video = _el(0xE0, _el(0xB0, _uint(width)) + _el(0xBA, _uint(height)) + _el(0x2EB524, fourcc))
    entry = _el(
        0xAE,
        _el(0xD7, _uint(1)) + _el(0x73C5, _uint(1)) + _el(0x83, _uint(1)) + _el(0x9C, _uint(0))
        + _el(0x86, b"V_UNCOMPRESSED") + _el(0x23E383, _uint(max(1, default_duration_ns))) + video,
    )
    tracks = _el(0x1654AE6B, entry)
    segment = b"\x18\x53\x80\x67" + b"\x01\xff\xff\xff\xff\xff\xff\xff"
    return ebml + segment + info + tracks


def mkv_frame_prefix(ts_ns: int, duration_ns: int, frame_bytes: int) -> bytes:
    """Bytes before one frame's pixels: a Cluster at `ts_ns` holding one BlockGroup with its duration."""
    block_head = b"\x81" + struct.pack(">h", 0) + b"\x00"  # track 1, relative time 0, no flags
    block = b"\xa1" + _vint_size(len(block_head) + frame_bytes) + block_head
    group_payload_len = len(block) + frame_bytes + len(_el(0x9B, _uint(max(1, duration_ns))))
    group = b"\xa0" + _vint_size(group_payload_len) + block
    ts_el = _el(0xE7, _uint(max(0, ts_ns)))
    cluster_len = len(ts_el) + len(group) + frame_bytes + len(_el(0x9B, _uint(max(1, duration_ns))))
    return b"\x1f\x43\xb6\x75" + _vint_size(cluster_len) + ts_el + group


def mkv_frame_suffix(duration_ns: int) -> bytes:
    """Bytes after one frame's pixels: the BlockDuration closing its BlockGroup."""
    return _el(0x9B, _uint(max(1, duration_ns)))


# --------------------------------------------------------------------------- encoding


def needs_even(pix_fmt: str) -> tuple[bool, bool]:
    """(width must be even, height must be even) for a chroma-subsampled pixel format."""
    if "420" in pix_fmt or pix_fmt.startswith(("nv12", "nv21", "p010", "p016", "yuvj420")):
        return True, True
    if "422" in pix_fmt or "411" in pix_fmt or pix_fmt.startswith(("nv16", "nv20", "yuyv", "uyvy")):
        return True, False
    return False, False


@dataclass(frozen=True)
class EncodeSettings:
    """How upscaled frames are encoded (codec names are ffmpeg encoder names)."""

    codec: str = "libx264"
    crf: Optional[int] = 18
    preset: Optional[str] = "medium"
    pix_fmt: str = "yuv420p"
    extra: tuple[str, ...] = ()

    def args(self) -> list[str]:
        """ffmpeg output options for this encoder."""
        out = ["-c:v", self.codec, "-pix_fmt", self.pix_fmt]
        c = self.codec
        if self.crf is not None:
            if c in ("libvpx-vp9", "libvpx", "libaom-av1"):
                out += ["-crf", str(self.crf), "-b:v", "0"]
            elif c in ("libx264", "libx264rgb", "libx265", "libsvtav1") or c.endswith(("_nvenc",)):
                out += ["-crf" if not c.endswith("_nvenc") else "-cq", str(self.crf)]
        if self.preset:
            if c in ("libx264", "libx264rgb", "libx265", "libsvtav1") or c.endswith("_nvenc"):
                out += ["-preset", self.preset]
            elif c in ("libvpx-vp9", "libvpx") and self.preset.isdigit():
                out += ["-cpu-used", self.preset]
        if c == "libx265":
            out += ["-x265-params", "log-level=error"]
        return out + list(self.extra)


class FrameWriter:
    """Encode `[H, W, 3]` RGB frames (uint8 for 8-bit output formats, uint16 otherwise) to `path`.

    Each frame is sent with its timestamp and duration in nanoseconds from the first frame;
    the encoder keeps them (`-fps_mode passthrough`) in `time_base` units. `close()` waits for
    ffmpeg and raises `VideoError` with its last lines unless it exited 0; `abort()` kills it.
    The output format is `fmt` (e.g. "nut") or guessed from `path`'s suffix.
    """

    def __init__(
        self,
        path: Path,
        *,
        width: int,
        height: int,
        settings: EncodeSettings,
        time_base: Fraction,
        frame_rate: Fraction,
        default_duration_ns: int,
        fmt: Optional[str] = None,
        color_args: Sequence[str] = (),
        sar: Fraction = Fraction(1),
    ) -> None:
        self.path = Path(path)
        self.width, self.height = width, height
        self.pix_fmt, self.dtype = raw_pix_fmt(pix_fmt_depth(settings.pix_fmt))
        self.frame_bytes = width * height * 3 * self.dtype.itemsize
        vf = []
        if sar != 1:
            vf.append(f"setsar={sar.numerator}/{sar.denominator}")
        # no forced output rate: the timestamps are passed through as sent
        args = ["-f", "matroska", "-i", "pipe:0", "-map", "0:v", "-fps_mode", "passthrough",
                "-enc_time_base", f"{time_base.numerator}/{time_base.denominator}"]
        if vf:
            args += ["-vf", ",".join(vf)]
        args += list(color_args) + settings.args()
        if fmt:
            args += ["-f", fmt]
        args += [str(self.path)]
        self._proc = _Proc(args, stdin=True, stdout=False, what=f"encoding {self.path.name} with {settings.codec}")
        stdin = self._proc.proc.stdin
        assert stdin is not None
        self._stdin = stdin
        self._send(mkv_header(width, height, self.pix_fmt, default_duration_ns))
        self.frames_written = 0

    def _send(self, data) -> None:
        try:
            self._stdin.write(data)
        except (BrokenPipeError, OSError):
            rc = self._proc.proc.wait()
            raise self._proc.error(rc) from None

    def write(self, frame: np.ndarray, ts_ns: int, duration_ns: int) -> None:
        """Send one `[H, W, 3]` frame shown at `ts_ns` for `duration_ns` nanoseconds."""
        if frame.shape != (self.height, self.width, 3) or frame.dtype != self.dtype:
            raise VideoError(
                f"encoding {self.path.name}: frame {tuple(frame.shape)} {frame.dtype} does not match "
                f"{self.height}x{self.width}x3 {self.dtype}"
            )
        data = np.ascontiguousarray(frame)
        self._send(mkv_frame_prefix(ts_ns, duration_ns, self.frame_bytes))
        self._send(memoryview(data).cast("B"))
        self._send(mkv_frame_suffix(duration_ns))
        self.frames_written += 1

    def close(self) -> None:
        """Finish the stream and wait for ffmpeg; raise `VideoError` unless it exited 0."""
        try:
            self._stdin.close()
        except (BrokenPipeError, OSError):
            pass
        rc = self._proc.proc.wait()
        if rc != 0:
            raise self._proc.error(rc)
        self._proc._drain.join(timeout=2)

    def abort(self) -> None:
        """Kill ffmpeg; the caller deletes the partial output."""
        self._proc.kill()


# --------------------------------------------------------------------------- muxing


def muxer_for(path: Path) -> str:
    """A short name for the output container, from the file's suffix."""
    return {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska", ".webm": "webm"}.get(
        path.suffix.lower(), path.suffix.lower().lstrip(".") or "matroska"
    )


TEXT_SUBTITLES = {"subrip", "srt", "ass", "ssa", "mov_text", "webvtt", "text", "microdvd", "subviewer", "jacosub", "sami", "realtext", "stl", "mpl2", "vplayer", "pjs"}


def fallback_codec(stream: StreamInfo, container: str) -> Optional[list[str]]:
    """Encoder options that convert `stream` to something `container` accepts; None = drop it."""
    if stream.kind == "audio":
        return ["libopus", "-b:a", "160k"] if container == "webm" else ["aac", "-b:a", "192k"]
    if stream.kind == "subtitle":
        if stream.codec not in TEXT_SUBTITLES:
            return None  # bitmap subtitles cannot be converted to text
        return {"mp4": ["mov_text"], "mov": ["mov_text"], "webm": ["webvtt"]}.get(container, ["srt"])
    return None


def _can_copy(stream: StreamInfo, source: Path, probe_dir: Path, suffix: str) -> bool:
    """True when the container behind `suffix` accepts `stream` copied as is (a trial remux of a second)."""
    trial = probe_dir / f".esc-trial-{os.getpid()}-{stream.index}{suffix}"
    try:
        run_ffmpeg(["-i", str(source), "-map", f"0:{stream.index}", "-c", "copy", "-t", "1", str(trial)], what="trial")
        return True
    except VideoError:
        return False
    finally:
        try:
            trial.unlink()
        except OSError:
            pass


def mux(
    video_args: Sequence[str],
    info: VideoInfo,
    output: Path,
    *,
    video_offset: float = 0.0,
    notice: Optional[Callable[[str], None]] = None,
) -> dict:
    """Write `output`: the video given by `video_args` (ffmpeg input options + `-i X`) copied, plus
    every audio, subtitle and attachment stream of `info.path`, and its metadata and chapters.

    Each stream is copied; when the container refuses a copy, that stream is transcoded
    (audio to AAC, or Opus for WebM; text subtitles to the container's text format) with a
    notice, and bitmap subtitles and attachments it cannot hold are dropped with a notice.
    Returns {"audio": n, "subtitle": n, "transcoded": [...], "dropped": [...]}.
    """
    say = notice or (lambda _msg: None)
    container = muxer_for(output)
    others = info.others()
    if container != "matroska":
        dropped_att = [s for s in others if s.kind == "attachment"]
        for s in dropped_att:
            say(f"stream #{s.index} ({s.kind}, {s.codec}): {container} cannot hold attachments; dropped")
        others = [s for s in others if s.kind != "attachment"]
    base = [*video_args]
    if video_offset:
        # -itsoffset applies to the next input: rebuild so it precedes the video input's -i
        i = base.index("-i")
        base[i:i] = ["-itsoffset", f"{video_offset:.9f}"]
    base += ["-i", str(info.path)]

    def attempt(plan: dict[int, Optional[list[str]]]) -> None:
        args = list(base) + ["-map", "0:v:0"]
        out_i = 1
        codec_args: list[str] = ["-c:v", "copy"]
        for s in others:
            how = plan.get(s.index, ["copy"])
            if how is None:
                continue
            args += ["-map", f"1:{s.index}"]
            codec_args += [f"-c:{out_i}", *how[:1], f"-map_metadata:s:{out_i}", f"1:s:{s.index}"]
            if len(how) > 1:
                codec_args += [f"-{how[1].lstrip('-')}:{out_i}", *how[2:3]]
            out_i += 1
        # per-stream tags (language, title) come from the source streams, the video's included
        args += codec_args + ["-map_metadata", "1", "-map_metadata:s:0", f"1:s:{info.video_index}", "-map_chapters", "1"]
        if container in ("mp4", "mov"):
            args += ["-movflags", "+faststart"]
        args += [str(output)]
        run_ffmpeg(args, what=f"writing {output.name}")

    plan: dict[int, Optional[list[str]]] = {}
    try:
        attempt(plan)
    except VideoError as first:
        for s in others:
            if _can_copy(s, info.path, output.parent, output.suffix):
                continue
            plan[s.index] = fallback_codec(s, container)
            if plan[s.index] is None:
                say(f"stream #{s.index} ({s.kind}, {s.codec}): {container} cannot hold it and it cannot be converted; dropped")
            else:
                say(f"stream #{s.index} ({s.kind}, {s.codec}): {container} refuses a copy; transcoded to {plan[s.index][0]}")
        if not plan:
            raise first
        attempt(plan)
    kept = [s for s in others if plan.get(s.index, ["copy"]) is not None]
    return {
        "audio": sum(1 for s in kept if s.kind == "audio"),
        "subtitle": sum(1 for s in kept if s.kind == "subtitle"),
        "attachment": sum(1 for s in kept if s.kind == "attachment"),
        "transcoded": [f"#{i}->{p[0]}" for i, p in plan.items() if p is not None],
        "dropped": [f"#{i}" for i, p in plan.items() if p is None],
    }


def concat_list(paths: Sequence[Path], durations: Sequence[float], list_path: Path) -> list[str]:
    """Write an ffconcat list of `paths` with exact `durations` (seconds); return ffmpeg input args for it."""
    lines = ["ffconcat version 1.0"]
    for p, d in zip(paths, durations):
        name = str(Path(p).resolve()).replace("'", "'\\''")
        lines += [f"file '{name}'", f"duration {d:.9f}"]
    list_path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return ["-f", "concat", "-safe", "0", "-i", str(list_path)]


def frame_hashes(path: Path, *, stream: str = "0:v:0") -> list[str]:
    """md5 of every decoded frame of `path` (for comparing outputs in tests and tools)."""
    proc = run_ffmpeg(["-i", str(path), "-map", stream, "-fps_mode", "passthrough", "-f", "framemd5", "-"], what=f"hashing {path}")
    out = []
    for line in proc.stdout.decode("ascii", "replace").splitlines():
        if line and not line.startswith("#"):
            out.append(line.split(",")[-1].strip())
    return out


def remove_quietly(path: Path) -> None:
    """Delete `path` if it exists, ignoring errors."""
    try:
        os.unlink(path)
    except OSError:
        pass
