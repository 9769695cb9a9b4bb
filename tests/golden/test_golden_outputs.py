"""Parity with the official ESC code: every case in golden/cases.json within 1e-4 (fp32, CPU)."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

import esc_cli
from tests.conftest import GOLDEN

CASES = json.loads((GOLDEN / "cases.json").read_text())
EXPECTED_VARIANT = {"ESC": "esc", "ESCFP": "esc-fp", "ESCReal": "esc-real"}


@pytest.mark.parametrize("entry", CASES, ids=[e["name"] for e in CASES])
def test_golden_case_matches_official_output(entry):
    model = esc_cli.load_model(GOLDEN / f"{entry['name']}.pth")
    tensors = load_file(str(GOLDEN / f"{entry['name']}.io.safetensors"))
    cfg = entry["config"]
    assert model.variant == EXPECTED_VARIANT[entry["class"]]
    assert model.scale == cfg["upscaling_factor"]
    for key in ("dim", "pdim", "kernel_size", "n_blocks", "conv_blocks", "window_size", "num_heads", "exp_ratio"):
        assert getattr(model.config, key) == cfg[key], key
    assert (model.config.upsampler == "dysample") == bool(cfg.get("use_dysample"))
    for case in entry["cases"]:
        x, expected = tensors[case["input"]], tensors[case["output"]]
        with torch.inference_mode():
            y = model(x)
        assert tuple(y.shape) == tuple(case["output_shape"])
        assert (y - expected).abs().max().item() <= 1e-4


def test_golden_model_batch_equals_single_images():
    """Each image in a batch uses its own dynamic kernel (the official eval path does not)."""
    model = esc_cli.load_model(GOLDEN / "esc_light_x4.pth")
    torch.manual_seed(1)
    batch = torch.rand(3, 3, 24, 40)
    batch[1] *= 0.3  # very different channel means per image
    with torch.inference_mode():
        together = model(batch)
        alone = torch.cat([model(batch[i : i + 1]) for i in range(3)])
    assert (together - alone).abs().max().item() <= 1e-5
