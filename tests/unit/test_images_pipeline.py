"""esc_cli.api.images: scale plans, resampling, colour bleed, input collection, output planning."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from esc_cli.api.events import exit_code_for
from esc_cli.api.inputs import collect_inputs
from esc_cli.api.options import UpscaleOptions, validate_template
from esc_cli.api.outputs import plan_outputs
from esc_cli.api.pixels import bleed_colors, target_size, upscale_plane
from esc_cli.api.processor import ImageProcessor
from esc_cli.engine.devices import parse_device, parse_dtype
from esc_cli.engine.rescale import plan_passes, resample
from esc_cli.errors import UsageError
from esc_cli.io.images import ImageData


@pytest.mark.parametrize(
    ("model_scale", "scale", "passes"),
    [(4, 4, 1), (4, 8, 2), (4, 3, 1), (4, 1, 1), (2, 8, 3), (2, 3, 2), (4, 16, 2), (4, 17, 3), (2, 2.5, 2)],
)
def test_plan_passes(model_scale, scale, passes):
    assert plan_passes(model_scale, scale) == passes


@pytest.mark.parametrize(
    ("model_scale", "scale", "size"),
    [(4, 4, (11, 13)), (4, 8, (11, 13)), (4, 3, (11, 13)), (2, 8, (5, 7)), (4, 5, (101, 3)), (2, 1.5, (9, 9)), (4, 1, (6, 5))],
)
def test_upscale_plane_lands_on_the_requested_size(model_scale, scale, size):
    calls = []

    def run(x, i):  # a stand-in network: nearest-neighbour by model_scale
        calls.append((i, tuple(x.shape[-2:])))
        return F.interpolate(x[None], scale_factor=model_scale, mode="nearest")[0]

    image = torch.rand(3, *size)
    out = upscale_plane(image, run, model_scale, scale)
    assert tuple(out.shape) == (3, *target_size(*size, scale))
    assert len(calls) == plan_passes(model_scale, scale)
    # never builds a canvas much larger than the target: the last pass starts near target / model_scale
    th, tw = target_size(*size, scale)
    assert calls[-1][1][0] <= -(-th // model_scale) + 1 or len(calls) == 1


def test_exact_power_does_not_resample():
    def run(x, i):
        return x.repeat_interleave(2, -1).repeat_interleave(2, -2)

    image = torch.rand(3, 4, 5)
    out = upscale_plane(image, run, 2, 4)
    assert torch.equal(out, image.repeat_interleave(4, -1).repeat_interleave(4, -2))


def test_resample_keeps_float_precision_and_range():
    image = torch.linspace(0, 1, 64 * 64).reshape(1, 64, 64).expand(3, -1, -1).contiguous()
    small = resample(image, (48, 48))
    assert small.dtype == torch.float32 and small.shape == (3, 48, 48)
    assert float(small.min()) >= 0 and float(small.max()) <= 1
    assert len(torch.unique(small)) > 256  # not quantised to 8 bits


def test_bleed_fills_hidden_pixels_from_visible_ones_and_keeps_visible():
    color = torch.zeros(3, 8, 8)
    color[0, :, :4] = 1.0  # red where visible
    alpha = torch.zeros(1, 8, 8)
    alpha[:, :, :4] = 1.0
    out = bleed_colors(color, alpha)
    assert torch.equal(out[:, :, :4], color[:, :, :4])
    assert torch.allclose(out[0, :, 4:], torch.ones(8, 4))  # red bled under the transparent half
    assert torch.equal(bleed_colors(color, torch.ones(1, 8, 8)), color)
    assert torch.equal(bleed_colors(color, torch.zeros(1, 8, 8)), color)


def test_bleed_handles_odd_sizes():
    color = torch.rand(3, 7, 5)
    alpha = torch.zeros(1, 7, 5)
    alpha[0, 3, 2] = 0.5
    out = bleed_colors(color, alpha)
    assert torch.allclose(out, color[:, 3:4, 2:3].expand(3, 7, 5))


def test_parse_device_and_dtype():
    assert parse_device("auto") is None and parse_device("cuda:1") == "cuda:1" and parse_device("CPU") == "cpu"
    assert parse_dtype("auto") is None and parse_dtype("bf16") is torch.bfloat16
    with pytest.raises(UsageError):
        parse_device("gpu")
    with pytest.raises(UsageError):
        parse_dtype("int8")


def test_exit_codes():
    assert exit_code_for(3, 0, 0) == 0
    assert exit_code_for(0, 3, 0) == 0
    assert exit_code_for(2, 0, 1) == 1
    assert exit_code_for(0, 0, 2) == 3
    assert exit_code_for(0, 0, 0) == 3


def test_templates():
    validate_template("{stem}-{scale}x.{ext}")
    for bad in ("{nope}.png", "../{stem}.png", "/abs/{stem}.png", "{stem"):
        with pytest.raises(UsageError):
            validate_template(bad)


def _touch(path: Path, size=(4, 4)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix in (".png", ".jpg", ".jpeg"):
        Image.new("RGB", size).save(path)
    else:
        path.write_text("x")
    return path


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "photos"
    _touch(root / "a.png")
    _touch(root / "b.jpg")
    _touch(root / "e.jpeg")
    _touch(root / "notes.txt")
    _touch(root / ".DS_Store")
    _touch(root / "Thumbs.db")
    _touch(root / "sub" / "c.png")
    _touch(root / "sub" / "deeper" / "d.png")
    return root


def test_collect_folder_flat_and_recursive(tree: Path):
    items, ignored = collect_inputs([str(tree)])
    assert sorted(i.path.name for i in items) == ["a.png", "b.jpg", "e.jpeg"]
    reasons = {Path(i.path).name: i.reason for i in ignored}
    assert reasons["notes.txt"].startswith("not an image") and reasons["Thumbs.db"] == "junk file"
    assert ".DS_Store" in reasons
    items, _ = collect_inputs([str(tree)], recursive=True)
    assert sorted(i.path.name for i in items) == ["a.png", "b.jpg", "c.png", "d.png", "e.jpeg"]
    assert all(i.root == tree for i in items)


def test_collect_globs_missing_and_stdin(tree: Path):
    items, ignored = collect_inputs([str(tree / "*.png"), str(tree / "nothing*.png"), str(tree / "missing.png"), "-"])
    assert [i.label for i in items] == [str(tree / "a.png"), "-"]
    assert [i.failed for i in ignored] == [True, True]
    items, _ = collect_inputs([str(tree / "**" / "*.png")])
    assert sorted(i.path.name for i in items) == ["a.png", "c.png", "d.png"]


def test_collect_skips_the_output_folder(tree: Path):
    _touch(tree / "out" / "a_x4.png")
    items, _ = collect_inputs([str(tree)], recursive=True, exclude=[tree / "out"])
    assert all("out" not in i.path.parts for i in items)


def test_plan_next_to_input_and_mirrored_folder(tree: Path, tmp_path: Path):
    items, _ = collect_inputs([str(tree)], recursive=True)
    jobs = plan_outputs(items, UpscaleOptions(scale=2), args_have_folder=True)
    outputs = {j.item.path.name: j.output for j in jobs}
    assert outputs["a.png"] == tree / "a_x2.png"
    assert outputs["b.jpg"] == tree / "b_x2.jpg" and [j.format for j in jobs if j.item.path.name == "b.jpg"] == ["jpeg"]
    assert outputs["e.jpeg"] == tree / "e_x2.jpeg"
    out = tmp_path / "out"
    jobs = plan_outputs(items, UpscaleOptions(scale=2.5, output=str(out), format="webp", name_template="{stem}.{ext}"),
                        args_have_folder=True)
    outputs = {j.item.path.name: j.output for j in jobs}
    assert outputs["d.png"] == out / "sub" / "deeper" / "d.webp"
    assert outputs["a.png"] == out / "a.webp" and outputs["e.jpeg"] == out / "e.webp"


def test_plan_single_file_output_and_usage_errors(tree: Path, tmp_path: Path):
    one, _ = collect_inputs([str(tree / "a.png")])
    jobs = plan_outputs(one, UpscaleOptions(output=str(tmp_path / "big.tif")))
    assert jobs[0].output == tmp_path / "big.tif" and jobs[0].format == "tiff"
    with pytest.raises(UsageError):
        plan_outputs(one, UpscaleOptions(output=str(tmp_path / "big.xyz")))
    with pytest.raises(UsageError):
        plan_outputs(one, UpscaleOptions(output=str(tmp_path / "big.png"), format="jpeg"))
    two, _ = collect_inputs([str(tree / "a.png"), str(tree / "b.jpg")])
    with pytest.raises(UsageError):
        plan_outputs(two, UpscaleOptions(output=str(tmp_path / "big.png")))
    with pytest.raises(UsageError):
        plan_outputs(two, UpscaleOptions(output="-"))


def test_plan_refuses_inputs_as_outputs_and_duplicates(tree: Path):
    one, _ = collect_inputs([str(tree / "a.png")])
    jobs = plan_outputs(one, UpscaleOptions(output=str(tree / "a.png")))
    assert jobs[0].error and "is the input" in jobs[0].error
    os.link(tree / "a.png", tree / "hard.png")
    jobs = plan_outputs(one, UpscaleOptions(output=str(tree / "hard.png"), overwrite=True))
    assert jobs[0].error and "is the input" in jobs[0].error
    (tree / "link.png").symlink_to(tree / "a.png")
    jobs = plan_outputs(one, UpscaleOptions(output=str(tree / "link.png"), overwrite=True))
    assert jobs[0].error
    both, _ = collect_inputs([str(tree / "a.png"), str(tree / "sub" / "c.png")])
    jobs = plan_outputs(both, UpscaleOptions(output=str(tree / "flat"), name_template="same.png"))
    assert jobs[0].error is None and "also the output" in (jobs[1].error or "")


def test_plan_skips_earlier_outputs_found_in_folders(tree: Path):
    _touch(tree / "a_x4.png")  # from a previous run at -s 4
    _touch(tree / "b_x2.jpg")  # from a previous run at -s 2
    items, _ = collect_inputs([str(tree)])
    jobs = plan_outputs(items, UpscaleOptions(scale=4), args_have_folder=True)
    skip = {j.item.path.name: j.skip for j in jobs}
    assert skip["a.png"] is None and skip["a_x4.png"] and skip["b_x2.jpg"]
    items, _ = collect_inputs([str(tree / "*.png")])  # a quoted glob behaves like the folder
    jobs = plan_outputs(items, UpscaleOptions(scale=4))
    assert {j.item.path.name: j.skip is not None for j in jobs} == {"a.png": False, "a_x4.png": True}
    items, _ = collect_inputs([str(tree / "a.png"), str(tree / "a_x4.png")])  # named one by one: as given
    jobs = plan_outputs(items, UpscaleOptions(scale=4))
    assert jobs[1].skip is None and jobs[0].error and "is the input" in jobs[0].error


@pytest.fixture
def image_upscaler(tiny_model):
    return lambda **kw: ImageProcessor(tiny_model, UpscaleOptions(device="cpu", **kw))


def test_gray_stays_gray_and_16_bits_stay(image_upscaler):
    data = ImageData(torch.rand(1, 9, 10), 16, b"icc", b"Exif\x00\x00xx", "PNG")
    out = image_upscaler(scale=2).upscale(data)
    assert out.pixels.shape == (1, 18, 20) and out.bit_depth == 16
    assert out.icc_profile == b"icc" and out.exif == b"Exif\x00\x00xx"


def test_alpha_model_and_resize_modes(image_upscaler):
    pixels = torch.rand(4, 8, 8)
    pixels[3] = 0.0
    pixels[3, 2:6, 2:6] = 1.0
    data = ImageData(pixels)
    by_model = image_upscaler(scale=3, alpha="model").upscale(data)
    by_resize = image_upscaler(scale=3, alpha="resize").upscale(data)
    assert by_model.pixels.shape == by_resize.pixels.shape == (4, 24, 24)
    expected = resample(pixels[3:], (24, 24))
    assert torch.allclose(by_resize.pixels[3:], expected)
    assert not torch.allclose(by_model.pixels[3:], expected, atol=1e-3)  # the network drew it
    assert torch.equal(by_model.pixels[:3], by_resize.pixels[:3])


def test_constant_alpha_skips_the_network(image_upscaler):
    pixels = torch.rand(2, 5, 6)
    pixels[1] = 1.0
    up = image_upscaler(scale=2)
    calls = []
    original = up.engine.upscale
    up.engine.upscale = lambda x: calls.append(1) or original(x)
    out = up.upscale(ImageData(pixels))
    assert len(calls) == 1 and torch.all(out.pixels[1] == 1.0)


def test_batch_disk_check_warns_when_outputs_may_not_fit(tree: Path, monkeypatch):
    from esc_cli.api import resources as api

    items, _ = collect_inputs([str(tree)], recursive=True)
    jobs = plan_outputs(items, UpscaleOptions(scale=4), args_have_folder=True)
    notes: list[str] = []
    api.batch_disk_check(jobs, 4, notes.append)
    assert notes == []
    monkeypatch.setattr(api.ResourceCheck, "free_disk", staticmethod(lambda folder: 1000))
    api.batch_disk_check(jobs, 4, notes.append)
    assert len(notes) == 1 and "KiB free" in notes[0] and "0.0 GiB" not in notes[0]  # units fit the size
