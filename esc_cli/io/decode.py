"""Reading any common image into float pixels, keeping what today's upscalers lose.

Kept: alpha (RGBA, LA, palette transparency), 16-bit depth (PNG and TIFF), grayscale, the EXIF
orientation (applied), and the ICC profile and remaining EXIF (carried to the output). CMYK is
converted to RGB with a note. Output: `ImageData` with float32 `[C, H, W]` in `[0, 1]`.

16-bit notes (checked with Pillow 13): Pillow reduces 16-bit RGB/RGBA/LA PNG and TIFF to 8 bits on
decode, so `esc` decodes those files with the ffmpeg binary bundled by imageio-ffmpeg (lossless
`rgb48le`/`rgba64le`/`ya16le` output). 16-bit grayscale (`I;16`) is read by Pillow directly.
"""

from __future__ import annotations

import contextlib
import io
import os
import struct
import subprocess
import tempfile
import warnings
import zlib
from pathlib import Path
from typing import BinaryIO, Iterator, Optional, Union

import numpy as np
import torch
from PIL import Image, ImageCms
from torch import Tensor

from esc_cli.errors import InputError
from esc_cli.io.images import (
    DEFAULT_MAX_PIXELS,
    ORIENTATION_TAG,
    TIFF_STRUCTURE_TAGS,
    HeaderCheck,
    ImageData,
    ImageHeader,
    ImageSource,
)


@contextlib.contextmanager
def _pixel_limit(max_pixels: Optional[int]) -> Iterator[None]:
    """Leave the bomb check to `read_image`, which refuses from the header before any pixel is
    decoded and quotes `--max-pixels` (Pillow's own check would quote its limit, and warn)."""
    del max_pixels
    saved = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            yield
    finally:
        Image.MAX_IMAGE_PIXELS = saved


def _source_bit_depth(im: Image.Image) -> int:
    """16 when the file stores more than 8 bits per sample, else 8."""
    if im.mode in ("I", "F") or im.mode.startswith("I;16"):
        return 16
    if im.format == "TIFF":
        bits = im.tag_v2.get(258) if hasattr(im, "tag_v2") else None
        if bits is not None:
            values = bits if isinstance(bits, tuple) else (bits,)
            return 16 if max(int(b) for b in values) > 8 else 8
        return 8
    return 16 if ";16" in _rawmode(im) else 8


def _rawmode(im: Image.Image) -> str:
    for tile in getattr(im, "tile", None) or []:
        args = tile.args if hasattr(tile, "args") else tile[3]
        rawmode = args[0] if isinstance(args, tuple) and args else args
        if isinstance(rawmode, str):
            return rawmode
    return ""


def _channels_for_mode(im: Image.Image) -> int:
    mode = im.mode
    if _rawmode(im).startswith("LA;16"):  # Pillow opens 16-bit gray+alpha PNG as RGBA
        return 2
    if mode in ("1", "L", "I", "F") or mode.startswith("I;16"):
        return 1
    if mode in ("LA", "La") or (mode == "L" and "transparency" in im.info):
        return 2
    if mode in ("RGBA", "RGBa", "PA") or (mode in ("P", "RGB") and "transparency" in im.info):
        return 4
    return 3


def _ffmpeg_decode16(source: ImageSource, im: Image.Image, channels: int, name: str) -> np.ndarray:
    """Decode a 16-bit RGB/RGBA/LA PNG or TIFF losslessly with the bundled ffmpeg -> `[H, W, C]` uint16."""
    import imageio_ffmpeg

    pix_fmt = {1: "gray16le", 2: "ya16le", 3: "rgb48le", 4: "rgba64le"}[channels]
    exe = imageio_ffmpeg.get_ffmpeg_exe()
    with contextlib.ExitStack() as stack:
        if isinstance(source, bytes):  # ffmpeg's TIFF pipe demuxer cannot read our files: use a temp file
            handle = stack.enter_context(tempfile.NamedTemporaryFile(suffix=".img", delete=False))
            handle.write(source)
            handle.close()
            stack.callback(os.unlink, handle.name)
            path = handle.name
        else:
            path = os.path.abspath(source)
        codec = "tiff" if im.format == "TIFF" else "png"
        cmd = [exe, "-hide_banner", "-v", "error", "-f", "image2", "-pattern_type", "none", "-c:v", codec,
               "-i", f"file:{path}",
               "-frames:v", "1", "-f", "rawvideo", "-pix_fmt", pix_fmt, "pipe:1"]
        try:
            proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, check=False, timeout=600)
        except (OSError, subprocess.SubprocessError) as exc:
            raise InputError(f"{name}: cannot decode the 16-bit image with ffmpeg: {exc}") from None
    width, height = im.size
    expected = width * height * channels * 2
    if proc.returncode != 0 or len(proc.stdout) < expected:
        tail = proc.stderr.decode("utf-8", "replace").strip().splitlines()[-1:] or ["no output"]
        raise InputError(f"{name}: corrupt or unreadable 16-bit image ({tail[0]})")
    return np.frombuffer(proc.stdout[:expected], dtype="<u2").reshape(height, width, channels)


def _cmyk_to_rgb(im: Image.Image, notes: list[str]) -> tuple[Image.Image, Optional[bytes]]:
    """CMYK -> RGB through the embedded profile when there is one (result tagged sRGB)."""
    icc = im.info.get("icc_profile")
    if icc:
        try:
            src = ImageCms.ImageCmsProfile(io.BytesIO(icc))
            srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))
            rgb = ImageCms.profileToProfile(im, src, srgb, outputMode="RGB")
            notes.append("CMYK converted to RGB through its ICC profile; the output is tagged sRGB")
            return rgb, srgb.tobytes()
        except (ImageCms.PyCMSError, OSError, ValueError):
            pass
    notes.append("CMYK converted to RGB (no usable ICC profile; colours are approximate)")
    return im.convert("RGB"), None


def _to_array(im: Image.Image, notes: list[str]) -> tuple[np.ndarray, float, Optional[bytes], bool]:
    """Pillow image -> (`[H, W, C]` array, its maximum value, replacement ICC or None, icc replaced)."""
    mode = im.mode
    if mode in ("L", "RGB") and "transparency" in im.info:  # a colour key (PNG tRNS) becomes alpha
        im = im.convert(mode[0] + "A" if mode == "L" else "RGBA")
    elif mode == "1":
        im = im.convert("L")
    elif mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    elif mode == "PA":
        im = im.convert("RGBA")
    elif mode == "La":
        im = im.convert("LA")
    elif mode == "RGBa":
        im = im.convert("RGBA")
    elif mode == "CMYK":
        im, icc = _cmyk_to_rgb(im, notes)
        return np.asarray(im)[..., None] if im.mode == "L" else np.asarray(im), 255.0, icc, True
    elif mode not in ("L", "LA", "RGB", "RGBA", "I", "F") and not mode.startswith("I;16"):
        notes.append(f"{mode} converted to RGB")
        im = im.convert("RGB")
    if im.mode == "F":
        arr = np.clip(np.asarray(im, dtype=np.float32), 0.0, 1.0)
        return arr[..., None], 1.0, None, False
    if im.mode == "I" or im.mode.startswith("I;16"):
        arr = np.clip(np.asarray(im).astype(np.int64), 0, 65535).astype(np.uint16)
        return arr[..., None], 65535.0, None, False
    arr = np.asarray(im)
    if arr.ndim == 2:
        arr = arr[..., None]
    return arr, 255.0, None, False


def _orient(pixels: Tensor, orientation: int) -> Tensor:
    """Apply an EXIF orientation (1..8) to `[C, H, W]`, like `ImageOps.exif_transpose`."""
    if orientation == 2:
        return pixels.flip(-1)
    if orientation == 3:
        return pixels.flip(-1, -2)
    if orientation == 4:
        return pixels.flip(-2)
    if orientation == 5:
        return pixels.transpose(-1, -2)
    if orientation == 6:
        return torch.rot90(pixels, -1, (-2, -1))
    if orientation == 7:
        return pixels.transpose(-1, -2).flip(-1, -2)
    if orientation == 8:
        return torch.rot90(pixels, 1, (-2, -1))
    return pixels


def _exif_without_orientation(im: Image.Image, notes: list[str]) -> tuple[Optional[bytes], int]:
    """The EXIF to carry over (orientation removed, TIFF layout tags dropped) and the orientation.

    Called after the pixels are decoded, so an error here is a metadata problem only: the
    EXIF is dropped with a note and the image is kept.
    """
    try:
        exif = im.getexif()
    except Exception:  # malformed EXIF with intact pixels: drop the metadata, keep the image
        notes.append("unreadable EXIF dropped (the pixels decoded intact)")
        return None, 1
    orientation = exif.get(ORIENTATION_TAG, 1)
    try:
        orientation = int(orientation)
    except (TypeError, ValueError):
        orientation = 1
    raw = im.info.get("exif")
    if im.format != "TIFF" and orientation == 1 and isinstance(raw, bytes) and raw:
        if raw.startswith((b"II*\x00", b"MM\x00*")):  # some containers store it without the APP1 header
            raw = b"Exif\x00\x00" + raw
        return raw, 1  # untouched bytes are the most faithful
    if im.format == "TIFF":
        for tag in list(exif.keys()):
            if tag in TIFF_STRUCTURE_TAGS:
                del exif[tag]
    exif.pop(ORIENTATION_TAG, None)
    if not len(exif):
        return None, orientation
    return exif.tobytes(), orientation


def _one_line(exc: BaseException) -> str:
    """An exception's message on one line (first line, never empty)."""
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _bomb_message(label: str, size: Optional[tuple[int, int]], max_pixels: Optional[int]) -> str:
    """The refusal of a decompression bomb, quoting `--max-pixels` (not Pillow's own limit)."""
    limit = f"--max-pixels {max_pixels:,}" if max_pixels else "--max-pixels"
    if size is not None:
        width, height = size
        return (f"{label}: {width}x{height} = {width * height:,} pixels exceeds {limit}"
                " (decompression bomb guard); raise --max-pixels if the image is genuine")
    return f"{label}: refused as a decompression bomb (over {limit}); raise --max-pixels if the image is genuine"


def read_image(
    source: ImageSource,
    *,
    name: Optional[str] = None,
    max_pixels: Optional[int] = DEFAULT_MAX_PIXELS,
    check: Optional[HeaderCheck] = None,
) -> ImageData:
    """Decode `source` (a path or the file's bytes) into an `ImageData`.

    `max_pixels` (None or 0: no limit) refuses decompression bombs from the declared
    size before any pixel is decoded; `check` sees the header next (memory/disk checks)
    and may raise. Raises `InputError` for unreadable, corrupt or refused files.
    """
    label = name or (str(source) if isinstance(source, Path) else "<stdin>")
    notes: list[str] = []
    try:
        with _pixel_limit(max_pixels):
            fp: Union[Path, BinaryIO] = io.BytesIO(source) if isinstance(source, bytes) else source
            im = Image.open(fp)
    except Image.DecompressionBombError:
        raise InputError(_bomb_message(label, None, max_pixels)) from None
    except FileNotFoundError:
        raise InputError(f"{label}: no such file") from None
    except IsADirectoryError:
        raise InputError(f"{label}: is a folder; pass it as an input folder") from None
    except PermissionError:
        raise InputError(f"{label}: permission denied") from None
    except Image.UnidentifiedImageError:
        raise InputError(f"{label}: not an image Pillow can read") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise InputError(f"{label}: cannot read image ({_one_line(exc)})") from None
    with im:
        width, height = im.size
        if max_pixels and width * height > max_pixels:
            raise InputError(_bomb_message(label, (width, height), max_pixels))
        if width < 1 or height < 1:
            raise InputError(f"{label}: empty image ({width}x{height})")
        depth = _source_bit_depth(im)
        channels = _channels_for_mode(im)
        if check is not None:
            check(ImageHeader(width, height, channels, depth, im.format))
        if getattr(im, "n_frames", 1) > 1:
            notes.append(f"{im.n_frames} frames: only the first is upscaled")
        # Pixels first: a decode error anywhere fails the item. Reading EXIF first used to load
        # (and half-decode) a corrupt PNG inside a metadata guard that swallowed the error.
        try:
            with _pixel_limit(max_pixels):
                im.load()
                icc = im.info.get("icc_profile") or None
                if depth == 16 and im.mode in ("RGB", "RGBA", "LA"):
                    arr, top = _ffmpeg_decode16(source, im, channels, label), 65535.0
                else:
                    arr, top, new_icc, replaced = _to_array(im, notes)
                    if replaced:
                        icc = new_icc
        except InputError:
            raise
        except Image.DecompressionBombError:
            raise InputError(_bomb_message(label, im.size, max_pixels)) from None
        except (OSError, SyntaxError, ValueError, EOFError, struct.error, IndexError, zlib.error,
                MemoryError) as exc:
            raise InputError(f"{label}: corrupt or truncated image ({_one_line(exc)}); the file cannot be decoded") from None
        exif, orientation = _exif_without_orientation(im, notes)
        source_format = im.format
    pixels = torch.from_numpy(np.ascontiguousarray(arr).astype(np.float32)).permute(2, 0, 1).contiguous()
    pixels.div_(top).clamp_(0.0, 1.0)
    pixels = _orient(pixels, orientation).contiguous()
    return ImageData(pixels, 16 if top > 255 else 8, icc, exif, source_format, notes)
