"""`ImageProcessor`: one decoded image in, the upscaled image out, through the tiled engine.

Not to be confused with `esc_cli.engine.Upscaler` (tensors in, tensors out), which this
class drives: it adds colour and alpha planes, gray images, scale passes and tile progress
reported as `ItemProgress` events.
"""

from __future__ import annotations

from typing import Callable, Optional

import torch
from torch import Tensor

from esc_cli.api.events import EventCallback, ItemProgress
from esc_cli.api.options import UpscaleOptions
from esc_cli.api.pixels import before_last_pass, bleed_colors, lands_exactly, target_size, to_gray, upscale_plane
from esc_cli.engine.rescale import plan_passes, resample
from esc_cli.engine.progress import TileProgress
from esc_cli.io.canvas import PreparedImage, prepare_image
from esc_cli.io.images import ImageData


class ImageProcessor:
    """Upscales `ImageData` with a loaded network through the tiled engine."""

    def __init__(self, network: torch.nn.Module, options: UpscaleOptions,
                 progress: Optional[EventCallback] = None) -> None:
        from esc_cli.engine import Upscaler

        self.options = options
        self.model_scale = int(getattr(network, "scale"))
        self._stage = "color 1/1"
        self._index = 0
        self._progress = progress
        self.last_tile: Optional[int] = None
        self.last_device: Optional[str] = None
        self.last_dtype: Optional[str] = None
        self.engine = Upscaler(
            network,
            device=options.device,
            dtype=options.dtype,
            tile=options.tile,
            overlap=options.overlap,
            progress=self._on_tiles,
        )
        self.device = str(getattr(self.engine, "device", options.device or "cpu"))
        self.dtype = str(getattr(self.engine, "dtype", "float32")).removeprefix("torch.")

    def set_progress(self, progress: Optional[EventCallback]) -> None:
        """Where `ItemProgress` events go from now on (a worker: the current task's channel)."""
        self._progress = progress

    def _on_tiles(self, event: TileProgress) -> None:
        self.last_tile = event.tile_size
        self.last_device = event.device
        self.last_dtype = event.dtype
        if self._progress is not None:
            self._progress(
                ItemProgress(index=self._index, stage=self._stage, total_tiles=event.total_tiles,
                             done_tiles=event.done_tiles, tile=event.tile_size, device=event.device,
                             dtype=event.dtype, notice=getattr(event, "notice", "") or "")
            )

    def _runner(self, kind: str, passes: int) -> Callable[[Tensor, int], Tensor]:
        def run(x: Tensor, i: int) -> Tensor:
            self._stage = f"{kind} {i + 1}/{passes}"
            return self.engine.upscale(x.contiguous())

        return run

    def upscale(self, image: ImageData, index: int = 0) -> ImageData:
        """Upscale colour (and alpha) by `options.scale`; gray stays gray, depth and metadata are kept.

        `image.pixels` is `[C, H, W]` float in [0, 1] (C = 1 gray, 2 gray+alpha, 3 RGB, 4 RGBA);
        the result has the same C and `target_size(H, W, scale)`.
        """
        self._index = index
        scale, m = self.options.scale, self.model_scale
        passes = plan_passes(m, scale)
        color = image.color
        alpha = image.alpha
        if alpha is not None:
            color = bleed_colors(color, alpha)
        rgb = color.expand(3, -1, -1) if image.is_gray else color
        out = upscale_plane(rgb, self._runner("color", passes), m, scale)
        if image.is_gray:
            out = to_gray(out)
        planes = [out]
        if alpha is not None:
            size = tuple(out.shape[-2:])
            lo, hi = float(alpha.min()), float(alpha.max())
            if lo == hi:
                up_alpha = torch.full((1, *size), lo)
            elif self.options.alpha == "resize":
                up_alpha = resample(alpha, size)  # type: ignore[arg-type]
            else:
                up = upscale_plane(alpha.expand(3, -1, -1), self._runner("alpha", passes), m, scale)
                up_alpha = up.mean(0, keepdim=True).clamp_(0.0, 1.0)
            planes.append(up_alpha)
        pixels = torch.cat(planes, 0) if len(planes) > 1 else out
        return ImageData(pixels=pixels.contiguous(), bit_depth=image.bit_depth, icc_profile=image.icc_profile,
                         exif=image.exif, format=image.format, notes=list(image.notes))

    def upscale_prepared(self, image: ImageData, fmt: str, *, notes: Optional[list[str]] = None,
                         index: int = 0) -> PreparedImage:
        """Upscale `image` like `upscale`, straight into the quantised output for `fmt` (same pixels).

        When the last pass lands on the target size and alpha is absent or constant (the common case), pixels go
        from the engine's blending window to the 8- or 16-bit output as they are finished: no output-sized float
        image exists (docs/engine.md, "Block-wise output"). Otherwise (a resampling after the last pass, varying
        alpha) the float result is made first and quantised after.
        """
        constant: Optional[float] = None
        if image.alpha is not None:
            lo, hi = float(image.alpha.min()), float(image.alpha.max())
            constant = lo if lo == hi else None
        m, scale = self.model_scale, self.options.scale
        if (image.alpha is not None and constant is None) or not lands_exactly(image.height, image.width, m, scale):
            return prepare_image(self.upscale(image, index), fmt, notes=notes)
        self._index = index
        passes = plan_passes(m, scale)
        rgb = image.color.expand(3, -1, -1) if image.is_gray else image.color
        x = before_last_pass(rgb, self._runner("color", passes), m, scale)
        height, width = target_size(image.height, image.width, scale)
        prepared = PreparedImage(height, width, image.channels, image.bit_depth, fmt, icc_profile=image.icc_profile,
                                 exif=image.exif, notes=notes)

        def store(top: int, left: int, block: Tensor) -> None:
            pixels = to_gray(block[0]) if image.is_gray else block[0]
            if constant is not None:
                pixels = torch.cat([pixels, pixels.new_full((1, *pixels.shape[1:]), constant)])
            prepared.write(top, pixels, left=left)

        self._stage = f"color {passes}/{passes}"
        self.engine.upscale_blocks(x.contiguous()[None], store)
        return prepared
