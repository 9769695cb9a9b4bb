"""The default video encoder: NVENC on CUDA when ffmpeg has it (hevc for 10-bit), else x264 with a notice."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import pytest

from esc_cli.api.video_job import choose_codec, default_settings
from esc_cli.io.ffmpeg import video_encoders
from esc_cli.io.probe import VideoInfo

NVENC = frozenset({"libx264", "h264_nvenc", "hevc_nvenc"})


def info(pix_fmt: str = "yuv420p") -> VideoInfo:
    return VideoInfo(path=Path("in.mp4"), video_index=0, codec="h264", width=64, height=48, pix_fmt=pix_fmt,
                     fps=Fraction(24), time_base=Fraction(1, 24), timestamps=(0, 1), frame_duration=1,
                     start_time=0.0, duration=2 / 24)  # fmt: skip


@pytest.mark.parametrize(("device", "available", "fmt", "expected"), [
    ("cpu", NVENC, "yuv420p", "libx264"),
    ("cuda:0", NVENC, "yuv420p", "h264_nvenc"),
    ("cuda:0", NVENC, "yuv420p10le", "hevc_nvenc"),
    ("cuda:0", frozenset({"libx264", "h264_nvenc"}), "yuv420p10le", "h264_nvenc"),
])  # fmt: skip
def test_choice(device, available, fmt, expected):
    assert choose_codec(Path("out.mp4"), info(fmt), device, available) == (expected, None)


def test_cuda_without_nvenc_falls_back_with_a_notice():
    notes = []
    settings = default_settings(Path("out.mp4"), info(), None, None, None, None, device="cuda",
                                available=frozenset({"libx264"}), say=notes.append)  # fmt: skip
    assert settings.codec == "libx264" and len(notes) == 1 and "NVENC" in notes[0] and "--codec" in notes[0]
    assert choose_codec(Path("out.webm"), info(), "cuda", NVENC)[0] == "libvpx-vp9"


def test_nvenc_settings_and_an_explicit_codec_wins():
    settings = default_settings(Path("out.mp4"), info("yuv420p10le"), None, None, None, None, device="cuda",
                                available=NVENC)  # fmt: skip
    args = settings.args()
    assert args[:4] == ["-c:v", "hevc_nvenc", "-pix_fmt", "p010le"] and "-cq" in args and "-preset" in args
    assert default_settings(Path("o.mp4"), info(), "libx265", None, None, None, device="cuda", available=NVENC).codec == "libx265"


def test_the_bundled_ffmpeg_lists_its_encoders():
    encoders = video_encoders()
    assert "libx264" in encoders and "ffv1" in encoders
