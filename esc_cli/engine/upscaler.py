"""Interim whole-image upscaler with the final API; the tiled engine replaces its body."""

from __future__ import annotations

from typing import Optional, Union

import torch
from torch import Tensor, nn

from esc_cli.engine.progress import ProgressCallback, TileProgress


class Upscaler:
    """Runs a network over `[3, H, W]` float images in `[0, 1]` held in host memory."""

    def __init__(
        self,
        model: nn.Module,
        *,
        device: Union[str, torch.device, None] = None,
        dtype: Optional[torch.dtype] = None,
        tile: Optional[int] = None,
        overlap: Optional[int] = None,
        batch_size: Optional[int] = None,
        progress: Optional[ProgressCallback] = None,
    ) -> None:
        self.device = torch.device(device or "cpu")
        self.dtype = dtype or torch.float32
        self.model = model.to(self.device, self.dtype).eval()
        self.scale = int(model.scale)
        self.tile = tile
        self.progress = progress

    @torch.inference_mode()
    def upscale(self, image: Tensor) -> Tensor:
        """`[3, H, W]` float in `[0, 1]` (host) -> `[3, sH, sW]` float (host), clamped to `[0, 1]`."""
        x = image.to(self.device, self.dtype).unsqueeze(0)
        y = self.model(x).float().clamp_(0, 1)[0].cpu()
        if self.progress is not None:
            self.progress(TileProgress(1, 1, 0, str(self.device), str(self.dtype).removeprefix("torch.")))
        return y
