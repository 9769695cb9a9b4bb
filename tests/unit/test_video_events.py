"""The video events are the typed schema of esc_cli.api.events: their NDJSON field order is the contract."""

from __future__ import annotations

import dataclasses

import pytest

from esc_cli.api.events import BatchStarted, ItemFinished, VideoFinished, VideoProgress, VideoStarted, event_dict

START_KEYS = ["event", "total", "model", "model_scale", "scale", "passes", "device", "dtype", "tile", "version",
              "command", "input", "output", "frames", "fps", "width", "height", "out_width", "out_height", "codec",
              "pix_fmt", "segments", "segments_done", "vfr"]
PROGRESS_KEYS = ["event", "index", "frames_done", "frames_total", "fps", "eta_seconds", "segment", "segments",
                 "device", "dtype"]
ITEM_KEYS = ["event", "index", "total", "status", "input", "output", "seconds", "tile", "device", "dtype", "error",
             "reason", "width", "height", "out_width", "out_height", "notes"]
VIDEO_ITEM_KEYS = ITEM_KEYS + ["frames", "codec", "pix_fmt", "segments", "segments_reused", "streams"]


def _start() -> VideoStarted:
    return VideoStarted(total=1, model="default", model_scale=2, scale=2.0, passes=1, device="cpu", dtype="float32",
                        tile=None, input="in.mp4", output="out.mp4", frames=10, fps=10.0, width=64, height=48,
                        out_width=128, out_height=96, codec="libx264", pix_fmt="yuv420p", segments=1,
                        segments_done=0, vfr=False)


def test_video_start_extends_the_batch_start_fields_in_order():
    data = event_dict(_start())
    assert list(data) == START_KEYS
    assert data["event"] == "start" and data["command"] == "video"
    assert isinstance(_start(), BatchStarted)


def test_video_progress_and_item_field_order():
    p = VideoProgress(frames_done=3, frames_total=10, fps=1.5, eta_seconds=4.7, segment=0, segments=1,
                      device="cpu", dtype="float32")
    assert list(event_dict(p)) == PROGRESS_KEYS and event_dict(p)["index"] == 1 and p.event == "progress"
    done = VideoFinished(index=1, total=1, status="done", input="in.mp4", output="out.mp4", seconds=1.0, frames=10,
                         codec="libx264", pix_fmt="yuv420p", segments=1, segments_reused=0,
                         streams={"audio": 1})
    assert list(event_dict(done)) == VIDEO_ITEM_KEYS and isinstance(done, ItemFinished)
    failed = ItemFinished(index=1, total=1, status="failed", input="in.mp4", output=None, seconds=0.0, error="x")
    assert list(event_dict(failed)) == ITEM_KEYS


def test_video_fields_are_required_keywords():
    with pytest.raises(TypeError):
        VideoStarted(1, "default", 2, 2.0, 1, "cpu", "float32", None)  # the video fields are missing
    fields = {f.name: f for f in dataclasses.fields(VideoFinished)}
    assert fields["frames"].kw_only and not fields["index"].kw_only
