"""`--devices`: one worker process per device (here `cpu,cpu`, one thread each).

A folder of small images and a short clip generated here, a tiny random ESC x2 saved to a
temp file. Outputs are compared byte for byte with a one-worker run; workers are killed
(SIGKILL) mid-item to check that every item still ends done or reported failed.
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from esc_cli.api.events import ItemStarted
from esc_cli.api.images import UpscaleOptions, upscale_images
from esc_cli.cli.app import main
from esc_cli.io.probe import probe
from esc_cli.scale import LocalImageRunner, LocalSegmentRunner
from tests.cli.test_video import make_clip, save_tiny_model

RNG = np.random.default_rng(9)


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    d = tmp_path_factory.mktemp("scale")
    folder = d / "images"
    (folder / "sub").mkdir(parents=True)
    for i in range(5):
        h, w = 20 + 3 * i, 18 + 2 * i
        Image.fromarray((RNG.random((h, w, 3)) * 255).astype(np.uint8)).save(folder / f"rgb{i}.png")
    Image.fromarray((RNG.random((17, 15, 4)) * 255).astype(np.uint8), "RGBA").save(folder / "sub" / "alpha.png")
    Image.fromarray((RNG.random((21, 19)) * 255).astype(np.uint8), "L").save(folder / "sub" / "gray.jpg", quality=90)
    (folder / "notes.txt").write_text("not an image")
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    big = d / "big"
    big.mkdir()
    for i in range(3):  # slow enough (tens of ms per item at least) that a kill lands mid-item
        Image.fromarray((RNG.random((160, 160, 3)) * 255).astype(np.uint8)).save(big / f"big{i}.png")
    return {
        "dir": d,
        "images": folder,
        "big": big,
        "model": save_tiny_model(d / "tiny.safetensors", seed=5),
        "clip": make_clip(d / "clip.mp4", audio=True, seconds=1.0),
    }


def tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def run_json(args: list[str], capsys) -> tuple[int, list[dict], str]:
    code = main(args + ["--json"])
    out, err = capsys.readouterr()
    return code, [json.loads(line) for line in out.splitlines() if line.strip()], err


def comparable(events: list[dict]) -> list[dict]:
    """Events without timings and device names, sorted by index (several workers finish out of order)."""
    keep = []
    for e in events:
        e = {k: v for k, v in e.items() if k not in ("seconds", "device")}
        keep.append(e)
    return sorted(keep, key=lambda e: (e["event"] != "start", e["event"] == "summary", e.get("index", 0)))


def test_devices_cpu_cpu_folder_matches_one_worker_and_plain_run(assets, tmp_path, capsys):
    model = str(assets["model"])
    common = ["upscale", str(assets["images"]), "-r", "-s", "2", "--model", model]
    plain, two = tmp_path / "plain", tmp_path / "two"
    code_p, ev_p, _ = run_json(common + ["-o", str(plain), "--device", "cpu"], capsys)
    code_2, ev_2, err = run_json(common + ["-o", str(two), "--devices", "cpu,cpu"], capsys)
    assert code_p == code_2 == 1  # broken.png fails in both
    assert tree(two) == tree(plain)
    assert len(tree(two)) == 7
    assert ev_2[0]["device"] == "cpu,cpu" and ev_2[0]["total"] == 9
    strip = lambda evs: [{k: v for k, v in e.items() if k != "output"} for e in comparable(evs)]  # noqa: E731
    outputs = lambda evs: sorted(str(Path(e["output"]).name) for e in evs if e.get("output"))  # noqa: E731
    assert strip(ev_2) == strip(ev_p)
    assert outputs(ev_2) == outputs(ev_p)
    summary = ev_2[-1]
    assert (summary["event"], summary["done"], summary["failed"], summary["ignored"]) == ("summary", 7, 1, 1)
    assert {e["device"] for e in ev_2 if e["event"] == "item" and e["status"] == "done"} == {"cpu"}
    assert "broken.png" in err
    assert not [p for p in tmp_path.rglob("*") if ".esc-tmp" in p.name]


def test_devices_usage_errors(assets, tmp_path):
    src = str(assets["images"] / "rgb0.png")
    assert main(["upscale", src, "--devices", "gpu7", "-o", str(tmp_path / "a.png")]) == 2
    assert main(["upscale", src, "--devices", "cpu", "--ray", "local", "-o", str(tmp_path / "a.png")]) == 2
    assert main(["upscale", src, "--devices", "cpu,cpu", "-o", "-"]) == 2
    assert main(["upscale", "nosuchscheme://bucket/in", "--devices", "cpu,cpu", "-o", str(tmp_path / "o")]) == 2
    assert main(["video", src, str(tmp_path / "v.mp4"), "--devices", "cpu", "--ray", "local"]) == 2
    assert main(["video", "s3://bucket/clip.mp4", str(tmp_path / "v.mp4"), "--devices", "cpu"]) == 2
    assert not list(tmp_path.iterdir())


class KillOnStart:
    """An event callback that SIGKILLs the worker holding an item when that item starts, `times` times."""

    def __init__(self, runner, index: int, times: int) -> None:
        self.runner, self.index, self.times = runner, index, times
        self.killed: list[int] = []
        self.events: list = []

    def __call__(self, event) -> None:
        self.events.append(event)
        if isinstance(event, ItemStarted) and event.index == self.index and len(self.killed) < self.times:
            for slot in self.runner.pool.slots:
                if slot.alive and slot.task is not None and slot.task.key == self.index:
                    os.kill(slot.pid, signal.SIGKILL)
                    self.killed.append(slot.pid)


def test_worker_killed_mid_item_is_retried_on_another_worker(assets, tmp_path):
    from esc_cli.api.loading import load_model

    network = load_model(str(assets["model"]))
    reference = upscale_images([str(assets["big"])], UpscaleOptions(scale=2, output=str(tmp_path / "ref"), device="cpu"),
                               network=network)
    runner = LocalImageRunner(["cpu", "cpu"])
    killer = KillOnStart(runner, index=2, times=1)
    notes: list[str] = []
    summary = upscale_images([str(assets["big"])], UpscaleOptions(scale=2, output=str(tmp_path / "out")),
                             network=network, runner=runner, on_event=killer, warn=notes.append)
    assert len(killer.killed) == 1
    assert any("died (killed by signal 9); retrying on another worker" in n for n in notes), notes
    assert (summary.done, summary.failed, summary.exit_code) == (3, 0, 0) == (reference.done, 0, 0)
    assert tree(tmp_path / "out") == tree(tmp_path / "ref")
    assert sorted(e.index for e in summary.items) == [1, 2, 3]
    assert not [p for p in tmp_path.rglob("*") if ".esc-tmp" in p.name]


def test_item_whose_workers_die_twice_is_reported_failed_not_dropped(assets, tmp_path):
    from esc_cli.api.loading import load_model

    network = load_model(str(assets["model"]))
    runner = LocalImageRunner(["cpu", "cpu"])
    killer = KillOnStart(runner, index=1, times=2)
    summary = upscale_images([str(assets["big"])], UpscaleOptions(scale=2, output=str(tmp_path / "out")),
                             network=network, runner=runner, on_event=killer)
    assert len(killer.killed) == 2
    assert (summary.done, summary.failed, summary.exit_code) == (2, 1, 1)
    failed = [e for e in summary.items if e.status == "failed"]
    assert failed[0].index == 1 and "already retried once" in failed[0].error and "big0.png" in failed[0].error
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["big1_x2.png", "big2_x2.png"]


@pytest.fixture(scope="module")
def one_worker_video(assets) -> Path:
    """The clip upscaled by one worker, in segments of 0.3 s (3 frames): the reference."""
    from esc_cli.api.loading import load_model
    from esc_cli.api.video import upscale_video

    out = assets["dir"] / "one.mp4"
    upscale_video(assets["clip"], out, network=load_model(str(assets["model"])), scale=2, segment_seconds=0.3,
                  segment_runner=LocalSegmentRunner(["cpu"]))
    return out


def test_video_segments_on_two_workers_match_one_worker(assets, one_worker_video, tmp_path, capsys):
    model = str(assets["model"])
    two = tmp_path / "two.mp4"
    args = ["video", str(assets["clip"]), str(two), "--model", model, "-s", "2", "--segment-seconds", "0.3"]
    code_2, ev_2, _ = run_json(args + ["--devices", "cpu,cpu"], capsys)
    assert code_2 == 0
    assert two.read_bytes() == one_worker_video.read_bytes()
    assert ev_2[0]["device"] == "cpu,cpu" and ev_2[0]["segments"] == 4
    assert [e["event"] for e in ev_2][-2:] == ["item", "summary"] and ev_2[-1]["exit_code"] == 0
    info = probe(two)
    assert info.frame_count == 10 and (info.width, info.height) == (128, 96)
    assert [s.kind for s in info.streams].count("audio") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["two.mp4"]


def test_video_worker_killed_mid_segment_still_completes(assets, one_worker_video, tmp_path):
    from esc_cli.api.loading import load_model
    from esc_cli.api.video import upscale_video

    network = load_model(str(assets["model"]))
    runner = LocalSegmentRunner(["cpu", "cpu"])
    state = {"killed": 0}

    def progress(p) -> None:
        if state["killed"] == 0 and runner.pool is not None:
            busy = [s for s in runner.pool.slots if s.alive and s.task is not None]
            if busy:
                os.kill(busy[0].pid, signal.SIGKILL)
                state["killed"] += 1

    notes: list[str] = []
    result = upscale_video(assets["clip"], tmp_path / "out.mp4", network=network, scale=2, segment_seconds=0.3,
                           segment_runner=runner, progress=progress, notice=notes.append)
    assert state["killed"] == 1
    assert any("retrying on another worker" in n for n in notes), notes
    assert result.frames == 10
    assert (tmp_path / "out.mp4").read_bytes() == one_worker_video.read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.mp4"]


def _descendants(pid: int) -> set[int]:
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as handle:
                    parents[int(entry)] = int(handle.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
    found, frontier = set(), {pid}
    while frontier:
        frontier = {p for p, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def test_sigterm_mid_batch_exits_143_and_stops_every_worker(assets, tmp_path):
    import subprocess
    import sys
    import time

    folder = tmp_path / "many"
    folder.mkdir()
    for i in range(12):
        Image.fromarray((RNG.random((160, 160, 3)) * 255).astype(np.uint8)).save(folder / f"m{i:02d}.png")
    out = tmp_path / "out"
    cmd = [sys.executable, "-c", "import sys; from esc_cli.cli.app import main; sys.exit(main())", "upscale",
           str(folder), "-o", str(out), "--model", str(assets["model"]), "--devices", "cpu,cpu", "--json"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines = []
    for line in proc.stdout:
        lines.append(json.loads(line))
        if lines[-1]["event"] == "item":
            break
    workers = _descendants(proc.pid)
    assert len(workers) >= 2  # the fork server and its two workers
    proc.send_signal(signal.SIGTERM)
    rest, _ = proc.communicate(timeout=60)
    events = lines + [json.loads(x) for x in rest.splitlines() if x.strip()]
    assert proc.returncode == 143
    assert events[-1]["event"] == "summary" and events[-1]["interrupted"] and events[-1]["exit_code"] == 143
    assert events[-1]["done"] < 12
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(os.path.exists(f"/proc/{p}") for p in workers):
        time.sleep(0.1)
    assert not [p for p in workers if os.path.exists(f"/proc/{p}")]
    assert not [p for p in tmp_path.rglob("*") if ".esc-tmp" in p.name]


def test_fsspec_urls_in_and_out_match_local_paths(assets, tmp_path, capsys):
    """file:// URLs go through fsspec exactly as s3:// or gs:// would: listed by the driver, read and
    written by the workers; events name the URLs; a rerun skips or refuses existing outputs."""
    model = str(assets["model"])
    local = tmp_path / "local"
    code_l, ev_l, _ = run_json(["upscale", str(assets["images"]), "-r", "-s", "2", "--model", model, "-o", str(local),
                                "--device", "cpu"], capsys)
    src_url, out_url = f"file://{assets['images']}", f"file://{tmp_path / 'remote'}"
    args = ["upscale", src_url, "-r", "-s", "2", "--model", model, "-o", out_url, "--devices", "cpu,cpu"]
    code_u, ev_u, err = run_json(args, capsys)
    assert code_u == code_l == 1
    assert tree(tmp_path / "remote") == tree(local)
    items = {e["input"]: e for e in ev_u if e["event"] == "item"}
    assert items[f"{src_url}/sub/alpha.png"]["output"] == f"{out_url}/sub/alpha_x2.png"
    assert items[f"{src_url}/sub/alpha.png"]["status"] == "done"
    assert items[f"{src_url}/broken.png"]["status"] == "failed" and src_url in items[f"{src_url}/broken.png"]["error"]
    assert "esc-urls-" not in json.dumps(ev_u) + err and "esc-url-" not in json.dumps(ev_u)
    code_s, ev_s, _ = run_json(args + ["--skip-existing"], capsys)
    assert code_s == 1 and ev_s[-1]["skipped"] == 7 and ev_s[-1]["done"] == 0
    code_f, ev_f, _ = run_json(args, capsys)
    assert code_f == 3 and ev_f[-1]["failed"] == 8
    assert not [p for p in tmp_path.rglob("*") if ".esc-tmp" in p.name]
