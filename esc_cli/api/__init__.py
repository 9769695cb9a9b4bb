"""The public Python API: what the CLI calls and what other programs may call.

`esc_cli.api.loading` loads networks; the front ends live beside it (`images`, `video`,
`models`). The image pipeline is split by concern: `options`, `inputs`, `outputs`,
`resources`, `pixels`, `processor`, `jobs` (`process_job`, the per-item contract every runner
calls) and `images` (the batch loop); `events` is the one event schema. Only this layer
composes weights, model, engine and io.
"""

from esc_cli.api.loading import ModelSource, load_model
from esc_cli.engine.memory import retain_freed_memory

__all__ = ["ModelSource", "load_model", "retain_freed_memory"]
