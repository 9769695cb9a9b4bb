"""Read an `ESCConfig` back from a state dict's keys and tensor shapes, and load strictly."""

from __future__ import annotations

import math
import re
from typing import Mapping

import torch
from torch import Tensor

from esc_cli.errors import CheckpointError

from .config import ESCConfig
from .networks import ESCNetwork, build_network

_BLOCK_KEY = re.compile(r"^blocks\.(\d+)\.")
_PCONV_AGGR = re.compile(r"^blocks\.0\.pconvs\.(\d+)\.aggr\.weight$")


def _shape(state: Mapping[str, Tensor], key: str) -> tuple[int, ...]:
    try:
        return tuple(state[key].shape)
    except KeyError:
        raise CheckpointError(f"not an ESC checkpoint: required key {key!r} is missing") from None


def config_from_state_dict(state: Mapping[str, Tensor]) -> ESCConfig:
    """Detect the variant and every hyper-parameter from tensor shapes alone.

    Raises `CheckpointError` when the keys do not describe an ESC-family network.
    """
    if "lk_channel" in state:
        variant = "esc-fp"
    elif "skip.0.weight" in state:
        variant = "esc-real"
    else:
        variant = "esc"
    dim = _shape(state, "proj.weight")[0]
    if variant == "esc-fp":
        pdim = _shape(state, "lk_channel")[0]
        kernel_size = _shape(state, "lk_spatial")[-1]
    else:
        plk = _shape(state, "plk_filter")
        pdim, kernel_size = plk[0], plk[-1]
    blocks = {int(m.group(1)) for key in state if (m := _BLOCK_KEY.match(key))}
    if not blocks:
        raise CheckpointError("not an ESC checkpoint: no 'blocks.N.' keys")
    if blocks != set(range(len(blocks))):
        raise CheckpointError(f"blocks are not numbered 0..N-1: found {sorted(blocks)}")
    conv_blocks = sum(1 for key in state if _PCONV_AGGR.match(key))
    heads, table = _shape(state, "blocks.0.attn.relative_position_bias")
    side = math.isqrt(table)
    if side * side != table or side % 2 == 0:
        raise CheckpointError(f"relative_position_bias has {table} entries, not (2w-1)^2 for any window w")
    window = (side + 1) // 2
    hidden = _shape(state, "blocks.0.convffns.0.proj.weight")[0]
    exp_ratio = hidden / dim
    if variant == "esc-real":
        use_ln, scale = True, 4
        upsampler = "dysample" if "to_img.offset.weight" in state else "nearest-conv"
    else:
        use_ln = variant == "esc-fp" or "blocks.0.lns.0.weight" in state
        out_ch = _shape(state, "to_img.weight")[0]
        scale = math.isqrt(out_ch // 3)
        if scale < 1 or 3 * scale * scale != out_ch:
            raise CheckpointError(f"to_img.weight has {out_ch} output channels, not 3*s*s")
        upsampler = "pixelshuffle"
    return ESCConfig(
        variant=variant,
        scale=scale,
        dim=dim,
        pdim=pdim,
        kernel_size=kernel_size,
        n_blocks=len(blocks),
        conv_blocks=conv_blocks,
        window_size=window,
        num_heads=heads,
        exp_ratio=exp_ratio,
        use_ln=use_ln,
        upsampler=upsampler,
    )


def _describe(keys: list[str], limit: int = 6) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f" (+{len(keys) - limit} more)" if len(keys) > limit else "")


def network_from_state_dict(state: Mapping[str, Tensor]) -> ESCNetwork:
    """Build the detected network and load `state` strictly.

    Missing, unexpected and mis-shaped keys raise `CheckpointError` naming them.
    Returns the network in train mode, on the CPU, in float32.
    """
    for key, value in state.items():
        if not isinstance(value, Tensor):
            raise CheckpointError(f"entry {key!r} is a {type(value).__name__}, not a tensor")
    config = config_from_state_dict(state)
    try:
        network = build_network(config)
    except (ValueError, RuntimeError) as exc:
        raise CheckpointError(f"cannot build the detected network {config}: {exc}") from None
    expected = network.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    misshaped = sorted(
        f"{k} {tuple(state[k].shape)} (expected {tuple(expected[k].shape)})"
        for k in set(expected) & set(state)
        if tuple(state[k].shape) != tuple(expected[k].shape)
    )
    problems = []
    if missing:
        problems.append(f"missing keys: {_describe(missing)}")
    if unexpected:
        problems.append(f"unexpected keys: {_describe(unexpected)}")
    if misshaped:
        problems.append(f"mis-shaped keys: {_describe(misshaped)}")
    if problems:
        raise CheckpointError(f"checkpoint does not match a {config.variant} network: " + "; ".join(problems))
    with torch.no_grad():
        network.load_state_dict({k: v.to(torch.float32) if v.is_floating_point() else v for k, v in state.items()})
    return network
