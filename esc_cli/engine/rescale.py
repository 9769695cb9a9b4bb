"""Reaching any scale factor with a fixed-scale model: how many passes, and the resample."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor


def plan_passes(model_scale: int, scale: float) -> int:
    """The smallest k >= 1 with `model_scale ** k >= scale` (the result is then resampled to it)."""
    if model_scale < 2:
        return 1
    k = 1
    while model_scale**k < scale - 1e-9:
        k += 1
    return k


def resample(pixels: Tensor, size: tuple[int, int]) -> Tensor:
    """`[C, H, W]` or `[N, C, H, W]` float -> `(h, w)` = `size`, antialiased bicubic in float32,
    clamped to `[0, 1]`; returned unchanged when already that size."""
    if tuple(pixels.shape[-2:]) == tuple(size):
        return pixels
    batch = pixels if pixels.dim() == 4 else pixels[None]
    out = F.interpolate(batch.float(), size=size, mode="bicubic", align_corners=False, antialias=True).clamp_(0.0, 1.0)
    return out if pixels.dim() == 4 else out[0]


def describe_plan(model_scale: int, scale: float) -> str:
    """The notice for a scale the model cannot reach by itself, e.g. `model is x2; -s 1.5 runs it once and
    resamples to x1.5 (antialiased bicubic)`."""
    passes = plan_passes(model_scale, scale)
    times = {1: "once", 2: "twice"}.get(passes, f"{passes} times")
    return f"model is x{model_scale}; -s {scale:g} runs it {times} and resamples to x{scale:g} (antialiased bicubic)"
