"""Hostile image inputs at the io layer: corrupt files fail, metadata faults only drop metadata,
JPEG output never fails on content."""

from __future__ import annotations

import io
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from esc_cli.errors import InputError
from esc_cli.io.decode import read_image
from esc_cli.io.encode import encode_image
from esc_cli.io.images import ImageData


def _png_bytes(width: int = 32, height: int = 24) -> bytes:
    rng = np.random.default_rng(3)
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.mark.parametrize("cut", [41, 200])
def test_png_header_then_random_bytes_fails_the_item(tmp_path, cut):
    good = _png_bytes(64, 64)  # before the fix this file came out "done", a half-filled buffer upscaled
    hostile = good[:cut] + np.random.default_rng(cut).integers(0, 256, len(good) - cut, dtype=np.uint8).tobytes()
    path = tmp_path / "garbage.png"
    path.write_bytes(hostile)
    with pytest.raises(InputError, match=r"garbage\.png: corrupt or truncated image"):
        read_image(path, name=str(path))
    with pytest.raises(OSError):  # plain Pillow refuses it too: the reference behaviour
        with Image.open(path) as im:
            im.load()


def test_truncated_png_fails(tmp_path):
    path = tmp_path / "cut.png"
    path.write_bytes(_png_bytes(64, 64)[:-300])
    with pytest.raises(InputError, match="cut.png"):
        read_image(path, name="cut.png")


def test_malformed_exif_with_intact_pixels_keeps_the_image(tmp_path):
    rng = np.random.default_rng(5)
    arr = rng.integers(0, 256, (16, 20, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(arr).save(buffer, format="JPEG", quality=95, exif=b"Exif\x00\x00MM\x00*\x00\x00\xff\xff\xff\xf0junk")
    data = read_image(buffer.getvalue(), name="x.jpg")
    assert (data.width, data.height) == (20, 16)


def test_bomb_refusal_quotes_max_pixels(tmp_path):
    path = tmp_path / "big.png"
    Image.new("L", (300, 300)).save(path)
    with pytest.raises(InputError, match=r"big\.png: 300x300 = 90,000 pixels exceeds --max-pixels 1,000"):
        read_image(path, name="big.png", max_pixels=1000)


@pytest.mark.parametrize(("size", "quality"), [(80, 95), (80, 100), (320, 95), (320, 100)])
def test_jpeg_of_noise_never_fails(size, quality):
    pixels = torch.rand(3, size, size, generator=torch.Generator().manual_seed(size + quality))
    data = encode_image(ImageData(pixels), "jpeg", quality=quality)
    with Image.open(io.BytesIO(data)) as im:
        im.load()
        assert im.size == (size, size)


def test_jpeg_buffer_setting_is_restored():
    from PIL import ImageFile

    before = ImageFile.MAXBLOCK
    encode_image(ImageData(torch.rand(3, 64, 64)), "jpeg", quality=100)
    assert ImageFile.MAXBLOCK == before


def test_plain_pillow_fails_on_the_same_noise_in_a_subprocess():
    """Guards the test above: the content really is hostile to Pillow's optimize pass."""
    code = ("import io,numpy as np;from PIL import Image;"
            "im=Image.fromarray(np.random.default_rng(0).integers(0,256,(320,320,3),dtype=np.uint8));"
            "im.save(io.BytesIO(),format='JPEG',quality=95,subsampling=0,optimize=True)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0 and "broken data stream" in proc.stderr
