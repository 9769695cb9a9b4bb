"""`--png-level`: the zlib level reaches the 8- and 16-bit PNG encoders, pixels unchanged; bad values are usage errors."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from esc_cli.api.options import UpscaleOptions
from esc_cli.errors import UsageError
from esc_cli.io.encode import encode_image
from esc_cli.io.images import DEFAULT_PNG_LEVEL, ImageData


@pytest.mark.parametrize("depth", [8, 16])
def test_level_changes_size_not_pixels(depth):
    y, x = torch.meshgrid(torch.linspace(0, 1, 96), torch.linspace(0, 1, 128), indexing="ij")
    noise = torch.rand(3, 96, 128, generator=torch.Generator().manual_seed(1)) * 0.05
    image = ImageData(pixels=(torch.stack([x, y, x * y]) + noise).clamp(0, 1), bit_depth=depth)
    fast, small = (encode_image(image, "png", png_level=level) for level in (1, 9))
    assert len(fast) > len(small)
    decoded = [np.asarray(Image.open(io.BytesIO(data))) for data in (fast, small)]
    assert np.array_equal(decoded[0], decoded[1])
    assert encode_image(image, "png") == encode_image(image, "png", png_level=DEFAULT_PNG_LEVEL)


def test_default_and_validation():
    assert UpscaleOptions().png_level == DEFAULT_PNG_LEVEL == 4
    with pytest.raises(UsageError, match="--png-level"):
        UpscaleOptions(png_level=10).validate()
