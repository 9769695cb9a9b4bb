"""Turning a model reference (catalog name, file, hf:// URL, or nothing) into a loaded network.

Interim: local files only. The weights work extends `open_model` to catalog names,
`hf://` references and the default choice per scale with the bundled fallback.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional, Union

import torch

from esc_cli.api.loading import load_model
from esc_cli.errors import ModelNotFoundError
from esc_cli.model import ESCNetwork


def open_model(
    ref: Optional[str],
    *,
    scale: float = 4,
    device: Union[str, torch.device] = "cpu",
    dtype: torch.dtype = torch.float32,
    warn: Optional[Callable[[str], None]] = None,
) -> ESCNetwork:
    """Load the network `ref` names; with `ref=None` the best model for `scale`."""
    if ref is None:
        raise ModelNotFoundError("no default model yet; pass --model FILE")
    path = Path(ref)
    if path.exists():
        return load_model(path, device=device, dtype=dtype)
    raise ModelNotFoundError(f"{ref}: no such model file or catalog name; see `esc models list`")
