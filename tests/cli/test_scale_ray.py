"""`--ray`: the same jobs on a local Ray instance (`num_cpus=2`), outputs identical to a local run.

Needs the `ray` extra (`pip install -e '.[ray]'`); marked `ray` and `slow` so the default run
does not need Ray; `.ci/run` installs the extra and runs `python -m pytest -q -m ray`.
One Ray instance serves the whole module (about 10 s to start here); every runner reuses it.
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from esc_cli.api.images import UpscaleOptions, upscale_images
from esc_cli.cli.app import main
from esc_cli.io.probe import probe
from tests.cli.test_video import make_clip, save_tiny_model

pytestmark = [pytest.mark.ray, pytest.mark.slow]

RNG = np.random.default_rng(11)


@pytest.fixture(scope="module")
def cluster():
    import ray  # the ray extra; only these tests need it

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    d = tmp_path_factory.mktemp("ray")
    folder = d / "images"
    (folder / "sub").mkdir(parents=True)
    for i in range(4):
        Image.fromarray((RNG.random((20 + 3 * i, 18 + 2 * i, 3)) * 255).astype(np.uint8)).save(folder / f"rgb{i}.png")
    Image.fromarray((RNG.random((17, 15, 4)) * 255).astype(np.uint8), "RGBA").save(folder / "sub" / "alpha.png")
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    big = d / "big"
    big.mkdir()
    for i in range(6):
        Image.fromarray((RNG.random((256, 256, 3)) * 255).astype(np.uint8)).save(big / f"big{i}.png")
    return {"dir": d, "images": folder, "big": big, "model": save_tiny_model(d / "tiny.safetensors", seed=7),
            "clip": make_clip(d / "clip.mp4", audio=True, seconds=1.0)}


def tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def run_json(args: list[str], capsys) -> tuple[int, list[dict]]:
    code = main(args + ["--json"])
    out, _ = capsys.readouterr()
    return code, [json.loads(line) for line in out.splitlines() if line.strip()]


def plain(events: list[dict]) -> list[dict]:
    drop = ("seconds", "device")
    return sorted(({k: v for k, v in e.items() if k not in drop} for e in events),
                  key=lambda e: (e["event"] != "start", e["event"] == "summary", e.get("index", 0)))


def test_folder_on_ray_matches_local_run(cluster, assets, tmp_path, capsys):
    args = ["upscale", str(assets["images"]), "-r", "-s", "2", "--model", str(assets["model"])]
    code_l, ev_l = run_json(args + ["-o", str(tmp_path / "local"), "--device", "cpu"], capsys)
    code_r, ev_r = run_json(args + ["-o", str(tmp_path / "ray"), "--ray", "local"], capsys)
    assert code_l == code_r == 1  # broken.png is reported failed in both
    assert tree(tmp_path / "ray") == tree(tmp_path / "local") and len(tree(tmp_path / "ray")) == 5
    assert ev_r[0]["device"] == "ray:2xcpu"
    same = lambda evs: [{k: v for k, v in e.items() if k != "output"} for e in plain(evs)]  # noqa: E731
    assert same(ev_r) == same(ev_l)
    assert ev_r[-1]["done"] == 5 and ev_r[-1]["failed"] == 1 and ev_r[-1]["exit_code"] == 1


def test_video_on_ray_matches_local_workers(cluster, assets, tmp_path, capsys):
    args = ["video", str(assets["clip"]), "--model", str(assets["model"]), "-s", "2", "--segment-seconds", "0.3"]
    local, remote = tmp_path / "local.mp4", tmp_path / "ray.mp4"
    assert main(args[:2] + [str(local)] + args[2:] + ["--devices", "cpu", "-q"]) == 0
    code, events = run_json(args[:2] + [str(remote)] + args[2:] + ["--ray", "local"], capsys)
    assert code == 0 and events[-1]["exit_code"] == 0 and events[-2]["segments"] == 4
    assert remote.read_bytes() == local.read_bytes()
    assert probe(remote).frame_count == 10
    assert sorted(p.name for p in tmp_path.iterdir()) == ["local.mp4", "ray.mp4"]


def _killer(pool, state: dict) -> None:
    """Hooks: record actor pids once they are up, SIGKILL the first one as soon as tasks are in flight."""
    def started(p) -> None:
        state["pids"] = p.actor_pids()

    def submitted(p) -> None:
        os.kill(state["pids"][0], signal.SIGKILL)
        state["killed"] = True

    pool.on_started, pool.on_submitted = started, submitted


def test_actor_killed_mid_job_items_retried_by_ray(cluster, assets, tmp_path):
    from esc_cli.api.loading import load_model
    from esc_cli.scale.ray_backend import RayImageRunner

    network = load_model(str(assets["model"]))
    reference = tmp_path / "ref"
    upscale_images([str(assets["big"])], UpscaleOptions(scale=2, output=str(reference), device="cpu"), network=network)
    runner = RayImageRunner("local")
    state: dict = {}
    _killer(runner.pool, state)
    summary = upscale_images([str(assets["big"])], UpscaleOptions(scale=2, output=str(tmp_path / "out")),
                             network=network, runner=runner)
    assert state.get("killed")
    assert (summary.done, summary.failed, summary.exit_code) == (6, 0, 0)
    assert tree(tmp_path / "out") == tree(reference)
    assert not [p for p in tmp_path.rglob("*") if ".esc-tmp" in p.name]


def test_actor_lost_without_retries_reports_its_items(cluster, assets, tmp_path, monkeypatch):
    from esc_cli.api.loading import load_model
    from esc_cli.scale import ray_backend

    monkeypatch.setattr(ray_backend, "ACTOR_RESTARTS", 0)
    monkeypatch.setattr(ray_backend, "TASK_RETRIES", 0)
    network = load_model(str(assets["model"]))
    runner = ray_backend.RayImageRunner("local")
    state: dict = {}
    _killer(runner.pool, state)
    summary = upscale_images([str(assets["big"])], UpscaleOptions(scale=2, output=str(tmp_path / "out")),
                             network=network, runner=runner)
    assert state.get("killed")
    assert summary.done + summary.failed == 6 and summary.failed >= 1 and summary.exit_code == 1
    failed = [e for e in summary.items if e.status == "failed"]
    assert all("Ray actor was lost" in e.error for e in failed)
    assert sorted(e.index for e in summary.items) == list(range(1, 7))
    outputs = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert len(outputs) == summary.done
    assert not [p for p in tmp_path.rglob("*") if ".esc-tmp" in p.name]


def test_video_actor_killed_mid_segment_still_identical(cluster, assets, tmp_path):
    from esc_cli.api.loading import load_model
    from esc_cli.api.video import upscale_video
    from esc_cli.scale import LocalSegmentRunner
    from esc_cli.scale.ray_backend import RaySegmentRunner

    network = load_model(str(assets["model"]))
    local = upscale_video(assets["clip"], tmp_path / "local.mp4", network=network, scale=2, segment_seconds=0.3,
                          segment_runner=LocalSegmentRunner(["cpu"]))
    runner = RaySegmentRunner("local")
    state: dict = {}
    _killer(runner.pool, state)
    result = upscale_video(assets["clip"], tmp_path / "ray.mp4", network=network, scale=2, segment_seconds=0.3,
                           segment_runner=runner)
    assert state.get("killed")
    assert result.frames == local.frames == 10
    assert (tmp_path / "ray.mp4").read_bytes() == (tmp_path / "local.mp4").read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["local.mp4", "ray.mp4"]


def test_fsspec_urls_on_ray(cluster, assets, tmp_path, capsys):
    args = ["upscale", "-r", "-s", "2", "--model", str(assets["model"])]
    code_l, _ = run_json(args + [str(assets["images"]), "-o", str(tmp_path / "local"), "--device", "cpu"], capsys)
    out_url = f"file://{tmp_path / 'remote'}"
    code_r, events = run_json(args + [f"file://{assets['images']}", "-o", out_url, "--ray", "local"], capsys)
    assert code_r == code_l == 1
    assert tree(tmp_path / "remote") == tree(tmp_path / "local")
    done = [e for e in events if e["event"] == "item" and e["status"] == "done"]
    assert len(done) == 5 and all(e["output"].startswith(out_url + "/") for e in done)
