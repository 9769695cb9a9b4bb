"""Pixel operations of the image pipeline: output size, colour bleed under alpha, gray, scale passes.

Scale: the model runs `k` times, the smallest `k >= 1` with `model_scale**k >= scale`.
When `model_scale**k != scale`, the image is resampled with antialiased bicubic
interpolation in float32 (torch): before the last pass when there are several (so the
last pass lands on the requested size and no large intermediate canvas is built), after
it otherwise (e.g. x4 model for -s 3: x4, then 3/4 downscale).
"""

from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from esc_cli.engine.rescale import plan_passes, resample

LUMA = (0.299, 0.587, 0.114)  # ITU-R BT.601, as Pillow's "L" conversion


def target_size(height: int, width: int, scale: float) -> tuple[int, int]:
    """Output (height, width) for a scale factor, rounded, at least 1."""
    return max(1, round(height * scale)), max(1, round(width * scale))


def bleed_colors(color: Tensor, alpha: Tensor) -> Tensor:
    """Fill colour under fully transparent pixels from the nearest visible ones (push-pull).

    `color` `[C, H, W]`, `alpha` `[1, H, W]`, floats in [0, 1]. Visible pixels are kept
    exactly; hidden ones get a smooth extension of the visible colours, so a network or
    filter that mixes neighbours draws no dark or stray halo at the alpha edge.
    """
    mask = (alpha > 0).to(color.dtype)
    if bool(mask.all()) or not bool(mask.any()):
        return color
    levels: list[tuple[Tensor, Tensor]] = []
    c, w = (color * mask)[None], mask[None]
    while True:
        levels.append((c, w))
        if c.shape[-1] == 1 and c.shape[-2] == 1:
            break
        c = F.avg_pool2d(c, 2, ceil_mode=True)
        w = F.avg_pool2d(w, 2, ceil_mode=True)
    filled = levels[-1][0] / levels[-1][1].clamp_min(1e-12)
    for c, w in reversed(levels[:-1]):
        up = filled.repeat_interleave(2, -2).repeat_interleave(2, -1)[..., : c.shape[-2], : c.shape[-1]]
        filled = torch.where(w > 0, c / w.clamp_min(1e-12), up)
    return torch.where(mask[None] > 0, color[None], filled)[0]


def to_gray(rgb: Tensor) -> Tensor:
    """`[3, H, W]` -> `[1, H, W]` luma (BT.601 weights, like Pillow)."""
    r, g, b = LUMA
    return (rgb[0:1] * r + rgb[1:2] * g + rgb[2:3] * b).clamp_(0.0, 1.0)


def lands_exactly(height: int, width: int, model_scale: int, scale: float) -> bool:
    """True when the network's last pass produces exactly the target size (no resampling after it), so its
    output can go to the encoder row band by row band."""
    target = target_size(height, width, scale)
    if plan_passes(model_scale, scale) == 1:
        return target == (height * model_scale, width * model_scale)
    return all(t % model_scale == 0 for t in target)


def before_last_pass(
    image: Tensor, run: Callable[[Tensor, int], Tensor], model_scale: int, scale: float
) -> Tensor:
    """Run every pass but the last on `[3, H, W]` (resampling as this module's docstring says): the last
    pass's input."""
    height, width = image.shape[-2:]
    target = target_size(height, width, scale)
    passes = plan_passes(model_scale, scale)
    x = image
    for i in range(passes - 1):
        x = run(x, i)
    if passes > 1:
        x = resample(x, (math.ceil(target[0] / model_scale), math.ceil(target[1] / model_scale)))
    return x


def upscale_plane(
    image: Tensor, run: Callable[[Tensor, int], Tensor], model_scale: int, scale: float
) -> Tensor:
    """Upscale `[3, H, W]` by `scale` with a network of `model_scale` (see this module's docstring).

    `run(x, pass_index)` applies the network once (`[3, h, w]` -> `[3, m*h, m*w]`).
    """
    target = target_size(image.shape[-2], image.shape[-1], scale)
    x = before_last_pass(image, run, model_scale, scale)
    return resample(run(x, plan_passes(model_scale, scale) - 1), target)
