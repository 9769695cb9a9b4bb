"""Scale-out: one worker per device on this machine (`--devices`), or a Ray cluster (`--ray`).

Both backends plug into the same pipelines as runners (`esc_cli.api.images.upscale_images(...,
runner=...)`, `esc_cli.api.video.upscale_video(..., segment_runner=...)`): planning, events,
progress and exit codes stay in the API; a runner only decides where each item or video segment
runs. Ray is imported lazily, only by `esc_cli.scale.ray_backend`. See docs/scale.md.
"""

from esc_cli.scale.devices import parse_devices
from esc_cli.scale.local import LocalImageRunner, LocalSegmentRunner

__all__ = ["LocalImageRunner", "LocalSegmentRunner", "parse_devices"]
