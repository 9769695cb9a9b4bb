"""`--devices` parsing: which worker runs on which device."""

from __future__ import annotations

import re
from typing import Optional

import torch

from esc_cli.errors import UsageError

_ONE = re.compile(r"^(cpu|mps|cuda(:\d+)?)$")
# pinned x264/x265 thread count when segments are spread over workers (their output depends on it)
ENCODER_THREADS = 4


def parse_devices(spec: Optional[str]) -> Optional[list[str]]:
    """"cuda:0,cuda:1" | "all" | "cpu,cpu" -> one device string per worker; None/"" -> None.

    "all" is every CUDA device (else one MPS or one CPU worker). "cuda" alone means cuda:0.
    A CUDA index that does not exist is a `UsageError` here, before any work starts.
    """
    if spec is None or not spec.strip():
        return None
    text = spec.strip().lower()
    if text == "all":
        if torch.cuda.is_available() and torch.cuda.device_count() > 0:
            return [f"cuda:{i}" for i in range(torch.cuda.device_count())]
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return ["mps"]
        return ["cpu"]
    devices: list[str] = []
    for part in text.split(","):
        part = part.strip()
        if not _ONE.match(part):
            raise UsageError(f"--devices {spec!r}: {part!r} is not a device; use e.g. cuda:0,cuda:1, all or cpu,cpu")
        if part == "cuda":
            part = "cuda:0"
        if part.startswith("cuda"):
            if not torch.cuda.is_available():
                raise UsageError(f"--devices {spec!r}: CUDA is not available here; use cpu,cpu")
            if int(part.split(":")[1]) >= torch.cuda.device_count():
                raise UsageError(f"--devices {spec!r}: {part} does not exist ({torch.cuda.device_count()} CUDA devices)")
        devices.append(part)
    return devices


def dtype_label(device: str, dtype: Optional[torch.dtype]) -> str:
    """The dtype name the engine picks for `device` (fp16 on GPUs, fp32 on CPU unless asked)."""
    if dtype is not None:
        return str(dtype).removeprefix("torch.")
    return "float16" if device.startswith(("cuda", "mps")) else "float32"


def describe(devices: list[str], dtype: Optional[torch.dtype]) -> tuple[str, str]:
    """("cpu,cpu", "float32"): the `device`/`dtype` fields of a start event for a worker set."""
    labels = sorted({dtype_label(d, dtype) for d in devices})
    return ",".join(devices), ",".join(labels)
