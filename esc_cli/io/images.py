"""Image data types and formats: what a decoded image carries, which files count as images, which
formats `esc` writes. Reading lives in `esc_cli.io.decode`, writing in `esc_cli.io.encode`.

Pixels travel as one float32 tensor `[C, H, W]` in `[0, 1]`, C = 1 (gray), 2 (gray +
alpha), 3 (RGB) or 4 (RGBA); alpha is straight (not premultiplied).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Optional, Union

if TYPE_CHECKING:
    from torch import Tensor

ImageSource = Union[Path, bytes]

#: File extensions treated as images when scanning folders (lower case, with dot).
IMAGE_EXTENSIONS = frozenset(
    {".png", ".jpg", ".jpeg", ".jpe", ".jfif", ".webp", ".tif", ".tiff", ".bmp", ".gif", ".tga", ".ppm",
     ".pgm", ".pbm", ".pnm", ".ico", ".dib", ".jp2", ".j2k", ".qoi", ".sgi", ".pcx", ".dds", ".avif"}
)
#: Files that are never images, whatever their name (skipped with a note).
JUNK_NAMES = frozenset({".ds_store", "thumbs.db", "desktop.ini", "ehthumbs.db", "icon\r"})

#: Output formats: name -> default extension.
OUTPUT_FORMATS = {"png": "png", "jpeg": "jpg", "webp": "webp", "tiff": "tif"}
_FORMAT_ALIASES = {"png": "png", "jpg": "jpeg", "jpeg": "jpeg", "jpe": "jpeg", "jfif": "jpeg", "webp": "webp",
                   "tif": "tiff", "tiff": "tiff"}
#: Pillow format names that `esc` can write back in the same format.
_PIL_TO_OUTPUT = {"PNG": "png", "JPEG": "jpeg", "MPO": "jpeg", "WEBP": "webp", "TIFF": "tiff"}

DEFAULT_MAX_PIXELS = 89_478_485  # Pillow's own default, per input image
DEFAULT_QUALITY = {"jpeg": 95, "webp": 90}
# zlib level of PNG output: 4 writes 3.6 % more bytes than Pillow's 6 in 40 % of the time on upscaled photos
# (benchmarks/bench_png.py, table in docs/engine.md).
DEFAULT_PNG_LEVEL = 4

# TIFF tags that describe pixel layout; never copied as "EXIF" between files.
TIFF_STRUCTURE_TAGS = frozenset(
    {254, 255, 256, 257, 258, 259, 262, 263, 266, 273, 274, 277, 278, 279, 280, 281, 284, 317, 320, 322, 323,
     324, 325, 338, 339, 340, 341, 347, 530, 531, 532, 34675, 700, 33723, 34377, 37724, 50838, 50839}
)
ORIENTATION_TAG = 0x0112
EXIF_IFD_TAG = 0x8769
GPS_IFD_TAG = 0x8825


@dataclass
class ImageData:
    """Decoded pixels plus what must survive the round trip.

    `pixels`: float32 `[C, H, W]` in `[0, 1]`; C is 1 (gray), 2 (gray+alpha), 3 (RGB) or
    4 (RGBA), alpha straight. `bit_depth`: 8 or 16, the depth to write back.
    """

    pixels: Tensor
    bit_depth: int = 8
    icc_profile: Optional[bytes] = None
    exif: Optional[bytes] = None
    format: Optional[str] = None  # source format as Pillow names it ("PNG", "JPEG", ...)
    notes: list[str] = field(default_factory=list)

    @property
    def channels(self) -> int:
        return int(self.pixels.shape[0])

    @property
    def height(self) -> int:
        return int(self.pixels.shape[1])

    @property
    def width(self) -> int:
        return int(self.pixels.shape[2])

    @property
    def has_alpha(self) -> bool:
        return self.channels in (2, 4)

    @property
    def is_gray(self) -> bool:
        return self.channels in (1, 2)

    @property
    def color(self) -> Tensor:
        """`[1 or 3, H, W]` colour channels without alpha."""
        return self.pixels[: 1 if self.is_gray else 3]

    @property
    def alpha(self) -> Optional[Tensor]:
        """`[1, H, W]` alpha, or None."""
        return self.pixels[-1:] if self.has_alpha else None


@dataclass(frozen=True)
class ImageHeader:
    """What is known after reading only the header: used for bomb, memory and disk checks."""

    width: int
    height: int
    channels: int
    bit_depth: int
    format: Optional[str]


HeaderCheck = Callable[[ImageHeader], None]


def output_format_for(name: str) -> Optional[str]:
    """Canonical output format ("png", "jpeg", "webp", "tiff") for an extension or name, else None."""
    return _FORMAT_ALIASES.get(name.lower().lstrip("."))


def writable_format(source_format: Optional[str]) -> str:
    """The output format matching a source format, PNG when it cannot be written back."""
    return _PIL_TO_OUTPUT.get(source_format or "", "png")


def is_junk(path: Path) -> bool:
    """True for OS clutter and hidden files (`.DS_Store`, `Thumbs.db`, `._x`, our temp files)."""
    name = path.name
    return name.lower() in JUNK_NAMES or name.startswith(".")


def looks_like_image(path: Path) -> bool:
    """True when the extension is one of `IMAGE_EXTENSIONS` and the file is not junk."""
    return not is_junk(path) and path.suffix.lower() in IMAGE_EXTENSIONS
