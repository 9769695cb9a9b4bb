"""The default models shipped inside the package: they load through the public API and beat bicubic.

The check uses a crop of a held-out scikit-image photograph (never seen in training, see
docs/default-model.md): LR = PIL bicubic downscale of the crop, compared with PIL bicubic
upscaling of the same LR on the BT.601 luma, border crop = scale.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import esc_cli
from esc_cli.weights.files import read_state_dict

BUNDLED = Path(esc_cli.__file__).resolve().parent / "weights" / "bundled"
SHIPPED_SCALES = (2, 3, 4)
# Held-out photographs (chelsea, coffee and rocket are excluded from training).
CROPS = {2: ("chelsea.png", 64, 160, 96), 3: ("rocket.jpg", 150, 250, 96), 4: ("coffee.png", 100, 180, 128)}
# A clear margin below the gain measured on these crops (x2 +1.18 dB, x3 +0.68 dB,
# x4 +3.59 dB); random weights score about -13 dB.
MIN_GAIN_DB = {2: 0.8, 3: 0.4, 4: 1.5}


def _path(scale: int) -> Path:
    return BUNDLED / f"esc-default-x{scale}.safetensors"


def _luma(img: np.ndarray) -> np.ndarray:
    x = img.astype(np.float64) / 255.0
    return 16.0 + 65.481 * x[..., 0] + 128.553 * x[..., 1] + 24.966 * x[..., 2]


def _psnr_y(a: np.ndarray, b: np.ndarray, border: int) -> float:
    ya = _luma(a)[border:-border, border:-border]
    yb = _luma(b)[border:-border, border:-border]
    return 10.0 * math.log10(255.0**2 / float(np.mean((ya - yb) ** 2)))


def _held_out_crop(scale: int) -> np.ndarray:
    import skimage.data

    name, top, left, side = CROPS[scale]
    with Image.open(Path(skimage.data.__file__).parent / name) as im:
        rgb = np.asarray(im.convert("RGB"))
    return np.ascontiguousarray(rgb[top : top + side, left : left + side])


def test_bundled_files_are_small():
    sizes = [p.stat().st_size for p in BUNDLED.glob("esc-default-x*.safetensors")]
    assert len(sizes) >= len(SHIPPED_SCALES)
    assert sum(sizes) < 2 * 1024 * 1024


@pytest.mark.parametrize("scale", SHIPPED_SCALES)
def test_bundled_default_loads_through_public_api(scale):
    model = esc_cli.load_model(_path(scale))
    assert model.scale == scale
    assert model.variant == "esc"
    assert not model.training
    cfg = model.config
    # The tiling engine needs a power-of-two window.
    assert cfg.window_size & (cfg.window_size - 1) == 0
    from safetensors import safe_open

    with safe_open(str(_path(scale)), "pt") as f:
        meta = f.metadata()
    assert json.loads(meta["config"]) == cfg.to_dict()
    assert set(read_state_dict(_path(scale))) == set(model.state_dict())


@pytest.mark.parametrize("scale", SHIPPED_SCALES)
def test_bundled_default_beats_bicubic_on_held_out_crop(scale):
    hr = _held_out_crop(scale)
    side = hr.shape[0] // scale
    lr = np.asarray(Image.fromarray(hr).resize((side, side), Image.BICUBIC))
    bicubic = np.asarray(Image.fromarray(lr).resize((side * scale, side * scale), Image.BICUBIC))
    model = esc_cli.load_model(_path(scale))
    with torch.no_grad():
        x = torch.from_numpy(lr.copy()).permute(2, 0, 1).float().div(255).unsqueeze(0)
        y = model(x)[0].clamp(0, 1).mul(255).round().byte().permute(1, 2, 0).numpy()
    assert y.shape == hr.shape
    gain = _psnr_y(y, hr, scale) - _psnr_y(bicubic, hr, scale)
    assert gain > MIN_GAIN_DB[scale], f"x{scale}: {gain:+.2f} dB over bicubic"
