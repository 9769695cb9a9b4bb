"""Raw RGB frames through ffmpeg pipes: `FrameReader` decodes, `FrameWriter` encodes.

`FrameReader` decodes one video stream to `[H, W, 3]` uint8 or uint16 numpy arrays, optionally
from frame k of a known timestamp list (frame-exact seeking). `FrameWriter` sends frames inside
the Matroska stream of `esc_cli.io.matroska`, each with its timestamp and duration, and the
encoder is given the source's time base so constant rates come out exact. `EncodeSettings`
turns a codec choice into ffmpeg options.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from esc_cli.errors import VideoError
from esc_cli.io.ffmpeg import FfmpegProcess
from esc_cli.io.matroska import mkv_frame_prefix, mkv_frame_suffix, mkv_header
from esc_cli.io.probe import VideoInfo, pix_fmt_depth


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
        self._proc = FfmpegProcess(args, stdin=False, stdout=True, what=f"decoding {info.path}")
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
            # setsar reduces to terms <= its `max` (default 100: 2864:2889 became 99:100): keep it exact
            vf.append(f"setsar=sar={sar.numerator}/{sar.denominator}:max={max(sar.numerator, sar.denominator, 100)}")
        # no forced output rate: the timestamps are passed through as sent
        args = ["-f", "matroska", "-i", "pipe:0", "-map", "0:v", "-fps_mode", "passthrough",
                "-enc_time_base", f"{time_base.numerator}/{time_base.denominator}"]
        if vf:
            args += ["-vf", ",".join(vf)]
        args += list(color_args) + settings.args()
        if fmt:
            args += ["-f", fmt]
        args += [str(self.path)]
        self._proc = FfmpegProcess(args, stdin=True, stdout=False, what=f"encoding {self.path.name} with {settings.codec}")
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
        rc = self._proc.wait()
        if rc != 0:
            raise self._proc.error(rc)

    def abort(self) -> None:
        """Kill ffmpeg; the caller deletes the partial output."""
        self._proc.kill()
