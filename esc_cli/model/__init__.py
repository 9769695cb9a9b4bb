"""The ESC network family. Pure torch: imports nothing of the package but its errors."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .config import NAMED_VARIANTS, ESCConfig, esc, esc_fp, esc_light, esc_real, esc_real_dysample, esc_xl

if TYPE_CHECKING:
    from .detect import config_from_state_dict, network_from_state_dict
    from .networks import ESC, ESCFP, ESCNetwork, ESCReal, build_network

# The configs are plain data; the networks need torch and load on first use, so that reading the
# catalog (whose rows carry an `ESCConfig`) costs no torch import.
_LAZY = {
    "config_from_state_dict": ".detect",
    "network_from_state_dict": ".detect",
    "ESC": ".networks",
    "ESCFP": ".networks",
    "ESCNetwork": ".networks",
    "ESCReal": ".networks",
    "build_network": ".networks",
}

__all__ = [
    "ESC",
    "ESCFP",
    "ESCReal",
    "ESCConfig",
    "ESCNetwork",
    "NAMED_VARIANTS",
    "build_network",
    "config_from_state_dict",
    "esc",
    "esc_fp",
    "esc_light",
    "esc_real",
    "esc_real_dysample",
    "esc_xl",
    "network_from_state_dict",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value
