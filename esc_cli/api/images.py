"""Upscaling image files: collect inputs, plan outputs, process each item, report events.

The pipeline behind `esc upscale`, usable from Python:

    from esc_cli.api.images import UpscaleOptions, upscale_images
    summary = upscale_images(["photos/"], UpscaleOptions(scale=4, output="out", recursive=True))

Every item ends as exactly one `ItemFinished` event ("done", "skipped" or "failed"); a
failed item never stops the batch. Outputs are written atomically (temp file in the
target folder, then a rename) and never replace an input.

Scale: the model runs `k` times, the smallest `k >= 1` with `model_scale**k >= scale`.
When `model_scale**k != scale`, the image is resampled with antialiased bicubic
interpolation in float32 (torch): before the last pass when there are several (so the
last pass lands on the requested size and no large intermediate canvas is built), after
it otherwise (e.g. x4 model for -s 3: x4, then 3/4 downscale).
"""

from __future__ import annotations

import glob
import math
import os
import re
import shutil
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Callable, Optional, Sequence, Union

import torch
import torch.nn.functional as F
from torch import Tensor

from esc_cli.api.events import (
    BatchFinished,
    BatchStarted,
    EventCallback,
    ItemFinished,
    ItemProgress,
    ItemStarted,
    exit_code_for,
)
from esc_cli.engine.rescale import plan_passes, resample
from esc_cli.errors import (
    EXIT_INTERRUPTED,
    EXIT_OK,
    EscError,
    InputError,
    OutputError,
    Terminated,
    UsageError,
)
from esc_cli.io.atomic import atomic_output, same_file
from esc_cli.io.images import (
    DEFAULT_MAX_PIXELS,
    OUTPUT_FORMATS,
    ImageData,
    ImageHeader,
    encode_image,
    estimate_encoded_bytes,
    is_junk,
    looks_like_image,
    output_format_for,
    read_image,
    write_image,
    writable_format,
)

DEFAULT_TEMPLATE = "{stem}_x{scale}.{ext}"
TEMPLATE_FIELDS = ("stem", "name", "ext", "suffix", "scale")
ALPHA_MODES = ("model", "resize")
DEVICE_PATTERN = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")
DTYPE_NAMES = {"auto": None, "fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
_LUMA = (0.299, 0.587, 0.114)  # ITU-R BT.601, as Pillow's "L" conversion
_GLOB_CHARS = re.compile(r"[*?\[]")
_EARLIER_OUTPUT = re.compile(r"^(?P<stem>.+)_x\d+(\.\d+)?$")


# --------------------------------------------------------------------------- options


def parse_device(value: Optional[str]) -> Optional[str]:
    """"auto|cpu|cuda|cuda:N|mps" -> None (auto) or the device string; else `UsageError`."""
    text = (value or "auto").strip().lower()
    if not DEVICE_PATTERN.match(text):
        raise UsageError(f"--device {value!r}: use auto, cpu, cuda, cuda:N or mps")
    return None if text == "auto" else text


def parse_dtype(value: Optional[str]) -> Optional[torch.dtype]:
    """"auto|fp32|fp16|bf16" -> None (auto) or a torch dtype; else `UsageError`."""
    text = (value or "auto").strip().lower()
    if text not in DTYPE_NAMES:
        raise UsageError(f"--dtype {value!r}: use auto, fp32, fp16 or bf16")
    return DTYPE_NAMES[text]


def format_scale(scale: float) -> str:
    """4.0 -> "4", 2.5 -> "2.5" (for file names and messages)."""
    return f"{scale:g}"


@dataclass
class UpscaleOptions:
    """Everything `esc upscale` accepts besides the inputs (see docs/usage.md)."""

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
    name_template: str = DEFAULT_TEMPLATE
    overwrite: bool = False
    skip_existing: bool = False
    alpha: str = "model"  # "model": upscale alpha with the network; "resize": resample it
    max_pixels: Optional[int] = DEFAULT_MAX_PIXELS  # per input; None/0 = no limit
    check_resources: bool = True  # memory and disk pre-check per item

    def validate(self) -> None:
        """Raise `UsageError` for inconsistent options."""
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


# --------------------------------------------------------------------------- inputs


@dataclass(frozen=True)
class InputItem:
    """One thing to upscale: a file (`path`) or standard input (`path is None`).

    `root` is the folder given on the command line it was found in (outputs mirror the
    tree below it); None for files named directly.
    """

    path: Optional[Path]
    root: Optional[Path] = None
    scanned: bool = False  # found by a folder scan or a glob, not named on the command line

    @property
    def label(self) -> str:
        return "-" if self.path is None else str(self.path)


@dataclass(frozen=True)
class Ignored:
    """A path that was not processed, and why (junk, not an image, earlier output)."""

    path: str
    reason: str
    failed: bool = False  # True for inputs that do not exist / match nothing


def _scan_folder(folder: Path, recursive: bool, exclude: Sequence[Path]) -> tuple[list[Path], list[Ignored]]:
    files: list[Path] = []
    ignored: list[Ignored] = []
    excluded = [os.path.abspath(p) for p in exclude]
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=False):
        here = Path(dirpath)
        keep = []
        for d in sorted(dirnames):
            full = os.path.abspath(here / d)
            if d.startswith(".") or full in excluded:
                continue
            keep.append(d)
        dirnames[:] = keep if recursive else []
        for name in sorted(filenames):
            path = here / name
            if is_junk(path):
                if not name.startswith(".esc-") and ".esc-tmp" not in name:
                    ignored.append(Ignored(str(path), "junk file"))
                continue
            if not looks_like_image(path):
                ignored.append(Ignored(str(path), "not an image (by extension)"))
                continue
            files.append(path)
    return files, ignored


def collect_inputs(
    args: Sequence[str], *, recursive: bool = False, exclude: Sequence[Path] = ()
) -> tuple[list[InputItem], list[Ignored]]:
    """Expand command-line inputs: files, folders (`recursive` descends), globs and "-".

    Folder scans keep files with an image extension and skip junk and hidden files (each
    reported as `Ignored`); folders in `exclude` (the output folder) are not entered.
    Files named directly are always tried, whatever their extension. A path that does
    not exist or a glob matching nothing is an `Ignored` with `failed=True`.
    """
    items: list[InputItem] = []
    ignored: list[Ignored] = []
    seen: set[str] = set()

    def add(item: InputItem) -> None:
        key = "-" if item.path is None else os.path.abspath(item.path)
        if key not in seen:
            seen.add(key)
            items.append(item)

    def add_folder(folder: Path) -> None:
        files, skipped = _scan_folder(folder, recursive, exclude)
        ignored.extend(skipped)
        for f in files:
            add(InputItem(f, folder, scanned=True))

    for arg in args:
        if arg == "-":
            add(InputItem(None))
            continue
        path = Path(arg)
        if path.is_dir():
            add_folder(path)
        elif path.exists() or path.is_symlink():
            add(InputItem(path))
        elif _GLOB_CHARS.search(arg):
            matches = sorted(glob.glob(arg, recursive=True))
            if not matches:
                ignored.append(Ignored(arg, "no file matches this pattern", failed=True))
            for m in matches:
                mp = Path(m)
                if mp.is_dir():
                    add_folder(mp)
                elif looks_like_image(mp):
                    add(InputItem(mp, scanned=True))
                elif mp.is_file():
                    ignored.append(Ignored(m, "junk file" if is_junk(mp) else "not an image (by extension)"))
        else:
            ignored.append(Ignored(arg, "no such file or folder", failed=True))
    return items, ignored


# --------------------------------------------------------------------------- planning


@dataclass
class Job:
    """An input with its planned output (None = stdout) and format (None = the input's)."""

    item: InputItem
    output: Optional[Path]
    format: Optional[str]
    error: Optional[str] = None  # refused at planning time (duplicate output, would overwrite an input)
    skip: Optional[str] = None  # not processed, with the reason (earlier output of this batch)


def _output_is_file(output: str, items: Sequence[InputItem], args_have_folder: bool) -> bool:
    if output == "-":
        return True
    path = Path(output)
    if path.is_dir() or output.endswith(("/", os.sep)):
        return False
    if len(items) == 1 and not args_have_folder and items[0].root is None:
        return bool(path.suffix)
    return False


def plan_outputs(items: Sequence[InputItem], options: UpscaleOptions, *, args_have_folder: bool = False) -> list[Job]:
    """Decide each item's output path and format.

    - no `-o`: next to the input, named by the template; stdin goes to stdout;
    - `-o FILE` (one input, with an extension) or `-o -`: exactly there;
    - `-o FOLDER`: inside it, mirroring the tree below each input folder.
    Raises `UsageError` for an impossible combination (several inputs into one file,
    an unknown output extension, `--format` contradicting `-o`'s extension).
    """
    jobs: list[Job] = []
    out = options.output
    file_mode = out is not None and _output_is_file(out, items, args_have_folder)
    if out == "-" and (len(items) != 1 or args_have_folder):
        raise UsageError("-o - (stdout) takes exactly one input image")
    if out is not None and out != "-" and not file_mode and Path(out).suffix and not Path(out).is_dir():
        if output_format_for(Path(out).suffix) is not None and (len(items) > 1 or args_have_folder):
            raise UsageError(f"-o {out}: several inputs need an output folder, not a file")
    scale = format_scale(options.scale)
    for item in items:
        if file_mode:
            if out == "-":
                jobs.append(Job(item, None, options.format))
                continue
            target = Path(out)
            fmt = output_format_for(target.suffix)
            if fmt is None:
                raise UsageError(f"-o {out}: unknown image extension {target.suffix!r}; use .png, .jpg, .webp or .tif")
            if options.format is not None and options.format != fmt:
                raise UsageError(f"-o {out} and --format {options.format} disagree; drop one")
            jobs.append(Job(item, target, fmt))
            continue
        if item.path is None:  # stdin without "-o -"
            if out is None:
                jobs.append(Job(item, None, options.format))
                continue
            stem, suffix = "stdin", ""
        else:
            stem, suffix = item.path.stem, item.path.suffix.lower().lstrip(".")
        fmt = options.format or (output_format_for(suffix) if suffix else None) or "png"
        ext = suffix if suffix and output_format_for(suffix) == fmt else OUTPUT_FORMATS[fmt]  # keep .jpeg, .tiff
        name = options.name_template.format(
            stem=stem,
            name=item.path.name if item.path is not None else "stdin",
            ext=ext,
            suffix=suffix,
            scale=scale,
        )
        if out is None:
            folder = item.path.parent  # type: ignore[union-attr]
        else:
            folder = Path(out)
            if item.root is not None and item.path is not None:
                folder = folder / item.path.parent.relative_to(item.root)
        target = folder / name
        target_fmt = output_format_for(target.suffix) or fmt
        jobs.append(Job(item, target, target_fmt))
    _refuse_collisions(jobs)
    return jobs


def _file_id(path: Path) -> Optional[tuple[int, int]]:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino)


def _refuse_collisions(jobs: list[Job]) -> None:
    """Mark jobs whose output is an input of the batch, or the output of an earlier job.

    An input found by a folder scan or a glob that is itself the planned output of another
    input (a rerun next to the inputs) is skipped, not upscaled again; so is one that looks
    like an earlier output (`a_x2.png` beside `a.png`). Files named one by one are taken
    as given.
    """
    input_ids: dict[tuple[int, int], Job] = {}
    input_paths: dict[str, Job] = {}
    for job in jobs:
        if job.item.path is not None:
            fid = _file_id(job.item.path)
            if fid is not None:
                input_ids[fid] = job
            input_paths[os.path.abspath(job.item.path)] = job
    planned: dict[str, Job] = {}
    for job in jobs:
        if job.output is None:
            continue
        key = os.path.abspath(job.output)
        other = input_paths.get(key)
        fid = _file_id(job.output)
        if other is None and fid is not None:
            other = input_ids.get(fid)
        if other is not None and other is not job and other.item.scanned:
            other.skip = f"is the output of {job.item.label} in this batch"
        elif other is not None:
            job.error = f"{job.output}: is the input {other.item.label}; choose another output so the input is kept"
            continue
        if key in planned:
            job.error = f"{job.output}: also the output of {planned[key].item.label}; use --name or -o to separate them"
            continue
        planned[key] = job
    # earlier runs with another scale: "a_x2.png" next to "a.png" found by a folder scan
    by_folder: dict[str, set[str]] = {}
    for job in jobs:
        if job.item.path is not None and job.item.scanned:
            by_folder.setdefault(os.path.abspath(job.item.path.parent), set()).add(job.item.path.stem)
    for job in jobs:
        if job.skip or job.item.path is None or not job.item.scanned:
            continue
        match = _EARLIER_OUTPUT.match(job.item.path.stem)
        if match and match.group("stem") in by_folder.get(os.path.abspath(job.item.path.parent), set()):
            job.skip = f"looks like an earlier esc output of {match.group('stem')}"


# --------------------------------------------------------------------------- pixels


def target_size(height: int, width: int, scale: float) -> tuple[int, int]:
    """Output (height, width) for a scale factor, rounded, at least 1."""
    return max(1, round(height * scale)), max(1, round(width * scale))


def bleed_colors(color: Tensor, alpha: Tensor) -> Tensor:
    """Fill colour under fully transparent pixels from the nearest visible ones (push-pull).

    `color` `[C, H, W]`, `alpha` `[1, H, W]`, floats in [0, 1]. Visible pixels are kept
    exactly; hidden ones get a smooth extension of the visible colours, so a network or
    filter that mixes neighbours draws no dark or stray halo at the alpha edge.
    """
    mask = (alpha > 0).to(color.dtype)
    if bool(mask.all()) or not bool(mask.any()):
        return color
    levels: list[tuple[Tensor, Tensor]] = []
    c, w = (color * mask)[None], mask[None]
    while True:
        levels.append((c, w))
        if c.shape[-1] == 1 and c.shape[-2] == 1:
            break
        c = F.avg_pool2d(c, 2, ceil_mode=True)
        w = F.avg_pool2d(w, 2, ceil_mode=True)
    filled = levels[-1][0] / levels[-1][1].clamp_min(1e-12)
    for c, w in reversed(levels[:-1]):
        up = filled.repeat_interleave(2, -2).repeat_interleave(2, -1)[..., : c.shape[-2], : c.shape[-1]]
        filled = torch.where(w > 0, c / w.clamp_min(1e-12), up)
    return torch.where(mask[None] > 0, color[None], filled)[0]


def to_gray(rgb: Tensor) -> Tensor:
    """`[3, H, W]` -> `[1, H, W]` luma (BT.601 weights, like Pillow)."""
    r, g, b = _LUMA
    return (rgb[0:1] * r + rgb[1:2] * g + rgb[2:3] * b).clamp_(0.0, 1.0)


def upscale_plane(
    image: Tensor, run: Callable[[Tensor, int], Tensor], model_scale: int, scale: float
) -> Tensor:
    """Upscale `[3, H, W]` by `scale` with a network of `model_scale` (see module docstring).

    `run(x, pass_index)` applies the network once (`[3, h, w]` -> `[3, m*h, m*w]`).
    """
    height, width = image.shape[-2:]
    target = target_size(height, width, scale)
    passes = plan_passes(model_scale, scale)
    x = image
    for i in range(passes):
        if i == passes - 1 and i > 0:
            need = (math.ceil(target[0] / model_scale), math.ceil(target[1] / model_scale))
            x = resample(x, need)
        x = run(x, i)
    return resample(x, target)


# --------------------------------------------------------------------------- the batch


class _Resources:
    """Per-item memory and disk pre-check from the header alone."""

    def __init__(self, scale: float, enabled: bool) -> None:
        self.scale = scale
        self.enabled = enabled

    @staticmethod
    def available_memory() -> Optional[int]:
        try:
            with open("/proc/meminfo", encoding="ascii") as handle:
                for line in handle:
                    if line.startswith("MemAvailable:"):
                        return int(line.split()[1]) * 1024
        except (OSError, ValueError, IndexError):
            pass
        try:
            return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            return None

    @staticmethod
    def free_disk(folder: Path) -> Optional[int]:
        probe = folder
        while not probe.exists() and probe != probe.parent:
            probe = probe.parent
        try:
            return shutil.disk_usage(probe).free
        except OSError:
            return None

    def check(self, header: ImageHeader, output: Optional[Path], fmt: Optional[str], label: str) -> None:
        if not self.enabled:
            return
        out_h, out_w = target_size(header.height, header.width, self.scale)
        pixels = out_h * out_w
        # float32 planes the network works on (3 colour + alpha), about three live copies at the
        # peak (engine canvas, resample/concatenation, quantisation), plus the decoded input
        planes = 3 + (1 if header.channels in (2, 4) else 0)
        needed = pixels * 4 * planes * 3 + header.width * header.height * 4 * planes
        memory = self.available_memory()
        if memory is not None and needed > memory:
            raise InputError(
                f"{label}: a {out_w}x{out_h} output needs about {needed / 2**30:.1f} GiB of memory, "
                f"{memory / 2**30:.1f} GiB available; lower --scale or free memory"
            )
        if output is not None:
            size = estimate_encoded_bytes(out_w, out_h, header.channels, header.bit_depth, fmt or "png")
            free = self.free_disk(output.parent)
            if free is not None and size > free:
                raise OutputError(
                    f"{output}: needs up to {size / 2**20:.0f} MiB on disk, {free / 2**20:.0f} MiB free; free space or use -o"
                )


def batch_disk_check(jobs: Sequence[Job], scale: float, notify: Callable[[str], None]) -> None:
    """Before the first item: warn when the whole batch may not fit on the output disks.

    Reads only headers (a few KB per file). Estimates are worst cases (PNG/TIFF as if
    uncompressed), so this warns and lets the per-item check decide.
    """
    from PIL import Image

    needed: dict[int, int] = {}
    folders: dict[int, Path] = {}
    for job in jobs:
        if job.output is None or job.item.path is None or job.skip or job.error:
            continue
        if job.output.exists():
            continue
        try:
            with Image.open(job.item.path) as im:
                width, height = im.size
                channels = len(im.getbands())
        except Exception:  # unreadable files are reported when their turn comes
            continue
        out_h, out_w = target_size(height, width, scale)
        probe = job.output.parent
        while not probe.exists() and probe != probe.parent:
            probe = probe.parent
        try:
            dev = os.stat(probe).st_dev
        except OSError:
            continue
        folders.setdefault(dev, probe)
        needed[dev] = needed.get(dev, 0) + estimate_encoded_bytes(out_w, out_h, channels, 8, job.format or "png")
    for dev, total in needed.items():
        free = _Resources.free_disk(folders[dev])
        if free is not None and total > free:
            notify(
                f"the outputs may need up to {total / 2**30:.1f} GiB in {folders[dev]}, {free / 2**30:.1f} GiB free;"
                " items that do not fit will fail"
            )


@dataclass
class BatchSummary:
    done: int = 0
    skipped: int = 0
    failed: int = 0
    ignored: int = 0
    seconds: float = 0.0
    exit_code: int = EXIT_OK
    items: list[ItemFinished] = field(default_factory=list)


class ImageUpscaler:
    """Upscales `ImageData` with a loaded network through the tiled engine."""

    def __init__(self, network: torch.nn.Module, options: UpscaleOptions, progress: Optional[Callable] = None) -> None:
        from esc_cli.engine import Upscaler

        self.options = options
        self.model_scale = int(getattr(network, "scale"))
        self._stage = "color 1/1"
        self._index = 0
        self._progress = progress
        self.last_tile: Optional[int] = None
        self.last_device: Optional[str] = None
        self.last_dtype: Optional[str] = None
        self.engine = Upscaler(
            network,
            device=options.device,
            dtype=options.dtype,
            tile=options.tile,
            overlap=options.overlap,
            progress=self._on_tiles,
        )
        self.device = str(getattr(self.engine, "device", options.device or "cpu"))
        self.dtype = str(getattr(self.engine, "dtype", "float32")).removeprefix("torch.")

    def _on_tiles(self, event) -> None:
        self.last_tile = event.tile_size
        self.last_device = event.device
        self.last_dtype = event.dtype
        if self._progress is not None:
            self._progress(
                ItemProgress(self._index, self._stage, event.total_tiles, event.done_tiles, event.tile_size,
                             event.device, event.dtype, getattr(event, "notice", "") or "")
            )

    def _runner(self, kind: str, passes: int) -> Callable[[Tensor, int], Tensor]:
        def run(x: Tensor, i: int) -> Tensor:
            self._stage = f"{kind} {i + 1}/{passes}"
            return self.engine.upscale(x.contiguous())

        return run

    def upscale(self, image: ImageData, index: int = 0) -> ImageData:
        """Upscale colour (and alpha) by `options.scale`; gray stays gray, depth and metadata are kept."""
        self._index = index
        scale, m = self.options.scale, self.model_scale
        passes = plan_passes(m, scale)
        color = image.color
        alpha = image.alpha
        if alpha is not None:
            color = bleed_colors(color, alpha)
        rgb = color.expand(3, -1, -1) if image.is_gray else color
        out = upscale_plane(rgb, self._runner("color", passes), m, scale)
        if image.is_gray:
            out = to_gray(out)
        planes = [out]
        if alpha is not None:
            size = tuple(out.shape[-2:])
            lo, hi = float(alpha.min()), float(alpha.max())
            if lo == hi:
                up_alpha = torch.full((1, *size), lo)
            elif self.options.alpha == "resize":
                up_alpha = resample(alpha, size)  # type: ignore[arg-type]
            else:
                up = upscale_plane(alpha.expand(3, -1, -1), self._runner("alpha", passes), m, scale)
                up_alpha = up.mean(0, keepdim=True).clamp_(0.0, 1.0)
            planes.append(up_alpha)
        pixels = torch.cat(planes, 0) if len(planes) > 1 else out
        return ImageData(pixels.contiguous(), image.bit_depth, image.icc_profile, image.exif, image.format, list(image.notes))


def _model_name(ref: Optional[str], network: torch.nn.Module) -> str:
    if ref:
        return ref
    return str(getattr(network, "name", None) or f"{getattr(network, 'variant', 'esc')}-x{getattr(network, 'scale', '?')}")


def upscale_images(
    inputs: Sequence[str],
    options: UpscaleOptions,
    *,
    on_event: Optional[EventCallback] = None,
    warn: Optional[Callable[[str], None]] = None,
    stdin: Optional[BinaryIO] = None,
    stdout: Optional[BinaryIO] = None,
    network: Optional[torch.nn.Module] = None,
    download_progress: Optional[Callable[[int, Optional[int]], None]] = None,
    runner=None,
) -> BatchSummary:
    """Run a whole batch: collect, plan, load the model, process each item, summarise.

    Emits `BatchStarted`, then `ItemStarted`/`ItemProgress`/`ItemFinished` per item, then
    `BatchFinished`. `download_progress(done, total)` reports a model download, if any.
    `runner` (esc_cli.scale: one worker per device, or Ray) processes the items instead of
    this process; events and the summary are the same (items may finish out of order).
    Raises `EscError` only for problems that stop everything before the
    first item (usage, no model); `KeyboardInterrupt` and `Terminated` propagate after a
    `BatchFinished(interrupted=True)` event (temp files are already removed).
    """
    emit = on_event or (lambda event: None)
    notify = warn or (lambda message: None)
    started = time.perf_counter()
    options.validate()
    out_path = Path(options.output) if options.output not in (None, "-") else None
    exclude = [out_path] if out_path is not None else []
    items, ignored = collect_inputs(inputs, recursive=options.recursive, exclude=exclude)
    args_have_folder = any(a != "-" and Path(a).is_dir() for a in inputs)
    jobs = plan_outputs(items, options, args_have_folder=args_have_folder) if items else []
    if not jobs:
        failed = [e for e in ignored if e.failed]
        for entry in ignored:
            if not entry.failed:
                notify(f"{entry.path}: {entry.reason}")
        if failed:
            raise InputError("; ".join(f"{e.path}: {e.reason}" for e in failed[:3]) + ("; ..." if len(failed) > 3 else ""))
        raise InputError("no images to upscale" + (" (only junk or non-image files)" if ignored else ""))

    if network is None:
        from esc_cli.api.models import open_model

        network = open_model(options.model, scale=options.scale, warn=notify, progress=download_progress)
    if options.check_resources:
        batch_disk_check(jobs, options.scale, notify)
    if runner is None:
        upscaler: Optional[ImageUpscaler] = ImageUpscaler(network, options, progress=emit)
        model_scale, device_name, dtype_name = upscaler.model_scale, upscaler.device, upscaler.dtype
    else:
        upscaler = None
        model_scale = int(getattr(network, "scale"))
        device_name, dtype_name = runner.describe(network, options, jobs)
    passes = plan_passes(model_scale, options.scale)
    if model_scale**passes != options.scale:
        notify(
            f"model is x{model_scale}; -s {format_scale(options.scale)} runs it {passes}x and resamples"
            " (antialiased bicubic)"
        )
    total = len(jobs) + len(ignored)
    emit(BatchStarted(total, _model_name(options.model, network), model_scale, options.scale, passes,
                      device_name, dtype_name, options.tile))
    summary = BatchSummary()
    index = 0

    def finish(event: ItemFinished, junk: bool = False) -> None:
        summary.items.append(event)
        if junk:
            summary.ignored += 1
        elif event.status == "done":
            summary.done += 1
        elif event.status == "skipped":
            summary.skipped += 1
        else:
            summary.failed += 1
        emit(event)

    try:
        for entry in ignored:
            index += 1
            status = "failed" if entry.failed else "skipped"
            finish(ItemFinished(index, total, status, entry.path, None, 0.0,
                                error=entry.reason if entry.failed else None,
                                reason=None if entry.failed else entry.reason), junk=not entry.failed)
        input_paths = [j.item.path for j in jobs if j.item.path is not None]
        if runner is not None:
            numbered = [(index + i + 1, job) for i, job in enumerate(jobs)]
            runner.run(numbered, total, options, network, emit=emit, finish=finish, notify=notify,
                       input_paths=input_paths)
        else:
            for job in jobs:
                index += 1
                finish(_process(job, index, total, options, upscaler, emit, input_paths, stdin, stdout))
    except (KeyboardInterrupt, Terminated) as exc:
        summary.seconds = time.perf_counter() - started
        code = getattr(exc, "exit_code", EXIT_INTERRUPTED)
        summary.exit_code = code
        emit(BatchFinished(summary.done, summary.skipped, summary.failed, round(summary.seconds, 3), code,
                           summary.ignored, True))
        raise
    summary.seconds = time.perf_counter() - started
    summary.exit_code = exit_code_for(summary.done, summary.skipped, summary.failed)
    emit(BatchFinished(summary.done, summary.skipped, summary.failed, round(summary.seconds, 3), summary.exit_code,
                       summary.ignored))
    return summary


def _process(
    job: Job,
    index: int,
    total: int,
    options: UpscaleOptions,
    upscaler: ImageUpscaler,
    emit: EventCallback,
    input_paths: Sequence[Path],
    stdin: Optional[BinaryIO],
    stdout: Optional[BinaryIO],
) -> ItemFinished:
    """Process one job; every outcome except an interruption becomes an `ItemFinished`."""
    label = job.item.label
    out_label = "-" if job.output is None else str(job.output)
    t0 = time.perf_counter()

    def ended(status: str, **extra) -> ItemFinished:
        return ItemFinished(index, total, status, label, out_label, round(time.perf_counter() - t0, 3), **extra)

    exists = job.output is not None and (job.output.exists() or job.output.is_symlink())
    if job.skip:
        return ended("skipped", reason=job.skip)
    if exists and options.skip_existing:
        return ended("skipped", reason="output exists (--skip-existing)")
    if job.error:
        return ended("failed", error=job.error)
    if job.output is not None and exists:
        if not options.overwrite:
            return ended("failed", error=f"{job.output}: already exists; pass --overwrite to replace it or --skip-existing to keep it")
        if job.item.path is not None and same_file(job.output, job.item.path):
            return ended("failed", error=f"{job.output}: is the input itself; choose another output")
    emit(ItemStarted(index, total, label, out_label))
    upscaler.last_tile = None
    notes: list[str] = []
    resources = _Resources(options.scale, options.check_resources)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            if job.item.path is None:
                source: Union[Path, bytes] = (stdin or sys.stdin.buffer).read()
                if not source:
                    raise InputError("<stdin>: no data on standard input")
            else:
                source = job.item.path
            data = read_image(
                source,
                name=label if job.item.path is not None else "<stdin>",
                max_pixels=options.max_pixels or None,
                check=lambda header: resources.check(header, job.output, job.format, label),
            )
            result = upscaler.upscale(data, index)
            fmt = job.format or writable_format(data.format)
            if job.output is None:
                encoded = encode_image(result, fmt, quality=options.quality, notes=notes)
                target = stdout or sys.stdout.buffer
                target.write(encoded)
                target.flush()
            else:
                others = [p for p in input_paths if p != job.item.path]
                with atomic_output(job.output, [job.item.path] if job.item.path is not None else [],
                                   overwrite=options.overwrite) as tmp:
                    if any(same_file(job.output, p) for p in others if job.output.exists()):
                        raise OutputError(f"{job.output}: is another input of this batch; choose another output")
                    write_image(result, tmp, fmt, quality=options.quality, notes=notes)
        notes = list(data.notes) + notes + [str(w.message) for w in caught]
    except EscError as exc:
        return ended("failed", error=str(exc))
    except Exception as exc:  # an unexpected failure costs this item only
        return ended("failed", error=f"{label}: {type(exc).__name__}: {exc}")
    return ended(
        "done",
        tile=upscaler.last_tile,
        device=upscaler.last_device or upscaler.device,
        dtype=upscaler.last_dtype or upscaler.dtype,
        width=data.width,
        height=data.height,
        out_width=result.width,
        out_height=result.height,
        notes=notes,
    )
