"""Tiled inference: bounded memory, seamless tiles, batched, any device and precision (docs/engine.md)."""

from esc_cli.engine.bands import BlockSink
from esc_cli.engine.progress import ProgressCallback, TileProgress
from esc_cli.engine.upscaler import EngineWarning, Upscaler

__all__ = ["BlockSink", "EngineWarning", "ProgressCallback", "TileProgress", "Upscaler"]
