"""The frozen description of one ESC network, and the named variants as one-line builders."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Literal

Variant = Literal["esc", "esc-fp", "esc-real"]
Upsampler = Literal["pixelshuffle", "nearest-conv", "dysample"]


@dataclass(frozen=True, kw_only=True)
class ESCConfig:
    """Every hyper-parameter of an ESC-family network.

    All of them can be read back from a state dict's tensor shapes
    (`esc_cli.model.detect.config_from_state_dict`). Built with keyword arguments only
    (`ESCConfig(variant="esc", scale=4, dim=64, ...)`), so no call depends on field order.
    """

    variant: Variant = "esc"
    scale: int = 4
    dim: int = 64
    pdim: int = 16
    kernel_size: int = 13
    n_blocks: int = 3
    conv_blocks: int = 5
    window_size: int = 32
    num_heads: int = 4
    exp_ratio: float = 1.25
    use_ln: bool = False
    upsampler: Upsampler = "pixelshuffle"

    def to_dict(self) -> dict:
        """A JSON-ready dict of the fields."""
        return asdict(self)

    def with_scale(self, scale: int) -> "ESCConfig":
        """The same network at another upscaling factor."""
        return replace(self, scale=scale)


def esc_light(scale: int = 4) -> ESCConfig:
    return ESCConfig(variant="esc", scale=scale, dim=64, pdim=16, kernel_size=13, n_blocks=3, conv_blocks=5,
                     window_size=32, num_heads=4, exp_ratio=1.25, use_ln=False, upsampler="pixelshuffle")


def esc(scale: int = 4) -> ESCConfig:
    return ESCConfig(variant="esc", scale=scale, dim=64, pdim=16, kernel_size=13, n_blocks=5, conv_blocks=5,
                     window_size=32, num_heads=4, exp_ratio=1.25, use_ln=False, upsampler="pixelshuffle")


def esc_xl(scale: int = 4) -> ESCConfig:
    return ESCConfig(variant="esc", scale=scale, dim=192, pdim=48, kernel_size=13, n_blocks=8, conv_blocks=5,
                     window_size=48, num_heads=12, exp_ratio=1.25, use_ln=True, upsampler="pixelshuffle")


def esc_fp(scale: int = 4) -> ESCConfig:
    return ESCConfig(variant="esc-fp", scale=scale, dim=48, pdim=16, kernel_size=13, n_blocks=5, conv_blocks=5,
                     window_size=32, num_heads=3, exp_ratio=1.25, use_ln=True, upsampler="pixelshuffle")


def esc_real(scale: int = 4) -> ESCConfig:
    return ESCConfig(variant="esc-real", scale=scale, dim=64, pdim=16, kernel_size=13, n_blocks=10, conv_blocks=5,
                     window_size=32, num_heads=4, exp_ratio=2.0, use_ln=True, upsampler="nearest-conv")


def esc_real_dysample(scale: int = 4) -> ESCConfig:
    return ESCConfig(variant="esc-real", scale=scale, dim=64, pdim=16, kernel_size=13, n_blocks=10, conv_blocks=5,
                     window_size=32, num_heads=4, exp_ratio=2.0, use_ln=True, upsampler="dysample")


NAMED_VARIANTS = {
    "esc-light": esc_light,
    "esc": esc,
    "esc-xl": esc_xl,
    "esc-fp": esc_fp,
    "esc-real": esc_real,
    "esc-real-dysample": esc_real_dysample,
}
