"""Block-wise blending: output pixels leave the engine as soon as no later tile touches them.

The engine runs tiles row-major: tile row after tile row, left to right inside a row. The weights of the
tiles covering a pixel sum to one (`esc_cli.engine.tiling`), so a pixel is final once its last tile is in.
After tile (j, k), every pixel left of tile k+1's first weighted column and above tile row j+1's first
weighted row is final, and goes to the sink as one block. What is not final yet is small and bounded by the
tile, not the picture:

- the *window*: the open tile's output plus the feather columns its left neighbour left unfinished
  (one patch of output: patch x scale squared);
- the *row carry*: the feather rows that tile row j shares with tile row j+1, across the output's width
  (about `2 * overlap * FEATHER_SHARE * scale` rows).

So no output-sized float buffer exists: the largest float buffer is one output patch.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Callable, Optional, Sequence

import torch
from torch import Tensor

from esc_cli.engine.tiling import Span, Tile, blend_window

#: Receives finished output pixels: `(top, left, pixels)`, `pixels` `[N, 3, h, w]` float32 on the host, in
#: `[0, 1]`, for output rows `top : top + h` and columns `left : left + w`. Blocks arrive row-major and cover
#: every output pixel exactly once per run (an out-of-memory restart runs again from the top left). The
#: tensor is valid during the call only (the engine reuses its memory): copy what you keep.
BlockSink = Callable[[int, int, Tensor], None]


@lru_cache(maxsize=4096)
def output_window(span: Span, scale: int) -> tuple[int, int, Optional[Tensor]]:
    """`blend_window` cached: the tile's weighted output range `(lo, hi)` along one axis and its weights."""
    return blend_window(span, scale)


def weighted_range(span: Span, scale: int) -> tuple[int, int]:
    """Output pixels `[first, stop)` along one axis that a tile covering `span` contributes to (weight > 0)."""
    lo, hi, _ = output_window(span, scale)
    return span.start * scale + lo, span.start * scale + hi


def _finals(spans: Sequence[Span], scale: int) -> list[int]:
    """Per span, the first output pixel the next span touches (the end of the output for the last): every
    pixel before it is final once this span is in."""
    firsts = [weighted_range(span, scale)[0] for span in spans[1:]]
    return firsts + [spans[-1].stop * scale]


class BlockBlender:
    """Sums tiles' weighted outputs and hands finished blocks to a `BlockSink` (see the module docstring).

    `rows`, `cols`: the plan's spans along H and W; `images`: N, the frames sharing the plan. Tiles must
    arrive row-major: tile row after tile row, column after column, every frame of a tile before the next
    tile (frames in any order).
    """

    def __init__(self, rows: Sequence[Span], cols: Sequence[Span], images: int, scale: int,
                 sink: BlockSink) -> None:
        self.rows, self.cols, self.images, self.scale, self.sink = list(rows), list(cols), images, scale, sink
        self._row_index = {span: j for j, span in enumerate(self.rows)}
        self._col_index = {span: k for k, span in enumerate(self.cols)}
        self._row_final, self._col_final = _finals(self.rows, scale), _finals(self.cols, scale)
        self._row_range = [weighted_range(span, scale) for span in self.rows]
        self._col_range = [weighted_range(span, scale) for span in self.cols]
        width = self.cols[-1].stop * scale
        # Rows [row_final[j], row_stop[j]) are shared between tile rows j and j+1.
        carry = max([stop - final for (_, stop), final in zip(self._row_range[:-1], self._row_final[:-1])] or [0])
        self._carry = torch.zeros(images, 3, carry, width)  # shared rows of the open tile row, summed so far
        self._next_carry = torch.zeros(images, 3, carry, width)
        tall = max(stop - (0 if j == 0 else self._row_final[j - 1]) for j, (_, stop) in enumerate(self._row_range))
        wide = max(stop - (0 if k == 0 else self._col_final[k - 1]) for k, (_, stop) in enumerate(self._col_range))
        self._window = torch.empty(images, 3, tall, wide)
        self._tile = (-1, len(self.cols) - 1)  # (row, column) of the open tile; the "previous" one at first
        self._left = 0  # frames of the open tile still to come
        self._top = 0  # output rows of the open tile row: [top, stop)
        self._stop = 0
        self._x0 = 0  # output columns in the window: [x0, x1)
        self._x1 = 0

    def add(self, image: int, tile: Tile, output: Tensor) -> None:
        """Add tile `tile` of frame `image`: `output` `[3, s*h, s*w]` float32, the model's output for the patch.

        `output` is weighted in place (it belongs to the engine's batch).
        """
        at = (self._row_index[tile.rows], self._col_index[tile.cols])
        if at != self._tile:
            self._open(at)
        s = self.scale
        r0, r1, wr = output_window(tile.rows, s)
        c0, c1, wc = output_window(tile.cols, s)
        y = output[:, r0:r1, c0:c1]
        if wr is not None:
            y.mul_(wr.view(1, -1, 1))
        if wc is not None:
            y.mul_(wc.view(1, 1, -1))
        oy, ox = tile.rows.start * s + r0 - self._top, tile.cols.start * s + c0 - self._x0
        self._window[image, :, oy : oy + (r1 - r0), ox : ox + (c1 - c0)].add_(y)
        self._left -= 1
        if self._left == 0:
            self._close()

    def _open(self, at: tuple[int, int]) -> None:
        row, col = self._tile
        expected = (row, col + 1) if col + 1 < len(self.cols) else (row + 1, 0)
        if at != expected or self._left != 0:
            raise RuntimeError(f"tile {at} arrived before tile {self._tile} was complete (tiles must come row-major)")
        j, k = at
        if k == 0:  # a new tile row: its shared rows with the previous one are in the carry
            self._carry, self._next_carry = self._next_carry, self._carry
            self._top = 0 if j == 0 else self._row_final[j - 1]
            self._stop = self._row_range[j][1]
            self._x0 = self._x1 = 0
        shared = (self._row_range[j - 1][1] - self._top) if j > 0 else 0  # rows summed by the row above
        x1 = self._col_range[k][1]
        height, new = self._stop - self._top, slice(self._x1 - self._x0, x1 - self._x0)
        window = self._window[:, :, :height, new]
        window.zero_()
        if shared > 0:
            window[:, :, :shared].copy_(self._carry[:, :, :shared, self._x1 : x1])
        self._x1 = x1
        self._tile, self._left = at, self.images

    def _close(self) -> None:
        j, k = self._tile
        height, rows_done = self._stop - self._top, self._row_final[j] - self._top
        cols_done = self._col_final[k] - self._x0
        if cols_done > 0:
            if rows_done > 0:
                self.sink(self._top, self._x0, self._window[:, :, :rows_done, :cols_done])
            if rows_done < height:  # rows the next tile row adds to: keep their sums
                self._next_carry[:, :, : height - rows_done, self._x0 : self._x0 + cols_done].copy_(
                    self._window[:, :, rows_done:height, :cols_done])
        kept = self._x1 - self._x0 - cols_done
        if kept > 0:  # columns the next tile adds to move to the window's left (ranges may overlap)
            self._window[:, :, :height, :kept].copy_(self._window[:, :, :height, cols_done : cols_done + kept].clone())
        self._x0 += cols_done


__all__ = ["BlockBlender", "BlockSink", "output_window", "weighted_range"]
