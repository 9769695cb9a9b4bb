"""Loading ESC networks from files or state dicts."""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Union

import torch
from torch import Tensor

from esc_cli.errors import CheckpointError
from esc_cli.model import ESCNetwork, network_from_state_dict
from esc_cli.weights.files import read_state_dict, unwrap_state_dict

ModelSource = Union[str, Path, Mapping[str, Tensor]]


def load_model(
    source: ModelSource,
    *,
    device: Union[str, torch.device] = "cpu",
    dtype: torch.dtype = torch.float32,
) -> ESCNetwork:
    """Load an ESC-family network from a checkpoint path or a mapping of tensors.

    `source` is a `.pth`/`.pt` (BasicSR dict with `params_ema`/`params`, or a bare state
    dict; read with `weights_only=True`), a `.safetensors` file, or a mapping of tensors.
    The variant and all hyper-parameters are detected from tensor shapes and the
    weights load strictly. Returns an eval-mode module with `.scale`, `.variant` and
    `.config`; calling it maps `[B, 3, H, W]` RGB in `[0, 1]` to `[B, 3, sH, sW]`.
    """
    if isinstance(source, (str, Path)):
        state = read_state_dict(source)
        origin = str(source)
    elif isinstance(source, Mapping):
        state = unwrap_state_dict(source, "state dict")
        origin = "state dict"
    else:
        raise CheckpointError(f"cannot load a model from a {type(source).__name__}; give a path or a state dict")
    refuse_non_finite(state, origin)
    try:
        network = network_from_state_dict(state)
    except CheckpointError as exc:
        if origin == "state dict":
            raise
        raise CheckpointError(f"{origin}: {exc}") from None
    network.eval().requires_grad_(False)
    return network.to(device=device, dtype=dtype)


def refuse_non_finite(state: Mapping[str, Tensor], origin: str) -> None:
    """Raise `CheckpointError` when a floating-point weight holds NaN or Inf (it would give a black
    or garbage image, not an error). Checks every tensor once, in place (no copies of the weights)."""
    for name, tensor in state.items():
        if isinstance(tensor, Tensor) and tensor.is_floating_point() and tensor.numel():
            if not bool(torch.isfinite(tensor).all()):
                bad = int((~torch.isfinite(tensor)).sum())
                raise CheckpointError(
                    f"{origin}: weight {name} holds {bad} NaN or Inf value(s); the checkpoint is damaged"
                    " (a diverged training run or a broken export): use another checkpoint or export it again")
