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
from esc_cli.engine.bands import BlockBlender
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


def collect(up: Upscaler, images: torch.Tensor) -> list[tuple[int, int, torch.Tensor]]:
    blocks: list[tuple[int, int, torch.Tensor]] = []
    up.upscale_blocks(images, lambda top, left, block: blocks.append((top, left, block.clone())))
    return blocks


def assemble(blocks, shape) -> tuple[torch.Tensor, torch.Tensor]:
    """The image the blocks make, and how many times each output pixel was written."""
    out, count = torch.full(shape, -1.0), torch.zeros(shape[-2:], dtype=torch.int32)
    for top, left, block in blocks:
        h, w = block.shape[-2:]
        out[..., top : top + h, left : left + w] = block
        count[top : top + h, left : left + w] += 1
    return out, count


@pytest.mark.parametrize("size,tile,overlap", [((70, 50), 16, 8), ((37, 90), 8, 4), ((64, 64), 24, 0)])
def test_blocks_cover_every_pixel_once_row_major_and_equal_the_canvas(tiny_model, size, tile, overlap):
    x = smooth_image(*size)
    up = Upscaler(tiny_model, device="cpu", tile=tile, overlap=overlap)
    blocks = collect(up, x[None])
    s = tiny_model.scale
    assert len(blocks) > 1
    assert [(t, l) for t, l, _ in blocks] == sorted((t, l) for t, l, _ in blocks)  # row-major
    assert max(max(b.shape[-2:]) for _, _, b in blocks) <= (tile + 2 * overlap) * s  # at most one output patch
    out, count = assemble(blocks, (1, 3, size[0] * s, size[1] * s))
    assert bool((count == 1).all())
    assert torch.allclose(out[0], canvas_reference(tiny_model, x, tile, overlap), atol=1e-6)
    assert torch.equal(out[0], up.upscale(x))


def test_context_free_model_is_exact_block_by_block():
    model = PixelModel(scale=3)
    x = torch.rand(3, 45, 29)
    blocks = collect(Upscaler(model, device="cpu", tile=8, overlap=4), x[None])
    out, count = assemble(blocks, (1, 3, 135, 87))
    whole = model(x[None])[0].clamp(0, 1)
    assert bool((count == 1).all()) and torch.allclose(out[0], whole, atol=1e-6)


def test_frames_share_blocks(tiny_model):
    frames = torch.stack([smooth_image(40, 48, seed=k) for k in range(3)])
    up = Upscaler(tiny_model, device="cpu", tile=16, overlap=8, batch_size=4)
    blocks = collect(up, frames)
    assert all(block.shape[0] == 3 for _, _, block in blocks)
    out, _ = assemble(blocks, (3, 3, 80, 96))
    single = Upscaler(tiny_model, device="cpu", tile=16, overlap=8)
    for n in range(3):
        assert torch.allclose(out[n], single.upscale(frames[n]), atol=1e-5)


def test_one_patch_is_one_block(tiny_model):
    x = smooth_image(20, 30)
    blocks = collect(Upscaler(tiny_model, device="cpu", tile=0), x[None])
    assert [(top, left, tuple(b.shape)) for top, left, b in blocks] == [(0, 0, (1, 3, 40, 60))]


def test_out_of_memory_restart_starts_again_from_the_top(tiny_model):
    x = smooth_image(64, 64)
    wrapped = OomAbove(tiny_model, limit=16 * 16)
    up = Upscaler(wrapped, device="cpu", tile=16, overlap=8)  # patch 32 fails at once, then 16
    canvas = torch.full((1, 3, 128, 128), -1.0)
    starts = []

    def store(top, left, block):
        starts.append((top, left))
        canvas[:, :, top : top + block.shape[2], left : left + block.shape[3]] = block

    with pytest.warns(Warning, match="out of memory"):
        up.upscale_blocks(x[None], store)
    assert wrapped.ooms >= 1 and starts[0] == (0, 0) and canvas.min() >= 0
    reference = Upscaler(tiny_model, device="cpu", tile=up.last_tile, overlap=up.last_overlap).upscale(x)
    assert torch.allclose(canvas[0], reference, atol=1e-6)


def test_blender_memory_is_bounded_by_the_tile_and_weights_sum_to_one():
    height, width, scale, tile, context = 100, 236, 2, 16, 6
    rows, cols = plan_axis(height, tile, context, 3.0), plan_axis(width, tile, context, 3.0)
    got = torch.full((1, 3, height * scale, width * scale), -1.0)

    def store(top, left, block):
        got[:, :, top : top + block.shape[2], left : left + block.shape[3]] = block

    blender = BlockBlender(rows, cols, 1, scale, store)
    for r in rows:
        for c in cols:
            blender.add(0, Tile(r, c), torch.ones(3, r.size * scale, c.size * scale))
    assert torch.allclose(got, torch.ones_like(got), atol=1e-6)  # every pixel written, weights sum to 1
    patch = (tile + 2 * context) * scale
    assert max(blender._window.shape[-2:]) <= patch  # the open tile and its left neighbour's feather
    assert blender._carry.shape[-2] <= 2 * context * scale  # the feather rows tile rows share, not the picture


def test_blender_refuses_tiles_out_of_row_major_order():
    rows, cols = plan_axis(64, 16, 4, 2.0), plan_axis(40, 16, 4, 2.0)
    blender = BlockBlender(rows, cols, 1, 2, lambda top, left, block: None)
    blender.add(0, Tile(rows[0], cols[0]), torch.ones(3, rows[0].size * 2, cols[0].size * 2))
    with pytest.raises(RuntimeError, match="row-major"):
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


def test_the_memory_precheck_counts_the_quantised_output_when_blocks_stream():
    from esc_cli.api.resources import ResourceCheck
    from esc_cli.io.images import ImageHeader

    rgb = ImageHeader(width=1000, height=500, channels=3, bit_depth=8, format="PNG")
    out_px, in_inputs = 4000 * 2000, 1000 * 500 * 8 * 3
    assert ResourceCheck(4, True, model_scale=4).memory_needed(rgb) == in_inputs + out_px * 4
    gray16 = ImageHeader(width=1000, height=500, channels=1, bit_depth=16, format="PNG")
    assert ResourceCheck(4, True, model_scale=4).memory_needed(gray16) == 1000 * 500 * 8 * 3 + out_px * 4
    float_path = in_inputs + out_px * 4 * 3 * 3  # three float copies of the result
    assert ResourceCheck(4, True, model_scale=None).memory_needed(rgb) == float_path  # model unknown
    assert ResourceCheck(3, True, model_scale=4).memory_needed(rgb) > in_inputs + 3000 * 1500 * 4 * 3 * 2  # resampled
    rgba = ImageHeader(width=1000, height=500, channels=4, bit_depth=8, format="PNG")
    assert ResourceCheck(4, True, model_scale=4).memory_needed(rgba) == 1000 * 500 * 8 * 4 + out_px * 4 * 4 * 3


def test_row_major_batches_keep_tile_order_and_fill_batches():
    from esc_cli.engine.schedule import row_major_batches

    rows, cols = plan_axis(96, 16, 8, 4.0), plan_axis(64, 16, 8, 4.0)  # 64 = 3 x 16 + 16: every column full
    groups = row_major_batches(rows, cols, 2, 8)
    flat = [item for group in groups for item in group]
    assert flat == [(i, Tile(r, c)) for r in rows for c in cols for i in range(2)]  # row-major, frames together
    assert all(len({t.shape for _, t in group}) == 1 and len(group) <= 8 for group in groups)
    assert [len(g) for g in groups] == [8, 8, 8, 6]  # 30 items of one shape: batches run on across tile rows
