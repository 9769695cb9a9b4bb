"""Faithful image files: read any common image into float pixels and write them back.

Reading keeps what today's upscalers lose: alpha (RGBA, LA, palette transparency),
16-bit depth (PNG and TIFF), grayscale, the EXIF orientation (applied), and the ICC
profile and remaining EXIF (carried to the output). CMYK is converted to RGB with a note.

Pixels travel as one float32 tensor `[C, H, W]` in `[0, 1]`, C = 1 (gray), 2 (gray +
alpha), 3 (RGB) or 4 (RGBA); alpha is straight (not premultiplied).

16-bit notes (checked with Pillow 13): Pillow reduces 16-bit RGB/RGBA/LA PNG and TIFF to
8 bits on decode and cannot encode them. `esc` therefore decodes those files with the
ffmpeg binary bundled by imageio-ffmpeg (lossless `rgb48le`/`rgba64le`/`ya16le` output)
and encodes 16-bit PNG and TIFF itself (numpy + zlib; TIFF directory via Pillow's
`ImageFileDirectory_v2`), carrying the ICC profile and EXIF. 16-bit grayscale (`I;16`)
is read by Pillow directly.
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Callable, Iterator, Optional, Union

import numpy as np
import torch
from PIL import Image, ImageCms, TiffImagePlugin, features
from torch import Tensor

from esc_cli.errors import InputError, OutputError

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

# TIFF tags that describe pixel layout; never copied as "EXIF" between files.
_TIFF_STRUCTURE_TAGS = frozenset(
    {254, 255, 256, 257, 258, 259, 262, 263, 266, 273, 274, 277, 278, 279, 280, 281, 284, 317, 320, 322, 323,
     324, 325, 338, 339, 340, 341, 347, 530, 531, 532, 34675, 700, 33723, 34377, 37724, 50838, 50839}
)
_ORIENTATION = 0x0112
_EXIF_IFD = 0x8769
_GPS_IFD = 0x8825


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


# --------------------------------------------------------------------------- reading


@contextlib.contextmanager
def _pixel_limit(max_pixels: Optional[int]) -> Iterator[None]:
    """Let Pillow open headers up to `max_pixels` (our own check refuses bigger ones)."""
    saved = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None if not max_pixels else max(int(max_pixels), 1)
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


def _exif_without_orientation(im: Image.Image) -> tuple[Optional[bytes], int]:
    """The EXIF to carry over (orientation removed, TIFF layout tags dropped) and the orientation."""
    try:
        exif = im.getexif()
    except Exception:  # malformed EXIF must not cost the image
        return None, 1
    orientation = exif.get(_ORIENTATION, 1)
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
            if tag in _TIFF_STRUCTURE_TAGS:
                del exif[tag]
    exif.pop(_ORIENTATION, None)
    if not len(exif):
        return None, orientation
    return exif.tobytes(), orientation


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
    except Image.DecompressionBombError as exc:
        raise InputError(f"{label}: refused as a decompression bomb ({exc}); raise --max-pixels if it is genuine") from None
    except FileNotFoundError:
        raise InputError(f"{label}: no such file") from None
    except IsADirectoryError:
        raise InputError(f"{label}: is a folder; pass it as an input folder") from None
    except PermissionError:
        raise InputError(f"{label}: permission denied") from None
    except Image.UnidentifiedImageError:
        raise InputError(f"{label}: not an image Pillow can read") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise InputError(f"{label}: cannot read image: {exc}") from None
    with im:
        width, height = im.size
        if max_pixels and width * height > max_pixels:
            raise InputError(
                f"{label}: {width}x{height} = {width * height:,} pixels exceeds --max-pixels {max_pixels:,}"
                " (decompression bomb guard); raise --max-pixels if the image is genuine"
            )
        if width < 1 or height < 1:
            raise InputError(f"{label}: empty image ({width}x{height})")
        depth = _source_bit_depth(im)
        channels = _channels_for_mode(im)
        if check is not None:
            check(ImageHeader(width, height, channels, depth, im.format))
        if getattr(im, "n_frames", 1) > 1:
            notes.append(f"{im.n_frames} frames: only the first is upscaled")
        icc = im.info.get("icc_profile") or None
        exif, orientation = _exif_without_orientation(im)
        try:
            with _pixel_limit(max_pixels):
                im.load()
                if depth == 16 and im.mode in ("RGB", "RGBA", "LA"):
                    arr, top = _ffmpeg_decode16(source, im, channels, label), 65535.0
                else:
                    arr, top, new_icc, replaced = _to_array(im, notes)
                    if replaced:
                        icc = new_icc
        except InputError:
            raise
        except Image.DecompressionBombError as exc:
            raise InputError(f"{label}: refused as a decompression bomb ({exc})") from None
        except (OSError, SyntaxError, ValueError, EOFError, struct.error, IndexError, zlib.error) as exc:
            raise InputError(f"{label}: corrupt or truncated image: {exc}") from None
        source_format = im.format
    pixels = torch.from_numpy(np.ascontiguousarray(arr).astype(np.float32)).permute(2, 0, 1).contiguous()
    pixels.div_(top).clamp_(0.0, 1.0)
    pixels = _orient(pixels, orientation).contiguous()
    return ImageData(pixels, 16 if top > 255 else 8, icc, exif, source_format, notes)


# --------------------------------------------------------------------------- writing


def _quantize(pixels: Tensor, bit_depth: int) -> np.ndarray:
    """`[C, H, W]` float in [0, 1] -> `[H, W, C]` uint8/uint16, rounded to nearest."""
    top = 65535.0 if bit_depth == 16 else 255.0
    q = pixels.detach().float().clamp(0.0, 1.0).mul_(top).round_()  # one float copy
    return q.permute(1, 2, 0).numpy().astype(np.uint16 if bit_depth == 16 else np.uint8)


def _flatten_alpha(pixels: Tensor, background: float = 1.0) -> Tensor:
    """Composite straight alpha over a flat background -> colour channels only."""
    color, alpha = pixels[:-1], pixels[-1:]
    return color * alpha + background * (1.0 - alpha)


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def encode_png16(arr: np.ndarray, *, icc_profile: Optional[bytes] = None, exif: Optional[bytes] = None) -> bytes:
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
    out.append(_png_chunk(b"IDAT", zlib.compress(body, 6)))
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
            if tag not in _TIFF_STRUCTURE_TAGS and tag not in (_EXIF_IFD, _GPS_IFD):
                ifd[tag] = value
        for sub in (_EXIF_IFD, _GPS_IFD):
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
    notes: Optional[list[str]] = None,
) -> bytes:
    """Encode `image` as `fmt` ("png", "jpeg", "webp", "tiff") -> file bytes.

    PNG and TIFF keep 16 bits, gray and alpha; JPEG and WebP store 8 bits (a note says so),
    JPEG has no alpha (flattened on white, with a note), WebP has no gray (stored as RGB).
    The ICC profile and EXIF are embedded in every format.
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
    arr = _quantize(pixels, depth)
    icc, exif = image.icc_profile, image.exif
    if depth == 16 and fmt == "png":
        return encode_png16(arr, icc_profile=icc, exif=exif)
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
        kwargs.update(compress_level=6)
    elif fmt == "tiff" and features.check("libtiff"):
        kwargs.update(compression="tiff_adobe_deflate")
    buffer = io.BytesIO()
    im.save(buffer, format=fmt.upper(), **kwargs)
    return buffer.getvalue()


def write_image(
    image: ImageData,
    target: Union[Path, BinaryIO],
    fmt: str,
    *,
    quality: Optional[int] = None,
    notes: Optional[list[str]] = None,
) -> int:
    """Encode and write `image` to a path or a binary stream; returns the number of bytes.

    Writes to exactly `target`: atomicity is the caller's job (see `esc_cli.io.atomic`).
    """
    data = encode_image(image, fmt, quality=quality, notes=notes)
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
