"""What a media file holds, read from ffmpeg's own output (no ffprobe needed).

`probe(path)` parses `ffmpeg -i`'s stream listing for the streams, frame size, pixel format,
rate, rotation and colour description, and a packet listing (`-c copy -f framecrc`, no
decoding) for the exact frame count and every frame's presentation timestamp.
`frame_hashes` gives the md5 of every decoded frame, for comparing outputs.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Optional, Sequence

from esc_cli.errors import InputError
from esc_cli.io.ffmpeg import ffmpeg_exe, one_line, run_ffmpeg


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
    holds each decodable frame's presentation time in `time_base` units, sorted (the decoder's
    own times: a damaged file's lost frames leave gaps, never a shift); `frame_count ==
    len(timestamps)`, and `packets` counts the stream's packets (more when frames are lost).
    `fps` is the nominal rate.
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
    packets: int = 0  # video packets in the file (0: not counted, same as frame_count)

    @property
    def frame_count(self) -> int:
        return len(self.timestamps)

    @property
    def lost_frames(self) -> int:
        """Packets of the video stream the decoder gives no frame for (a damaged file)."""
        return max(0, self.packets - self.frame_count)

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
        raise InputError(f"{path}: not a readable video ({one_line(text, 1) or 'ffmpeg could not open it'})")
    streams, video, start, duration = _parse_listing(path, text)
    index = video["index"]
    crc = subprocess.run(
        [ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", str(path), "-map", f"0:{index}", "-c", "copy", "-f", "framecrc", "-"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
    )
    if crc.returncode != 0:
        raise InputError(f"{path}: cannot read the video stream: {one_line(crc.stderr.decode('utf-8', 'replace'), 1)}")
    time_base, pts, durations = _framecrc_times(crc.stdout)
    if not pts:
        raise InputError(f"{path}: the video stream holds no frames")
    packets = len(pts)
    decoded = _decoded_times(path, index)
    if decoded is not None and decoded[0] == time_base and len(decoded[1]) < packets:
        if not decoded[1]:
            raise InputError(f"{path}: no frame of the video stream decodes; the file is damaged")
        pts, durations = decoded[1], decoded[2]  # frames lost: keep the decoder's own times
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
        packets=packets,
    )


def _framecrc_times(stdout: bytes) -> tuple[Fraction, list[int], list[int]]:
    """(time base, pts, durations) of the lines of ffmpeg's framecrc output."""
    time_base = Fraction(1, 1000)
    pts: list[int] = []
    durations: list[int] = []
    for line in stdout.decode("ascii", "replace").splitlines():
        if line.startswith("#"):
            m = _FRAMECRC_TB_RE.match(line)
            if m:
                time_base = Fraction(int(m.group(1)), int(m.group(2)))
            continue
        parts = [p.strip() for p in line.split(",")]
        if len(parts) >= 5 and parts[0].isdigit():
            pts.append(int(parts[2]))
            durations.append(int(parts[3]))
    return time_base, pts, durations


def _decoded_times(path: Path, index: int) -> Optional[tuple[Fraction, list[int], list[int]]]:
    """The presentation times of the frames the decoder actually gives (one decode pass, source
    timestamps kept in the stream's time base); None when that pass fails."""
    proc = subprocess.run(
        [ffmpeg_exe(), "-hide_banner", "-nostdin", "-copyts", "-i", str(path), "-map", f"0:{index}",
         "-fps_mode", "passthrough", "-enc_time_base", "demux", "-f", "framecrc", "-"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
    )
    if proc.returncode != 0:
        return None
    return _framecrc_times(proc.stdout)


def frame_hashes(path: Path, *, stream: str = "0:v:0") -> list[str]:
    """md5 of every decoded frame of `path` (for comparing outputs in tests and tools)."""
    proc = run_ffmpeg(["-i", str(path), "-map", stream, "-fps_mode", "passthrough", "-f", "framemd5", "-"], what=f"hashing {path}")
    out = []
    for line in proc.stdout.decode("ascii", "replace").splitlines():
        if line and not line.startswith("#"):
            out.append(line.split(",")[-1].strip())
    return out


def count_packets(path: Path, *, stream: str = "0:v:0") -> int:
    """How many packets (frames, for video) `stream` of `path` holds; demuxes only, decodes nothing."""
    proc = run_ffmpeg(["-i", str(path), "-map", stream, "-c", "copy", "-f", "framecrc", "-"], what=f"counting frames of {path}")
    return sum(1 for line in proc.stdout.decode("ascii", "replace").splitlines() if line and not line.startswith("#"))
