"""Runner choice for the commands' `--devices` and `--ray` options (no typer here)."""

from __future__ import annotations

from typing import Optional

from esc_cli.errors import UsageError
from esc_cli.scale.devices import parse_devices


def _check(devices: Optional[str], ray: Optional[str]) -> None:
    if devices and ray:
        raise UsageError("--devices and --ray exclude each other (on Ray, every GPU or CPU slot gets a worker)")


def image_runner(devices: Optional[str], ray: Optional[str], *, stdio: bool = False):
    """The runner for `esc upscale`: `LocalImageRunner` for --devices, `RayImageRunner` for --ray."""
    _check(devices, ray)
    if stdio:
        raise UsageError("--devices/--ray work on files: stdin (-) and -o - need a one-device run")
    if ray:
        from esc_cli.scale.ray_backend import RayImageRunner

        return RayImageRunner(ray)
    from esc_cli.scale.local import LocalImageRunner

    return LocalImageRunner(parse_devices(devices) or ["cpu"])


def segment_runner(devices: Optional[str], ray: Optional[str]):
    """The runner for `esc video`: `LocalSegmentRunner` for --devices, `RaySegmentRunner` for --ray."""
    _check(devices, ray)
    if ray:
        from esc_cli.scale.ray_backend import RaySegmentRunner

        return RaySegmentRunner(ray)
    from esc_cli.scale.local import LocalSegmentRunner

    return LocalSegmentRunner(parse_devices(devices) or ["cpu"])
