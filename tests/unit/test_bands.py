"""Band-wise output: rows leave the engine as soon as they are final, the float buffer stays one patch row high,
and the image path writes them straight into the quantised output with the same pixels as the float path."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from esc_cli.api.options import UpscaleOptions
from esc_cli.api.processor import ImageProcessor
from esc_cli.engine import Upscaler
from esc_cli.engine.bands import BandBlender
from esc_cli.engine.tiling import Tile, blend_window, plan_axis
from esc_cli.engine.upscaler import FEATHER_SHARE
from esc_cli.io.canvas import prepare_image
from esc_cli.io.images import ImageData
from tests.unit.test_engine import OomAbove, PixelModel, smooth_image


def canvas_reference(model, image: torch.Tensor, tile: int, overlap: int) -> torch.Tensor:
    """The blended result the old way: every patch's weighted output summed into one output-sized canvas."""
    s = model.scale
    _, h, w = image.shape
    feather = 2 * overlap * FEATHER_SHARE
    canvas = torch.zeros(3, h * s, w * s)
    for r in plan_axis(h, tile, overlap, feather):
        for c in plan_axis(w, tile, overlap, feather):
            with torch.inference_mode():
                y = model(image[None, :, r.start : r.stop, c.start : c.stop])[0].clamp(0, 1)
            r0, r1, wr = blend_window(r, s)
            c0, c1, wc = blend_window(c, s)
            part = y[:, r0:r1, c0:c1].clone()
            if wr is not None:
                part *= wr.view(1, -1, 1)
            if wc is not None:
                part *= wc.view(1, 1, -1)
            canvas[:, r.start * s + r0 : r.start * s + r1, c.start * s + c0 : c.start * s + c1] += part
    return canvas


def collect(up: Upscaler, images: torch.Tensor) -> list[tuple[int, torch.Tensor]]:
    bands: list[tuple[int, torch.Tensor]] = []
    up.upscale_bands(images, lambda top, rows: bands.append((top, rows.clone())))
    return bands


@pytest.mark.parametrize("size,tile,overlap", [((70, 50), 16, 8), ((37, 90), 8, 4), ((64, 64), 24, 0)])
def test_bands_arrive_in_order_once_and_equal_the_canvas(tiny_model, size, tile, overlap):
    x = smooth_image(*size)
    up = Upscaler(tiny_model, device="cpu", tile=tile, overlap=overlap)
    bands = collect(up, x[None])
    s = tiny_model.scale
    assert len(bands) > 1
    tops = [top for top, _ in bands]
    heights = [int(rows.shape[2]) for _, rows in bands]
    assert tops[0] == 0 and all(a + h == b for a, h, b in zip(tops, heights, tops[1:]))  # contiguous, in order
    assert tops[-1] + heights[-1] == size[0] * s
    assert max(heights) <= (tile + 2 * overlap) * s  # never more than one patch row of output
    joined = torch.cat([rows for _, rows in bands], 2)[0]
    assert torch.allclose(joined, canvas_reference(tiny_model, x, tile, overlap), atol=1e-6)
    assert torch.equal(joined, up.upscale(x))


def test_context_free_model_is_exact_band_by_band():
    model = PixelModel(scale=3)
    x = torch.rand(3, 45, 29)
    bands = collect(Upscaler(model, device="cpu", tile=8, overlap=4), x[None])
    whole = model(x[None])[0].clamp(0, 1)
    assert torch.allclose(torch.cat([rows for _, rows in bands], 2)[0], whole, atol=1e-6)


def test_frames_share_bands(tiny_model):
    frames = torch.stack([smooth_image(40, 48, seed=k) for k in range(3)])
    up = Upscaler(tiny_model, device="cpu", tile=16, overlap=8, batch_size=4)
    bands = collect(up, frames)
    assert all(rows.shape[0] == 3 for _, rows in bands)
    joined = torch.cat([rows for _, rows in bands], 2)
    single = Upscaler(tiny_model, device="cpu", tile=16, overlap=8)
    for n in range(3):
        assert torch.allclose(joined[n], single.upscale(frames[n]), atol=1e-5)


def test_one_patch_is_one_band(tiny_model):
    x = smooth_image(20, 30)
    bands = collect(Upscaler(tiny_model, device="cpu", tile=0), x[None])
    assert [(top, tuple(rows.shape)) for top, rows in bands] == [(0, (1, 3, 40, 60))]


def test_out_of_memory_restart_starts_again_from_the_top(tiny_model):
    x = smooth_image(64, 64)
    wrapped = OomAbove(tiny_model, limit=16 * 16)
    up = Upscaler(wrapped, device="cpu", tile=16, overlap=8)  # patch 32: fails after no band, then 16
    canvas = torch.full((1, 3, 128, 128), -1.0)
    tops = []

    def store(top, rows):
        tops.append(top)
        canvas[:, :, top : top + rows.shape[2]] = rows

    with pytest.warns(Warning, match="out of memory"):
        up.upscale_bands(x[None], store)
    assert wrapped.ooms >= 1 and tops[0] == 0 and canvas.min() >= 0
    reference = Upscaler(tiny_model, device="cpu", tile=up.last_tile, overlap=up.last_overlap).upscale(x)
    assert torch.allclose(canvas[0], reference, atol=1e-6)


def test_blender_buffer_stays_one_patch_row_and_weights_sum_to_one():
    height, width, scale, tile, context = 100, 36, 2, 16, 6
    rows, cols = plan_axis(height, tile, context, 3.0), plan_axis(width, tile, context, 3.0)
    got = torch.full((1, 3, height * scale, width * scale), -1.0)
    biggest = []

    def store(top, band):
        got[:, :, top : top + band.shape[2]] = band

    blender = BandBlender(rows, len(cols), 1, width * scale, scale, store)
    for r in rows:
        for c in reversed(cols):  # any order inside a tile row
            blender.add(0, Tile(r, c), torch.ones(3, r.size * scale, c.size * scale))
            if blender._buffer is not None:
                biggest.append(int(blender._buffer.shape[2]))
    assert torch.allclose(got, torch.ones_like(got), atol=1e-6)  # every row written once, weights sum to 1
    assert max(biggest) <= (tile + 2 * context) * scale


def test_blender_refuses_tiles_out_of_row_order():
    rows, cols = plan_axis(64, 16, 4, 2.0), plan_axis(40, 16, 4, 2.0)
    blender = BandBlender(rows, len(cols), 1, 80, 2, lambda top, band: None)
    blender.add(0, Tile(rows[0], cols[0]), torch.ones(3, rows[0].size * 2, cols[0].size * 2))
    with pytest.raises(RuntimeError, match="before tile row"):
        blender.add(0, Tile(rows[1], cols[0]), torch.ones(3, rows[1].size * 2, cols[0].size * 2))


# ----------------------------------------------------------------------------- the image path


def _pixels(prepared) -> np.ndarray:
    return prepared.array if prepared.array is not None else np.asarray(prepared.image)


CASES = [
    ("rgb8", 3, 8, 2, "png"),
    ("gray16", 1, 16, 2, "png"),
    ("rgba-opaque", 4, 8, 2, "png"),
    ("rgba-varying", 4, 8, 2, "png"),  # falls back to the float path
    ("gray-alpha-jpeg", 2, 8, 2, "jpeg"),
    ("gray-webp", 1, 8, 2, "webp"),
    ("rgb16-tiff", 3, 16, 2, "tiff"),
    ("two-passes", 3, 8, 3, "png"),  # x2 model, resampled to 3/2, x2 again: lands exactly
    ("resampled", 3, 8, 1.5, "png"),  # x2, then resampled: float path
]


@pytest.mark.parametrize("name,channels,depth,scale,fmt", CASES, ids=[c[0] for c in CASES])
def test_prepared_output_equals_the_float_path(tiny_model, name, channels, depth, scale, fmt):
    g = torch.Generator().manual_seed(channels)
    pixels = torch.stack([smooth_image(52, 44, seed=k)[0] for k in range(channels)])
    if name == "rgba-opaque":
        pixels[3] = 1.0
    if name == "gray-alpha-jpeg":
        pixels[1] = 0.5
    if name == "rgba-varying":
        pixels[3] = torch.rand(52, 44, generator=g)
    image = ImageData(pixels, bit_depth=depth, icc_profile=b"icc", exif=None)
    options = UpscaleOptions(scale=scale, device="cpu", tile=16, overlap=8)
    options.validate()
    processor = ImageProcessor(tiny_model, options)
    float_path = processor.upscale
    calls = []
    processor.upscale = lambda *a, **k: calls.append(1) or float_path(*a, **k)  # type: ignore[method-assign]
    notes: list[str] = []
    banded = processor.upscale_prepared(image, fmt, notes=notes)
    reference = prepare_image(float_path(image), fmt, notes=[])
    assert bool(calls) == (name in ("rgba-varying", "resampled"))  # the float path only where it must
    assert (banded.width, banded.height) == (reference.width, reference.height)
    assert banded.fmt == reference.fmt and banded.icc_profile == b"icc"
    assert np.array_equal(_pixels(banded), _pixels(reference))
    if fmt == "jpeg":
        assert any("flattened" in n for n in notes) and banded.image.mode == "L"
    if fmt == "webp":
        assert banded.image.mode == "RGB"


def test_a_folder_job_never_builds_the_float_image(tmp_path, tiny_model, monkeypatch):
    from esc_cli.api.images import upscale_images

    Image.fromarray((np.random.default_rng(0).random((40, 56, 3)) * 255).astype(np.uint8)).save(tmp_path / "a.png")
    monkeypatch.setattr(ImageProcessor, "upscale", lambda *a, **k: pytest.fail("float path used"))
    options = UpscaleOptions(scale=2, output=str(tmp_path / "out.png"), device="cpu", tile=16, overlap=8)
    summary = upscale_images([str(tmp_path / "a.png")], options, network=tiny_model)
    assert summary.exit_code == 0
    with Image.open(tmp_path / "out.png") as out:
        assert out.size == (112, 80) and out.mode == "RGB"
