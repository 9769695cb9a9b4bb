"""Quantising band by band equals quantising the whole image at once; a job holds only its quantised output
between upscaling and writing."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from esc_cli.io import canvas


@pytest.mark.parametrize("depth", [8, 16])
@pytest.mark.parametrize("height", [1, canvas.QUANTIZE_ROWS - 1, canvas.QUANTIZE_ROWS * 2 + 37])
def test_bands_equal_the_whole_image(depth, height):
    pixels = torch.rand(3, height, 19, generator=torch.Generator().manual_seed(height)) * 1.2 - 0.1  # out of range too
    top = 65535.0 if depth == 16 else 255.0
    whole = pixels.clamp(0, 1).mul(top).round().permute(1, 2, 0).numpy().astype(np.uint16 if depth == 16 else np.uint8)
    banded = canvas.quantize(pixels, depth)
    assert banded.dtype == whole.dtype and np.array_equal(banded, whole)


def test_the_job_drops_its_input_and_holds_only_the_quantised_output(tmp_path, tiny_model):
    from PIL import Image

    from esc_cli.api.inputs import collect_inputs
    from esc_cli.api.jobs import JobContext, JobRun
    from esc_cli.api.options import UpscaleOptions
    from esc_cli.api.outputs import plan_outputs
    from esc_cli.api.processor import ImageProcessor

    Image.new("RGB", (10, 8), "teal").save(tmp_path / "a.png")
    options = UpscaleOptions(scale=2, output=str(tmp_path / "out.png"), device="cpu")
    options.validate()
    items, _ = collect_inputs([str(tmp_path / "a.png")], recursive=False, exclude=[])
    (job,) = plan_outputs(items, options, args_have_folder=False)
    run = JobRun(job, JobContext(ImageProcessor(tiny_model, options), options, lambda e: None), index=1, total=1)
    assert run.check() is None
    run.read()
    run.upscale()
    assert run.data is None and run.prepared is not None and run.prepared.image.mode == "RGB"
    run.store()
    assert run.prepared is None and run.done().out_width == 20 and run.done().width == 10
    with Image.open(tmp_path / "out.png") as out:
        assert out.size == (20, 16) and out.mode == "RGB"
