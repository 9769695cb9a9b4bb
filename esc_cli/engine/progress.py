"""The engine's progress protocol. The engine imports no UI library; front ends render events."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class TileProgress:
    """One progress report for the image being upscaled."""

    total_tiles: int
    done_tiles: int
    tile_size: int  # input pixels per tile side; 0 = whole image
    device: str
    dtype: str


class ProgressCallback(Protocol):
    """Anything callable with a `TileProgress`."""

    def __call__(self, event: TileProgress) -> None: ...
