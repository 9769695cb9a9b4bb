"""Unit tests of the tiled engine on tiny random models and simulated devices."""

from __future__ import annotations

import math
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from esc_cli.engine import TileProgress, Upscaler
from esc_cli.engine import devices as devmod
from esc_cli.engine.stats import StatsHook
from esc_cli.engine.tiling import aligned_tile, blend_window, plan_axis, plan_tiles
from esc_cli.engine.upscaler import EngineWarning, is_out_of_memory
from esc_cli.errors import EngineError, UsageError


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = float(((a - b) ** 2).mean())
    return float("inf") if mse == 0 else 10 * math.log10(1 / mse)


def smooth_image(h: int, w: int, seed: int = 0) -> torch.Tensor:
    """A `[3, h, w]` image with structure at several scales (not white noise)."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(1, 3, max(2, h // 8), max(2, w // 8), generator=g)
    img = F.interpolate(coarse, size=(h, w), mode="bicubic", align_corners=False)[0]
    return (img + 0.05 * torch.rand(3, h, w, generator=g)).clamp(0, 1)


class PixelModel(nn.Module):
    """A context-free "network": nearest upscaling of a per-pixel function. Tiling must be exact."""

    def __init__(self, scale: int = 2, window_size: int = 8) -> None:
        super().__init__()
        self.scale = scale
        self.window_size = window_size
        self.calls: list[tuple[int, ...]] = []
        self.gain = nn.Parameter(torch.tensor(1.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls.append(tuple(x.shape))
        y = (x * self.gain) ** 2 * 0.9 + 0.05
        return F.interpolate(y, scale_factor=self.scale, mode="nearest")


class OomAbove(nn.Module):
    """Wraps a model; raises `torch.OutOfMemoryError` when a pass holds more than `limit` pixels."""

    def __init__(self, inner: nn.Module, limit: int) -> None:
        super().__init__()
        self.inner = inner
        self.limit = limit
        self.scale = inner.scale
        self.window_size = inner.window_size
        self.ooms = 0

    def conv_attn_layers(self):
        return self.inner.conv_attn_layers()

    def set_stats_hook(self, hook) -> None:
        self.inner.set_stats_hook(hook)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[0] * x.shape[2] * x.shape[3] > self.limit:
            self.ooms += 1
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (simulated)")
        return self.inner(x)


class NanUnlessFp32(nn.Module):
    """Wraps a model; returns NaN in the first tile of every low-precision pass."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.scale = inner.scale
        self.window_size = inner.window_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.inner(x)
        if x.dtype != torch.float32:
            y = y.clone()
            y[0, 0, 0, 0] = float("nan")
            y[0, 1, 0, 0] = float("inf")
        return y


# ----------------------------------------------------------------------------- geometry


@pytest.mark.parametrize(
    "length,tile,context", [(100, 32, 8), (64, 16, 8), (33, 16, 0), (17, 8, 4), (8, 16, 4), (200, 16, 24)]
)
def test_axis_plan_covers_and_partitions(length, tile, context):
    spans = plan_axis(length, tile, context, context)
    assert spans[0].start == 0 and spans[-1].stop == length
    for a, b in zip(spans, spans[1:]):
        assert b.start == a.start + tile  # starts on the tile grid
        assert a.own_stop == b.own_start  # owned regions partition the axis
        assert b.start + context <= a.own_stop <= a.stop - context  # a context's width from both edges
    assert spans[0].own_start == 0 and spans[-1].own_stop == length
    assert all(s.size <= tile + 2 * context for s in spans) or len(spans) == 1


@pytest.mark.parametrize("scale", [1, 2, 3, 4])
@pytest.mark.parametrize("feather", [0.0, 4.0, 8.0])
def test_blend_weights_sum_to_one(scale, feather):
    length = 70
    total = torch.zeros(length * scale)
    for span in plan_axis(length, 24, 8, feather):
        lo, hi, w = blend_window(span, scale)
        o = span.start * scale
        total[o + lo : o + hi] += 1.0 if w is None else w
        assert (w is None) or (w.min() > 0 and w.max() <= 1)
    assert torch.allclose(total, torch.ones_like(total), atol=1e-6)


def test_alignment_helpers():
    assert aligned_tile(100, 32) == 96 and aligned_tile(64, 32) == 64 and aligned_tile(20, 32) == 20


def test_plan_tiles_shapes_align_to_window():
    tiles = plan_tiles(100, 75, 32, 8, 4.0)
    assert {t.rows.start for t in tiles} == {0, 32, 64}
    assert {t.cols.start for t in tiles} == {0, 32}
    assert all(t.rows.start % 8 == 0 and t.cols.start % 8 == 0 for t in tiles)
    assert tiles[-1].rows.stop == 100 and tiles[-1].cols.stop == 75


# ----------------------------------------------------------------------------- exactness


@pytest.mark.parametrize("tile,overlap", [(8, 0), (16, 8), (24, 8), (40, 16)])
def test_context_free_model_tiles_exactly(tile, overlap):
    model = PixelModel(scale=3)
    x = torch.rand(3, 37, 50)
    whole = model(x[None])[0].clamp(0, 1)
    out = Upscaler(model, device="cpu", tile=tile, overlap=overlap).upscale(x)
    assert out.shape == (3, 111, 150) and out.dtype == torch.float32 and out.device.type == "cpu"
    assert torch.allclose(out, whole, atol=1e-6)
    assert max(c[2] for c in model.calls[1:]) <= tile + 2 * overlap  # never more than a patch


def test_tile_zero_is_whole_image_inference(tiny_model):
    x = smooth_image(29, 41)
    with torch.inference_mode():
        whole = tiny_model(x[None])[0].clamp(0, 1)
    up = Upscaler(tiny_model, device="cpu", tile=0)
    assert torch.equal(up.upscale(x), whole)
    assert up.last_tile == 0


def test_tiled_tiny_model_is_close_to_whole(tiny_model):
    x = smooth_image(48, 56)
    with torch.inference_mode():
        whole = tiny_model(x[None])[0].clamp(0, 1)
    out = Upscaler(tiny_model, device="cpu", tile=24, overlap=8).upscale(x)
    assert out.min() >= 0 and out.max() <= 1
    assert psnr(out, whole) > 40
    hard = Upscaler(tiny_model, device="cpu", tile=24, overlap=0).upscale(x)
    assert psnr(out, whole) > psnr(hard, whole)  # overlap + feather beats hard seams


class RecordingUpscaler(Upscaler):
    """Keeps every statistics hook the engine installs."""

    def __init__(self, *args, **kwargs) -> None:
        self.hooks: list[StatsHook] = []
        super().__init__(*args, **kwargs)

    def _install(self, hook) -> None:
        if hook is not None:
            self.hooks.append(hook)
        super()._install(hook)


def test_whole_image_statistics_are_replayed(tiny_model):
    """With recorded statistics each layer sees (an estimate of) the whole image's means."""
    x = smooth_image(40, 40)
    layers = list(tiny_model.conv_attn_layers())
    true_means: list[torch.Tensor] = []
    with torch.inference_mode():
        tiny_model.set_stats_hook(lambda layer, x1: true_means.append(x1.mean((2, 3))) or true_means[-1])
        tiny_model(x[None])
        tiny_model.set_stats_hook(None)
    up = RecordingUpscaler(tiny_model, device="cpu", tile=16, overlap=8, whole_image_stats=True)
    up.upscale(x)
    assert up.hooks and up.hooks[0].means is not None and not up.hooks[0].recording
    assert len(up.hooks[0].means) == len(layers) == len(true_means)
    # The first layer's input depends on no earlier statistics: its estimate is exact up
    # to the tile-border effects of the convolutions before it.
    first = true_means[0][0]
    assert (up.hooks[0].means[0][0] - first).abs().max() < 0.05 * first.abs().max() + 1e-3
    assert all(layer.stats_hook is None for layer in layers)  # removed afterwards
    # Without the statistics pass no hook is installed at all.
    plain = RecordingUpscaler(tiny_model, device="cpu", tile=16, overlap=8)
    plain.upscale(x)
    assert plain.hooks == []


def test_statistics_pass_skips_the_tail_of_the_network(tiny_model):
    tail_calls = []
    tiny_model.to_img.register_forward_hook(lambda m, a, o: tail_calls.append(a[0].shape[0]))
    events: list[TileProgress] = []
    Upscaler(tiny_model, device="cpu", tile=16, overlap=8, progress=events.append, whole_image_stats=True).upscale(
        smooth_image(40, 40)
    )
    upscale_tiles = sum(1 for e in events if e.phase == "upscale")
    stats_tiles = sum(1 for e in events if e.phase == "stats")
    assert stats_tiles > 0 and sum(tail_calls) == upscale_tiles


def test_stats_hook_records_exact_means_of_partition():
    layer = nn.Identity()
    x = torch.rand(2, 5, 30, 44)
    tiles = plan_tiles(30, 44, 16, 8, 4.0)
    hook = StatsHook([layer], 2, torch.device("cpu"))
    hook.stop_early = False
    for t in tiles:
        crop = x[:, :, t.rows.start : t.rows.stop, t.cols.start : t.cols.stop]
        hook.set_batch([0, 1], [t, t])
        local = hook(layer, crop)
        assert torch.allclose(local, crop.mean((2, 3)))
    hook.finish_recording(30 * 44)
    assert torch.allclose(hook.means[0], x.mean((2, 3)), atol=1e-5)
    hook.set_batch([1, 0, 1], tiles[:3])
    replay = hook(layer, x[:1].expand(3, -1, -1, -1))
    assert torch.allclose(replay, x.mean((2, 3))[[1, 0, 1]], atol=1e-5)


def test_upscale_batch_matches_frames_one_by_one(tiny_model):
    frames = torch.stack([smooth_image(24, 40, seed=s) for s in range(3)])
    up = Upscaler(tiny_model, device="cpu", tile=16, overlap=8, batch_size=4)
    batch = up.upscale_batch(frames)
    assert batch.shape == (3, 3, 48, 80)
    single = Upscaler(tiny_model, device="cpu", tile=16, overlap=8, batch_size=1)
    for n in range(3):
        assert torch.allclose(batch[n], single.upscale(frames[n]), atol=1e-5)


def test_batching_groups_tiles_into_one_pass():
    model = PixelModel(scale=2)
    Upscaler(model, device="cpu", tile=16, overlap=0, batch_size=4).upscale(torch.rand(3, 32, 64))
    assert model.calls and model.calls[0][0] == 4 and len(model.calls) == 2


# ----------------------------------------------------------------------------- progress


def test_progress_events(tiny_model):
    events: list[TileProgress] = []
    Upscaler(tiny_model, device="cpu", tile=16, overlap=8, progress=events.append).upscale(smooth_image(40, 40))
    assert events and {e.phase for e in events} == {"upscale"}  # no statistics pass by default
    assert len(events) == 4 and events[-1].patch_size == 32  # 2 x 2 patches of 32
    events.clear()
    Upscaler(tiny_model, device="cpu", tile=16, overlap=8, progress=events.append, whole_image_stats=True).upscale(
        smooth_image(40, 40)
    )
    totals = {e.total_tiles for e in events}
    assert len(totals) == 1
    done = [e.done_tiles for e in events]
    assert done == sorted(done) and done[-1] == events[-1].total_tiles
    assert {e.phase for e in events} == {"stats", "upscale"}
    assert all(e.tile_size == 16 and e.device == "cpu" and e.dtype == "float32" for e in events)


# ----------------------------------------------------------------------------- out of memory


def test_out_of_memory_halves_tile_and_redoes_it(tiny_model):
    x = smooth_image(64, 64)
    wrapped = OomAbove(tiny_model, limit=16 * 16)
    events: list[TileProgress] = []
    up = Upscaler(wrapped, device="cpu", tile=64, overlap=8, progress=events.append)
    with pytest.warns(EngineWarning, match="out of memory"):
        out = up.upscale(x)
    assert wrapped.ooms == 2  # whole image (64) -> patch 32 (tile 16 + 2 x 8) -> patch 16 (8 + 2 x 4)
    assert (up.last_tile, up.last_overlap, up.last_patch) == (8, 4, 16)
    assert events[-1].tile_size == 8 and events[-1].patch_size == 16
    assert any("out of memory" in e.notice for e in events)
    reference = Upscaler(tiny_model, device="cpu", tile=8, overlap=4).upscale(x)
    assert torch.allclose(out, reference, atol=1e-6)
    # The limit is remembered: the next image starts at 16 without another failure.
    before = wrapped.ooms
    up.upscale(x)
    assert wrapped.ooms == before


def test_out_of_memory_halves_batch_first(tiny_model):
    wrapped = OomAbove(tiny_model, limit=2 * 16 * 16)
    up = Upscaler(wrapped, device="cpu", tile=8, overlap=4, batch_size=8)
    with pytest.warns(EngineWarning):
        up.upscale(smooth_image(40, 40))
    assert wrapped.ooms == 2 and up.last_batch == 2 and up.last_patch == 16


def test_out_of_memory_whole_image_falls_back_to_tiles(tiny_model):
    wrapped = OomAbove(tiny_model, limit=20 * 20)
    up = Upscaler(wrapped, device="cpu", tile=0)
    with pytest.warns(EngineWarning):
        out = up.upscale(smooth_image(40, 40))
    assert out.shape == (3, 80, 80) and up.last_tile == 8 and up.last_patch <= 20


def test_out_of_memory_below_minimum_is_a_clean_error(tiny_model):
    up = Upscaler(OomAbove(tiny_model, limit=4), device="cpu", tile=32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", EngineWarning)
        with pytest.raises(EngineError, match="out of memory"):
            up.upscale(smooth_image(40, 40))


def test_out_of_memory_detection():
    assert is_out_of_memory(torch.OutOfMemoryError("x"))
    assert is_out_of_memory(RuntimeError("MPS backend out of memory (MPS allocated: 1 GB)"))
    assert not is_out_of_memory(RuntimeError("shape mismatch"))
    assert not is_out_of_memory(ValueError("out of memory"))


def test_other_model_errors_propagate(tiny_model):
    class Broken(nn.Module):
        scale, window_size = 2, 8

        def forward(self, x):
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        Upscaler(Broken(), device="cpu", tile=0).upscale(torch.rand(3, 8, 8))


# ----------------------------------------------------------------------------- precision


def test_nan_tiles_are_redone_in_fp32_with_one_warning(tiny_model):
    x = smooth_image(32, 32)
    reference = Upscaler(tiny_model, device="cpu", dtype=torch.float32, tile=16, overlap=8).upscale(x)
    wrapped = NanUnlessFp32(tiny_model)
    events: list[TileProgress] = []
    up = Upscaler(wrapped, device="cpu", dtype="bf16", tile=16, overlap=8, progress=events.append)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = up.upscale(x)
        up.upscale(x)
    engine_warnings = [w for w in caught if issubclass(w.category, EngineWarning)]
    assert len(engine_warnings) == 1 and "float32" in str(engine_warnings[0].message)
    assert torch.isfinite(out).all() and out.min() >= 0 and out.max() <= 1
    assert any("NaN" in e.notice for e in events)
    assert up.dtype == torch.bfloat16 and next(tiny_model.parameters()).dtype == torch.bfloat16
    # bf16 elsewhere, fp32 in the redone tiles: close to the fp32 reference.
    assert psnr(out, reference) > 30


class NanInputUnlessFp32(nn.Module):
    """Wraps a model; low-precision passes see NaN inputs (so features and statistics are NaN too).

    Float32 passes above `limit` pixels raise `torch.OutOfMemoryError`.
    """

    def __init__(self, inner: nn.Module, limit: int = 1 << 30) -> None:
        super().__init__()
        self.inner = inner
        self.limit = limit
        self.scale = inner.scale
        self.window_size = inner.window_size

    def conv_attn_layers(self):
        return self.inner.conv_attn_layers()

    def set_stats_hook(self, hook) -> None:
        self.inner.set_stats_hook(hook)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype != torch.float32:
            x = x * float("nan")
        elif x.shape[0] * x.shape[2] * x.shape[3] > self.limit:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return self.inner(x)


def test_nan_statistics_are_recorded_again_in_fp32(tiny_model):
    x = smooth_image(40, 40)
    reference = Upscaler(tiny_model, device="cpu", tile=16, overlap=8, whole_image_stats=True).upscale(x)
    wrapped = NanInputUnlessFp32(tiny_model)
    up = Upscaler(wrapped, device="cpu", dtype="bf16", tile=16, overlap=8, whole_image_stats=True)
    with pytest.warns(EngineWarning, match="float32"):
        out = up.upscale(x)
    # Every tile was redone in fp32 with statistics recorded in fp32: the fp32 result.
    assert torch.allclose(out, reference, atol=1e-5)


def test_out_of_memory_during_the_fp32_redo_halves_the_patch(tiny_model):
    wrapped = NanInputUnlessFp32(tiny_model, limit=20 * 20)
    up = Upscaler(wrapped, device="cpu", dtype="bf16", tile=0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = up.upscale(smooth_image(40, 40))
    messages = " ".join(str(w.message) for w in caught)
    assert "float32" in messages and "out of memory" in messages
    assert torch.isfinite(out).all() and up.last_patch <= 20


def test_nan_in_fp32_model_is_an_error_without_retry():
    class AlwaysNan(PixelModel):
        def forward(self, x):
            return super().forward(x) * float("nan")

    with warnings.catch_warnings():
        warnings.simplefilter("error", EngineWarning)  # no "redoing in float32" warning
        with pytest.raises(EngineError, match="NaN"):
            Upscaler(AlwaysNan(), device="cpu", tile=0).upscale(torch.rand(3, 8, 8))


def test_nan_even_in_fp32_is_an_engine_error():
    class AlwaysNan(PixelModel):
        def forward(self, x):
            return super().forward(x) * float("nan")

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", EngineWarning)
        with pytest.raises(EngineError, match="NaN"):
            Upscaler(AlwaysNan(), device="cpu", dtype="bf16", tile=0).upscale(torch.rand(3, 8, 8))


# ----------------------------------------------------------------------------- devices, dtypes, sizes


def test_device_and_dtype_resolution(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert devmod.resolve_device(None) == torch.device("cpu") or devmod.resolve_device(None).type == "mps"
    assert devmod.resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(UsageError, match="CUDA"):
        devmod.resolve_device("cuda")
    with pytest.raises(UsageError):
        devmod.resolve_device("tpu")
    cpu = torch.device("cpu")
    assert devmod.resolve_dtype(None, cpu) == torch.float32
    assert devmod.resolve_dtype("bf16", cpu) == torch.bfloat16
    assert devmod.resolve_dtype("auto", torch.device("mps")) == torch.float16
    with pytest.raises(UsageError):
        devmod.resolve_dtype("int8", cpu)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda d=None: (8, 0))
    assert devmod.resolve_dtype(None, torch.device("cuda", 0)) == torch.float16
    assert devmod.resolve_dtype("bf16", torch.device("cuda", 0)) == torch.bfloat16
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda d=None: (7, 5))
    assert devmod.resolve_dtype("auto", torch.device("cuda", 0)) == torch.float16
    with pytest.raises(UsageError, match="bf16"):
        devmod.resolve_dtype("bf16", torch.device("cuda", 0))


def test_auto_device_prefers_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    assert devmod.resolve_device("auto") == torch.device("cuda", 0)


def test_auto_tile_follows_free_memory(tiny_model, monkeypatch):
    cpu, cuda = torch.device("cpu"), torch.device("cuda", 0)
    small = devmod.auto_tile(tiny_model, cpu, torch.float32, 8, free=64 << 20)
    large = devmod.auto_tile(tiny_model, cpu, torch.float32, 8, free=64 << 30)
    assert small % 8 == 0 and 8 <= small < large
    assert large == devmod.CPU_TILE_CAP  # capped on CPU
    # CUDA: free memory comes from torch.cuda.mem_get_info (simulated here).
    monkeypatch.setattr(torch.cuda, "memory_reserved", lambda device=None: 0)
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda device=None: 0)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (256 << 20, 80 << 30))
    t1 = devmod.auto_tile(tiny_model, cuda, torch.float16, 8)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (16 << 30, 80 << 30))
    t2 = devmod.auto_tile(tiny_model, cuda, torch.float16, 8)
    assert 8 <= t1 < t2 <= devmod.ACCEL_TILE_CAP
    per_px = devmod.bytes_per_pixel(tiny_model, torch.float16, cuda)
    assert t1 * t1 * per_px <= (256 << 20) * devmod.MEMORY_SHARE_CUDA


def test_free_cuda_memory_counts_the_allocator_cache(monkeypatch):
    cuda = torch.device("cuda", 0)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (1 << 30, 80 << 30))
    monkeypatch.setattr(torch.cuda, "memory_reserved", lambda device=None: 3 << 30)
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda device=None: 1 << 30)
    assert devmod.free_memory(cuda) == 3 << 30


def test_auto_batch(tiny_model):
    cpu, cuda = torch.device("cpu"), torch.device("cuda", 0)
    assert devmod.auto_batch(tiny_model, cpu, torch.float32, 64 * 64, free=64 << 30) == 1
    per_tile = devmod.bytes_per_pixel(tiny_model, torch.float16, cuda) * 256 * 256
    free = int(3.5 * per_tile / devmod.MEMORY_SHARE_CUDA)
    assert devmod.auto_batch(tiny_model, cuda, torch.float16, 256 * 256, free=free) == 3
    assert devmod.auto_batch(tiny_model, cuda, torch.float16, 256 * 256, free=1) == 1
    assert devmod.auto_batch(tiny_model, cuda, torch.float16, 16, free=64 << 30, cap=8) == 8


def test_cuda_transfer_path_simulated(tiny_model, monkeypatch):
    """Pinned buffers, non-blocking copies and the one-batch-in-flight pipeline, on the CPU.

    Pinned allocation needs CUDA, so `host_buffer` records its calls instead, and a fake
    `torch.cuda.Event` checks that every batch is waited for before it is blended.
    """
    import esc_cli.engine.upscaler as upmod

    pinned_calls = []
    real_buffer = upmod.host_buffer

    def fake_buffer(shape, dtype, pinned):
        pinned_calls.append(pinned)
        return real_buffer(shape, dtype, False)

    class FakeEvent:
        recorded = 0
        waited = 0

        def record(self):
            FakeEvent.recorded += 1
            self.done = False

        def synchronize(self):
            FakeEvent.waited += 1
            self.done = True

    monkeypatch.setattr(upmod, "host_buffer", fake_buffer)
    monkeypatch.setattr(torch.cuda, "Event", FakeEvent)
    x = smooth_image(40, 40)
    reference = Upscaler(tiny_model, device="cpu", tile=16, overlap=8).upscale(x)
    pinned_calls.clear()
    up = Upscaler(tiny_model, device="cpu", tile=16, overlap=8, batch_size=2)
    up.pinned = True
    blended = []
    real_blend = up._blend

    def blend(blender, batch):
        assert batch.event is not None and batch.event.done  # waited for before use
        blended.append(len(batch.images))
        real_blend(blender, batch)

    up._blend = blend  # type: ignore[method-assign]
    out = up.upscale(x)
    assert torch.allclose(out, reference, atol=1e-5)
    assert pinned_calls and all(pinned_calls)
    assert FakeEvent.recorded == FakeEvent.waited == len(blended)


def test_automatic_tile_follows_available_ram(tiny_model, monkeypatch):
    per_px = devmod.bytes_per_pixel(tiny_model, torch.float32, torch.device("cpu"))
    ram = int((40 * 40) * per_px / devmod.MEMORY_SHARE_CPU)  # room for a 40-pixel patch
    monkeypatch.setattr(devmod, "available_ram", lambda: ram)
    events: list[TileProgress] = []
    up = Upscaler(tiny_model, device="cpu", overlap=8, progress=events.append)
    out = up.upscale(smooth_image(64, 64))
    assert out.shape == (3, 128, 128)
    assert (up.last_tile, up.last_patch) == (24, 40)  # 40 - 2 x 8, on the window grid (8)
    assert events[-1].tile_size == 24


def test_automatic_tile_whole_image_when_it_fits(tiny_model):
    up = Upscaler(tiny_model, device="cpu")
    out = up.upscale(smooth_image(20, 30))
    assert out.shape == (3, 40, 60) and up.last_tile == 0


def test_input_validation(tiny_model):
    up = Upscaler(tiny_model, device="cpu", tile=0)
    with pytest.raises(UsageError):
        up.upscale(torch.rand(1, 3, 8, 8))
    with pytest.raises(UsageError):
        up.upscale(torch.rand(4, 8, 8))
    with pytest.raises(UsageError):
        up.upscale_batch(torch.zeros(2, 3, 8, 8, dtype=torch.uint8))
    with pytest.raises(UsageError):
        Upscaler(tiny_model, device="cpu", tile=-1)
    with pytest.raises(UsageError):
        Upscaler(tiny_model, device="cpu", batch_size=0)


def test_input_is_not_modified(tiny_model):
    x = smooth_image(20, 20)
    copy = x.clone()
    Upscaler(tiny_model, device="cpu", tile=8, overlap=0).upscale(x)
    assert torch.equal(x, copy)
