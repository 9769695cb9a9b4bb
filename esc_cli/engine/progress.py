"""The engine's progress protocol. The engine imports no UI library; front ends render events."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class TileProgress:
    """One progress report for the image (or batch of frames) being upscaled.

    Tiles count both passes: the statistics pass (`phase == "stats"`, when the image is
    tiled) and the upscaling pass (`phase == "upscale"`), so `done_tiles` only grows
    towards `total_tiles` -- unless an out-of-memory restarts the image with smaller
    tiles, which starts a new count (and carries a `notice`).
    """

    total_tiles: int
    done_tiles: int
    tile_size: int  # input pixels each tile contributes per side; 0 = whole image
    device: str
    dtype: str
    phase: str = "upscale"  # "stats" or "upscale"
    batch_size: int = 1  # tiles (or frames) per forward pass
    patch_size: int = 0  # side of the largest model input: tile + 2 x overlap (whole image: its longer side)
    notice: str = ""  # one-line message about a recovery (OOM halving, fp32 redo), else ""


class ProgressCallback(Protocol):
    """Anything callable with a `TileProgress`."""

    def __call__(self, event: TileProgress) -> None: ...
