"""The three ESC networks (ESC, ESC-FP, ESC-Real) and `build_network(config)`.

Every network maps `[B, 3, H, W]` float RGB in `[0, 1]` to `[B, 3, sH, sW]` and
exposes `.config`, `.scale` and `.variant`.
"""

from __future__ import annotations

from typing import Iterator, Optional, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .config import ESCConfig
from .layers import (
    Block,
    ConvAttn,
    DecomposedConvAttn,
    LayerNorm2d,
    StatsHook,
    add_,
    dihedral_ensemble,
    pad_reflect,
    plain_ops,
    weights_key,
)


class _ESCBase(nn.Module):
    """What every ESC network shares: config access, cached ensemble, stats hooks."""

    config: ESCConfig

    def __init__(self, config: ESCConfig) -> None:
        super().__init__()
        self.config = config
        self._kernel_cache: Optional[tuple] = None

    @property
    def scale(self) -> int:
        return self.config.scale

    @property
    def variant(self) -> str:
        return self.config.variant

    @property
    def window_size(self) -> int:
        return self.config.window_size

    def conv_attn_layers(self) -> Iterator[Union[ConvAttn, DecomposedConvAttn]]:
        """Every layer whose dynamic kernel depends on global channel means, in forward order."""
        for module in self.modules():
            if isinstance(module, (ConvAttn, DecomposedConvAttn)):
                yield module

    def set_stats_hook(self, hook: Optional[StatsHook]) -> None:
        """Install (or with `None` remove) a hook supplying the dynamic kernels' channel means."""
        for layer in self.conv_attn_layers():
            layer.stats_hook = hook

    def _ensembled(self, raw: Tensor) -> Tensor:
        """The dihedral ensemble of `raw`, computed once per weight update outside autograd."""
        if plain_ops():
            return dihedral_ensemble(raw)
        key = weights_key(raw, raw.dtype)
        if self._kernel_cache is None or self._kernel_cache[0] != key:
            with torch.no_grad():
                self._kernel_cache = (key, dihedral_ensemble(raw).contiguous())
        return self._kernel_cache[1]

    def _features_in(self, x: Tensor) -> Tensor:
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"expected a [B, 3, H, W] tensor, got shape {tuple(x.shape)}")
        return x.contiguous(memory_format=torch.channels_last)


class ESC(_ESCBase):
    """ESC, ESC-light and ESC-XL (the latter with `use_ln`)."""

    def __init__(self, config: ESCConfig) -> None:
        super().__init__(config)
        c = config
        self.plk_filter = nn.Parameter(torch.randn(c.pdim, c.pdim, c.kernel_size, c.kernel_size) * 0.02)
        self.proj = nn.Conv2d(3, c.dim, 3, padding=1)
        self.blocks = nn.ModuleList(
            [
                Block(c.dim, c.pdim, c.conv_blocks, c.window_size, c.num_heads, c.exp_ratio, c.use_ln)
                for _ in range(c.n_blocks)
            ]
        )
        self.last = nn.Conv2d(c.dim, c.dim, 3, padding=1)
        self.to_img = nn.Conv2d(c.dim, 3 * c.scale**2, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        """`[B, 3, H, W]` in `[0, 1]` -> `[B, 3, sH, sW]`."""
        x = self._features_in(x)
        kernel = self._ensembled(self.plk_filter)
        f = self.proj(x)
        skip = f
        for block in self.blocks:
            f = block(f, kernel)
        f = add_(self.last(f), skip)
        s = self.scale
        y = add_(self.to_img(f), torch.repeat_interleave(x, s * s, dim=1))
        return F.pixel_shuffle(y, s)


class ESCFP(_ESCBase):
    """ESC-FP: decomposed large kernel, LayerNorms throughout, bicubic image residual."""

    def __init__(self, config: ESCConfig) -> None:
        super().__init__(config)
        c = config
        k = c.kernel_size
        self.lk_channel = nn.Parameter(torch.randn(c.pdim, c.pdim, 1, 1) * 0.02)
        self.lk_spatial = nn.Parameter(torch.randn(c.pdim, 1, k, k) * 0.02)
        self.proj = nn.Conv2d(3, c.dim, 3, padding=1)
        self.blocks = nn.ModuleList(
            [
                Block(
                    c.dim, c.pdim, c.conv_blocks, c.window_size, c.num_heads, c.exp_ratio,
                    use_ln=True, proj_ratio=1.5, decomposed=True,
                )
                for _ in range(c.n_blocks)
            ]
        )
        self.ln_last = LayerNorm2d(c.dim)
        self.last = nn.Conv2d(c.dim, c.dim, 3, padding=1)
        self.to_img = nn.Conv2d(c.dim, 3 * c.scale**2, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        """`[B, 3, H, W]` in `[0, 1]` -> `[B, 3, sH, sW]`."""
        x = self._features_in(x)
        f = self.proj(x)
        skip = f
        for block in self.blocks:
            f = block(f, self.lk_channel, self.lk_spatial)
        f = self.last(self.ln_last(f)) + skip
        s = self.scale
        base = F.interpolate(x, scale_factor=s, mode="bicubic", align_corners=False)
        return F.pixel_shuffle(self.to_img(f), s) + base


class ReflectDepthwise7(nn.Conv2d):
    """Depthwise 7x7 with reflect padding 3 that also accepts inputs smaller than 4 pixels."""

    def __init__(self, channels: int) -> None:
        super().__init__(channels, channels, 7, padding=0, groups=channels)

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(pad_reflect(x, 3, 3, 3, 3))


class DySample(nn.Module):
    """Learned point-sampling upsampler (`to_img.offset/scope/end_conv`, buffer `init_pos`)."""

    def __init__(self, dim: int, scale: int = 4, groups: int = 4) -> None:
        super().__init__()
        self.scale, self.groups = scale, groups
        n = 2 * groups * scale * scale
        self.offset = nn.Conv2d(dim, n, 1)
        self.scope = nn.Conv2d(dim, n, 1, bias=False)
        self.end_conv = nn.Conv2d(dim, 3, 1)
        self.register_buffer("init_pos", torch.zeros(1, n, 1, 1))

    def forward(self, f: Tensor) -> Tensor:
        """`[B, dim, H, W]` features -> `[B, 3, sH, sW]`."""
        b, c, h, w = f.shape
        s, g = self.scale, self.groups
        # Sampling positions and the bilinear sampling run in float32 whatever the network's dtype: half
        # precision cannot hold pixel coordinates of large images, and CPU grid_sample in fp16/bf16 gives NaN.
        compute = f.dtype
        offsets = self.offset(f) * torch.sigmoid(self.scope(f)) * 0.5
        offsets = (offsets.float() + self.init_pos.float()).view(b, 2, g * s * s, h, w)
        f = f.float()
        ys = torch.arange(h, device=f.device, dtype=f.dtype) + 0.5
        xs = torch.arange(w, device=f.device, dtype=f.dtype) + 0.5
        grid = torch.stack([xs.view(1, w).expand(h, w), ys.view(h, 1).expand(h, w)]).view(1, 2, 1, h, w)
        norm = torch.tensor([w, h], device=f.device, dtype=f.dtype).view(1, 2, 1, 1, 1)
        points = 2 * (grid + offsets) / norm - 1
        points = F.pixel_shuffle(points.reshape(b, 2 * g * s * s, h, w), s)
        points = points.view(b, 2, g, s * h, s * w).permute(0, 2, 3, 4, 1).reshape(b * g, s * h, s * w, 2)
        sampled = F.grid_sample(
            f.reshape(b * g, c // g, h, w), points, mode="bilinear", padding_mode="border", align_corners=False
        )
        return self.end_conv(sampled.view(b, c, s * h, s * w).to(compute))


def _nearest_conv_upsampler(dim: int) -> nn.Sequential:
    """Keys `1, 4, 6, 8`: nearest x2, conv, lrelu, nearest x2, conv, lrelu, conv, lrelu, conv->3."""
    return nn.Sequential(
        nn.Upsample(scale_factor=2, mode="nearest"),
        nn.Conv2d(dim, dim, 3, padding=1),
        nn.LeakyReLU(0.2),
        nn.Upsample(scale_factor=2, mode="nearest"),
        nn.Conv2d(dim, dim, 3, padding=1),
        nn.LeakyReLU(0.2),
        nn.Conv2d(dim, dim, 3, padding=1),
        nn.LeakyReLU(0.2),
        nn.Conv2d(dim, 3, 3, padding=1),
    )


class ESCReal(_ESCBase):
    """ESC-Real (x4): ESC blocks with LayerNorms, an input `skip` branch, a learned upsampler."""

    def __init__(self, config: ESCConfig) -> None:
        super().__init__(config)
        c = config
        if c.scale != 4:
            raise ValueError("ESC-Real exists only at x4")
        self.plk_filter = nn.Parameter(torch.randn(c.pdim, c.pdim, c.kernel_size, c.kernel_size) * 0.02)
        self.proj = nn.Conv2d(3, c.dim, 3, padding=1)
        self.blocks = nn.ModuleList(
            [
                Block(c.dim, c.pdim, c.conv_blocks, c.window_size, c.num_heads, c.exp_ratio, use_ln=True)
                for _ in range(c.n_blocks)
            ]
        )
        self.last = nn.Conv2d(c.dim, c.dim, 3, padding=1)
        self.skip = nn.Sequential(
            nn.Conv2d(3, c.dim * 2, 1),
            ReflectDepthwise7(c.dim * 2),
            nn.LeakyReLU(0.2),
            nn.Conv2d(c.dim * 2, c.dim, 1),
        )
        self.to_img = DySample(c.dim, 4) if c.upsampler == "dysample" else _nearest_conv_upsampler(c.dim)

    def forward(self, x: Tensor) -> Tensor:
        """`[B, 3, H, W]` in `[0, 1]` -> `[B, 3, 4H, 4W]`."""
        x = self._features_in(x)
        kernel = self._ensembled(self.plk_filter)
        f = self.proj(x)
        s0 = f
        for block in self.blocks:
            f = block(f, kernel)
        f = self.last(f) + s0 + self.skip(x)
        return self.to_img(f)


ESCNetwork = Union[ESC, ESCFP, ESCReal]

_CLASSES = {"esc": ESC, "esc-fp": ESCFP, "esc-real": ESCReal}


def build_network(config: ESCConfig) -> ESCNetwork:
    """A freshly initialised network for `config` (random weights, train mode)."""
    return _CLASSES[config.variant](config)
