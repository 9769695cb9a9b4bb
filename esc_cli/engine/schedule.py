"""How a run is scheduled: its geometry, the groups of tiles that share a forward pass, and batches in flight.

Pure bookkeeping for `esc_cli.engine.upscaler`; no model runs here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterator, Optional, Sequence

from torch import Tensor

from esc_cli.engine.tiling import Span, Tile

if TYPE_CHECKING:
    import torch

#: One unit of work: (frame index, tile).
Item = tuple[int, Tile]


@dataclass(frozen=True)
class Geometry:
    """How one image is cut: tile (0 = whole), context per side, patch side, batch size."""

    tile: int
    context: int
    patch: int
    batch: int


@dataclass
class BatchInFlight:
    """A batch in flight: which (image, tile) items, the output (host, maybe still copying)."""

    images: list[int]
    tiles: list[Tile]
    output: Optional[Tensor]  # [B, 3, s*h, s*w] float32, host
    finite: Optional[Tensor]  # [B] bool, host
    event: Optional["torch.cuda.Event"]


@dataclass
class TileCounter:
    """Progress of one run: tiles done out of `total`, and the geometry it reports."""

    total: int
    tile: int
    batch: int
    patch: int
    done: int = 0


def batches_by_shape(items: Sequence[Item], size: int) -> Iterator[list[Item]]:
    """Consecutive groups of at most `size` items of equal tile shape, largest shapes first."""
    by_shape: dict[tuple[int, int], list[Item]] = {}
    for item in items:
        by_shape.setdefault(item[1].shape, []).append(item)
    for shape in sorted(by_shape, key=lambda s: -s[0] * s[1]):
        group = by_shape[shape]
        for k in range(0, len(group), size):
            yield group[k : k + size]


def row_major_batches(rows: Sequence[Span], cols: Sequence[Span], images: int, size: int) -> list[list[Item]]:
    """Forward-pass groups in row-major tile order (for block-wise output): tile row after tile row, column
    after column, every frame of a tile together. A group holds at most `size` consecutive items of equal shape
    (it may run on into the next tile row), so it never reorders tiles. Only a row's last column and the last
    tile row can differ in shape, so on accelerators nearly all interior tiles still fill whole batches.
    """
    groups: list[list[Item]] = []
    for r in rows:
        for c in cols:
            for i in range(images):
                tile = Tile(r, c)
                if groups and len(groups[-1]) < size and groups[-1][0][1].shape == tile.shape:
                    groups[-1].append((i, tile))
                else:
                    groups.append([(i, tile)])
    return groups


__all__ = ["BatchInFlight", "Geometry", "Item", "TileCounter", "batches_by_shape", "row_major_batches"]
