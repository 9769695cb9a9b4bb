"""Device and precision choice, free-memory probes and the automatic tile size."""

from __future__ import annotations

import math
import os
import re
from typing import Optional, Union

import torch

from esc_cli.errors import UsageError

DTYPES = {
    "auto": None,
    "fp32": torch.float32,
    "float32": torch.float32,
    "fp16": torch.float16,
    "float16": torch.float16,
    "half": torch.float16,
    "bf16": torch.bfloat16,
    "bfloat16": torch.bfloat16,
}

DEVICE_PATTERN = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")
DEVICE_HELP = "use auto, cpu, cuda, cuda:N or mps"
DTYPE_HELP = "use auto, fp32, fp16 or bf16"

# CPU tiles larger than this gain no speed, only memory (see docs/engine.md).
CPU_TILE_CAP = 512
# Largest automatic tile on accelerators; bigger tiles only cost memory and latency.
ACCEL_TILE_CAP = 2048
# Share of the free memory the automatic tile size may plan to use.
MEMORY_SHARE_CUDA = 0.6
MEMORY_SHARE_CPU = 0.25


def parse_device(value: Union[str, torch.device, None]) -> Optional[str]:
    """"auto|cpu|cuda|cuda:N|mps" (any case) -> None (auto) or the device string; else `UsageError`.

    Checks the spelling only; whether the device exists is `resolve_device`'s business.
    """
    if isinstance(value, torch.device):
        value = str(value)
    text = (value or "auto").strip().lower()
    if not DEVICE_PATTERN.match(text):
        raise UsageError(f"--device {value!r}: {DEVICE_HELP}")
    return None if text == "auto" else text


def parse_dtype(value: Union[str, torch.dtype, None]) -> Optional[torch.dtype]:
    """"auto|fp32|fp16|bf16" (also float32, float16, half, bfloat16) -> None (auto) or a torch dtype.

    A `torch.dtype` passes through when it is one of the three; anything else is a `UsageError`.
    """
    if isinstance(value, torch.dtype):
        if value not in (torch.float32, torch.float16, torch.bfloat16):
            raise UsageError(f"unsupported dtype {value}; use fp32, fp16 or bf16")
        return value
    text = (value or "auto").strip().lower()
    if text not in DTYPES:
        raise UsageError(f"--dtype {value!r}: {DTYPE_HELP}")
    return DTYPES[text]


def resolve_device(device: Union[str, torch.device, None]) -> torch.device:
    """`None`/"auto" -> cuda, then mps, then cpu; anything else is parsed and checked."""
    if isinstance(device, str):
        device = parse_device(device or "auto")
    if device is None:
        if torch.cuda.is_available():
            return torch.device("cuda", torch.cuda.current_device())
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise UsageError(f"unknown device {device!r}; {DEVICE_HELP}") from exc
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise UsageError(f"device {device!r} requested but CUDA is not available; use --device cpu")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise UsageError(f"device {device!r} does not exist ({torch.cuda.device_count()} CUDA devices)")
        if dev.index is None:
            dev = torch.device("cuda", torch.cuda.current_device())
    elif dev.type == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise UsageError(f"device {device!r} requested but MPS is not available; use --device cpu")
    elif dev.type != "cpu":
        raise UsageError(f"unsupported device {device!r}; {DEVICE_HELP}")
    return dev


def resolve_dtype(dtype: Union[str, torch.dtype, None], device: torch.device) -> torch.dtype:
    """`None`/"auto" -> fp16 on CUDA and MPS, fp32 on CPU; names and dtypes are checked.

    fp16 rather than bf16 on GPUs: the same tensor-core speed, and 3 more mantissa bits
    give outputs 18-20 dB closer to fp32 (docs/engine.md); fp16's narrower range is
    covered by the engine's redo-in-fp32 of any tile that overflows. bf16 on request.
    """
    chosen = parse_dtype(dtype)
    if chosen is None:
        return torch.float16 if device.type in ("cuda", "mps") else torch.float32
    if chosen is torch.bfloat16 and device.type == "cuda" and not _cuda_bf16(device):
        raise UsageError(f"{device} does not support bf16; use --dtype fp16")
    return chosen


def _cuda_bf16(device: torch.device) -> bool:
    try:
        major, _ = torch.cuda.get_device_capability(device)
    except (RuntimeError, AssertionError):
        return False
    return major >= 8


def dtype_name(dtype: torch.dtype) -> str:
    """`torch.bfloat16` -> "bfloat16"."""
    return str(dtype).removeprefix("torch.")


def free_memory(device: torch.device) -> int:
    """Bytes the engine may still allocate on `device` (an estimate on CPU and MPS)."""
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        # Blocks PyTorch's caching allocator holds but does not use are free to us too.
        cached = torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
        return int(free + max(0, cached))
    return available_ram()


def available_ram() -> int:
    """`MemAvailable` from /proc/meminfo, else physical memory, else 4 GiB."""
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 4 << 30


def bytes_per_pixel(model: torch.nn.Module, dtype: torch.dtype, device: torch.device) -> float:
    """Peak working memory of one forward per input pixel, for `model`'s config.

    Fitted to the peaks `benchmarks/bench_engine.py memory` measured on the CPU (table in
    docs/engine.md): about fourteen live `dim`-channel maps (ConvFFN's expansion included),
    the output, and for ESC-Real's nearest-conv upsampler its maps at 4x resolution. CPU
    and CUDA attention kernels never hold the `window^2 x window^2` attention matrix; on
    MPS it is counted.
    """
    cfg = getattr(model, "config", None)
    dim = getattr(cfg, "dim", 64)
    ratio = max(2.0, getattr(cfg, "exp_ratio", 2.0))
    heads = getattr(cfg, "num_heads", 4)
    window = getattr(cfg, "window_size", 32)
    scale = getattr(cfg, "scale", 4)
    elem = torch.tensor([], dtype=dtype).element_size()
    elements = (8 + 3 * ratio) * dim + 6 * scale * scale
    if getattr(cfg, "variant", "") == "esc-real":
        elements += 1.5 * 16 * dim
    if device.type == "mps":
        elements += 2.0 * heads * window * window
    return float(elements * elem)


def auto_tile(
    model: torch.nn.Module,
    device: torch.device,
    dtype: torch.dtype,
    align: int,
    *,
    context: int = 0,
    free: Optional[int] = None,
) -> int:
    """The largest aligned tile whose patch (`tile + 2 * context` square) fits the memory share.

    Capped at `CPU_TILE_CAP` on the CPU and `ACCEL_TILE_CAP` elsewhere; at least `align`.
    """
    if free is None:
        free = free_memory(device)
    share = MEMORY_SHARE_CUDA if device.type == "cuda" else MEMORY_SHARE_CPU
    cap = CPU_TILE_CAP if device.type == "cpu" else ACCEL_TILE_CAP
    per_px = bytes_per_pixel(model, dtype, device)
    patch = int(math.sqrt(max(0.0, free * share) / per_px))
    side = min(patch - 2 * context, cap)
    return max(align, (side // align) * align)


def auto_batch(
    model: torch.nn.Module,
    device: torch.device,
    dtype: torch.dtype,
    pixels: int,
    *,
    cap: int = 8,
    free: Optional[int] = None,
) -> int:
    """How many tiles of `pixels` input pixels fit one forward pass (1 on CPU, at most `cap`)."""
    if device.type == "cpu":
        return 1
    if free is None:
        free = free_memory(device)
    share = MEMORY_SHARE_CUDA if device.type == "cuda" else MEMORY_SHARE_CPU
    fit = int(free * share / (bytes_per_pixel(model, dtype, device) * max(1, pixels)))
    return max(1, min(cap, fit))
