"""esc_cli.io (decode, encode): faithful reading and writing (depth, alpha, gray, orientation, metadata, bombs)."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageCms, ImageOps

from esc_cli.errors import InputError
from esc_cli.io.decode import read_image
from esc_cli.io.encode import encode_image, encode_png16, encode_tiff16
from esc_cli.io.images import ImageData, is_junk, looks_like_image, output_format_for

RNG = np.random.default_rng(7)


def srgb_icc() -> bytes:
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def png_bytes(im: Image.Image, **kwargs) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format="PNG", **kwargs)
    return buf.getvalue()


def as_uint(data: ImageData, top: int) -> np.ndarray:
    return (data.pixels.permute(1, 2, 0).numpy() * top).round().astype(np.int64)


# gray+alpha 16-bit TIFF is stored as RGBA (test below)
@pytest.mark.parametrize(("fmt", "channels"), [("png", 1), ("png", 2), ("png", 3), ("png", 4), ("tiff", 1), ("tiff", 3), ("tiff", 4)])
def test_16bit_round_trip_is_exact(fmt, channels):
    arr = (RNG.random((6, 9, channels)) * 65535).astype(np.uint16)
    icc = srgb_icc()
    exif = Image.Exif()
    exif[0x010F] = "EscCam"
    image = ImageData(torch.from_numpy(arr.astype(np.float32) / 65535).permute(2, 0, 1), 16, icc, exif.tobytes())
    encoded = encode_image(image, fmt)
    back = read_image(encoded)
    assert back.bit_depth == 16
    assert back.channels == channels
    assert np.array_equal(as_uint(back, 65535), arr.astype(np.int64))
    assert back.icc_profile == icc
    assert back.exif is not None and b"EscCam" in back.exif
    # Pillow agrees on the size and sees 16 bits per sample in the header
    header = Image.open(io.BytesIO(encoded))
    assert header.size == (9, 6)
    if fmt == "png":
        assert encoded[24] == 16  # IHDR bit depth
    else:
        assert set(header.tag_v2[258]) == {16}


def test_16bit_gray_alpha_tiff_becomes_rgba_with_a_note():
    arr = (RNG.random((4, 5, 2)) * 65535).astype(np.uint16)
    image = ImageData(torch.from_numpy(arr.astype(np.float32) / 65535).permute(2, 0, 1), 16)
    notes: list[str] = []
    back = read_image(encode_image(image, "tiff", notes=notes))
    assert back.channels == 4 and back.bit_depth == 16
    assert np.array_equal(as_uint(back, 65535)[..., 0], arr[..., 0].astype(np.int64))
    assert np.array_equal(as_uint(back, 65535)[..., 3], arr[..., 1].astype(np.int64))
    assert any("RGBA" in n for n in notes)


def test_png16_and_tiff16_encoders_write_readable_headers():
    arr = (RNG.random((3, 4, 3)) * 65535).astype(np.uint16)
    png = Image.open(io.BytesIO(encode_png16(arr)))
    assert png.format == "PNG" and png.size == (4, 3)
    tif = Image.open(io.BytesIO(encode_tiff16(arr)))
    assert tif.format == "TIFF" and tif.size == (4, 3)


def test_16bit_grayscale_png_from_pillow_keeps_16_bits():
    arr = (RNG.random((5, 7)) * 65535).astype(np.uint16)
    data = read_image(png_bytes(Image.fromarray(arr)))
    assert data.bit_depth == 16 and data.channels == 1
    assert np.array_equal(as_uint(data, 65535)[..., 0], arr.astype(np.int64))


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_matches_pillow_and_is_removed(orientation):
    base = Image.fromarray((RNG.random((5, 7, 3)) * 255).astype(np.uint8))
    exif = Image.Exif()
    exif[0x0112] = orientation
    exif[0x010F] = "EscCam"
    buf = io.BytesIO()
    base.save(buf, format="JPEG", exif=exif.tobytes(), quality=100)
    data = read_image(buf.getvalue())
    expected = np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(buf.getvalue()))))
    assert np.array_equal(as_uint(data, 255), expected.astype(np.int64))
    kept = Image.Exif()
    kept.load(data.exif)
    assert kept.get(0x010F) == "EscCam"
    assert kept.get(0x0112, 1) == 1


def test_alpha_modes_are_kept():
    rgba = Image.fromarray((RNG.random((4, 6, 4)) * 255).astype(np.uint8), "RGBA")
    assert read_image(png_bytes(rgba)).channels == 4
    la = Image.fromarray((RNG.random((4, 6, 2)) * 255).astype(np.uint8), "LA")
    data = read_image(png_bytes(la))
    assert data.channels == 2 and data.is_gray and data.has_alpha
    pal = Image.new("P", (6, 4))
    pal.putpalette([255, 0, 0, 0, 255, 0] + [0] * 762)
    pal.putpixel((0, 0), 1)
    data = read_image(png_bytes(pal, transparency=0))
    assert data.channels == 4
    alpha = data.pixels[3]
    assert float(alpha[0, 0]) == 1.0 and float(alpha[1, 1]) == 0.0


def test_colour_key_transparency_becomes_alpha():
    rgb = Image.new("RGB", (4, 3), (10, 20, 30))
    rgb.putpixel((0, 0), (1, 2, 3))
    data = read_image(png_bytes(rgb, transparency=(10, 20, 30)))
    assert data.channels == 4 and float(data.pixels[3, 0, 0]) == 1.0 and float(data.pixels[3, 1, 1]) == 0.0
    gray = Image.new("L", (4, 3), 7)
    gray.putpixel((0, 0), 9)
    data = read_image(png_bytes(gray, transparency=7))
    assert data.channels == 2 and float(data.pixels[1, 0, 0]) == 1.0 and float(data.pixels[1, 2, 3]) == 0.0


def test_cmyk_becomes_rgb_with_a_note():
    cmyk = Image.new("CMYK", (5, 4), (0, 255, 255, 0))  # red
    buf = io.BytesIO()
    cmyk.save(buf, format="JPEG", quality=100)
    data = read_image(buf.getvalue())
    assert data.channels == 3
    assert any("CMYK" in n for n in data.notes)
    r, g, b = (float(c.mean()) for c in data.pixels)
    assert r > 0.8 and g < 0.2 and b < 0.2


def test_icc_profile_is_read():
    icc = srgb_icc()
    data = read_image(png_bytes(Image.new("RGB", (3, 3)), icc_profile=icc))
    assert data.icc_profile == icc


def _bomb_png(width: int, height: int) -> bytes:
    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def test_bomb_header_is_refused_before_decoding():
    bomb = _bomb_png(40000, 40000)
    with pytest.raises(InputError, match="max-pixels"):
        read_image(bomb, max_pixels=1_000_000)
    with pytest.raises(InputError, match="bomb"):
        read_image(bomb)  # Pillow's default limit still applies
    seen = []
    with pytest.raises(InputError):
        read_image(_bomb_png(2000, 1000), max_pixels=1_000_000, check=seen.append)
    assert seen == []  # refused before the header check


def test_header_check_sees_size_before_decoding():
    seen = []
    read_image(png_bytes(Image.new("RGBA", (7, 3))), check=seen.append)
    assert seen[0].width == 7 and seen[0].height == 3 and seen[0].channels == 4


def test_truncated_and_garbage_files_raise_input_error(tmp_path: Path):
    good = png_bytes(Image.fromarray((RNG.random((64, 64, 3)) * 255).astype(np.uint8)))
    with pytest.raises(InputError):
        read_image(good[: len(good) // 2])
    with pytest.raises(InputError, match="not an image"):
        read_image(b"hello world")
    with pytest.raises(InputError, match="no such file"):
        read_image(tmp_path / "missing.png")


def test_jpeg_output_notes_lost_alpha_and_depth():
    image = ImageData(torch.rand(4, 5, 6), 16)
    notes: list[str] = []
    out = Image.open(io.BytesIO(encode_image(image, "jpg", quality=90, notes=notes)))
    assert out.mode == "RGB"
    assert any("alpha" in n for n in notes) and any("8 bits" in n for n in notes)


def test_webp_keeps_alpha_and_gray_becomes_rgb():
    out = Image.open(io.BytesIO(encode_image(ImageData(torch.rand(2, 5, 6)), "webp", quality=100)))
    assert out.mode == "RGBA"


def test_names():
    assert output_format_for(".JPG") == "jpeg" and output_format_for("tif") == "tiff"
    assert output_format_for("bmp") is None
    assert is_junk(Path(".DS_Store")) and is_junk(Path("Thumbs.db")) and is_junk(Path("._a.png"))
    assert looks_like_image(Path("a.PNG")) and not looks_like_image(Path("notes.txt"))


def test_atomic_outputs_get_the_usual_file_mode(tmp_path):
    import os
    import stat

    from esc_cli.io.atomic import atomic_output

    target = tmp_path / "out.png"
    with atomic_output(target) as tmp:
        tmp.write_bytes(b"x")
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~mask


def test_png16_rows_deflated_in_bands_round_trip_exactly():
    from esc_cli.io import encode

    rows = encode.PNG16_ROWS * 2 + 37  # three bands: the "Up" filter must carry the row above across bands
    arr = (RNG.random((rows, 9, 3)) * 65535).astype(np.uint16)
    data = encode_png16(arr, level=1)
    assert data.count(b"IDAT") >= 2
    back = read_image(data)
    assert back.bit_depth == 16 and back.channels == 3
    assert np.array_equal(as_uint(back, 65535), arr.astype(np.int64))
