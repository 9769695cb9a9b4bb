"""The ESC network family. Pure torch: imports nothing of the package but its errors."""

from .config import NAMED_VARIANTS, ESCConfig, esc, esc_fp, esc_light, esc_real, esc_real_dysample, esc_xl
from .detect import config_from_state_dict, network_from_state_dict
from .networks import ESC, ESCFP, ESCNetwork, ESCReal, build_network

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
