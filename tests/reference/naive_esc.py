"""A deliberately plain ESC (class ESC) forward pass, straight from ARCHITECTURE.md.

It is the correctness oracle for shapes the goldens do not cover and the speed
baseline of `benchmarks/bench_model.py`: it materialises attention matrices, recomputes
the kernel ensemble on every call, loops over images for the dynamic kernel, and uses
`F.pad(mode="reflect")`, so (like the official code) it fails on inputs smaller than
the padding it needs.
"""

from __future__ import annotations

import math
from typing import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor


def _conv(x: Tensor, sd: Mapping[str, Tensor], name: str, groups: int = 1) -> Tensor:
    w = sd[name + ".weight"]
    return F.conv2d(x, w, sd.get(name + ".bias"), padding=w.shape[-1] // 2, groups=groups)


def _ln(x: Tensor, sd: Mapping[str, Tensor], name: str) -> Tensor:
    mean = x.mean(1, keepdim=True)
    var = (x - mean).pow(2).mean(1, keepdim=True)
    x = (x - mean) / torch.sqrt(var + 1e-6)
    return x * sd[name + ".weight"][:, None, None] + sd[name + ".bias"][:, None, None]


def _ffn(x: Tensor, sd: Mapping[str, Tensor], name: str) -> Tensor:
    t = F.gelu(_conv(x, sd, name + ".proj"))
    t = F.gelu(_conv(t, sd, name + ".dwc", groups=t.shape[1])) + t
    return _conv(t, sd, name + ".aggr")


def _attention(x: Tensor, sd: Mapping[str, Tensor], name: str, window: int, heads: int) -> Tensor:
    b, c, h, w = x.shape
    ph, pw = (-h) % window, (-w) % window
    x = F.pad(x, (0, pw, 0, ph), mode="reflect")
    hp, wp = h + ph, w + pw
    qkv = _conv(x, sd, name + ".to_qkv")
    d = c // heads
    # [B, 3, heads, d, nh, w, nw, w] -> [3, B*nh*nw, heads, T, d]
    qkv = qkv.view(b, 3, heads, d, hp // window, window, wp // window, window)
    qkv = qkv.permute(1, 0, 4, 6, 2, 5, 7, 3).reshape(3, -1, heads, window * window, d)
    q, k, v = qkv[0], qkv[1], qkv[2]
    table = sd[name + ".relative_position_bias"]
    idx = torch.arange(window * window)
    r, cc = idx // window, idx % window
    rel = (r[None, :] - r[:, None] + window - 1) * (2 * window - 1) + (cc[None, :] - cc[:, None] + window - 1)
    bias = table[:, rel]  # [heads, T(query), T(key)]
    scores = q @ k.transpose(-2, -1) / math.sqrt(d) + bias
    out = scores.softmax(-1) @ v  # [nW*B, heads, T, d]
    out = out.view(b, hp // window, wp // window, heads, window, window, d)
    out = out.permute(0, 3, 6, 1, 4, 2, 5).reshape(b, c, hp, wp)[:, :, :h, :w]
    return _conv(out, sd, name + ".to_out")


def _ensemble(k: Tensor) -> Tensor:
    r = torch.rot90(k, -1, dims=(2, 3))
    kernels = [k, k.flip(3), k.flip(2), k.flip(2).flip(3), r, r.flip(3), r.flip(2), r.flip(2).flip(3)]
    return sum(kernels) / 8


def _conv_attn(x: Tensor, sd: Mapping[str, Tensor], name: str, kernel: Tensor, pdim: int) -> Tensor:
    x1, x2 = x[:, :pdim], x[:, pdim:]
    outs = []
    for i in range(x.shape[0]):  # one image at a time: its own dynamic kernel
        xi = x1[i : i + 1]
        g = xi.mean(dim=(2, 3), keepdim=True)
        g = F.gelu(_conv(g, sd, name + ".plk.dwc_proj.1"))
        dyn = _conv(g, sd, name + ".plk.dwc_proj.3").view(pdim, 1, 3, 3)
        outs.append(F.conv2d(xi, kernel, padding=kernel.shape[-1] // 2) + F.conv2d(xi, dyn, padding=1, groups=pdim))
    return _conv(torch.cat([torch.cat(outs), x2], 1), sd, name + ".aggr")


def naive_esc_forward(x: Tensor, sd: Mapping[str, Tensor], *, scale: int, window: int, heads: int) -> Tensor:
    """`[B, 3, H, W]` -> `[B, 3, sH, sW]` with an ESC (class ESC) state dict."""
    kernel = _ensemble(sd["plk_filter"])
    pdim = kernel.shape[0]
    n_blocks = len({k.split(".")[1] for k in sd if k.startswith("blocks.")})
    conv_blocks = len([k for k in sd if k.startswith("blocks.0.pconvs.") and k.endswith(".aggr.weight")])
    use_ln = "blocks.0.lns.0.weight" in sd
    f = _conv(x, sd, "proj")
    skip = f
    for b in range(n_blocks):
        p = f"blocks.{b}."
        block_in = f
        f = _ffn(_ln(f, sd, p + "ln_proj"), sd, p + "proj")
        f = f + _attention(_ln(f, sd, p + "ln_attn"), sd, p + "attn", window, heads)
        for i in range(conv_blocks):
            t = _ln(f, sd, p + f"lns.{i}") if use_ln else f
            f = f + _conv_attn(_ffn(t, sd, p + f"convffns.{i}"), sd, p + f"pconvs.{i}", kernel, pdim)
        f = _conv(_ln(f, sd, p + "ln_out"), sd, p + "conv_out") + block_in
    f = _conv(f, sd, "last") + skip
    y = _conv(f, sd, "to_img") + torch.repeat_interleave(x, scale * scale, dim=1)
    return F.pixel_shuffle(y, scale)
