"""Tile geometry: where tiles start and stop, which pixels each owns, and blend weights.

Pure integer/tensor logic with no model or device in sight. Coordinates are input
pixels unless a name says "out" (output pixels = input pixels x scale).

Along each axis a plan is a list of `Span`s with aligned starts (multiples of the
alignment unit, the model's attention window) and the same length `tile`, except the
last one, which stops at the image border. A ragged last tile is deliberate: the whole
image's last window row/column is also partial, and an aligned ragged tile pads it the
same way, so every window a tile sees is a window the whole image sees.

Neighbouring spans overlap by `overlap` pixels. In the middle of each overlap sits a
feather band where the left/top tile's weight falls linearly from 1 to 0 and its
neighbour's rises from 0 to 1; elsewhere weights are 0 or 1. The 1-D weights of the
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


def aligned_overlap(overlap: int, tile: int, align: int) -> int:
    """`overlap` rounded to the nearest multiple of `align` (when `tile` is aligned), capped at `tile // 2`."""
    if tile % align == 0 and tile >= align:
        overlap = int(round(overlap / align)) * align
        cap = (tile // 2 // align) * align
    else:
        cap = tile // 2
    return max(0, min(overlap, cap))


def plan_axis(length: int, tile: int, overlap: int, feather: float) -> list[Span]:
    """Spans covering `[0, length)` with tiles of `tile` pixels overlapping by `overlap`.

    `tile <= 0` or `tile >= length` gives one span. `0 <= overlap <= tile // 2` is
    required (so only neighbours overlap); `feather` is the width of the blend band in
    input pixels, limited to the overlap (0 gives a hard cut in its middle).
    """
    if length <= 0:
        raise ValueError(f"axis length must be positive, got {length}")
    if tile <= 0 or tile >= length:
        return [Span(0, length, 0, length, None, None)]
    if not 0 <= overlap <= tile // 2:
        raise ValueError(f"overlap {overlap} must be between 0 and half the tile ({tile})")
    stride = tile - overlap
    starts = [0]
    while starts[-1] + tile < length:
        starts.append(starts[-1] + stride)
    stops = [min(s + tile, length) for s in starts]
    # Boundary i sits between span i and i+1: the middle of their overlap.
    mids, bands = [], []
    for i in range(len(starts) - 1):
        lo, hi = starts[i + 1], stops[i]
        mid = (lo + hi) / 2
        half = min(float(feather), float(hi - lo)) / 2
        mids.append(int(mid))
        bands.append((mid - half, mid + half))
    spans = []
    for i, (a, b) in enumerate(zip(starts, stops)):
        own_a = 0 if i == 0 else mids[i - 1]
        own_b = length if i == len(starts) - 1 else mids[i]
        fade_in = None if i == 0 else bands[i - 1]
        fade_out = None if i == len(starts) - 1 else bands[i]
        spans.append(Span(a, b, own_a, own_b, fade_in, fade_out))
    return spans


def plan_tiles(height: int, width: int, tile: int, overlap: int, feather: float) -> list[Tile]:
    """Row-major tiles covering an `height x width` image (see `plan_axis`)."""
    rows = plan_axis(height, tile, overlap, feather)
    cols = plan_axis(width, tile, overlap, feather)
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
