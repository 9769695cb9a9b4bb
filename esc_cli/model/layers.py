"""Building blocks of the ESC family, written against ARCHITECTURE.md.

Tensor contract everywhere: `[B, C, H, W]` float feature maps (kept in channels-last
memory so that per-pixel work is contiguous), parameter names identical to the
official checkpoints. Work that depends on the weights only (the kernel ensemble,
the dense attention bias, gather indices) is cached and recomputed only when the
weights change or gradients are needed.
"""

from __future__ import annotations

from typing import Callable, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

# A hook that returns the per-image channel means a ConvAttn layer should use for its
# dynamic kernel: `hook(layer, x1) -> [B, pdim]`. The tiling engine installs one so
# that tiles see whole-image statistics; `None` means "mean of this input".
StatsHook = Callable[[nn.Module, Tensor], Tensor]


def reflect_indices(size: int, padded: int, device: torch.device) -> Tensor:
    """Indices `[padded]` into an axis of length `size`, reflect-padded at the end.

    Matches `F.pad(mode="reflect")` whenever that is defined (pad < size) and keeps
    reflecting back and forth beyond it, so any size >= 1 can be padded.
    """
    idx = torch.arange(padded, device=device)
    # A tensor, so that traced sizes export as graph values; a size of 1 gives period 1: every index 0.
    period = torch.full_like(idx[:1], 2 * (size - 1)).clamp(min=1)
    idx = idx % period
    return torch.where(idx < size, idx, period - idx)


def pad_reflect(x: Tensor, top: int, bottom: int, left: int, right: int) -> Tensor:
    """Reflect padding of a `[B, C, H, W]` tensor that works for any pad size."""
    h, w = x.shape[-2:]
    if max(top, bottom) < h and max(left, right) < w:
        return F.pad(x, (left, right, top, bottom), mode="reflect")
    rows = _two_sided_reflect(h, top, bottom, x.device)
    cols = _two_sided_reflect(w, left, right, x.device)
    return x.index_select(-2, rows).index_select(-1, cols)


def _two_sided_reflect(size: int, before: int, after: int, device: torch.device) -> Tensor:
    idx = torch.arange(-before, size + after, device=device)
    period = torch.full_like(idx[:1], 2 * (size - 1)).clamp(min=1)
    idx = idx.abs() % period
    return torch.where(idx < size, idx, period - idx)


def plain_ops() -> bool:
    """True where the network must be written as plain tensor ops: under autograd, and while torch.export,
    torch.compile or a JIT trace follows the forward (ONNX export goes through torch.export). Then no cache
    is read or filled (caches key on data pointers and concrete sizes) and nothing is written in place."""
    return torch.is_grad_enabled() or torch.compiler.is_compiling() or torch.jit.is_tracing()


def gelu_(x: Tensor) -> Tensor:
    """Exact (erf) GELU, written into `x` outside autograd and tracing (x must be an intermediate the caller owns)."""
    return F.gelu(x) if plain_ops() else torch._C._nn.gelu_(x)


def add_(x: Tensor, y: Tensor) -> Tensor:
    """`x + y`, written into `x` outside autograd and tracing (x must be a fresh intermediate the caller owns)."""
    return x + y if plain_ops() else x.add_(y)


def weights_key(weight: Tensor, dtype: torch.dtype) -> tuple:
    """Identifies a weight's current values for caches: in-place updates bump `_version`.

    Inference tensors track no version; they cannot be updated outside inference mode.
    """
    version = -1 if weight.is_inference() else weight._version
    return (version, weight.data_ptr(), weight.device, dtype)


class LayerNorm2d(nn.Module):
    """LayerNorm over the channel axis of `[B, C, H, W]`, eps 1e-6."""

    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim))
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        # On a channels-last tensor both permutes are free views.
        y = F.layer_norm(x.permute(0, 2, 3, 1), (x.shape[1],), self.weight, self.bias, self.eps)
        return y.permute(0, 3, 1, 2)


class Conv1x1(nn.Conv2d):
    """A 1x1 convolution run as one GEMM over the pixels of a channels-last map.

    Same parameters and keys as `nn.Conv2d(i, o, 1)`; on a channels-last input the
    permutes are free views, which avoids the slow generic 1x1 convolution path.
    """

    def __init__(self, in_channels: int, out_channels: int, bias: bool = True) -> None:
        super().__init__(in_channels, out_channels, 1, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        if not x.is_contiguous(memory_format=torch.channels_last):
            return super().forward(x)
        y = F.linear(x.permute(0, 2, 3, 1), self.weight.flatten(1), self.bias)
        return y.permute(0, 3, 1, 2)


class ConvFFN(nn.Module):
    """conv1x1 -> GELU -> (GELU(dwconv3x3) + skip) -> conv1x1; keys `proj`, `dwc`, `aggr`."""

    def __init__(self, dim: int, exp_ratio: float) -> None:
        super().__init__()
        hidden = int(dim * exp_ratio + 1e-6)  # exp_ratio read back as hidden/dim may be 1 ulp low
        self.proj = Conv1x1(dim, hidden)
        self.dwc = nn.Conv2d(hidden, hidden, 3, padding=1, groups=hidden)
        self.aggr = Conv1x1(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        if plain_ops():
            t = F.gelu(self.proj(x))
            t = F.gelu(self.dwc(t)) + t
            return self.aggr(t)
        # Inference: the same arithmetic, written into the fresh outputs instead of
        # allocating (and first-touching) three more full-size maps per layer.
        t = gelu_(self.proj(x))
        u = gelu_(self.dwc(t))
        return self.aggr(u.add_(t))


class WindowAttention(nn.Module):
    """Non-shifted window self-attention with a relative-position bias.

    Keys `to_qkv`, `to_out`, `relative_position_bias [heads, (2w-1)^2]`. The input is
    reflect-padded to multiples of the window, cut into windows by one gather, run
    through fused `scaled_dot_product_attention`, and put back by a second gather.
    """

    # ESC-light's 4 x 1024 x 1024 fp32 bias is 16 MiB per block and worth keeping; ESC-XL's
    # 12 x 2304 x 2304 is 243 MiB per block, cheaper to gather again than to hold 8 of.
    BIAS_CACHE_BYTES = 64 * 2**20

    def __init__(self, dim: int, window_size: int, num_heads: int) -> None:
        super().__init__()
        self.dim = dim
        self.window_size = window_size
        self.num_heads = num_heads
        self.to_qkv = nn.Conv2d(dim, dim * 3, 1)
        self.to_out = nn.Conv2d(dim, dim, 1)
        self.relative_position_bias = nn.Parameter(torch.zeros(num_heads, (2 * window_size - 1) ** 2))
        self._bias_cache: Optional[tuple] = None
        self._index_cache: dict = {}

    def _bias_index(self, device: torch.device) -> Tensor:
        """`[T, T]` indices into the bias table: key minus query offsets."""
        w = self.window_size
        coords = torch.arange(w * w, device=device)
        row, col = coords // w, coords % w
        d_row = row[None, :] - row[:, None] + w - 1  # [query, key]
        d_col = col[None, :] - col[:, None] + w - 1
        return d_row * (2 * w - 1) + d_col

    def dense_bias(self, dtype: torch.dtype) -> Tensor:
        """The bias as `[heads, T, T]`, cached while the table is unchanged and no grad is needed."""
        table = self.relative_position_bias
        if plain_ops():
            return table[:, self._bias_index(table.device)].to(dtype)
        key = weights_key(table, dtype)
        if self._bias_cache is not None and self._bias_cache[0] == key:
            return self._bias_cache[1]
        index = self._index_cache.get(("bias", table.device))
        if index is None:
            index = self._index_cache[("bias", table.device)] = self._bias_index(table.device)
        bias = table[:, index].to(dtype)
        if bias.numel() * bias.element_size() <= self.BIAS_CACHE_BYTES:
            self._bias_cache = (key, bias.detach())
        return bias

    def _window_gathers(self, h: int, w: int, device: torch.device) -> tuple[Tensor, Tensor, int]:
        """Flat-pixel indices that pad+partition (`[nW*T]`) and un-partition+crop (`[H*W]`)."""
        key = (h, w, device)
        cached = not plain_ops()  # traced sizes are symbols: nothing to key a cache on
        hit = self._index_cache.get(key) if cached else None
        if hit is not None:
            return hit
        ws = self.window_size
        # ceil to whole windows without floor division of a negative number: an exported graph divides
        # integers rounding towards zero, so -(-h // ws) would come out one window short
        hp, wp = (h + ws - 1) // ws * ws, (w + ws - 1) // ws * ws
        rows = reflect_indices(h, hp, device)
        cols = reflect_indices(w, wp, device)
        nh, nw = hp // ws, wp // ws
        # Padded pixel (r, c) -> source pixel; arranged window-major, token row-major.
        src = (rows[:, None] * w + cols[None, :])  # [hp, wp]
        src = src.view(nh, ws, nw, ws).permute(0, 2, 1, 3).reshape(-1)
        # Unpadded pixel (r, c) -> its slot in the windowed layout.
        r = torch.arange(h, device=device)
        c = torch.arange(w, device=device)
        slot_r = (r // ws)[:, None] * (nw * ws * ws) + (r % ws)[:, None] * ws
        slot_c = (c // ws)[None, :] * (ws * ws) + (c % ws)[None, :]
        dst = (slot_r + slot_c).reshape(-1)
        hit = (src, dst, nh * nw)
        if not cached:
            return hit
        if len(self._index_cache) > 16:
            self._index_cache.clear()
        self._index_cache[key] = hit
        return hit

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        heads, t = self.num_heads, self.window_size**2
        head_dim = c // heads
        src, dst, n_windows = self._window_gathers(h, w, x.device)
        pixels = x.permute(0, 2, 3, 1).reshape(b, h * w, c)
        tokens = pixels.index_select(1, src).view(b * n_windows, t, c)
        qkv = F.linear(tokens, self.to_qkv.weight.view(3 * c, c), self.to_qkv.bias)
        # Head-major `[heads, windows, T, d]`: the fused kernel then walks all windows of one
        # head while that head's `[T, T]` bias is still in cache (same result, ~10% faster
        # attention with 32x32 windows).
        q, k, v = qkv.view(b * n_windows, t, 3, heads, head_dim).permute(2, 3, 0, 1, 4).unbind(0)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=self.dense_bias(q.dtype).unsqueeze(1))
        out = out.permute(1, 2, 0, 3).reshape(b * n_windows, t, c)
        out = F.linear(out, self.to_out.weight.view(c, c), self.to_out.bias)
        out = out.reshape(b, n_windows * t, c).index_select(1, dst)
        return out.view(b, h, w, c).permute(0, 3, 1, 2)


def dihedral_ensemble(kernel: Tensor) -> Tensor:
    """Mean of the eight flips/rotations of a `[O, I, k, k]` kernel over its spatial axes."""
    rotated = torch.rot90(kernel, -1, dims=(2, 3))
    views = []
    for base in (kernel, rotated):
        views += [base, base.flip(3), base.flip(2), base.flip(2, 3)]
    return torch.stack(views).mean(0)


class _DynamicKernel(nn.Sequential):
    """Per-image 3x3 depthwise kernels from global channel means (ESC: `dwc_proj`, FP: `proj`).

    Laid out like the official Sequential (pool, conv1x1, GELU, conv1x1) so the weights
    sit at indices 1 and 3; the pooling is done by the caller.
    """

    def __init__(self, pdim: int, hidden: int) -> None:
        super().__init__(nn.Identity(), nn.Conv2d(pdim, hidden, 1), nn.GELU(), nn.Conv2d(hidden, pdim * 9, 1))

    def forward(self, means: Tensor) -> Tensor:
        """`[B, pdim]` channel means -> `[B, pdim, 3, 3]` kernels."""
        first, second = self[1], self[3]
        hidden = F.gelu(F.linear(means, first.weight.flatten(1), first.bias))
        out = F.linear(hidden, second.weight.flatten(1), second.bias)
        return out.view(means.shape[0], -1, 3, 3)


def replace_leading_channels(x: Tensor, head: Tensor) -> Tensor:
    """`concat(head, x[:, C_head:])` in channels-last memory.

    Without autograd the result is written into `x` itself (ConvAttn's input is the
    ConvFFN output it alone holds), saving a full-size copy per layer.
    """
    if plain_ops():
        mixed = torch.cat([head, x[:, head.shape[1]:]], dim=1)
        return mixed.contiguous(memory_format=torch.channels_last)
    x[:, : head.shape[1]] = head
    return x


class ConvAttn(nn.Module):
    """ConvAttn: shared large kernel plus a per-image 3x3 dynamic kernel on the first pdim channels.

    Keys `plk.dwc_proj.{1,3}` and `aggr`. The dynamic depthwise kernel is folded into
    the diagonal of each image's copy of the large kernel, so the whole thing is one
    grouped convolution with one group per image.
    """

    def __init__(self, dim: int, pdim: int) -> None:
        super().__init__()
        self.pdim = pdim
        self.plk = nn.Module()
        self.plk.dwc_proj = _DynamicKernel(pdim, pdim // 2)
        self.aggr = Conv1x1(dim, dim)
        self.stats_hook: Optional[StatsHook] = None

    def channel_means(self, x1: Tensor) -> Tensor:
        """`[B, pdim]` means the dynamic kernel is computed from."""
        if self.stats_hook is not None:
            return self.stats_hook(self, x1)
        return x1.mean(dim=(2, 3))

    def forward(self, x: Tensor, large_kernel: Tensor) -> Tensor:
        b, _, h, w = x.shape
        p, k = self.pdim, large_kernel.shape[-1]
        x1 = x[:, :p]
        dynamic = self.plk.dwc_proj(self.channel_means(x1))  # [B, p, 3, 3]
        kernels = large_kernel.unsqueeze(0).repeat(b, 1, 1, 1, 1)  # [B, p, p, k, k]
        centre = k // 2
        diag = torch.arange(p, device=x.device)
        kernels[:, diag, diag, centre - 1 : centre + 2, centre - 1 : centre + 2] += dynamic
        grouped = x1.reshape(1, b * p, h, w) if b > 1 else x1
        y1 = F.conv2d(grouped, kernels.view(b * p, p, k, k), padding=k // 2, groups=b)
        return self.aggr(replace_leading_channels(x, y1.view(b, p, h, w)))


class DecomposedConvAttn(nn.Module):
    """ESC-FP's ConvAttn: 1x1 channel mix, then a per-image 13x13 depthwise kernel.

    Keys `plk.proj.{1,3}` and `aggr`; the large kernels `lk_channel` and `lk_spatial`
    are shared and passed in.
    """

    def __init__(self, dim: int, pdim: int) -> None:
        super().__init__()
        self.pdim = pdim
        self.plk = nn.Module()
        self.plk.proj = _DynamicKernel(pdim, pdim // 4)
        self.aggr = Conv1x1(dim, dim)
        self.stats_hook: Optional[StatsHook] = None

    channel_means = ConvAttn.channel_means

    def forward(self, x: Tensor, lk_channel: Tensor, lk_spatial: Tensor) -> Tensor:
        b, _, h, w = x.shape
        p, k = self.pdim, lk_spatial.shape[-1]
        x1 = x[:, :p]
        dynamic = self.plk.proj(self.channel_means(x1))  # [B, p, 3, 3]
        pad = (k - 3) // 2
        kernels = F.pad(dynamic, (pad, pad, pad, pad)) + lk_spatial.view(1, p, k, k)
        x1 = F.conv2d(x1, lk_channel)
        grouped = x1.reshape(1, b * p, h, w) if b > 1 else x1
        y1 = F.conv2d(grouped, kernels.reshape(b * p, 1, k, k), padding=k // 2, groups=b * p)
        return self.aggr(replace_leading_channels(x, y1.view(b, p, h, w)))


class Block(nn.Module):
    """One ESC block: ConvFFN, window attention, `conv_blocks` x (ConvFFN + ConvAttn), conv3x3."""

    def __init__(
        self,
        dim: int,
        pdim: int,
        conv_blocks: int,
        window_size: int,
        num_heads: int,
        exp_ratio: float,
        use_ln: bool,
        proj_ratio: float = 2.0,
        decomposed: bool = False,
    ) -> None:
        super().__init__()
        self.ln_proj = LayerNorm2d(dim)
        self.proj = ConvFFN(dim, proj_ratio)
        self.ln_attn = LayerNorm2d(dim)
        self.attn = WindowAttention(dim, window_size, num_heads)
        self.lns = nn.ModuleList([LayerNorm2d(dim) if use_ln else nn.Identity() for _ in range(conv_blocks)])
        attn_cls = DecomposedConvAttn if decomposed else ConvAttn
        self.pconvs = nn.ModuleList([attn_cls(dim, pdim) for _ in range(conv_blocks)])
        self.convffns = nn.ModuleList([ConvFFN(dim, exp_ratio) for _ in range(conv_blocks)])
        self.ln_out = LayerNorm2d(dim)
        self.conv_out = nn.Conv2d(dim, dim, 3, padding=1)

    def forward(self, x: Tensor, *kernels: Tensor) -> Tensor:
        skip = x
        x = self.proj(self.ln_proj(x))
        x = add_(x, self.attn(self.ln_attn(x)))
        for ln, ffn, pconv in zip(self.lns, self.convffns, self.pconvs):
            x = add_(x, pconv(ffn(ln(x)), *kernels))
        x = self.conv_out(self.ln_out(x))
        return add_(x, skip)
