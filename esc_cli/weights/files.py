"""Read a checkpoint file into a flat state dict without ever running a pickle's code."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Mapping

import torch
from torch import Tensor

from esc_cli.errors import CheckpointError, UnsafeCheckpointError

SAFETENSORS_SUFFIXES = (".safetensors",)
PICKLE_SUFFIXES = (".pth", ".pt", ".ckpt", ".bin")


def _looks_like_safetensors(path: Path) -> bool:
    """safetensors files start with an 8-byte little-endian header length, then '{'."""
    with path.open("rb") as fh:
        head = fh.read(9)
    if len(head) < 9 or head[8:9] != b"{":
        return False
    return int.from_bytes(head[:8], "little") < path.stat().st_size


def _read_safetensors(path: Path) -> dict[str, Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except (SafetensorError, ValueError, OSError) as exc:
        raise CheckpointError(f"{path}: not a readable safetensors file ({exc}); re-download or re-convert it") from None


def _read_pickle(path: Path) -> object:
    try:
        return torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        text = str(exc)
        if "Unsupported operand" in text:  # bytes that are no pickle at all (HTML, text, random data)
            raise CheckpointError(f"{path}: not a PyTorch checkpoint (its bytes are not a pickle); check the file or download it again") from None
        if "Weights only load failed" in text or "Unsupported global" in text or "GLOBAL" in text:
            raise UnsafeCheckpointError(
                f"{path}: refused: the pickle would run code, not just hold tensors; "
                "convert it with a trusted tool to .safetensors"
            ) from None
        raise CheckpointError(f"{path}: not a PyTorch checkpoint ({text.splitlines()[0]})") from None
    except Exception as exc:  # torch.load fails in many ways on foreign bytes (KeyError, EOFError, ...)
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise CheckpointError(f"{path}: not a PyTorch checkpoint ({first}); check the file or download it again") from None


def unwrap_state_dict(obj: object, origin: str = "checkpoint") -> dict[str, Tensor]:
    """The tensors of a BasicSR dict (`params_ema`, else `params`) or of a bare state dict."""
    if isinstance(obj, Mapping):
        for key in ("params_ema", "params"):
            inner = obj.get(key)
            if isinstance(inner, Mapping):
                obj = inner
                break
        else:
            if "state_dict" in obj and isinstance(obj["state_dict"], Mapping):
                obj = obj["state_dict"]
    if not isinstance(obj, Mapping) or not obj:
        raise CheckpointError(f"{origin}: holds no state dict (expected tensors, or 'params_ema'/'params')")
    bad = [str(k) for k, v in obj.items() if not isinstance(v, Tensor)]
    if bad:
        raise CheckpointError(f"{origin}: entries that are not tensors: {', '.join(bad[:5])}")
    state = {str(k): v for k, v in obj.items()}
    # Some exports prefix every key with 'module.' (DataParallel); strip it uniformly.
    if all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    return state


def read_state_dict(path: str | Path) -> dict[str, Tensor]:
    """Load the state dict from `.safetensors`, `.pth`/`.pt` (BasicSR or bare), checking content not names."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: no such file; give a path to a .pth or .safetensors checkpoint")
    if path.is_dir():
        raise CheckpointError(f"{path}: is a folder; give the checkpoint file inside it")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path}: the file is empty; download it again")
    if _looks_like_safetensors(path):
        return _read_safetensors(path)
    if path.suffix.lower() in SAFETENSORS_SUFFIXES:
        raise CheckpointError(f"{path}: named .safetensors but its header is not safetensors; download it again")
    return unwrap_state_dict(_read_pickle(path), str(path))
