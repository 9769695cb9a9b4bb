"""esc: image and video super-resolution with ESC (Lee, Yun and Ro, ICCV 2025).

The public Python API (README.md, "Python API"):

- `upscale_images(inputs, UpscaleOptions(...))`: files, folders and globs, as `esc upscale`;
- `upscale_video(source, output, ...)`: one video, as `esc video`;
- `load_model(path_or_state_dict)` and `Upscaler(network)`: tensors in, tensors out;
- the events both pipelines report (`BatchStarted` ... `BatchFinished`), `ESCConfig`, and
  the errors (`EscError` and its subclasses).

`import esc_cli` stays cheap: the names that need torch are imported on first use
(type checkers and IDEs see them through the `TYPE_CHECKING` imports below).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from esc_cli.errors import (
    CheckpointError,
    DownloadError,
    EngineError,
    EscError,
    InputError,
    IntegrityError,
    ModelNotFoundError,
    OutputError,
    SourceNotFoundError,
    Terminated,
    UnknownModelError,
    UnsafeCheckpointError,
    UsageError,
    VideoError,
)

__version__ = "0.1.0"

if TYPE_CHECKING:
    from esc_cli.api.events import BatchFinished, BatchStarted, Event, ItemFinished, ItemProgress, ItemStarted
    from esc_cli.api.images import BatchSummary, upscale_images
    from esc_cli.api.loading import load_model
    from esc_cli.api.options import UpscaleOptions
    from esc_cli.api.video import upscale_video
    from esc_cli.engine.upscaler import Upscaler
    from esc_cli.model.config import ESCConfig

# name -> module that defines it; imported on first attribute access
_LAZY = {
    "BatchFinished": "esc_cli.api.events",
    "BatchStarted": "esc_cli.api.events",
    "Event": "esc_cli.api.events",
    "ItemFinished": "esc_cli.api.events",
    "ItemProgress": "esc_cli.api.events",
    "ItemStarted": "esc_cli.api.events",
    "BatchSummary": "esc_cli.api.images",
    "upscale_images": "esc_cli.api.images",
    "load_model": "esc_cli.api.loading",
    "UpscaleOptions": "esc_cli.api.options",
    "upscale_video": "esc_cli.api.video",
    "Upscaler": "esc_cli.engine.upscaler",
    "ESCConfig": "esc_cli.model.config",
}

__all__ = [
    "BatchFinished",
    "BatchStarted",
    "BatchSummary",
    "CheckpointError",
    "DownloadError",
    "ESCConfig",
    "EngineError",
    "EscError",
    "Event",
    "InputError",
    "IntegrityError",
    "ItemFinished",
    "ItemProgress",
    "ItemStarted",
    "ModelNotFoundError",
    "OutputError",
    "SourceNotFoundError",
    "Terminated",
    "UnknownModelError",
    "UnsafeCheckpointError",
    "UpscaleOptions",
    "Upscaler",
    "UsageError",
    "VideoError",
    "__version__",
    "load_model",
    "upscale_images",
    "upscale_video",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'esc_cli' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
