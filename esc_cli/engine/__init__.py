"""Tiled inference: bounded memory, seamless tiles, batched, any device and precision."""

from esc_cli.engine.progress import ProgressCallback, TileProgress
from esc_cli.engine.upscaler import Upscaler

__all__ = ["ProgressCallback", "TileProgress", "Upscaler"]
