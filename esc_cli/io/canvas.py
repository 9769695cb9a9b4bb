"""The output image while it is filled: float blocks in, quantised into the layout the output format stores.

An upscaled image reaches the encoder as a `PreparedImage`. Its pixels are already 8- or 16-bit: 8-bit data
in a Pillow image (the encoders read it without another copy; RGB costs 4 bytes per pixel, gray 1), 16-bit
data in a numpy array `[H, W, C]` uint16 (esc encodes 16-bit PNG and TIFF itself). Blocks can be written as
the engine finishes them (`PreparedImage.write`), so the float result never has to exist at full size.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from esc_cli.errors import OutputError
from esc_cli.io.images import OUTPUT_FORMATS, ImageData, output_format_for

# Rows quantised at a time: the float copy that clamping and rounding need stays band-sized.
QUANTIZE_ROWS = 128
_MODES = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}


def quantize_into(pixels: Tensor, out: np.ndarray) -> None:
    """Write `[C, r, W]` float (any range; clamped to [0, 1]) into `out` `[r, W, C]` uint8/uint16, rounded to
    nearest, `QUANTIZE_ROWS` rows at a time."""
    top = 65535.0 if out.dtype == np.uint16 else 255.0
    target = torch.from_numpy(out)  # shares out's memory
    for r0 in range(0, int(pixels.shape[1]), QUANTIZE_ROWS):
        band = pixels[:, r0 : r0 + QUANTIZE_ROWS].detach().float().clamp(0.0, 1.0).mul_(top).round_()
        target[r0 : r0 + QUANTIZE_ROWS].copy_(band.permute(1, 2, 0))  # whole numbers: the cast is exact


def quantize(pixels: Tensor, bit_depth: int) -> np.ndarray:
    """`[C, H, W]` float in [0, 1] -> `[H, W, C]` uint8/uint16, rounded to nearest, band by band (no
    image-sized float copy)."""
    channels, height, width = pixels.shape
    out = np.empty((height, width, channels), dtype=np.uint16 if bit_depth == 16 else np.uint8)
    quantize_into(pixels, out)
    return out


def flatten_alpha(pixels: Tensor, background: float = 1.0) -> Tensor:
    """Composite straight alpha over a flat background -> colour channels only."""
    color, alpha = pixels[:-1], pixels[-1:]
    return color * alpha + background * (1.0 - alpha)


class PreparedImage:
    """A quantised output image for one format ("png", "jpeg", "webp", "tiff"), filled block by block.

    `channels` and `bit_depth` describe the source pixels (`ImageData` layout: 1 gray, 2 gray+alpha, 3 RGB,
    4 RGBA; 8 or 16 bits). The format decides what is stored: JPEG and WebP store 8 bits (a note says so),
    JPEG has no alpha (flattened on white, with a note), WebP has no gray (stored as RGB). Notes go to
    `notes` when the image is created.
    """

    def __init__(self, height: int, width: int, channels: int, bit_depth: int, fmt: str, *,
                 icc_profile: Optional[bytes] = None, exif: Optional[bytes] = None,
                 notes: Optional[list[str]] = None) -> None:
        notes = notes if notes is not None else []
        fmt = output_format_for(fmt) or fmt
        if fmt not in OUTPUT_FORMATS:
            raise OutputError(f"cannot write format {fmt!r}; use png, jpg, webp or tiff")
        if channels not in _MODES:
            raise OutputError(f"cannot write an image with {channels} channels")
        self.fmt, self.icc_profile, self.exif = fmt, icc_profile, exif
        self.height, self.width, self.source_channels = height, width, channels
        self.flatten = fmt == "jpeg" and channels in (2, 4)
        self.to_rgb = fmt == "webp" and channels in (1, 2)
        depth = bit_depth
        if fmt in ("jpeg", "webp") and depth == 16:
            notes.append(f"{fmt.upper()} stores 8 bits per channel; 16-bit data reduced (use png or tiff to keep it)")
            depth = 8
        if self.flatten:
            notes.append("JPEG has no alpha; flattened on white (use png, webp or tiff to keep it)")
        stored = channels - 1 if self.flatten else channels + 2 if self.to_rgb else channels
        self.channels, self.bit_depth = stored, depth
        self.image: Optional[Image.Image] = None
        self.array: Optional[np.ndarray] = None
        if depth == 8:
            self.image = Image.new(_MODES[stored], (width, height))
        else:
            self.array = np.empty((height, width, stored), dtype=np.uint16)

    @classmethod
    def of(cls, image: ImageData, fmt: str, *, notes: Optional[list[str]] = None) -> "PreparedImage":
        """An empty image with `image`'s size, channels, depth, ICC profile and EXIF, for `fmt`."""
        return cls(image.height, image.width, image.channels, image.bit_depth, fmt, icc_profile=image.icc_profile,
                   exif=image.exif, notes=notes)

    def write(self, top: int, pixels: Tensor, *, left: int = 0) -> None:
        """Store `[C, h, w]` float in [0, 1] (C = the source's channels) at rows `top:top+h`, columns
        `left:left+w`."""
        rows, cols = int(pixels.shape[1]), int(pixels.shape[2])
        if pixels.shape[0] != self.source_channels or top + rows > self.height or left + cols > self.width:
            raise ValueError(f"pixels {tuple(pixels.shape)} at ({top}, {left}) do not fit a "
                             f"{self.source_channels}x{self.height}x{self.width} image")
        for r0 in range(0, rows, QUANTIZE_ROWS):
            band = pixels[:, r0 : r0 + QUANTIZE_ROWS]
            if self.flatten:
                band = flatten_alpha(band)
            elif self.to_rgb:
                band = torch.cat([band[:1].expand(3, -1, -1), band[1:]], 0)
            y = top + r0
            if self.array is not None:
                quantize_into(band, self.array[y : y + band.shape[1], left : left + cols])
                continue
            assert self.image is not None
            quantized = quantize(band, 8)
            self.image.paste(Image.fromarray(quantized[..., 0] if self.channels == 1 else quantized), (left, y))


def prepare_image(image: ImageData, fmt: str, *, notes: Optional[list[str]] = None) -> PreparedImage:
    """Quantise a whole float image for `fmt` (see `PreparedImage`). After this the float pixels are no longer
    needed: a caller that drops them keeps only the quantised image while the file is encoded."""
    prepared = PreparedImage.of(image, fmt, notes=notes)
    prepared.write(0, image.pixels)
    return prepared


__all__ = ["QUANTIZE_ROWS", "PreparedImage", "flatten_alpha", "prepare_image", "quantize", "quantize_into"]
