"""The overlapped folder loop (api/overlap.py): same bytes, same events in the same order as the plain loop;
failures stay with their item; an interruption leaves finished outputs whole and no temporary file."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import pytest
from PIL import Image

from esc_cli.api.images import upscale_images
from esc_cli.api.options import UpscaleOptions


@pytest.fixture
def folder(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    for i in range(4):
        Image.new("RGB", (20 + i, 16), (50 * i, 100, 200)).save(src / f"p{i}.png")
    (src / "p2.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x02" * 30)  # corrupt: fails alone
    Image.new("RGB", (9, 9), "teal").save(src / "p4.jpg")
    return src


def _run(folder, out, tiny_model, monkeypatch, overlap: bool, **kw):
    monkeypatch.setenv("ESC_OVERLAP", "1" if overlap else "0")
    events = []
    options = UpscaleOptions(scale=2, output=str(out), device="cpu", tile=8, **kw)
    summary = upscale_images([str(folder)], options, on_event=events.append, network=tiny_model)
    shape = []
    for event in events:
        fields = {k: v.replace(str(out), "OUT") if isinstance(v, str) else v
                  for k, v in asdict(event).items() if k != "seconds"}
        shape.append(fields)
    return summary, shape


def test_same_outputs_and_events_as_the_plain_loop(folder, tmp_path, tiny_model, monkeypatch):
    plain, plain_events = _run(folder, tmp_path / "plain", tiny_model, monkeypatch, overlap=False)
    over, over_events = _run(folder, tmp_path / "over", tiny_model, monkeypatch, overlap=True)
    assert (plain.done, plain.failed, plain.exit_code) == (over.done, over.failed, over.exit_code) == (4, 1, 1)
    assert over_events == plain_events
    for name in ("p0_x2.png", "p1_x2.png", "p3_x2.png", "p4_x2.jpg"):
        assert (tmp_path / "over" / name).read_bytes() == (tmp_path / "plain" / name).read_bytes()
    # each item's events are contiguous: started, progress..., finished, then the next item
    order = [(e["event"], e.get("index")) for e in over_events if e["event"] in ("item_start", "progress", "item")]
    current = None
    for kind, index in order:
        if kind == "item_start":
            assert current is None
            current = index
        elif kind == "progress":
            assert index == current
        elif index == current:
            current = None
    assert not list((tmp_path / "over").glob(".*esc-tmp*"))


def test_a_failed_write_costs_only_its_item(folder, tmp_path, tiny_model, monkeypatch):
    import esc_cli.api.jobs as jobs

    real = jobs.write_image

    def flaky(image, target, fmt, **kw):
        if Path(target).name.startswith(".p1_"):  # the temp file of p1's output (random suffix)
            raise OSError(28, "No space left on device")
        return real(image, target, fmt, **kw)

    monkeypatch.setattr(jobs, "write_image", flaky)
    summary, _ = _run(folder, tmp_path / "out", tiny_model, monkeypatch, overlap=True)
    failed = [item for item in summary.items if item.status == "failed"]
    assert {item.input.rsplit("/", 1)[-1] for item in failed} == {"p1.png", "p2.png"}
    assert summary.done == 3 and not (tmp_path / "out" / "p1_x2.png").exists()
    assert not list((tmp_path / "out").glob(".*esc-tmp*"))


def test_interrupt_keeps_finished_outputs_whole(folder, tmp_path, tiny_model, monkeypatch):
    import esc_cli.api.processor as processor

    real = processor.ImageProcessor.upscale_prepared
    calls = []

    def interrupted(self, image, fmt, **kw):
        calls.append(kw.get("index"))
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(self, image, fmt, **kw)

    monkeypatch.setattr(processor.ImageProcessor, "upscale_prepared", interrupted)
    events = []
    monkeypatch.setenv("ESC_OVERLAP", "1")
    with pytest.raises(KeyboardInterrupt):
        upscale_images([str(folder)], UpscaleOptions(scale=2, output=str(tmp_path / "out"), device="cpu"),
                       on_event=events.append, network=tiny_model)  # fmt: skip
    done = [e for e in events if getattr(e, "event", "") == "item" and e.status == "done"]
    assert len(done) == 2 and events[-1].interrupted
    for event in done:
        with Image.open(event.output) as image:
            image.load()
    assert not list((tmp_path / "out").glob(".*esc-tmp*"))
