"""The public Python API: what the CLI calls and what other programs may call.

`esc_cli.api.loading` loads networks; the front ends live beside it (`images`, `video`,
`models`, `samples`). The image pipeline is split by concern: `options`, `inputs`, `outputs`,
`resources`, `pixels`, `processor`, `jobs` (`process_job`, the per-item contract every runner
calls) and `images` (the batch loop); `events` is the one event schema. Only this layer
composes weights, model, engine and io.

Importing this package imports no torch: the names below load on first use, so the CLI's
`--help`, `--version` and `models list` start fast.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from esc_cli.api.loading import ModelSource, load_model
    from esc_cli.engine.memory import retain_freed_memory

_LAZY = {
    "ModelSource": "esc_cli.api.loading",
    "load_model": "esc_cli.api.loading",
    "retain_freed_memory": "esc_cli.engine.memory",
}

__all__ = ["ModelSource", "load_model", "retain_freed_memory"]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'esc_cli.api' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
