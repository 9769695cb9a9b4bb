"""Writing float pixels back to PNG, JPEG, WebP or TIFF, with ICC profile and EXIF carried over.

Input: float `[C, H, W]` in `[0, 1]` (`ImageData`). 16-bit notes (checked with Pillow 13): Pillow cannot
encode 16-bit RGB/RGBA/LA PNG or TIFF, so `esc` encodes those itself (numpy + zlib; the TIFF directory
via Pillow's `ImageFileDirectory_v2`). tifffile was checked too: it drops the EXIF sub-IFD.
"""

from __future__ import annotations

import io
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Optional, Union

import numpy as np
import torch
from PIL import Image, ImageFile, TiffImagePlugin, features
from torch import Tensor

from esc_cli.errors import OutputError
from esc_cli.io.images import (
    DEFAULT_PNG_LEVEL,
    DEFAULT_QUALITY,
    EXIF_IFD_TAG,
    GPS_IFD_TAG,
    OUTPUT_FORMATS,
    TIFF_STRUCTURE_TAGS,
    ImageData,
    output_format_for,
)


# Rows quantised at a time: the float copy that clamping and rounding need stays band-sized.
QUANTIZE_ROWS = 128


def _quantize(pixels: Tensor, bit_depth: int) -> np.ndarray:
    """`[C, H, W]` float in [0, 1] -> `[H, W, C]` uint8/uint16, rounded to nearest, band by band (no
    image-sized float copy: 3 or 6 bytes per pixel on top of the input, not 15)."""
    top = 65535.0 if bit_depth == 16 else 255.0
    channels, height, width = pixels.shape
    out = np.empty((height, width, channels), dtype=np.uint16 if bit_depth == 16 else np.uint8)
    target = torch.from_numpy(out)  # shares out's memory
    for r0 in range(0, height, QUANTIZE_ROWS):
        band = pixels[:, r0 : r0 + QUANTIZE_ROWS].detach().float().clamp(0.0, 1.0).mul_(top).round_()
        target[r0 : r0 + QUANTIZE_ROWS].copy_(band.permute(1, 2, 0))  # whole numbers: the cast is exact
    return out


@dataclass(frozen=True)
class PreparedImage:
    """What the encoders need, quantised: `array` `[H, W, C]` uint8/uint16 in the output format's layout."""

    array: np.ndarray
    fmt: str
    icc_profile: Optional[bytes]
    exif: Optional[bytes]


def prepare_image(image: ImageData, fmt: str, *, notes: Optional[list[str]] = None) -> PreparedImage:
    """Quantise `image` for `fmt` ("png", "jpeg", "webp", "tiff"): depth, alpha and gray as the format stores them.

    JPEG and WebP store 8 bits (a note says so), JPEG has no alpha (flattened on white, with a note), WebP has
    no gray (stored as RGB). After this the float pixels are no longer needed: a caller that drops them keeps
    only the quantised array while the file is encoded.
    """
    notes = notes if notes is not None else []
    fmt = output_format_for(fmt) or fmt
    if fmt not in OUTPUT_FORMATS:
        raise OutputError(f"cannot write format {fmt!r}; use png, jpg, webp or tiff")
    pixels, depth = image.pixels, image.bit_depth
    if fmt in ("jpeg", "webp") and depth == 16:
        notes.append(f"{fmt.upper()} stores 8 bits per channel; 16-bit data reduced (use png or tiff to keep it)")
        depth = 8
    if fmt == "jpeg" and image.has_alpha:
        notes.append("JPEG has no alpha; flattened on white (use png, webp or tiff to keep it)")
        pixels = _flatten_alpha(pixels)
    if fmt == "webp" and image.channels in (1, 2):
        pixels = torch.cat([pixels[:1].expand(3, -1, -1), pixels[1:]], 0)
    return PreparedImage(_quantize(pixels, depth), fmt, image.icc_profile, image.exif)


def _flatten_alpha(pixels: Tensor, background: float = 1.0) -> Tensor:
    """Composite straight alpha over a flat background -> colour channels only."""
    color, alpha = pixels[:-1], pixels[-1:]
    return color * alpha + background * (1.0 - alpha)


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def encode_png16(
    arr: np.ndarray, *, icc_profile: Optional[bytes] = None, exif: Optional[bytes] = None, level: int = DEFAULT_PNG_LEVEL
) -> bytes:
    """`[H, W, C]` uint16 (C = 1..4) -> a 16-bit PNG with optional iCCP and eXIf chunks."""
    height, width, channels = arr.shape
    color_type = {1: 0, 2: 4, 3: 2, 4: 6}[channels]
    rows = arr.astype(">u2").reshape(height, width * channels).view(np.uint8)
    # filter "Up" (2): byte minus the byte above, modulo 256; the first row uses "None".
    filtered = rows.copy()
    filtered[1:] = rows[1:] - rows[:-1]
    kinds = np.full((height, 1), 2, np.uint8)
    kinds[0, 0] = 0
    body = np.concatenate([kinds, filtered], axis=1).tobytes()
    out = [b"\x89PNG\r\n\x1a\n", _png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 16, color_type, 0, 0, 0))]
    if icc_profile:
        out.append(_png_chunk(b"iCCP", b"ICC profile\x00\x00" + zlib.compress(icc_profile)))
    if exif:
        out.append(_png_chunk(b"eXIf", exif[6:] if exif.startswith(b"Exif\x00\x00") else exif))
    out.append(_png_chunk(b"IDAT", zlib.compress(body, level)))
    out.append(_png_chunk(b"IEND", b""))
    return b"".join(out)


def encode_tiff16(arr: np.ndarray, *, icc_profile: Optional[bytes] = None, exif: Optional[bytes] = None) -> bytes:
    """`[H, W, C]` uint16 (C = 1..4) -> a deflate-compressed 16-bit TIFF with ICC and EXIF tags.

    Written here because no dependency does all of it (checked): Pillow 13 cannot create a 16-bit
    RGB image (`fromarray` refuses `<u2` HxWx3; raw `RGB;16L` is reduced to 8 bits), and tifffile
    writes 16-bit deflate with ICC but refuses the EXIF and GPS sub-IFDs ("not writing extratag
    34665"), which this function carries over.
    """
    height, width, channels = arr.shape
    data = zlib.compress(arr.astype("<u2").tobytes(), 6)
    ifd = TiffImagePlugin.ImageFileDirectory_v2(prefix=b"II")
    if exif:
        carried = Image.Exif()
        carried.load(exif)
        for tag, value in carried.items():
            if tag not in TIFF_STRUCTURE_TAGS and tag not in (EXIF_IFD_TAG, GPS_IFD_TAG):
                ifd[tag] = value
        for sub in (EXIF_IFD_TAG, GPS_IFD_TAG):
            values = carried.get_ifd(sub)
            if values:
                ifd[sub] = dict(values)
    ifd[256] = width
    ifd[257] = height
    ifd[258] = (16,) * channels
    ifd[259] = 8  # Adobe deflate
    ifd[262] = 2 if channels >= 3 else 1
    ifd[277] = channels
    ifd[278] = height
    ifd[279] = len(data)
    ifd[284] = 1
    if channels in (2, 4):
        ifd[338] = (2,)  # unassociated (straight) alpha
    if icc_profile:
        ifd[34675] = icc_profile
    ifd[273] = 0  # Pillow points the strip offset past the directory and its data
    directory = ifd.tobytes(8)
    return b"II*\x00" + struct.pack("<I", 8) + directory + data


def encode_image(
    image: ImageData,
    fmt: str,
    *,
    quality: Optional[int] = None,
    png_level: int = DEFAULT_PNG_LEVEL,
    notes: Optional[list[str]] = None,
) -> bytes:
    """Encode `image` as `fmt` ("png", "jpeg", "webp", "tiff") -> file bytes.

    PNG and TIFF keep 16 bits, gray and alpha; JPEG and WebP store 8 bits (a note says so),
    JPEG has no alpha (flattened on white, with a note), WebP has no gray (stored as RGB).
    The ICC profile and EXIF are embedded in every format.
    """
    return encode_prepared(prepare_image(image, fmt, notes=notes), quality=quality, png_level=png_level, notes=notes)


def encode_prepared(
    prepared: PreparedImage,
    *,
    quality: Optional[int] = None,
    png_level: int = DEFAULT_PNG_LEVEL,
    notes: Optional[list[str]] = None,
) -> bytes:
    """File bytes of a quantised image (see `prepare_image`), ICC profile and EXIF embedded."""
    notes = notes if notes is not None else []
    arr, fmt = prepared.array, prepared.fmt
    depth = 16 if arr.dtype == np.uint16 else 8
    icc, exif = prepared.icc_profile, prepared.exif
    if depth == 16 and fmt == "png":
        return encode_png16(arr, icc_profile=icc, exif=exif, level=png_level)
    if depth == 16 and fmt == "tiff":
        if arr.shape[2] == 2:  # few readers (Pillow included) open 16-bit gray+alpha TIFF
            notes.append("16-bit gray+alpha TIFF stored as RGBA (use png to keep it gray)")
            arr = arr[..., [0, 0, 0, 1]]
        return encode_tiff16(arr, icc_profile=icc, exif=exif)
    mode = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}[arr.shape[2]]
    im = Image.fromarray(arr[..., 0] if arr.shape[2] == 1 else arr, mode=mode)
    kwargs: dict = {}
    if icc:
        kwargs["icc_profile"] = icc
    if exif:
        kwargs["exif"] = exif
    if fmt == "jpeg":
        q = quality or DEFAULT_QUALITY["jpeg"]
        kwargs.update(quality=q, subsampling=0 if q >= 90 else 2, optimize=True)
    elif fmt == "webp":
        q = quality or DEFAULT_QUALITY["webp"]
        kwargs.update(quality=q, lossless=q >= 100, method=4)
    elif fmt == "png":
        kwargs.update(compress_level=png_level)
    elif fmt == "tiff" and features.check("libtiff"):
        kwargs.update(compression="tiff_adobe_deflate")
    if fmt == "jpeg":
        return _save_jpeg(im, kwargs)
    buffer = io.BytesIO()
    im.save(buffer, format=fmt.upper(), **kwargs)
    return buffer.getvalue()


def _save_jpeg(im: Image.Image, kwargs: dict) -> bytes:
    """JPEG bytes that never fail on content.

    Pillow's `optimize=True` encodes in one pass into a buffer of `ImageFile.MAXBLOCK` bytes; a
    high-entropy image (noise at quality 95 and up) overflows it ("Suspension not allowed here",
    then "broken data stream"). The buffer is raised to cover the worst case of the image, and a
    failure still left is retried without `optimize` (same pixels, a few percent larger file).
    """
    worst = im.width * im.height * len(im.getbands()) * 2 + (1 << 20)
    saved = ImageFile.MAXBLOCK
    ImageFile.MAXBLOCK = max(saved, worst)
    try:
        buffer = io.BytesIO()
        try:
            im.save(buffer, format="JPEG", **kwargs)
        except OSError:
            buffer = io.BytesIO()
            im.save(buffer, format="JPEG", **{**kwargs, "optimize": False})
        return buffer.getvalue()
    finally:
        ImageFile.MAXBLOCK = saved


def write_image(
    image: Union[ImageData, PreparedImage],
    target: Union[Path, BinaryIO],
    fmt: str,
    *,
    quality: Optional[int] = None,
    png_level: int = DEFAULT_PNG_LEVEL,
    notes: Optional[list[str]] = None,
) -> int:
    """Encode and write `image` to a path or a binary stream; returns the number of bytes.

    Writes to exactly `target`: atomicity is the caller's job (see `esc_cli.io.atomic`).
    """
    if isinstance(image, ImageData):
        image = prepare_image(image, fmt, notes=notes)
    data = encode_prepared(image, quality=quality, png_level=png_level, notes=notes)
    if isinstance(target, (str, os.PathLike)):
        with open(target, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
    else:
        target.write(data)
        target.flush()
    return len(data)


def estimate_encoded_bytes(width: int, height: int, channels: int, bit_depth: int, fmt: str) -> int:
    """A generous upper estimate of an encoded file's size, for the disk-space check."""
    raw = width * height * channels * (2 if bit_depth == 16 and fmt in ("png", "tiff") else 1)
    if fmt in ("jpeg", "webp"):
        return raw // 2 + 65536
    return raw + raw // 100 + 65536  # deflate's worst case is a little above raw
