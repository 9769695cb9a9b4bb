"""`UpscaleOptions`: everything `esc upscale` accepts besides the inputs, and its one validation."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Optional

from esc_cli.errors import UsageError
from esc_cli.io.images import DEFAULT_MAX_PIXELS, DEFAULT_PNG_LEVEL, output_format_for

if TYPE_CHECKING:
    import torch

DEFAULT_TEMPLATE = "{stem}_x{scale}.{ext}"
TEMPLATE_FIELDS = ("stem", "name", "ext", "suffix", "scale")
ALPHA_MODES = ("model", "resize")


def format_scale(scale: float) -> str:
    """4.0 -> "4", 2.5 -> "2.5" (for file names and messages)."""
    return f"{scale:g}"


@dataclass
class UpscaleOptions:
    """Everything `esc upscale` accepts besides the inputs (see docs/usage.md).

    `device`/`dtype` take what `esc_cli.engine.devices.parse_device`/`parse_dtype` return.
    `upscale_images` calls `validate()` once before anything else.
    """

    scale: float = 4.0
    model: Optional[str] = None
    device: Optional[str] = None  # None = automatic
    dtype: Optional[torch.dtype] = None  # None = automatic
    tile: Optional[int] = None  # None = automatic, 0 = whole image
    overlap: Optional[int] = None
    output: Optional[str] = None  # file or folder; "-" = stdout; None = next to each input
    recursive: bool = False
    format: Optional[str] = None  # png, jpeg, webp, tiff; None = the input's (PNG if unwritable)
    quality: Optional[int] = None  # JPEG/WebP quality 1..100 (WebP 100 = lossless)
    png_level: int = DEFAULT_PNG_LEVEL  # zlib level of PNG output, 0..9
    name_template: str = DEFAULT_TEMPLATE
    overwrite: bool = False
    skip_existing: bool = False
    alpha: str = "model"  # "model": upscale alpha with the network; "resize": resample it
    max_pixels: Optional[int] = DEFAULT_MAX_PIXELS  # per input; None/0 = no limit
    check_resources: bool = True  # memory and disk pre-check per item

    def validate(self) -> None:
        """Raise `UsageError` for inconsistent options; normalises `format` ("jpg" -> "jpeg")."""
        if not (self.scale >= 1.0) or math.isinf(self.scale):
            raise UsageError(f"--scale {self.scale}: must be a number >= 1")
        if self.overwrite and self.skip_existing:
            raise UsageError("--overwrite and --skip-existing exclude each other")
        if self.alpha not in ALPHA_MODES:
            raise UsageError(f"--alpha {self.alpha!r}: use model or resize")
        if self.format is not None:
            fmt = output_format_for(self.format)
            if fmt is None:
                raise UsageError(f"--format {self.format!r}: use png, jpg, webp or tiff")
            self.format = fmt
        if self.quality is not None and not 1 <= self.quality <= 100:
            raise UsageError(f"--quality {self.quality}: must be between 1 and 100")
        if not 0 <= self.png_level <= 9:
            raise UsageError(f"--png-level {self.png_level}: must be between 0 and 9")
        if self.max_pixels is not None and self.max_pixels < 0:
            raise UsageError("--max-pixels must be >= 0 (0 = no limit)")
        if self.tile is not None and self.tile < 0:
            raise UsageError("--tile must be >= 0 (0 = whole image)")
        validate_template(self.name_template)


def validate_template(template: str) -> None:
    """A naming template must format with the known fields into a relative file name."""
    try:
        name = template.format(stem="a", name="a.png", ext="png", suffix="png", scale="4")
    except (KeyError, IndexError, ValueError) as exc:
        raise UsageError(
            f"--name {template!r}: bad template ({exc}); fields: " + ", ".join("{" + f + "}" for f in TEMPLATE_FIELDS)
        ) from None
    parts = Path(name).parts
    if not name or os.path.isabs(name) or ".." in parts or name.endswith(("/", os.sep)):
        raise UsageError(f"--name {template!r}: must give a relative file name without '..'")
