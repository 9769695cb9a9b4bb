"""Whole-image statistics for ConvAttn's dynamic kernels while running tiles.

Each ConvAttn layer turns the global channel means of its input into a 3x3 kernel.
A tile's own means differ from the whole image's, so its kernels, and its output,
differ too. `StatsHook` sits in every such layer (`model.set_stats_hook`) and works
in two modes:

- record: the layer keeps using the tile's own means, and the hook adds up, per layer
  and per image, the channel sums over the pixels the tile owns (its share of a
  partition of the image). After a pass over all tiles these sums / (H*W) estimate
  the whole image's means. The forward is cut short after the last ConvAttn layer
  (`StatsComplete`): the tail of the network, the upsampler included, never runs.
- replay: the layer gets the recorded whole-image means of the image each batch item
  belongs to.

Tensor contract: the hook receives `x1 [B, pdim, h, w]` and returns `[B, pdim]` in
`x1`'s dtype; sums are kept in float32 on the model's device, with no host sync.
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch import Tensor, nn

from esc_cli.engine.tiling import Tile


class StatsComplete(Exception):
    """Raised by a recording hook after the last ConvAttn layer: the rest of the forward is not needed."""


class StatsHook:
    """Records or replays per-layer, per-image channel means (see the module doc)."""

    def __init__(self, layers: Sequence[nn.Module], n_images: int, device: torch.device) -> None:
        self.index = {id(layer): i for i, layer in enumerate(layers)}
        self.n_images = n_images
        self.device = device
        self.sums: list[Optional[Tensor]] = [None] * len(layers)
        self.means: Optional[list[Tensor]] = None
        self.recording = True
        #: While recording, stop the forward (raise `StatsComplete`) after the last layer.
        self.stop_early = True
        self._items: Optional[Tensor] = None  # [B] image index of each batch item
        self._boxes: list[tuple[int, int, int, int]] = []  # owned box, tile-local coords

    def alias(self, layers: Sequence[nn.Module]) -> None:
        """Let another copy of the model (same layers, same order) share these statistics."""
        for i, layer in enumerate(layers):
            self.index[id(layer)] = i

    def set_batch(self, images: Sequence[int], tiles: Sequence[Tile]) -> None:
        """Describe the batch about to run: item b is a crop `tiles[b]` of image `images[b]`."""
        self._items = torch.tensor(list(images), dtype=torch.long, device=self.device)
        self._boxes = [
            (
                t.rows.own_start - t.rows.start,
                t.rows.own_stop - t.rows.start,
                t.cols.own_start - t.cols.start,
                t.cols.own_stop - t.cols.start,
            )
            for t in tiles
        ]

    def finish_recording(self, pixels: int) -> None:
        """Turn the sums into means over `pixels` per image and switch to replay."""
        if any(s is None for s in self.sums):
            raise RuntimeError("statistics pass did not reach every ConvAttn layer")
        self.means = [s / float(pixels) for s in self.sums]  # type: ignore[operator]
        self.recording = False

    def __call__(self, layer: nn.Module, x1: Tensor) -> Tensor:
        i = self.index[id(layer)]
        if self.recording:
            self._record(i, x1)
            if self.stop_early and i == len(self.sums) - 1:
                raise StatsComplete()
            return x1.mean(dim=(2, 3))
        assert self.means is not None and self._items is not None
        return self.means[i].index_select(0, self._items).to(x1.dtype)

    def _record(self, i: int, x1: Tensor) -> None:
        assert self._items is not None
        if self.sums[i] is None:
            self.sums[i] = torch.zeros(self.n_images, x1.shape[1], dtype=torch.float32, device=x1.device)
        rows = []
        for b, (y0, y1, x0, x1_) in enumerate(self._boxes):
            rows.append(x1[b, :, y0:y1, x0:x1_].float().sum(dim=(1, 2)))
        self.sums[i].index_add_(0, self._items, torch.stack(rows))
