"""Seamless tiling: tile=64 must match whole-image inference to >= 45 dB on a natural photo.

Runs with the golden ESC-light x4 weights (random, fixed) and with every bundled model.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import esc_cli
from esc_cli.api import load_model
from esc_cli.engine import Upscaler

BUNDLED = sorted((Path(esc_cli.__file__).parent / "weights" / "bundled").glob("*.safetensors"))
SEAMLESS_DB = 45.0


def photo_crop(size: int = 160) -> torch.Tensor:
    """`[3, size, size]`: the astronaut's face and shoulder, area-downscaled 2x (a natural photo)."""
    skimage_data = pytest.importorskip("skimage.data")
    img = torch.from_numpy(skimage_data.astronaut()).permute(2, 0, 1).float() / 255
    crop = img[:, 0 : 2 * size, 128 : 128 + 2 * size]
    return F.avg_pool2d(crop[None], 2)[0].contiguous()


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = float(((a - b) ** 2).mean())
    return float("inf") if mse == 0 else 10 * math.log10(1 / mse)


def check_seamless(model: torch.nn.Module, size: int) -> float:
    x = photo_crop(size)
    with torch.inference_mode():
        whole = model(x[None])[0].clamp(0, 1)
    up = Upscaler(model, device="cpu", dtype=torch.float32, tile=64)
    tiled = up.upscale(x)
    # Really tiled: 2 x 2 patches of at most 64 + 2 x 32 pixels (default overlap).
    assert (up.last_tile, up.last_patch) == (64, 128)
    value = psnr(tiled, whole)
    assert value >= SEAMLESS_DB, f"tile=64 vs whole image: {value:.2f} dB < {SEAMLESS_DB} dB"
    return value


def test_seamless_golden_esc_light_x4(golden_dir):
    model = load_model(golden_dir / "esc_light_x4.pth")
    check_seamless(model, 160)


def test_the_default_model_is_bundled():
    """The seamless check below must never pass vacuously: the package ships its default model."""
    assert BUNDLED, "no esc_cli/weights/bundled/*.safetensors found"


@pytest.mark.parametrize("path", BUNDLED, ids=[p.stem for p in BUNDLED])
def test_seamless_bundled(path: Path):
    model = load_model(path)
    check_seamless(model, 160)
