"""esc: image and video super-resolution with ESC (Lee, Yun and Ro, ICCV 2025)."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__", "load_model"]


def __getattr__(name: str):
    # Lazy so that `esc --version` and `import esc_cli.errors` do not pay for torch.
    if name == "load_model":
        from esc_cli.api import load_model

        return load_model
    raise AttributeError(f"module 'esc_cli' has no attribute {name!r}")
