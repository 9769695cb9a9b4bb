"""The tiled upscaler: bounded memory, seamless tiles, batched, any device and precision.

The input images and the output canvas live in host memory; only tiles (a batch of
crops) visit the device. See docs/engine.md for the design and the measurements
behind each default.
"""

from __future__ import annotations

import copy
import gc
import warnings
from typing import Iterator, Optional, Sequence, Union

import torch
from torch import Tensor, nn

from esc_cli.engine.devices import auto_batch, auto_tile, dtype_name, resolve_device, resolve_dtype
from esc_cli.engine.progress import ProgressCallback, TileProgress
from esc_cli.engine.bands import BlockBlender, BlockSink
from esc_cli.engine.schedule import (
    BatchInFlight,
    Geometry,
    Item,
    TileCounter,
    batches_by_shape,
    row_major_batches,
)
from esc_cli.engine.stats import StatsComplete, StatsHook
from esc_cli.engine.tiling import Tile, aligned_tile, plan_axis, plan_tiles
from esc_cli.errors import EngineError, UsageError

# Default context around each tile, in input pixels (`overlap`): see docs/engine.md.
DEFAULT_OVERLAP = 32
# Width of the feather band, as a share of what neighbouring patches share (2 x overlap).
FEATHER_SHARE = 0.25
# The smallest patch side OOM halving goes down to before giving up.
MIN_PATCH = 16
# Most tiles per forward pass chosen automatically on accelerators (CPU: 1).
MAX_AUTO_BATCH = 8


class EngineWarning(RuntimeWarning):
    """Something the engine recovered from (precision fallback, smaller tiles)."""


def is_out_of_memory(exc: BaseException) -> bool:
    """True for CUDA's `torch.OutOfMemoryError` and MPS/other backends' "out of memory" errors."""
    if isinstance(exc, torch.OutOfMemoryError):
        return True
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()


def host_buffer(shape: tuple[int, ...], dtype: torch.dtype, pinned: bool) -> Tensor:
    """An uninitialised host tensor, page-locked when `pinned` (CUDA: asynchronous copies).

    PyTorch's caching host allocator recycles pinned blocks, so one per batch is cheap.
    """
    return torch.empty(shape, dtype=dtype, pin_memory=pinned)


class _OutOfMemory(Exception):
    """Internal: the device ran out of memory at `tile` with `batch` items per pass."""


class Upscaler:
    """Runs an ESC network over `[3, H, W]` float images in `[0, 1]` held in host memory.

    - `device`: "auto"/None picks cuda, then mps, then cpu.
    - `dtype`: None/"auto" picks fp16 on CUDA/MPS, fp32 on CPU; bf16 on request.
      A tile whose output holds NaN/Inf is redone in fp32 (one `EngineWarning`).
    - `tile`: input pixels each tile contributes per side, rounded down to the model's
      attention window grid; 0 = whole image; None = automatic from free memory.
    - `overlap`: context pixels the model also sees on every side of a tile (default
      `DEFAULT_OVERLAP`), so the model's input (the patch) is `tile + 2 * overlap` square
      and neighbouring patches share `2 * overlap` pixels, blended by a linear feather in
      their middle. An image that fits one patch is run whole.
    - Out of memory halves the batch, then the patch (tile and, if needed, overlap), and
      starts the image again; the limit sticks for later images.
    - `batch_size`: tiles (or frames) per forward pass; None = automatic.
    - `whole_image_stats`: give every tile the whole image's ConvAttn statistics, recorded
      by an extra pass (off by default: docs/engine.md has the measurements).
    - `progress`: called with a `TileProgress` after every batch.

    The model is moved and cast in place (`model.to(device, dtype)`), as loading does;
    a float32 copy of its weights is kept on the host when `dtype` is not float32.
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        device: Union[str, torch.device, None] = None,
        dtype: Union[str, torch.dtype, None] = None,
        tile: Optional[int] = None,
        overlap: Optional[int] = None,
        batch_size: Optional[int] = None,
        progress: Optional[ProgressCallback] = None,
        whole_image_stats: bool = False,
    ) -> None:
        if tile is not None and tile < 0:
            raise UsageError(f"tile must be 0 (whole image), a positive size or automatic, got {tile}")
        if overlap is not None and overlap < 0:
            raise UsageError(f"overlap must be >= 0, got {overlap}")
        if batch_size is not None and batch_size < 1:
            raise UsageError(f"batch size must be >= 1, got {batch_size}")
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype, self.device)
        # Full-precision weights for the NaN/Inf fallback, kept on the host (ESC models are small).
        self._fp32_source: Optional[nn.Module] = None
        if self.dtype != torch.float32:
            with torch.inference_mode(False), torch.no_grad():
                self._fp32_source = copy.deepcopy(model).to("cpu", torch.float32)
        self.model = model.to(device=self.device, dtype=self.dtype).eval()
        self.scale = int(getattr(model, "scale"))
        self.align = int(getattr(model, "window_size", 1) or 1)
        self.tile = tile
        self.overlap = overlap
        self.batch_size = batch_size
        self.progress = progress
        self.whole_image_stats = whole_image_stats
        self.pinned = self.device.type == "cuda"
        # Learned limits: after an out-of-memory, never go above these again.
        self._patch_limit: Optional[int] = None
        self._batch_limit: Optional[int] = None
        self._fp32_model: Optional[nn.Module] = None
        self._hook: Optional[StatsHook] = None
        self._warned: set[str] = set()
        self._notice = ""
        #: The tile, overlap, patch and batch size the last call ended with (tile 0 = whole image).
        self.last_tile: Optional[int] = None
        self.last_overlap: Optional[int] = None
        self.last_patch: Optional[int] = None
        self.last_batch: Optional[int] = None

    # ------------------------------------------------------------------ public API

    def upscale(self, image: Tensor) -> Tensor:
        """`[3, H, W]` float in `[0, 1]` (host) -> `[3, sH, sW]` float32 (host), clamped to `[0, 1]`."""
        if not isinstance(image, Tensor) or image.dim() != 3 or image.shape[0] != 3:
            shape = tuple(image.shape) if isinstance(image, Tensor) else type(image).__name__
            raise UsageError(f"upscale expects a [3, H, W] float tensor, got {shape}")
        return self.upscale_batch(image.unsqueeze(0))[0]

    def upscale_batch(self, images: Tensor) -> Tensor:
        """`[N, 3, H, W]` float in `[0, 1]` (host, equal-size frames) -> `[N, 3, sH, sW]` float32 (host).

        Same tiling as `upscale`; the same tile of several frames shares a forward pass,
        and each frame keeps its own statistics. Frame n of the result equals
        `upscale(images[n])`. The result is assembled from `upscale_blocks`.
        """
        images = self._checked(images, "upscale_batch")
        n, _, height, width = images.shape
        full = (n, 3, height * self.scale, width * self.scale)
        result: list[Tensor] = []

        def keep(top: int, left: int, block: Tensor) -> None:
            if tuple(block.shape) == full:  # the whole output in one block (so the last one): kept, no copy
                result[:] = [block]
                return
            if not result or tuple(result[0].shape) != full:
                result[:] = [torch.empty(full)]
            result[0][:, :, top : top + block.shape[2], left : left + block.shape[3]].copy_(block)

        self.upscale_blocks(images, keep)
        return result[0].contiguous()

    def upscale_blocks(self, images: Tensor, sink: BlockSink) -> None:
        """Upscale `[N, 3, H, W]` float in `[0, 1]` (host) and hand the output to `sink` block by block.

        `sink(top, left, block)` gets `[N, 3, h, w]` float32 in `[0, 1]` (host) for output rows `top:top+h`,
        columns `left:left+w`, row-major, as soon as no later tile touches those pixels, so no output-sized
        float buffer is ever held here (docs/engine.md, "Block-wise output"). The block is valid during the
        call only. After an out-of-memory restart the blocks start again from the top left: a sink that stores
        pixels by position needs no special case.
        """
        images = self._checked(images, "upscale_blocks")
        height, width = images.shape[2], images.shape[3]
        while True:
            geo = self._choose(height, width)
            try:
                with torch.inference_mode():
                    self._run(images, geo, sink)
            except Exception as exc:  # noqa: BLE001 - out of memory anywhere in the run (fp32 redo too)
                if not (isinstance(exc, _OutOfMemory) or is_out_of_memory(exc)):
                    raise
                self._shrink(geo)
                continue
            self.last_tile, self.last_overlap, self.last_patch, self.last_batch = (
                geo.tile, geo.context, geo.patch, geo.batch,
            )
            return

    @staticmethod
    def _checked(images: Tensor, name: str) -> Tensor:
        """`images` as a contiguous float32 host tensor, or a `UsageError` naming what is wrong."""
        if not isinstance(images, Tensor) or images.dim() != 4 or images.shape[1] != 3:
            shape = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
            raise UsageError(f"{name} expects an [N, 3, H, W] float tensor, got {shape}")
        if not images.is_floating_point():
            raise UsageError(f"expected float pixels in [0, 1], got {images.dtype}")
        if images.shape[0] == 0 or images.shape[2] == 0 or images.shape[3] == 0:
            raise UsageError(f"cannot upscale an empty tensor of shape {tuple(images.shape)}")
        return images.detach().to("cpu", torch.float32).contiguous()

    # ------------------------------------------------------------------ choices

    def _choose(self, height: int, width: int) -> Geometry:
        """Tile, context and batch size for an image of this size (tile 0 = one pass)."""
        context = DEFAULT_OVERLAP if self.overlap is None else self.overlap
        if self.tile is None:
            tile = auto_tile(self.model, self.device, self.dtype, self.align, context=context)
        else:
            tile = self.tile
        limit = self._patch_limit
        if limit is not None and (tile == 0 or tile + 2 * context > limit):
            # Memory-bound: the context may take at most a quarter of the patch.
            context = min(context, limit // 4)
            tile = limit - 2 * context
        if tile != 0:
            tile = aligned_tile(tile, self.align)
            if tile + 2 * context >= max(height, width):
                tile = 0  # one patch covers the image: run it whole
        if tile == 0:
            context = 0
        patch = max(height, width) if tile == 0 else tile + 2 * context
        if self.batch_size is not None:
            batch = self.batch_size
        else:
            area = height * width if tile == 0 else patch * patch
            batch = auto_batch(self.model, self.device, self.dtype, area, cap=MAX_AUTO_BATCH)
        if self._batch_limit is not None:
            batch = min(batch, self._batch_limit)
        return Geometry(tile, context, patch, batch)

    def _shrink(self, geo: Geometry) -> None:
        """After an out-of-memory: halve the batch, else the patch; give up below `MIN_PATCH`."""
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
        if geo.batch > 1:
            self._batch_limit = geo.batch // 2
            self._notify("oom-batch", f"out of memory on {self.device}: batch {geo.batch} -> {geo.batch // 2}")
            return
        half = geo.patch // 2
        if half < MIN_PATCH:
            raise EngineError(
                f"out of memory on {self.device} even with {geo.patch}-pixel tiles; "
                "free device memory or use --device cpu"
            )
        self._patch_limit = half
        self._notify("oom-tile", f"out of memory on {self.device}: patch {geo.patch} -> at most {half} pixels")

    # ------------------------------------------------------------------ the passes

    def _run(self, images: Tensor, geo: Geometry, sink: BlockSink) -> None:
        n, _, height, width = images.shape
        tile, batch = geo.tile, geo.batch
        feather = 2 * geo.context * FEATHER_SHARE
        rows, cols = plan_axis(height, tile, geo.context, feather), plan_axis(width, tile, geo.context, feather)
        groups = row_major_batches(rows, cols, n, batch)
        tiles = len(rows) * len(cols)
        layers = list(getattr(self.model, "conv_attn_layers", lambda: [])())
        use_stats = self.whole_image_stats and tiles > 1 and bool(layers)
        # Statistics: patch-sized tiles without context (same memory, a quarter of the work
        # at tile 64 / overlap 32); each records the pixels it owns.
        stats_tile = aligned_tile(geo.patch, self.align) if geo.patch >= self.align else geo.patch
        stats_plan = plan_tiles(height, width, stats_tile, 0, 0.0) if use_stats else []
        stats_items = [(i, t) for t in stats_plan for i in range(n)]
        self._counter = TileCounter(tiles * n + len(stats_items), tile, batch, geo.patch)
        hook: Optional[StatsHook] = None
        try:
            if use_stats:
                hook = StatsHook(layers, n, self.device)
                self._install(hook)
                for _ in self._stream(images, list(batches_by_shape(stats_items, batch)), hook, "stats"):
                    pass
                hook.finish_recording(height * width)
                if not all(bool(torch.isfinite(m).all()) for m in hook.means or []):
                    hook = self._fp32_stats(images, stats_items, layers, height * width)
                    self._install(hook)
            if tiles == 1 and len(groups) == 1:
                # One pass over all images: its output is the result (no blending).
                (done,) = list(self._stream(images, groups, hook, "upscale"))
                assert done.output is not None
                sink(0, 0, done.output.contiguous())
                return
            blender = BlockBlender(rows, cols, n, self.scale, sink)
            for done in self._stream(images, groups, hook, "upscale"):
                self._blend(blender, done)
        finally:
            self._install(None)

    def _blend(self, blender: BlockBlender, batch: BatchInFlight) -> None:
        """Add a finished batch's tiles to the block blender (which passes finished pixels on)."""
        assert batch.output is not None
        for b, (i, t) in enumerate(zip(batch.images, batch.tiles)):
            blender.add(i, t, batch.output[b])

    def _install(self, hook: Optional[StatsHook]) -> None:
        """Put `hook` into the model (and its fp32 copy, when there is one), or remove it."""
        self._hook = hook
        for model in (self.model, self._fp32_model):
            if model is not None and hasattr(model, "set_stats_hook"):
                if hook is not None and model is not self.model:
                    hook.alias(list(model.conv_attn_layers()))
                model.set_stats_hook(hook)

    def _stream(
        self,
        images: Tensor,
        groups: Sequence[list[Item]],
        hook: Optional[StatsHook],
        phase: str,
    ) -> Iterator[BatchInFlight]:
        """Run each group of equal-shape tiles as one forward pass; yield each finished batch in order.

        One batch stays in flight: on CUDA the next batch is queued before the previous
        one's output is waited for, so host-side blending overlaps device work.
        """
        keep = phase == "upscale"
        pending: Optional[BatchInFlight] = None
        for group in groups:
            current = self._launch(images, group, hook, keep)
            if pending is not None:
                yield self._finish(images, pending, hook, phase)
            pending = current
        if pending is not None:
            yield self._finish(images, pending, hook, phase)

    def _launch(
        self, images: Tensor, group: list[tuple[int, Tile]], hook: Optional[StatsHook], keep: bool
    ) -> BatchInFlight:
        idx = [i for i, _ in group]
        tiles = [t for _, t in group]
        if hook is not None:
            hook.set_batch(idx, tiles)
        try:
            x = self._upload(images, idx, tiles)
            try:
                y = self.model(x)
            except StatsComplete:
                return BatchInFlight(idx, tiles, None, None, None)
            if not keep:
                return BatchInFlight(idx, tiles, None, None, None)
            finite = torch.isfinite(y).flatten(1).all(dim=1)
            y = y.clamp_(0, 1).float()
        except Exception as exc:  # noqa: BLE001 - only out-of-memory is handled here
            if is_out_of_memory(exc):
                raise _OutOfMemory() from None
            raise
        output, finite_host, event = self._download(y, finite)
        return BatchInFlight(idx, tiles, output, finite_host, event)

    def _upload(
        self, images: Tensor, idx: list[int], tiles: list[Tile], dtype: Optional[torch.dtype] = None
    ) -> Tensor:
        """Stack the crops on the host (pinned for CUDA), send them to the device, cast to `dtype`."""
        h, w = tiles[0].shape
        host = host_buffer((len(idx), 3, h, w), torch.float32, self.pinned)
        for b, (i, t) in enumerate(zip(idx, tiles)):
            host[b].copy_(images[i, :, t.rows.start : t.rows.stop, t.cols.start : t.cols.stop])
        x = host.to(self.device, non_blocking=self.pinned)
        return x.to(dtype or self.dtype)

    def _download(self, y: Tensor, finite: Tensor) -> tuple[Tensor, Tensor, Optional["torch.cuda.Event"]]:
        """Start copying a batch's output to the host; CUDA copies are asynchronous."""
        if self.device.type == "cpu" and not self.pinned:
            return y, finite, None
        out = host_buffer(tuple(y.shape), torch.float32, self.pinned)
        flags = host_buffer(tuple(finite.shape), torch.bool, self.pinned)
        out.copy_(y, non_blocking=self.pinned)
        flags.copy_(finite, non_blocking=self.pinned)
        event = None
        if self.pinned:
            event = torch.cuda.Event()
            event.record()
        return out, flags, event

    def _finish(self, images: Tensor, batch: BatchInFlight, hook: Optional[StatsHook], phase: str) -> BatchInFlight:
        if batch.event is not None:
            batch.event.synchronize()
        if batch.finite is not None and not bool(batch.finite.all()):
            self._redo_fp32(images, batch, hook)
        self._counter.done += len(batch.images)
        self._report(phase)
        return batch

    # ------------------------------------------------------------------ fallbacks

    def _fp32(self) -> nn.Module:
        """The float32 model on the device (made from the original weights on first use)."""
        if self._fp32_model is None:
            if self.dtype == torch.float32 or self._fp32_source is None:
                self._fp32_model = self.model
            else:
                with torch.inference_mode(False):
                    self._fp32_model = self._fp32_source.to(self.device).eval()
                self._fp32_source = None
            self._install(self._hook)
        return self._fp32_model

    def _redo_fp32(self, images: Tensor, batch: BatchInFlight, hook: Optional[StatsHook]) -> None:
        """Redo the items of `batch` whose output is not finite with an fp32 copy of the model."""
        assert batch.output is not None and batch.finite is not None
        if self.dtype == torch.float32:
            raise EngineError("the model produced NaN/Inf in float32: the weights are broken")
        model = self._fp32()
        self._notify(
            "nan",
            f"{dtype_name(self.dtype)} produced NaN/Inf on {self.device}; redoing those tiles in float32",
        )
        for b in torch.nonzero(~batch.finite).flatten().tolist():
            i, t = batch.images[b], batch.tiles[b]
            if hook is not None:
                hook.set_batch([i], [t])
            x = self._upload(images, [i], [t], torch.float32)
            y = model(x)
            if not bool(torch.isfinite(y).all()):
                raise EngineError("the model produced NaN/Inf even in float32: the weights are broken")
            batch.output[b].copy_(y[0].clamp_(0, 1))

    def _fp32_stats(
        self, images: Tensor, items: Sequence[tuple[int, Tile]], layers: list, pixels: int
    ) -> StatsHook:
        """Statistics recorded in low precision overflowed: record them again in fp32."""
        if self.dtype == torch.float32:
            raise EngineError("the model produced NaN/Inf in float32: the weights are broken")
        self._notify(
            "nan",
            f"{dtype_name(self.dtype)} produced NaN/Inf on {self.device}; computing statistics in float32",
        )
        model = self._fp32()
        hook = StatsHook(layers, int(images.shape[0]), self.device)
        self._install(hook)
        for group in batches_by_shape(items, 1):
            idx, tiles = [i for i, _ in group], [t for _, t in group]
            hook.set_batch(idx, tiles)
            try:
                model(self._upload(images, idx, tiles, torch.float32))
            except StatsComplete:
                pass
        hook.finish_recording(pixels)
        if not all(bool(torch.isfinite(m).all()) for m in hook.means or []):
            raise EngineError("the model produced NaN/Inf even in float32: the weights are broken")
        return hook

    # ------------------------------------------------------------------ reporting

    def _notify(self, key: str, message: str) -> None:
        """Warn once per kind per Upscaler; the message also rides on the next progress event."""
        self._notice = message
        if key not in self._warned:
            self._warned.add(key)
            warnings.warn(message, EngineWarning, stacklevel=4)

    def _report(self, phase: str) -> None:
        if self.progress is None:
            self._notice = ""
            return
        c = self._counter
        event = TileProgress(
            total_tiles=c.total,
            done_tiles=c.done,
            tile_size=c.tile,
            device=str(self.device),
            dtype=dtype_name(self.dtype),
            phase=phase,
            batch_size=c.batch,
            patch_size=c.patch,
            notice=self._notice,
        )
        self._notice = ""
        self.progress(event)


__all__: Sequence[str] = ["EngineWarning", "Upscaler", "is_out_of_memory"]
