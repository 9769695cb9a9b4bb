"""`esc video` end to end on tiny clips generated here with the bundled ffmpeg and a tiny random model.

In-process runs go through `esc_cli.cli.main` (exit codes and --json exactly as a shell sees
them); interruption and resume run real subprocesses and send them signals.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import restore_sigint
import torch

from esc_cli.cli import main
from esc_cli.io.ffmpeg import ffmpeg_exe
from esc_cli.io.probe import frame_hashes, probe

TINY_ARGS = dict(variant="esc", scale=2, dim=16, pdim=8, kernel_size=7, n_blocks=1, conv_blocks=2, window_size=8,
                 num_heads=2, exp_ratio=1.25, use_ln=False, upsampler="pixelshuffle")


def save_tiny_model(path: Path, seed: int = 0) -> Path:
    """A random-weight tiny ESC x2 saved as safetensors."""
    from safetensors.torch import save_file

    from esc_cli.model import ESCConfig, build_network

    torch.manual_seed(seed)
    net = build_network(ESCConfig(**TINY_ARGS))
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path))
    return path


def make_clip(
    path: Path,
    *,
    size: str = "64x48",
    rate: int = 10,
    seconds: float = 1.0,
    audio: bool = False,
    subtitles: bool = False,
    vcodec: tuple[str, ...] = ("-c:v", "libx264", "-pix_fmt", "yuv420p"),
    vf: tuple[str, ...] = (),
) -> Path:
    """Generate a testsrc clip (optionally with a sine track and an SRT subtitle stream)."""
    args = [ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-nostdin", "-y",
            "-f", "lavfi", "-i", f"testsrc=size={size}:rate={rate}:duration={seconds}"]
    maps = ["-map", "0:v"]
    n = 1
    if audio:
        args += ["-f", "lavfi", "-i", f"sine=frequency=440:duration={seconds}"]
        maps += ["-map", f"{n}:a"]
        n += 1
    if subtitles:
        srt = path.with_suffix(".srt")
        srt.write_text("1\n00:00:00,000 --> 00:00:00,400\nHello\n\n2\n00:00:00,500 --> 00:00:00,900\nWorld\n", encoding="utf-8")
        args += ["-i", str(srt)]
        maps += ["-map", f"{n}:s"]
        n += 1
    args += maps + list(vf) + list(vcodec)
    if audio:
        args += ["-c:a", "aac"]
    if subtitles:
        args += ["-c:s", "srt"]
    args += [str(path)]
    subprocess.run(args, check=True)
    return path


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    d = tmp_path_factory.mktemp("video")
    return {
        "model": save_tiny_model(d / "tiny.safetensors"),
        "audio": make_clip(d / "with_audio.mp4", audio=True),
        "silent": make_clip(d / "silent.mp4"),
        "odd_subs": make_clip(d / "odd_subs.mkv", size="33x25", subtitles=True,
                              vcodec=("-c:v", "libx264", "-pix_fmt", "yuv444p")),
    }


def run_json(args: list[str], capsys) -> tuple[int, list[dict], str]:
    code = main(args + ["--json"])
    out, err = capsys.readouterr()
    events = [json.loads(line) for line in out.splitlines() if line.strip()]
    return code, events, err


def streams_of(path: Path) -> list[str]:
    return [s.kind for s in probe(path).streams]


def test_upscale_with_audio_keeps_frames_duration_audio(assets, tmp_path, capsys):
    out = tmp_path / "out.mp4"
    code, events, _ = run_json(["video", str(assets["audio"]), str(out), "--model", str(assets["model"]), "-s", "2"], capsys)
    assert code == 0
    kinds = [e["event"] for e in events]
    assert kinds[:2] == ["start", "item_start"] and kinds[-2:] == ["item", "summary"] and "progress" in kinds
    assert events[-2]["status"] == "done" and events[-2]["frames"] == 10
    assert events[-1]["done"] == 1 and events[-1]["failed"] == 0 and events[-1]["exit_code"] == 0
    src, info = probe(assets["audio"]), probe(out)
    assert (info.width, info.height) == (128, 96)
    assert info.frame_count == src.frame_count == 10
    assert info.fps == src.fps
    assert abs(info.duration - src.duration) < 0.05
    assert streams_of(out).count("audio") == 1
    assert events[-2]["streams"]["audio"] == 1 and (events[-2]["out_width"], events[-2]["out_height"]) == (128, 96)
    assert oct(out.stat().st_mode & 0o777) != oct(0o600)  # a normal file, not the temp file's mode
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.mp4"]


def test_source_without_audio(assets, tmp_path, capsys):
    out = tmp_path / "out.mkv"
    assert main(["video", str(assets["silent"]), str(out), "--model", str(assets["model"]), "-q"]) == 0
    assert streams_of(out) == ["video"]
    assert probe(out).frame_count == 10


def test_odd_size_scale3_and_subtitles_into_mp4(assets, tmp_path, capsys):
    """33x25 at x3 is 99x75: padded to even for yuv420p; SRT cannot be copied into mp4 -> mov_text."""
    out = tmp_path / "out.mp4"
    code, events, err = run_json(["video", str(assets["odd_subs"]), str(out), "--model", str(assets["model"]), "-s", "3"], capsys)
    assert code == 0, err
    info = probe(out)
    assert (info.width, info.height) == (100, 76)
    assert info.frame_count == 10
    subs = [s for s in info.streams if s.kind == "subtitle"]
    assert len(subs) == 1 and subs[0].codec == "mov_text"
    assert "padded" in err and "mov_text" in err
    done = [e for e in events if e["event"] == "item"][0]
    assert done["status"] == "done" and done["streams"]["transcoded"] == ["#1->mov_text"]
    assert any("padded" in note for note in done["notes"])


def test_subtitles_copied_into_mkv(assets, tmp_path):
    out = tmp_path / "out.mkv"
    assert main(["video", str(assets["odd_subs"]), str(out), "--model", str(assets["model"]), "-q", "--pix-fmt", "yuv444p"]) == 0
    info = probe(out)
    assert (info.width, info.height) == (66, 50)
    assert [s.codec for s in info.streams if s.kind == "subtitle"] == ["subrip"]


def test_every_audio_track_kept_and_transcoded_when_refused(assets, tmp_path, capsys):
    """Two audio tracks (PCM, FLAC) into WebM, which takes neither: both become Opus, languages kept."""
    src = tmp_path / "two.mkv"
    subprocess.run([ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-nostdin", "-y",
                    "-f", "lavfi", "-i", "testsrc=size=32x24:rate=10:duration=1",
                    "-f", "lavfi", "-i", "sine=frequency=440:duration=1", "-f", "lavfi", "-i", "sine=frequency=880:duration=1",
                    "-map", "0", "-map", "1", "-map", "2", "-c:v", "libx264", "-pix_fmt", "yuv420p",
                    "-c:a:0", "pcm_s16le", "-c:a:1", "flac", "-metadata:s:a:0", "language=eng",
                    "-metadata:s:a:1", "language=fra", str(src)], check=True)
    out = tmp_path / "out.webm"
    code, events, err = run_json(["video", str(src), str(out), "--model", str(assets["model"])], capsys)
    assert code == 0, err
    audio = [s for s in probe(out).streams if s.kind == "audio"]
    assert [(s.codec, s.language) for s in audio] == [("opus", "eng"), ("opus", "fra")]
    assert probe(out).codec == "vp9" and "transcoded to libopus" in err
    assert events[-2]["streams"]["audio"] == 2


def test_ten_bit_output(assets, tmp_path):
    out = tmp_path / "out10.mkv"
    assert main(["video", str(assets["silent"]), str(out), "--model", str(assets["model"]), "-q",
                 "--pix-fmt", "yuv420p10le", "--codec", "libx265", "--crf", "28", "--preset", "ultrafast"]) == 0
    info = probe(out)
    assert info.pix_fmt == "yuv420p10le" and info.codec == "hevc" and info.frame_count == 10


def test_existing_output_and_input_as_output_refused(assets, tmp_path, capsys):
    out = tmp_path / "exists.mp4"
    out.write_bytes(b"keep me")
    code, events, err = run_json(["video", str(assets["silent"]), str(out), "--model", str(assets["model"])], capsys)
    assert code == 3 and out.read_bytes() == b"keep me" and "--overwrite" in err
    assert [e["event"] for e in events] == ["item", "summary"] and events[0]["status"] == "failed"
    assert events[-1]["failed"] == 1 and events[-1]["exit_code"] == 3 and "--overwrite" in events[0]["error"]
    before = assets["silent"].read_bytes()
    assert main(["video", str(assets["silent"]), str(assets["silent"]), "--model", str(assets["model"]), "--overwrite", "-q"]) == 3
    assert assets["silent"].read_bytes() == before


def test_bad_inputs_and_usage(assets, tmp_path, capsys):
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"not a video at all")
    assert main(["video", str(junk), str(tmp_path / "o.mp4"), "--model", str(assets["model"]), "-q"]) == 3
    assert main(["video", str(tmp_path / "missing.mp4"), str(tmp_path / "o.mp4"), "--model", str(assets["model"]), "-q"]) == 3
    assert main(["video", str(assets["silent"]), str(tmp_path / "o.mp4"), "--model", str(assets["model"]), "-s", "0.5"]) == 2
    assert main(["video", str(assets["silent"]), str(tmp_path / "o.xyz"), "--model", str(assets["model"]), "-q"]) == 2
    assert not (tmp_path / "o.mp4").exists()


def test_ffmpeg_failure_surfaces_its_stderr(assets, tmp_path, capsys):
    out = tmp_path / "o.mp4"
    code = main(["video", str(assets["silent"]), str(out), "--model", str(assets["model"]), "--codec", "no-such-encoder"])
    err = capsys.readouterr().err
    assert code == 3
    assert "ffmpeg exited with status" in err and "no-such-encoder" in err
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------- signals and resume (subprocesses)


def _cmd(*args: str) -> list[str]:
    return [sys.executable, "-c", "import sys; from esc_cli.cli import main; sys.exit(main(sys.argv[1:]))", "video", *args]


def _env() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def _wait_for(predicate, proc: subprocess.Popen, timeout: float = 60.0) -> None:
    t0 = time.monotonic()
    while not predicate():
        assert proc.poll() is None, f"finished before the signal: {proc.communicate()}"
        assert time.monotonic() - t0 < timeout, "timed out waiting"
        time.sleep(0.02)


@pytest.fixture(scope="module")
def long_clip(tmp_path_factory):
    d = tmp_path_factory.mktemp("long")
    return make_clip(d / "long.mp4", size="96x72", seconds=6.0, audio=True)


@pytest.mark.parametrize("sig,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_interrupt_leaves_nothing(assets, long_clip, tmp_path, sig, code):
    out = tmp_path / "o.mp4"
    proc = subprocess.Popen(_cmd(str(long_clip), str(out), "--model", str(assets["model"]), "--json"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(),
                            preexec_fn=restore_sigint)
    assert proc.stdout is not None
    for line in proc.stdout:  # signal once frames are flowing
        if json.loads(line)["event"] == "progress":
            break
    proc.send_signal(sig)
    rest, err = proc.communicate(timeout=60)
    assert proc.returncode == code, err
    events = [json.loads(x) for x in rest.splitlines()]
    assert events[-2]["event"] == "item" and events[-2]["status"] == "failed"
    assert events[-1]["event"] == "summary" and events[-1]["interrupted"] and events[-1]["exit_code"] == code
    assert list(tmp_path.iterdir()) == [], "partial output or temp files left behind"


def test_resume_after_interrupt_matches_uninterrupted_run(assets, long_clip, tmp_path):
    seg = ("--resume", "--segment-seconds", "1")
    out = tmp_path / "resumed.mp4"
    work = tmp_path / ".resumed.mp4.esc-resume"
    proc = subprocess.Popen(_cmd(str(long_clip), str(out), "--model", str(assets["model"]), "-q", *seg),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=_env(),
                            preexec_fn=restore_sigint)
    _wait_for(lambda: (work / "seg-00001.nut").exists(), proc)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert not out.exists()
    kept = sorted(p.name for p in work.iterdir())
    assert "seg-00000.nut" in kept and not any(name.endswith(".partial") for name in kept)
    assert [p.name for p in tmp_path.iterdir()] == [work.name]

    again = subprocess.run(_cmd(str(long_clip), str(out), "--model", str(assets["model"]), "--json", *seg),
                           capture_output=True, text=True, env=_env())
    assert again.returncode == 0, again.stderr
    done = [e for e in map(json.loads, again.stdout.splitlines()) if e["event"] == "item"][0]
    assert done["status"] == "done"
    assert done["segments"] == 6 and done["segments_reused"] >= 2
    assert not work.exists()

    ref = tmp_path / "reference.mp4"
    full = subprocess.run(_cmd(str(long_clip), str(ref), "--model", str(assets["model"]), "-q", *seg),
                          capture_output=True, text=True, env=_env())
    assert full.returncode == 0, full.stderr
    a, b = frame_hashes(out), frame_hashes(ref)
    assert len(a) == len(b) == probe(long_clip).frame_count == 60
    assert a == b
    assert streams_of(out) == ["video", "audio"]
    assert abs(probe(out).duration - probe(long_clip).duration) < 0.05
