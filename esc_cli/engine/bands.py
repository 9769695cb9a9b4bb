"""Band-wise blending: tiles are summed one tile row at a time, and output rows leave as soon as no later tile
touches them.

The engine runs tiles in row-major order. A tile row's weighted outputs are added into a float buffer that
covers only the output rows that row touches (its patch height x scale) plus the rows the previous tile row
left unfinished (the feather band they share). When the last tile of a row is in, every row above the next
tile row's first weighted row is final: it goes to the sink, and only the shared band is carried over. No
output-sized float canvas exists; the largest float buffer is one patch row of the output.

The weights of the tiles covering a pixel sum to one (`esc_cli.engine.tiling`), so a finished row is the
plain sum, with no normalisation pass.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Callable, Optional, Sequence

import torch
from torch import Tensor

from esc_cli.engine.tiling import Span, Tile, blend_window

#: Receives finished output rows: `(first_row, pixels)`, `pixels` `[N, 3, rows, W_out]` float32 on the host,
#: in `[0, 1]`. Rows arrive top to bottom, each exactly once per run (an out-of-memory restart runs again
#: from row 0). The tensor is the sink's to keep or modify.
BandSink = Callable[[int, Tensor], None]


@lru_cache(maxsize=4096)
def output_window(span: Span, scale: int) -> tuple[int, int, Optional[Tensor]]:
    """`blend_window` cached: the tile's weighted output range `(lo, hi)` along one axis and its weights."""
    return blend_window(span, scale)


def weighted_rows(span: Span, scale: int) -> tuple[int, int]:
    """Output rows `[first, stop)` of the image that a tile row covering `span` contributes to (weight > 0)."""
    lo, hi, _ = output_window(span, scale)
    return span.start * scale + lo, span.start * scale + hi


class BandBlender:
    """Sums tiles' outputs tile row by tile row and hands finished output rows to a `BandSink`.

    `rows`: the plan's spans along H, top to bottom; `columns`: how many tiles each tile row has; `images`: N,
    the frames sharing the plan. Tiles must arrive tile row after tile row (any order inside a row).
    """

    def __init__(self, rows: Sequence[Span], columns: int, images: int, out_width: int, scale: int,
                 sink: BandSink) -> None:
        self.rows = list(rows)
        self.scale = scale
        self.images = images
        self.out_width = out_width
        self.sink = sink
        self._index = {span: j for j, span in enumerate(self.rows)}
        self._per_row = columns * images
        self._row = -1  # the tile row whose buffer is open (-1: none yet)
        self._left = 0  # its tiles not yet added
        self._top = 0  # first output row not yet handed to the sink: the buffer's row 0
        self._buffer: Optional[Tensor] = None  # [N, 3, rows, W_out] float32
        self._carry: Optional[Tensor] = None  # unfinished rows the previous tile row left

    def add(self, image: int, tile: Tile, output: Tensor) -> None:
        """Add tile `tile` of frame `image`: `output` `[3, s*h, s*w]` float32, the model's output for the patch.

        `output` is weighted in place (it belongs to the engine's batch).
        """
        row = self._index[tile.rows]
        if row != self._row:
            self._open(row)
        assert self._buffer is not None
        s = self.scale
        r0, r1, wr = output_window(tile.rows, s)
        c0, c1, wc = output_window(tile.cols, s)
        y = output[:, r0:r1, c0:c1]
        if wr is not None:
            y.mul_(wr.view(1, -1, 1))
        if wc is not None:
            y.mul_(wc.view(1, 1, -1))
        oy, ox = tile.rows.start * s + r0 - self._top, tile.cols.start * s
        self._buffer[image, :, oy : oy + (r1 - r0), ox + c0 : ox + c1].add_(y)
        self._left -= 1
        if self._left == 0:
            self._close()

    def _open(self, row: int) -> None:
        if row != self._row + 1 or self._left != 0:
            raise RuntimeError(f"tiles of tile row {row} arrived before tile row {self._row} was complete")
        first, stop = weighted_rows(self.rows[row], self.scale)
        if first < self._top:
            raise RuntimeError("tile rows overlap rows already handed on")  # the plan guarantees otherwise
        bottom = max(stop, self._top + (0 if self._carry is None else int(self._carry.shape[2])))
        self._buffer = torch.zeros(self.images, 3, bottom - self._top, self.out_width)
        if self._carry is not None:
            self._buffer[:, :, : self._carry.shape[2]].copy_(self._carry)
            self._carry = None
        self._row, self._left = row, self._per_row

    def _close(self) -> None:
        assert self._buffer is not None
        last = self._row == len(self.rows) - 1
        ready = self._top + int(self._buffer.shape[2]) if last else weighted_rows(self.rows[self._row + 1], self.scale)[0]
        done = ready - self._top
        if done < int(self._buffer.shape[2]):
            self._carry = self._buffer[:, :, done:].clone()
        finished, self._buffer = self._buffer[:, :, :done], None
        self._top = ready
        if done > 0:
            self.sink(ready - done, finished)


__all__ = ["BandBlender", "BandSink", "output_window", "weighted_rows"]
