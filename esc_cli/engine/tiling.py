"""Tile geometry: where tiles start and stop, which pixels each owns, and blend weights.

Pure integer/tensor logic with no model or device in sight. Coordinates are input
pixels unless a name says "out" (output pixels = input pixels x scale).

Along each axis a plan is a list of `Span`s. The model sees patch i = `[i * tile,
i * tile + tile + 2 * context)` (clipped at the image); it is responsible for about `tile`
pixels in its middle and the `context` pixels on each side absorb its border effects.
With `tile` a multiple of the model's attention window every patch starts on the window
grid, and the last patch stops at the image border like the whole image's last window
row/column, so the windows inside a patch are windows of the whole image (except a
partial one at a patch's far end when `2 * context` is not a window multiple: that one
lies in the context).

Neighbouring patches share `2 * context` pixels. In the middle of those sits a feather
band where the left/top tile's weight falls linearly from 1 to 0 and its neighbour's
rises from 0 to 1; elsewhere weights are 0 or 1. The 1-D weights of the
tiles covering a pixel sum to exactly 1, so the 2-D weights (outer products) do too:
the canvas is a plain weighted sum with no normalisation pass.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from torch import Tensor


@dataclass(frozen=True)
class Span:
    """One tile's extent along one axis, in input pixels.

    `start:stop` is what the model sees; `own_start:own_stop` the pixels the tile is
    responsible for (they partition the axis: used for whole-image statistics);
    `fade_in`/`fade_out` the feather bands `(lo, hi)` (floats, input pixels) at its
    start/end, `None` at the image border.
    """

    start: int
    stop: int
    own_start: int
    own_stop: int
    fade_in: Optional[tuple[float, float]]
    fade_out: Optional[tuple[float, float]]

    @property
    def size(self) -> int:
        return self.stop - self.start


@dataclass(frozen=True)
class Tile:
    """A rectangle of the input: `rows` along H, `cols` along W."""

    rows: Span
    cols: Span

    @property
    def shape(self) -> tuple[int, int]:
        return (self.rows.size, self.cols.size)


def aligned_tile(tile: int, align: int) -> int:
    """The largest multiple of `align` not above `tile` (at least `align`); `tile` itself if smaller."""
    if tile < align:
        return tile
    return (tile // align) * align


def plan_axis(length: int, tile: int, context: int, feather: float) -> list[Span]:
    """Spans covering `[0, length)`: tiles of `tile` pixels, each seen with `context` pixels around it.

    Span i starts at `i * tile` (clipped at 0) and is `tile + 2 * context` long (clipped
    at `length`); neighbours share `2 * context` pixels, and the boundary between them
    sits in the middle of what they share. `feather` is the width of the blend band
    around each boundary, in input pixels, limited to `2 * context` and to `tile` (so the
    bands of one span never meet); 0 gives a hard cut. `tile <= 0`, or a patch that
    already covers the axis, gives a single span.
    """
    if length <= 0:
        raise ValueError(f"axis length must be positive, got {length}")
    if context < 0:
        raise ValueError(f"context must be >= 0, got {context}")
    patch = tile + 2 * context
    if tile <= 0 or patch >= length:
        return [Span(0, length, 0, length, None, None)]
    starts = [0]
    while starts[-1] + patch < length:
        starts.append(starts[-1] + tile)
    stops = [min(s + patch, length) for s in starts]
    width = max(0.0, min(float(feather), 2.0 * context, float(tile)))
    # Boundary i sits between span i and i+1: the middle of their shared pixels.
    mids, bands = [], []
    for i in range(len(starts) - 1):
        mid = (starts[i + 1] + stops[i]) / 2
        mids.append(int(mid))
        bands.append((mid - width / 2, mid + width / 2))
    spans = []
    last = len(starts) - 1
    for i, (a, b) in enumerate(zip(starts, stops)):
        own_a = 0 if i == 0 else mids[i - 1]
        own_b = length if i == last else mids[i]
        fade_in = None if i == 0 else bands[i - 1]
        fade_out = None if i == last else bands[i]
        spans.append(Span(a, b, own_a, own_b, fade_in, fade_out))
    return spans


def plan_tiles(height: int, width: int, tile: int, context: int, feather: float) -> list[Tile]:
    """Row-major tiles covering an `height x width` image (see `plan_axis`)."""
    rows = plan_axis(height, tile, context, feather)
    cols = plan_axis(width, tile, context, feather)
    return [Tile(r, c) for r in rows for c in cols]


def _ramp(out_start: int, size: int, scale: int, band: tuple[float, float]) -> Tensor:
    """Rising weight in `[0, 1]` across `band` (input px) at output pixels `out_start + [0, size)`."""
    centres = torch.arange(out_start, out_start + size, dtype=torch.float64) + 0.5
    lo, hi = band[0] * scale, band[1] * scale
    if hi <= lo:
        return (centres >= lo).to(torch.float64)
    return ((centres - lo) / (hi - lo)).clamp_(0.0, 1.0)


def axis_weights(span: Span, scale: int) -> Optional[Tensor]:
    """Float32 blend weights `[scale * span.size]` for the tile's output, or `None` when all ones."""
    if span.fade_in is None and span.fade_out is None:
        return None
    out_start, size = span.start * scale, span.size * scale
    weight = torch.ones(size, dtype=torch.float64)
    if span.fade_in is not None:
        weight *= _ramp(out_start, size, scale, span.fade_in)
    if span.fade_out is not None:
        weight *= 1.0 - _ramp(out_start, size, scale, span.fade_out)
    return weight.float()


def blend_window(span: Span, scale: int) -> tuple[int, int, Optional[Tensor]]:
    """Where a tile's output counts along one axis: `(lo, hi, weights)`.

    `lo:hi` is the range of the tile's own output pixels (relative to its first output
    pixel) whose weight is above zero; `weights` are the float32 weights over that range,
    or `None` when they are all one.
    """
    weight = axis_weights(span, scale)
    if weight is None:
        return 0, span.size * scale, None
    nonzero = torch.nonzero(weight > 0).flatten()
    lo, hi = int(nonzero[0]), int(nonzero[-1]) + 1
    weight = weight[lo:hi].contiguous()
    if bool((weight == 1).all()):
        return lo, hi, None
    return lo, hi, weight
