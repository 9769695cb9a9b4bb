"""Hostile image inputs and output faults, through the real `esc upscale` command.

Each test generates its inputs, runs the command in a subprocess and asserts: the documented exit
code, one clear line naming the file, valid outputs for the good items, no temporary or partial
files, inputs byte-identical. The table of cases is docs/reliability.md.
"""

from __future__ import annotations

import io
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from esc_cli.io.atomic import host_tag
from tests.faults.conftest import digests, esc, leftovers, noise_png, one_line_naming, valid_image

MODEL = ["-m", "default-x2", "-s", "2", "--device", "cpu", "--json"]


def _hostile_folder(root: Path) -> dict[str, str]:
    """Good and hostile inputs side by side; returns bad name -> what its error must say."""
    src = root / "in"
    src.mkdir()
    noise_png(src / "good.png", (16, 12), 1)
    noise_png(src / "good_rgba.png", (10, 10), 2, "RGBA")
    good = (src / "good.png").read_bytes()
    rng = np.random.default_rng(9)
    (src / "corrupt.png").write_bytes(good[:41] + rng.integers(0, 256, len(good) - 41, dtype=np.uint8).tobytes())
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(buffer, format="JPEG")
    (src / "truncated.jpg").write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    (src / "garbage.png").write_bytes(rng.integers(0, 256, 3000, dtype=np.uint8).tobytes())
    (src / "empty.png").write_bytes(b"")
    Image.new("L", (400, 300)).save(src / "bomb.png")  # 120,000 pixels, over --max-pixels below
    os.symlink("loop.png", src / "loop.png")
    return {"corrupt.png": "corrupt", "truncated.jpg": "", "garbage.png": "", "empty.png": "",
            "bomb.png": "--max-pixels 5,000", "loop.png": ""}


def test_hostile_batch_fails_bad_items_only(tmp_path):
    bad = _hostile_folder(tmp_path)
    before = digests(tmp_path / "in")
    run = esc(["upscale", "in", "-o", "out", "--max-pixels", "5000", *MODEL], tmp_path)
    assert run.rc == 1, run.stderr
    failed = {Path(e["input"]).name: e["error"] for e in run.items("failed")}
    assert sorted(failed) == sorted(bad)
    for name, needle in bad.items():
        assert name in failed[name] and needle in failed[name], failed[name]
        assert "\n" not in failed[name]
        assert len(one_line_naming(run, name)) >= 1
    assert valid_image(tmp_path / "out" / "good_x2.png") == (32, 24)
    assert valid_image(tmp_path / "out" / "good_rgba_x2.png") == (20, 20)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["good_rgba_x2.png", "good_x2.png"]
    assert leftovers(tmp_path) == [] and digests(tmp_path / "in") == before
    assert "DecompressionBombWarning" not in run.stderr


def test_jpeg_output_of_noise_at_quality_100(tmp_path):
    noise_png(tmp_path / "noise.png", (80, 80), 4)  # x2 -> 160x160 of fine detail
    run = esc(["upscale", "noise.png", "-o", "out.jpg", "--quality", "100", *MODEL], tmp_path)
    assert run.rc == 0, run.stderr
    assert valid_image(tmp_path / "out.jpg") == (160, 160)
    assert leftovers(tmp_path) == []


def test_stale_temps_removed_live_ones_kept(tmp_path):
    noise_png(tmp_path / "a.png")
    out = tmp_path / "out"
    out.mkdir()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = out / f".a_x2.{host_tag()}-{dead.pid}-k1ll3d.esc-tmp.png"
    live = out / f".b_x2.{host_tag()}-{os.getpid()}-runn1n.esc-tmp.png"  # this test process runs
    stale.write_bytes(b"half")
    live.write_bytes(b"half")
    run = esc(["upscale", "a.png", "-o", "out", "--skip-existing", *MODEL], tmp_path)
    assert run.rc == 0, run.stderr
    assert not stale.exists() and live.exists()
    assert any(stale.name in line and "interrupted run" in line for line in run.stderr.splitlines())
    assert valid_image(out / "a_x2.png") == (32, 24)


@pytest.mark.slow
def test_two_runs_at_once_with_skip_existing(tmp_path):  # the mechanism: unit test_atomic_faults (default run)
    src = tmp_path / "in"
    src.mkdir()
    for i in range(6):
        noise_png(src / f"p{i}.png", (12, 12), i)
    cmd = [sys.executable, "-m", "esc_cli", "upscale", "in", "-o", "out", "--skip-existing", *MODEL]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    procs = [subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
             for _ in range(2)]
    results = [p.communicate(timeout=180) for p in procs]
    for proc, (stdout, stderr) in zip(procs, results):
        assert proc.returncode == 0, stderr
        assert '"status": "failed"' not in stdout
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [f"p{i}_x2.png" for i in range(6)]
    for i in range(6):
        assert valid_image(tmp_path / "out" / f"p{i}_x2.png") == (24, 24)
    assert leftovers(tmp_path) == []


def _small_file_limit() -> None:
    """A full disk, for this process only: files cannot grow past 2 KiB (EFBIG instead of SIGXFSZ)."""
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (2048, 2048))


def test_full_disk_fails_with_one_line_and_no_partial_file(tmp_path):
    noise_png(tmp_path / "big.png", (40, 40), 5)
    run = esc(["upscale", "big.png", "-o", "out", *MODEL], tmp_path, preexec=_small_file_limit)
    assert run.rc == 3, run.stderr
    (item,) = run.items("failed")
    assert item["error"].startswith(str(Path("out") / "big_x2.png")) and "too large" in item["error"]
    assert list((tmp_path / "out").iterdir()) == [] and leftovers(tmp_path) == []


def test_missing_input_is_named(tmp_path):
    noise_png(tmp_path / "a.png")
    run = esc(["upscale", "a.png", "nothere.png", "-o", "out", *MODEL], tmp_path)
    assert run.rc == 1
    (item,) = run.items("failed")
    assert item["error"] == "nothere.png: no such file or folder"
    assert one_line_naming(run, "nothere.png")


def test_output_through_a_link_to_the_input_is_refused(tmp_path):
    noise_png(tmp_path / "a.png")
    os.symlink("a.png", tmp_path / "link.png")
    before = (tmp_path / "a.png").read_bytes()
    run = esc(["upscale", "a.png", "-o", "link.png", "--overwrite", *MODEL], tmp_path)
    assert run.rc == 3
    assert (tmp_path / "a.png").read_bytes() == before and leftovers(tmp_path) == []
    assert one_line_naming(run, "link.png")


def test_nan_checkpoint_is_refused(tmp_path):
    from safetensors.torch import load_file, save_file

    state = load_file(str(Path(__file__).parents[2] / "esc_cli" / "weights" / "bundled" / "esc-default-x2.safetensors"))
    name = next(k for k, v in state.items() if v.is_floating_point())
    state[name] = state[name].clone()
    state[name].view(-1)[0] = float("nan")
    save_file(state, str(tmp_path / "nan.safetensors"))
    noise_png(tmp_path / "a.png")
    run = esc(["upscale", "a.png", "-o", "out", "-m", "nan.safetensors", "--device", "cpu"], tmp_path)
    assert run.rc == 3
    lines = one_line_naming(run, "nan.safetensors")
    assert len(lines) == 1 and "NaN or Inf" in lines[0] and name in lines[0]
    assert not (tmp_path / "out").exists() or list((tmp_path / "out").iterdir()) == []


def noise_folder(folder, count: int, size: tuple[int, int]) -> None:
    """`count` noise PNGs in a new `folder`: enough work for a signal to land mid-batch."""
    folder.mkdir()
    for i in range(count):
        noise_png(folder / f"p{i:02}.png", size, i)


@pytest.mark.slow
def test_sigterm_mid_batch_leaves_no_temp(tmp_path):
    noise_folder(tmp_path / "in", 30, (64, 64))
    proc = subprocess.Popen([sys.executable, "-m", "esc_cli", "upscale", "in", "-o", "out", *MODEL], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not any((tmp_path / "out").glob("*.png")):
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=60)
    assert proc.returncode == 143
    assert leftovers(tmp_path) == []
    for path in (tmp_path / "out").iterdir():
        valid_image(path)


@pytest.mark.slow
def test_sigkill_leftover_is_cleaned_by_the_next_run(tmp_path):
    noise_folder(tmp_path / "in", 20, (96, 96))
    cmd = [sys.executable, "-m", "esc_cli", "upscale", "in", "-o", "out", *MODEL]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not leftovers(tmp_path):
        time.sleep(0.005)
    proc.kill()
    proc.wait()
    run = esc(["upscale", "in", "-o", "out", "--skip-existing", *MODEL], tmp_path)
    assert run.rc == 0, run.stderr
    assert leftovers(tmp_path) == []
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [f"p{i:02}_x2.png" for i in range(20)]
