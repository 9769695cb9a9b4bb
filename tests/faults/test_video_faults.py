"""Hostile videos through the real `esc video` command (see docs/reliability.md)."""

from __future__ import annotations

import random
import re
import subprocess
from fractions import Fraction
from pathlib import Path

import pytest

from esc_cli.io.ffmpeg import ffmpeg_exe
from esc_cli.io.probe import count_packets, probe
from tests.faults.conftest import digests, esc, leftovers

MODEL = ["-m", "default-x2", "-s", "2", "--device", "cpu"]


def _ffmpeg(*args: str) -> None:
    subprocess.run([ffmpeg_exe(), "-v", "error", "-y", *args], check=True, capture_output=True, timeout=120)


def _damaged_clip(folder: Path) -> Path:
    """10 frames of 64x48 (one GOP) with audio; 3000 bytes in the middle overwritten: 3 frames lost."""
    clip = folder / "clip.mp4"
    _ffmpeg("-f", "lavfi", "-i", "testsrc=s=64x48:r=10:d=1", "-f", "lavfi", "-i", "sine=d=1", "-c:v", "libx264",
            "-g", "100", "-pix_fmt", "yuv420p", "-c:a", "aac", str(clip))
    data = bytearray(clip.read_bytes())
    rng = random.Random(1)
    for i in range(len(data) // 2, len(data) // 2 + 3000):
        data[i] = rng.randrange(256)
    damaged = folder / "damaged.mp4"
    damaged.write_bytes(bytes(data))
    return damaged


def test_damaged_mp4_keeps_frame_times_and_counts_lost_frames(tmp_path):
    _damaged_clip(tmp_path)
    before = digests(tmp_path)
    run = esc(["video", "damaged.mp4", "out.mp4", *MODEL], tmp_path)
    assert run.rc == 0, run.stderr
    notes = [line for line in run.stderr.splitlines() if "could not be decoded" in line]
    assert len(notes) == 1 and "damaged.mp4" in notes[0]
    match = re.search(r"damaged\.mp4: (\d+) of (\d+) frames could not be decoded", notes[0])
    assert match is not None, notes[0]
    lost, total = int(match.group(1)), int(match.group(2))
    assert total == 10 and lost > 0 and count_packets(tmp_path / "out.mp4") == total - lost
    source, out = probe(tmp_path / "damaged.mp4"), probe(tmp_path / "out.mp4")
    src_times = [round(float((t - source.timestamps[0]) * source.time_base), 3) for t in source.timestamps]
    out_times = [round(float((t - out.timestamps[0]) * out.time_base), 3) for t in out.timestamps]
    assert out_times == src_times and len(src_times) == total - lost  # gaps where frames were lost, no shift
    assert max(b - a for a, b in zip(out_times, out_times[1:])) >= 0.2  # a gap, not frames re-timed to 0.1 steps
    assert leftovers(tmp_path) == []
    assert {k: v for k, v in digests(tmp_path).items() if k in before} == before


def test_damaged_mp4_with_strict_fails_and_writes_nothing(tmp_path):
    _damaged_clip(tmp_path)
    before = digests(tmp_path)
    strict = esc(["video", "damaged.mp4", "strict.mp4", "--strict", *MODEL], tmp_path)
    assert strict.rc == 3 and not (tmp_path / "strict.mp4").exists()
    assert [line for line in strict.stderr.splitlines() if "damaged.mp4" in line and "--strict" in line]
    assert leftovers(tmp_path) == []
    assert {k: v for k, v in digests(tmp_path).items() if k in before} == before


@pytest.mark.slow
def test_odd_sar_survives_the_whole_command(tmp_path):
    _ffmpeg("-f", "lavfi", "-i", "testsrc=s=64x36:r=10:d=0.3", "-vf", "setsar=sar=2864/2889:max=10000",
            "-c:v", "libx264", "-pix_fmt", "yuv420p", str(tmp_path / "sar.mkv"))
    assert probe(tmp_path / "sar.mkv").sar == Fraction(2864, 2889)
    for out in ("o.mp4", "o.mkv"):
        run = esc(["video", "sar.mkv", out, *MODEL], tmp_path)
        assert run.rc == 0, run.stderr
        assert probe(tmp_path / out).sar == Fraction(2864, 2889)


@pytest.mark.slow
@pytest.mark.parametrize("suffix", [".mp4", ".mkv"])
def test_vfr_concat_keeps_every_frame_and_time(tmp_path, suffix):
    """24 fps + 30 fps parts concatenated into .mkv (the field report's case 4, as far as it reproduces)."""
    for rate in (24, 30):
        _ffmpeg("-f", "lavfi", "-i", f"testsrc=s=32x24:r={rate}:d=0.5", "-c:v", "libx264", "-pix_fmt", "yuv420p",
                str(tmp_path / f"p{rate}.mp4"))
    (tmp_path / "list.txt").write_text("file p24.mp4\nfile p30.mp4\n")
    _ffmpeg("-f", "concat", "-i", str(tmp_path / "list.txt"), "-c", "copy", str(tmp_path / "vfr.mkv"))
    source = probe(tmp_path / "vfr.mkv")
    run = esc(["video", "vfr.mkv", f"out{suffix}", *MODEL], tmp_path)
    assert run.rc == 0, run.stderr
    out = probe(tmp_path / f"out{suffix}")
    assert out.frame_count == source.frame_count == 27
    src_times = [float((t - source.timestamps[0]) * source.time_base) for t in source.timestamps]
    out_times = [float((t - out.timestamps[0]) * out.time_base) for t in out.timestamps]
    assert max(abs(a - b) for a, b in zip(src_times, out_times)) < 0.002
