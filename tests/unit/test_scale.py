"""esc_cli.scale: device lists, encoder pinning, and the worker pool's scheduling and recovery.

The pool tests use the tiny handlers below (no model): a worker that fails a task, one that
dies on a task (os._exit, like a crash in a native library) and one that cannot start.
"""

from __future__ import annotations

import os

import pytest

from esc_cli.errors import UsageError
from esc_cli.io.frames import EncodeSettings
from esc_cli.scale.devices import ENCODER_THREADS, describe, parse_devices
from esc_cli.scale.bookkeeping import SegmentFrames, pin_encoder_threads, remove_temp_outputs
from esc_cli.scale.pool import Task, WorkerPool


class Echo:
    """Task payloads: ("ok", x) -> x * 2; ("raise", _) -> ValueError; ("die", _) -> process exit."""

    def __init__(self, device, state, setup) -> None:
        if setup.get("fail_init"):
            raise RuntimeError("no such accelerator")
        self.factor = state["factor"]

    def handle(self, payload, send):
        kind, value = payload
        send(("pid", os.getpid()))
        if kind == "raise":
            raise ValueError(f"bad value {value}")
        if kind == "die":
            os._exit(7)
        return value * self.factor


def echo(device, state, setup) -> Echo:
    return Echo(device, state, setup)


FACTORY = "tests.unit.test_scale.echo"


def run_pool(tasks, *, devices=("cpu", "cpu"), setup=None, restarts=1):
    pool = WorkerPool(list(devices), FACTORY, {"factor": 2}, setup or {}, restarts_per_device=restarts)
    out = {"result": {}, "error": {}, "lost": {}, "retry": [], "pids": {}}
    pool.run(
        [Task(k, p) for k, p in tasks],
        on_result=lambda k, r, d: out["result"].__setitem__(k, r),
        on_error=lambda k, e, d: out["error"].__setitem__(k, e),
        on_lost=lambda k, why: out["lost"].__setitem__(k, why),
        on_message=lambda k, m, d: out["pids"].setdefault(k, []).append(m[1]),
        on_retry=lambda k, why: out["retry"].append((k, why)),
    )
    assert not [s for s in pool.slots if s.process is not None and s.process.is_alive()]
    return out


def test_parse_devices():
    assert parse_devices(None) is None and parse_devices("  ") is None
    assert parse_devices("cpu,cpu") == ["cpu", "cpu"]
    assert parse_devices(" CPU , cpu ,cpu") == ["cpu"] * 3
    for bad in ("gpu", "cpu,,cpu", "cuda:x", "tpu:0"):
        with pytest.raises(UsageError):
            parse_devices(bad)
    import torch

    if not torch.cuda.is_available():
        with pytest.raises(UsageError, match="CUDA is not available"):
            parse_devices("cuda:0,cuda:1")
        assert parse_devices("all") in (["cpu"], ["mps"])
    assert describe(["cpu", "cpu"], None) == ("cpu,cpu", "float32")


def test_encoder_threads_pinned_once():
    settings = pin_encoder_threads(EncodeSettings())
    assert settings.extra == ("-threads", str(ENCODER_THREADS))
    assert settings.args()[-2:] == ["-threads", str(ENCODER_THREADS)]
    assert pin_encoder_threads(settings) == settings
    own = EncodeSettings(extra=("-threads", "2"))
    assert pin_encoder_threads(own) is own


def test_segment_frames_retract_on_retry():
    seen: list[int] = []
    frames = SegmentFrames(seen.append)
    frames.add(3, 2)
    frames.add(3, 1)
    frames.retract(3)
    frames.retract(3)
    assert seen == [2, 1, -3] and sum(seen) == 0


def test_remove_temp_outputs_only_that_outputs_temps(tmp_path):
    out = tmp_path / "a_x2.png"
    (tmp_path / ".a_x2.abc123.esc-tmp.png").write_bytes(b"x")
    (tmp_path / ".b_x2.abc123.esc-tmp.png").write_bytes(b"x")
    (tmp_path / ".a_x2.abc123.esc-tmp.jpg").write_bytes(b"x")
    remove_temp_outputs(out)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".a_x2.abc123.esc-tmp.jpg", ".b_x2.abc123.esc-tmp.png"]


def test_pool_results_and_errors_use_every_worker():
    out = run_pool([(i, ("ok", i)) for i in range(8)] + [(99, ("raise", 5))])
    assert out["result"] == {i: 2 * i for i in range(8)}
    assert "ValueError: bad value 5" in out["error"][99]
    assert not out["lost"] and not out["retry"]
    assert len({p for pids in out["pids"].values() for p in pids}) == 2  # both workers took items


def test_pool_retries_a_dead_workers_task_once_on_another_then_reports_it():
    out = run_pool([(1, ("ok", 1)), (2, ("die", 0)), (3, ("ok", 3))])
    assert out["result"] == {1: 2, 3: 6}
    assert [k for k, _ in out["retry"]] == [2] and "exit code 7" in out["retry"][0][1]
    assert "already retried once" in out["lost"][2]
    pids = out["pids"][2]
    assert len(pids) == 2 and pids[0] != pids[1]  # the retry ran in another process


def test_pool_with_no_worker_left_reports_every_task():
    out = run_pool([(1, ("ok", 1)), (2, ("ok", 2))], setup={"fail_init": True})
    assert set(out["lost"]) == {1, 2}
    assert all("no worker left" in why and "no such accelerator" in why for why in out["lost"].values())
    assert not out["result"]


def test_workers_and_ray_actor_body_run_process_job_like_the_local_loop(tiny_model, tmp_path):
    """The one per-item contract: a pool worker, a Ray actor body (without Ray) and the one-device
    loop all go through `process_job`, so they write the same bytes and report the same item."""
    import numpy as np
    from PIL import Image

    from esc_cli.api.events import ItemFinished, ItemStarted
    from esc_cli.api.images import UpscaleOptions, upscale_images
    from esc_cli.api.inputs import collect_inputs
    from esc_cli.api.outputs import plan_outputs
    from esc_cli.scale.ray_backend import _Actor
    from esc_cli.scale.workers import IMAGE_WORKER, ImageTask, image_worker, weights_of

    src = tmp_path / "in.png"
    Image.fromarray(np.random.default_rng(3).integers(0, 256, (12, 10, 3), dtype=np.uint8)).save(src)
    local = upscale_images([str(src)], UpscaleOptions(scale=2, output=str(tmp_path / "local.png")), network=tiny_model)
    assert local.done == 1
    expected = (tmp_path / "local.png").read_bytes()

    setup = {"options": UpscaleOptions(scale=2), "input_paths": [src]}
    for name, run in (
        ("worker.png", lambda task, sent: image_worker("cpu", weights_of(tiny_model), setup).handle(task, sent.append)),
        ("actor.png", lambda task, sent: _Actor(IMAGE_WORKER, weights_of(tiny_model), setup, False).handle(task)),
    ):
        items, _ = collect_inputs([str(src)])
        job = plan_outputs(items, UpscaleOptions(scale=2, output=str(tmp_path / name)))[0]
        sent: list = []
        result = run(ImageTask(job=job, index=3, total=5), sent)
        if isinstance(result, tuple):  # the actor body answers (kind, value, messages)
            kind, result, sent = result
            assert kind == "result"
        assert isinstance(result, ItemFinished) and result.status == "done", result
        assert (result.index, result.total, result.output) == (3, 5, str(tmp_path / name))
        assert any(isinstance(m, ItemStarted) and m.index == 3 for m in sent)
        assert (tmp_path / name).read_bytes() == expected
