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
from pathlib import Path
from typing import BinaryIO, Optional, Union

import numpy as np
from PIL import Image, ImageFile, TiffImagePlugin, features

from esc_cli.io.canvas import PreparedImage, prepare_image
from esc_cli.io.images import (
    DEFAULT_PNG_LEVEL,
    DEFAULT_QUALITY,
    EXIF_IFD_TAG,
    GPS_IFD_TAG,
    TIFF_STRUCTURE_TAGS,
    ImageData,
)


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


# Rows of 16-bit PNG filtered and compressed at a time.
PNG16_ROWS = 256


def write_png16(
    arr: np.ndarray, stream: BinaryIO, *, icc_profile: Optional[bytes] = None, exif: Optional[bytes] = None,
    level: int = DEFAULT_PNG_LEVEL,
) -> int:
    """Write `[H, W, C]` uint16 (C = 1..4) to `stream` as a 16-bit PNG with optional iCCP and eXIf chunks.

    Rows are filtered ("Up": each byte minus the byte above, modulo 256; the first row "None") and deflated
    `PNG16_ROWS` at a time, each piece of deflate output its own IDAT chunk: memory stays band-sized.
    Returns the number of bytes written.
    """
    height, width, channels = arr.shape
    color_type = {1: 0, 2: 4, 3: 2, 4: 6}[channels]
    head = [b"\x89PNG\r\n\x1a\n", _png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 16, color_type, 0, 0, 0))]
    if icc_profile:
        head.append(_png_chunk(b"iCCP", b"ICC profile\x00\x00" + zlib.compress(icc_profile)))
    if exif:
        head.append(_png_chunk(b"eXIf", exif[6:] if exif.startswith(b"Exif\x00\x00") else exif))
    written = stream.write(b"".join(head)) or 0
    deflate = zlib.compressobj(level)
    above: Optional[np.ndarray] = None
    for r0 in range(0, height, PNG16_ROWS):
        rows = arr[r0 : r0 + PNG16_ROWS].astype(">u2").reshape(-1, width * channels).view(np.uint8)
        body = np.empty((rows.shape[0], rows.shape[1] + 1), np.uint8)
        body[:, 0] = 2
        body[1:, 1:] = rows[1:] - rows[:-1]
        if above is None:
            body[0, 0], body[0, 1:] = 0, rows[0]
        else:
            body[0, 1:] = rows[0] - above
        above = rows[-1].copy()
        piece = deflate.compress(body.tobytes())
        if piece:
            written += stream.write(_png_chunk(b"IDAT", piece)) or 0
    written += stream.write(_png_chunk(b"IDAT", deflate.flush()) + _png_chunk(b"IEND", b"")) or 0
    return written


def encode_png16(
    arr: np.ndarray, *, icc_profile: Optional[bytes] = None, exif: Optional[bytes] = None, level: int = DEFAULT_PNG_LEVEL
) -> bytes:
    """`[H, W, C]` uint16 (C = 1..4) -> 16-bit PNG bytes (see `write_png16`)."""
    buffer = io.BytesIO()
    write_png16(arr, buffer, icc_profile=icc_profile, exif=exif, level=level)
    return buffer.getvalue()


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
    """File bytes of a quantised image (see `esc_cli.io.canvas.PreparedImage`), ICC profile and EXIF embedded."""
    buffer = io.BytesIO()
    save_prepared(prepared, buffer, quality=quality, png_level=png_level, notes=notes)
    return buffer.getvalue()


def save_prepared(
    prepared: PreparedImage,
    stream: BinaryIO,
    *,
    quality: Optional[int] = None,
    png_level: int = DEFAULT_PNG_LEVEL,
    notes: Optional[list[str]] = None,
) -> None:
    """Encode a quantised image straight into `stream` (no copy of the encoded file in memory)."""
    notes = notes if notes is not None else []
    fmt, icc, exif = prepared.fmt, prepared.icc_profile, prepared.exif
    if prepared.array is not None:  # 16 bits: esc's own encoders
        arr = prepared.array
        if fmt == "png":
            write_png16(arr, stream, icc_profile=icc, exif=exif, level=png_level)
            return
        if arr.shape[2] == 2:  # few readers (Pillow included) open 16-bit gray+alpha TIFF
            notes.append("16-bit gray+alpha TIFF stored as RGBA (use png to keep it gray)")
            arr = arr[..., [0, 0, 0, 1]]
        stream.write(encode_tiff16(arr, icc_profile=icc, exif=exif))
        return
    im = prepared.image
    assert im is not None
    kwargs: dict = {}
    if icc:
        kwargs["icc_profile"] = icc
    if exif:
        kwargs["exif"] = exif
    if fmt == "jpeg":
        q = quality or DEFAULT_QUALITY["jpeg"]
        kwargs.update(quality=q, subsampling=0 if q >= 90 else 2, optimize=True)
        _save_jpeg(im, kwargs, stream)
        return
    if fmt == "webp":
        q = quality or DEFAULT_QUALITY["webp"]
        kwargs.update(quality=q, lossless=q >= 100, method=4)
    elif fmt == "png":
        kwargs.update(compress_level=png_level)
    elif fmt == "tiff" and features.check("libtiff"):
        kwargs.update(compression="tiff_adobe_deflate")
    im.save(stream, format=fmt.upper(), **kwargs)


def _save_jpeg(im: Image.Image, kwargs: dict, stream: BinaryIO) -> None:
    """Write JPEG that never fails on content.

    Pillow's `optimize=True` encodes in one pass into a buffer of `ImageFile.MAXBLOCK` bytes; a
    high-entropy image (noise at quality 95 and up) overflows it ("Suspension not allowed here",
    then "broken data stream"). The buffer is raised to cover the worst case of the image, and a
    failure still left is retried without `optimize` (same pixels, a few percent larger file): a
    seekable stream is rewound for it, any other is written only once the encoding has succeeded.
    """
    worst = im.width * im.height * len(im.getbands()) * 2 + (1 << 20)
    saved = ImageFile.MAXBLOCK
    ImageFile.MAXBLOCK = max(saved, worst)
    seekable = stream.seekable() if hasattr(stream, "seekable") else False
    target: BinaryIO = stream if seekable else io.BytesIO()
    start = target.tell()
    try:
        try:
            im.save(target, format="JPEG", **kwargs)
        except OSError:
            target.seek(start)
            target.truncate()
            im.save(target, format="JPEG", **{**kwargs, "optimize": False})
        if target is not stream:
            stream.write(target.getvalue())  # type: ignore[attr-defined]
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

    Writes to exactly `target`: atomicity is the caller's job (see `esc_cli.io.atomic`). The encoder writes
    into the file as it goes; no copy of the encoded bytes is held in memory.
    """
    if isinstance(image, ImageData):
        image = prepare_image(image, fmt, notes=notes)
    if isinstance(target, (str, os.PathLike)):
        with open(target, "wb") as handle:
            save_prepared(image, handle, quality=quality, png_level=png_level, notes=notes)
            handle.flush()
            os.fsync(handle.fileno())
            return handle.tell()
    if not target.seekable():  # a pipe: some encoders (TIFF) seek, so encode in memory first
        data = encode_prepared(image, quality=quality, png_level=png_level, notes=notes)
        target.write(data)
        target.flush()
        return len(data)
    start = target.tell()
    save_prepared(image, target, quality=quality, png_level=png_level, notes=notes)
    target.flush()
    return target.tell() - start


def estimate_encoded_bytes(width: int, height: int, channels: int, bit_depth: int, fmt: str) -> int:
    """A generous upper estimate of an encoded file's size, for the disk-space check."""
    raw = width * height * channels * (2 if bit_depth == 16 and fmt in ("png", "tiff") else 1)
    if fmt in ("jpeg", "webp"):
        return raw // 2 + 65536
    return raw + raw // 100 + 65536  # deflate's worst case is a little above raw
