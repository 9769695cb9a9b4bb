"""Runner choice for the commands' `--devices` and `--ray` options (no typer here)."""

from __future__ import annotations

import re
from typing import Optional, Sequence

from esc_cli.errors import UsageError
from esc_cli.scale.devices import parse_devices


_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]+:/")


def _check(devices: Optional[str], ray: Optional[str], paths: Sequence[Optional[str]] = ()) -> None:
    if devices and ray:
        raise UsageError("--devices and --ray exclude each other (on Ray, every GPU or CPU slot gets a worker)")
    urls = [p for p in paths if p and _URL.match(p)]  # "s3:/b/x" too: a Path argument folds "//"
    if urls:
        url = re.sub(r"^([A-Za-z][A-Za-z0-9+.-]+):/(?!/)", r"\1://", urls[0])
        raise UsageError(f"{url}: video URLs are not read directly; mount the bucket "
                         "(s3fs, gcsfuse, mountpoint-s3) on every node and pass its path (docs/scale.md)")


def needs_urls(paths: Sequence[Optional[str]]) -> bool:
    """True when an input or the output of `esc upscale` is an fsspec URL."""
    return any(p and "://" in p for p in paths)


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


def segment_runner(devices: Optional[str], ray: Optional[str], *, paths: Sequence[Optional[str]] = ()):
    """The runner for `esc video`: `LocalSegmentRunner` for --devices, `RaySegmentRunner` for --ray."""
    _check(devices, ray, paths)
    if ray:
        from esc_cli.scale.ray_backend import RaySegmentRunner

        return RaySegmentRunner(ray)
    from esc_cli.scale.local import LocalSegmentRunner

    return LocalSegmentRunner(parse_devices(devices) or ["cpu"])
