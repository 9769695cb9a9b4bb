"""Video building blocks: probing, the Matroska frame pipe, seeking, timestamps, segments, frame processing."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from esc_cli.engine.rescale import plan_passes
import torch

from esc_cli.api.video_job import Segment, output_size, plan_segments, prepare_job
from esc_cli.api.video_join import join_segments
from esc_cli.api.video_pipeline import FrameProcessor, encode_segment, to_array, to_tensor
from esc_cli.errors import InputError, VideoError
from esc_cli.io.frames import EncodeSettings, FrameReader, FrameWriter, needs_even
from esc_cli.io.probe import frame_hashes, pix_fmt_depth, probe
from tests.cli.test_video import make_clip


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    d = tmp_path_factory.mktemp("unit-video")
    vfr = make_clip(
        d / "vfr.mkv", seconds=2.0, vcodec=("-c:v", "ffv1"),
        # frames 0-9 every 100 ms, then every 50 ms: a variable frame rate
        vf=("-vf", "settb=1/1000,setpts='if(lt(N,10),N*100,1000+(N-10)*50)'", "-fps_mode", "vfr", "-enc_time_base", "1/1000"),
    )
    return {
        "cfr": make_clip(d / "cfr.mp4", audio=True),
        "lossless": make_clip(d / "lossless.mkv", size="40x30", seconds=1.0, vcodec=("-c:v", "ffv1")),
        "vfr": vfr,
    }


def read_all(reader: FrameReader) -> list[np.ndarray]:
    frames = []
    while (f := reader.read()) is not None:
        frames.append(f.copy())
    reader.close()
    return frames


def test_probe_cfr_clip(clips):
    info = probe(clips["cfr"])
    assert (info.width, info.height, info.fps, info.frame_count) == (64, 48, Fraction(10), 10)
    assert info.pix_fmt == "yuv420p" and info.codec == "h264" and not info.is_vfr
    assert [s.kind for s in info.streams] == ["video", "audio"]
    assert [s.kind for s in info.others()] == ["audio"]
    assert info.seconds(10) == pytest.approx(1.0)


def test_probe_refuses_non_video(tmp_path):
    bad = tmp_path / "x.mp4"
    bad.write_bytes(b"\x00" * 100)
    with pytest.raises(InputError, match="x.mp4"):
        probe(bad)
    with pytest.raises(InputError, match="no such file"):
        probe(tmp_path / "missing.mp4")


def test_seek_is_frame_exact(clips):
    info = probe(clips["cfr"])
    every = read_all(FrameReader(info))
    assert len(every) == 10
    part = read_all(FrameReader(info, start=6, count=3))
    assert len(part) == 3 and all(np.array_equal(a, b) for a, b in zip(part, every[6:9]))


@pytest.mark.parametrize("pix_fmt,codec", [("bgr0", "rawvideo"), ("gbrp16le", "ffv1")])
def test_matroska_pipe_is_lossless_and_keeps_timestamps(clips, tmp_path, pix_fmt, codec):
    """Frames sent through the pipe into a lossless encoder decode back bit-exact (8 and 16 bits)."""
    info = probe(clips["lossless"])
    depth = pix_fmt_depth(pix_fmt)
    frames = read_all(FrameReader(info, depth=depth))
    out = tmp_path / "rt.nut"
    stamps = [0, 100, 250, 300, 420, 500, 700, 710, 800, 900]  # milliseconds, irregular on purpose
    w = FrameWriter(out, width=info.width, height=info.height, settings=EncodeSettings(codec, None, None, pix_fmt),
                    time_base=Fraction(1, 1000), frame_rate=Fraction(10), default_duration_ns=100_000_000, fmt="nut")
    for f, ms, nxt in zip(frames, stamps, stamps[1:] + [1000]):
        w.write(f if depth == 8 else f.astype("<u2"), ms * 1_000_000, (nxt - ms) * 1_000_000)
    w.close()
    back = probe(out)
    assert [t - back.timestamps[0] for t in back.timestamps] == [round(Fraction(ms, 1000) / back.time_base) for ms in stamps]
    again = read_all(FrameReader(back, depth=depth))
    assert len(again) == len(frames) and all(np.array_equal(a, b) for a, b in zip(again, frames))


def test_writer_failure_raises_with_ffmpeg_lines(tmp_path):
    """libx264 refuses odd sizes in yuv420p: the exit status is checked and its message surfaced."""
    w = FrameWriter(tmp_path / "odd.mp4", width=33, height=25, settings=EncodeSettings(pix_fmt="yuv420p"),
                    time_base=Fraction(1, 10), frame_rate=Fraction(10), default_duration_ns=100_000_000)
    with pytest.raises(VideoError, match=r"ffmpeg exited with status \d+: [^\n]*(divisible|even|height|width)"):
        for i in range(5):
            w.write(np.zeros((25, 33, 3), np.uint8), i * 100_000_000, 100_000_000)
        w.close()
    w.abort()


def test_vfr_timestamps_survive_upscaling_and_segments(clips, tmp_path, tiny_model):
    src = probe(clips["vfr"])
    assert src.is_vfr and src.frame_count == 20
    from esc_cli.engine import Upscaler

    info = src
    job = prepare_job(info.path, tmp_path / "out.mkv", info=info, scale=2, settings=EncodeSettings(),
                      segment_frames=7, workdir=tmp_path / "work")
    assert [(s.start, s.end) for s in job.segments] == [(0, 7), (7, 14), (14, 20)]
    proc = FrameProcessor(Upscaler(tiny_model, device="cpu"), model_scale=2, scale=2, in_size=(64, 48),
                          out_size=job.out_size, enc_size=job.enc_size)
    for k in (2, 0, 1):  # any order: segments are independent
        encode_segment(job, k, proc)
    join_segments(job)
    out = probe(tmp_path / "out.mkv")
    rel = lambda i: [float((t - i.timestamps[0]) * i.time_base) for t in i.timestamps]  # noqa: E731
    assert out.frame_count == 20 and (out.width, out.height) == (128, 96)
    assert rel(out) == pytest.approx(rel(src), abs=1e-3)
    assert len(frame_hashes(tmp_path / "out.mkv")) == 20


def test_segment_plan_and_sizes():
    assert plan_segments(10, None) == [Segment(0, 0, 10)]
    assert plan_segments(10, 4) == [Segment(0, 0, 4), Segment(1, 4, 8), Segment(2, 8, 10)]
    assert sum(s.count for s in plan_segments(1001, 30)) == 1001
    assert plan_passes(2, 2) == 1 and plan_passes(2, 3) == 2 and plan_passes(2, 4) == 2 and plan_passes(4, 1) == 1
    assert plan_passes(2, 8) == 3 and plan_passes(4, 1.5) == 1
    assert output_size(33, 25, 3) == (99, 75) and output_size(64, 48, 1.5) == (96, 72)
    assert needs_even("yuv420p") == (True, True) and needs_even("yuv422p10le") == (True, False)
    assert needs_even("yuv444p") == (False, False)
    assert pix_fmt_depth("yuv420p10le") == 10 and pix_fmt_depth("yuv420p") == 8 and pix_fmt_depth("p010le") == 10


def test_frame_processor_passes_resample_and_pad(tiny_model):
    from esc_cli.engine import Upscaler

    up = Upscaler(tiny_model, device="cpu")
    proc = FrameProcessor(up, model_scale=2, scale=3, in_size=(11, 9), out_size=(33, 27), enc_size=(34, 28))
    x = torch.rand(2, 3, 9, 11)
    y = proc(x)
    assert proc.passes == 2 and y.shape == (2, 3, 28, 34)
    assert float(y.min()) >= 0 and float(y.max()) <= 1
    assert torch.equal(y[..., :27, 33], y[..., :27, 32]) and torch.equal(y[..., 27, :], y[..., 26, :])
    same = FrameProcessor(up, model_scale=2, scale=2, in_size=(11, 9), out_size=(22, 18), enc_size=(22, 18))
    assert torch.allclose(same(x[:1])[0], up.upscale(x[0]), atol=1e-6)


@pytest.mark.parametrize("dtype", [np.uint8, np.dtype("<u2")])
@pytest.mark.parametrize("scale,out_size,enc_size", [(2, (44, 36), (46, 38)), (2, (44, 36), (44, 36)), (3, (66, 54), (66, 54))])
def test_frame_processor_quantises_blocks_like_the_float_path(tiny_model, dtype, scale, out_size, enc_size):
    from esc_cli.engine import Upscaler

    up = Upscaler(tiny_model, device="cpu", tile=8, overlap=4)  # several tiles: blocks leave one by one
    x = torch.rand(2, 3, 18, 22, generator=torch.Generator().manual_seed(1))
    float_path = FrameProcessor(up, model_scale=2, scale=scale, in_size=(22, 18), out_size=out_size, enc_size=enc_size)
    quantised = FrameProcessor(up, model_scale=2, scale=scale, in_size=(22, 18), out_size=out_size,
                               enc_size=enc_size, frame_dtype=dtype)
    assert (quantised._blocks is not None) == (scale == 2)  # x3 with a x2 model resamples: the float path
    frames = quantised(x)
    assert isinstance(frames, np.ndarray) and frames.shape == (2, enc_size[1], enc_size[0], 3)
    assert frames.dtype == np.dtype(dtype)
    for n, frame in enumerate(float_path(x)):
        assert np.array_equal(frames[n], to_array(frame, np.dtype(dtype)))


def test_tensor_array_round_trip():
    a8 = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    assert np.array_equal(to_array(to_tensor(a8), np.dtype(np.uint8)), a8)
    a16 = np.random.default_rng(1).integers(0, 65536, (5, 7, 3)).astype("<u2")
    assert np.array_equal(to_array(to_tensor(a16), np.dtype("<u2")), a16)
    assert to_tensor(a8).shape == (3, 5, 7)


def test_rotated_source_is_decoded_upright(clips, tmp_path):
    """A display-matrix rotation is applied on decode: probe reports the shown size and frames match it."""
    from esc_cli.io.ffmpeg import run_ffmpeg

    rot = tmp_path / "rot.mp4"
    run_ffmpeg(["-display_rotation", "90", "-i", str(clips["cfr"]), "-c", "copy", str(rot)], what="rotate")
    info = probe(rot)
    assert info.rotation == 90 and (info.width, info.height) == (48, 64)
    frames = read_all(FrameReader(info))
    assert len(frames) == 10 and frames[0].shape == (64, 48, 3)


def test_resume_folder_reused_only_for_the_same_job(clips, tmp_path):
    from esc_cli.api.video_job import open_workdir

    info = probe(clips["cfr"])
    out = tmp_path / "o.mp4"

    def job(crf: int):
        return prepare_job(info.path, out, info=info, scale=2, settings=EncodeSettings(crf=crf), segment_frames=4,
                           workdir=tmp_path / ".o.mp4.esc-resume", model_id="m")

    notes: list[str] = []
    first = job(18)
    assert open_workdir(first, True, notes.append) == 0
    first.segment_path(0).write_bytes(b"done")
    assert open_workdir(job(18), True, notes.append) == 1 and "resuming: 1 of 3" in notes[-1]
    assert open_workdir(job(30), True, notes.append) == 0 and "starting over" in notes[-1]
    assert not first.segment_path(0).exists()
