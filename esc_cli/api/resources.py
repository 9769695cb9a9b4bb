"""Memory and disk pre-checks: per item from the image header, and for the whole batch before it starts."""

from __future__ import annotations

import os
import shutil
import warnings
from pathlib import Path
from typing import Callable, Optional, Sequence

from esc_cli.api.outputs import ImageJob
from esc_cli.api.pixels import lands_exactly, target_size
from esc_cli.errors import InputError, OutputError
from esc_cli.io.encode import estimate_encoded_bytes
from esc_cli.io.images import ImageHeader


class ResourceCheck:
    """Per-item memory and disk pre-check from the header alone."""

    def __init__(self, scale: float, enabled: bool, model_scale: Optional[int] = None) -> None:
        self.scale = scale
        self.enabled = enabled
        self.model_scale = model_scale

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

    def memory_needed(self, header: ImageHeader) -> int:
        """Bytes an image of this header needs at the peak, from its size, channels, depth and the scale.

        Block-wise output (no alpha, and the model's last pass lands on the target size) holds only the
        quantised output: 4 bytes per output pixel for 8-bit colour (Pillow's RGB), 1 for 8-bit gray, 4 per
        channel at 16 bits (the array, and a copy while a TIFF is compressed). Otherwise (alpha, which may
        vary; a resampling after the last pass; an unknown model scale) the float result exists: 4 bytes per
        plane (3 colour + alpha), about three live copies at the peak (result, concatenation or resample,
        quantisation). Both add the decoded input in float
        and its decoding temporaries (8 bytes per plane per input pixel). The engine's own buffers are
        bounded by the tile, not the image, and left out.
        """
        out_h, out_w = target_size(header.height, header.width, self.scale)
        planes = 3 + (1 if header.channels in (2, 4) else 0)
        needed = header.width * header.height * 8 * planes
        streamed = (self.model_scale is not None and header.channels in (1, 3)
                    and lands_exactly(header.height, header.width, self.model_scale, self.scale))
        if not streamed:
            return needed + out_h * out_w * 4 * planes * 3
        per_pixel = 4 * header.channels if header.bit_depth == 16 else (1 if header.channels == 1 else 4)
        return needed + out_h * out_w * per_pixel

    def check(self, header: ImageHeader, output: Optional[Path], fmt: Optional[str], label: str) -> None:
        if not self.enabled:
            return
        needed = self.memory_needed(header)
        out_h, out_w = target_size(header.height, header.width, self.scale)
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


def batch_disk_check(jobs: Sequence[ImageJob], scale: float, notify: Callable[[str], None]) -> None:
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
            with warnings.catch_warnings():  # a bomb is refused, quoting --max-pixels, when its turn comes
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
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
        free = ResourceCheck.free_disk(folders[dev])
        if free is not None and total > free:
            notify(
                f"the outputs may need up to {human_bytes(total)} in {folders[dev]}, {human_bytes(free)} free;"
                " items that do not fit will fail"
            )


def human_bytes(size: int) -> str:
    """A byte count for messages: GiB from 1 GiB up, MiB from 1 MiB, else KiB (never "0.0 GiB")."""
    if size >= 2**30:
        return f"{size / 2**30:.1f} GiB"
    if size >= 2**20:
        return f"{size / 2**20:.1f} MiB"
    return f"{max(size, 0) / 2**10:.0f} KiB"
