"""ONNX export of any model `--model` accepts, checked against this package's own output (docs/ecosystem.md).

The graph maps `image` `[1, 3, H, W]` float RGB in `[0, 1]` to `upscaled` `[1, 3, sH, sW]` (not clamped),
with H and W dynamic from 1 to 8192: window padding and reflection are computed inside the graph, so no
size rule applies. Exporter: `torch.onnx.export(dynamo=True)` (torch.export, then onnxscript), opset 18.
Needs the `onnx` extra (`pip install 'esc-cli[onnx]'`: onnx, onnxscript, onnxruntime for the check).
"""

from __future__ import annotations

import importlib.util
import logging
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch

from esc_cli.api.models import open_model
from esc_cli.errors import EscError, MissingExtraError, OutputError, UsageError
from esc_cli.io.atomic import atomic_output

DEFAULT_OPSET = 18
MAX_SIDE = 8192
INPUT_NAME, OUTPUT_NAME = "image", "upscaled"
# Parity limits of the check after export (max abs difference to the eager network on a random image).
TOLERANCE = {torch.float32: 1e-4, torch.float16: 5e-2}


@dataclass(frozen=True)
class ExportResult:
    """What was written, and how far onnxruntime's output lies from the eager network's (None: not checked)."""

    path: Path
    model: str
    scale: int
    dtype: str
    opset: int
    bytes: int
    max_abs_error: Optional[float]
    check_shape: tuple[int, int]


def require_onnx() -> None:
    """Raise `MissingExtraError` naming the install command when onnx or onnxscript is missing."""
    missing = [name for name in ("onnx", "onnxscript") if importlib.util.find_spec(name) is None]
    if missing:
        raise MissingExtraError(
            f"ONNX export needs {', '.join(missing)}: pip install 'esc-cli[onnx]' (or pip install onnx onnxscript onnxruntime)"
        )


def export_onnx(
    ref: Optional[str],
    output: Path,
    *,
    scale: float = 4,
    half: bool = False,
    opset: int = DEFAULT_OPSET,
    overwrite: bool = False,
    check: bool = True,
    warn: Optional[Callable[[str], None]] = None,
) -> ExportResult:
    """Export the network `ref` names (as `--model`; None: the default for `scale`) to `output` (.onnx).

    `half` exports fp16 weights and an fp16 input/output. With `check`, onnxruntime (CPU) runs the file on a
    random image whose sides are not a multiple of the window and the result is compared with the eager
    network; a difference above `TOLERANCE` fails the export. The file is written atomically.
    """
    if output.suffix.lower() != ".onnx":
        raise UsageError(f"{output}: the output must be a .onnx file")
    if not 7 <= opset <= 23:
        raise UsageError(f"--opset {opset}: choose an ONNX opset between 7 and 23 (default {DEFAULT_OPSET})")
    if output.exists() and not overwrite:
        raise OutputError(f"{output}: already exists; pass --overwrite to replace it")
    require_onnx()
    dtype = torch.float16 if half else torch.float32
    network = open_model(ref, scale=scale, device="cpu", dtype=dtype, warn=warn)
    name = getattr(network, "name", str(ref))
    example = torch.rand(1, 3, 37, 45, dtype=dtype)
    with atomic_output(output, overwrite=overwrite) as temporary:
        _write_graph(network, example, temporary, opset)
        _label(temporary, name=name, scale=int(network.scale), variant=str(network.variant))
        error, shape = _check(network, temporary, dtype) if check else (None, (0, 0))
        if error is not None and error > TOLERANCE[dtype]:
            raise EscError(
                f"{output}: onnxruntime differs from the network by {error:.3g} (limit {TOLERANCE[dtype]:g}); "
                "not written: try another --opset, or report it"
            )
        size = temporary.stat().st_size
    return ExportResult(output, name, int(network.scale), str(dtype).replace("torch.", ""), opset, size, error, shape)


def _write_graph(network: torch.nn.Module, example: torch.Tensor, target: Path, opset: int) -> None:
    height = torch.export.Dim("height", min=1, max=MAX_SIDE)
    width = torch.export.Dim("width", min=1, max=MAX_SIDE)
    exporter_log = logging.getLogger("torch.onnx")
    level = exporter_log.level
    exporter_log.setLevel(logging.ERROR)  # e.g. "torchvision is not installed": not the user's business
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's deprecation chatter neither
        try:
            program = torch.onnx.export(
                network, (example,), dynamo=True, opset_version=opset, dynamic_shapes=({2: height, 3: width},),
                input_names=[INPUT_NAME], output_names=[OUTPUT_NAME], verbose=False, report=False,
            )  # fmt: skip
        except Exception as exc:  # the exporter raises many types; one line is what the user needs
            raise EscError(f"ONNX export failed: {str(exc).strip().splitlines()[0][:300]}") from None
        finally:
            exporter_log.setLevel(level)
    if program is None:  # pragma: no cover - dynamo export always returns the program
        raise EscError("ONNX export returned nothing")
    program.save(str(target))


def _label(path: Path, *, name: str, scale: int, variant: str) -> None:
    """Metadata a deployment can read back: what the file is and how to feed it."""
    import onnx

    model = onnx.load(str(path))
    props = {"esc.model": name, "esc.variant": variant, "esc.scale": str(scale),
             "esc.input": "image [1,3,H,W] float RGB in [0,1]", "esc.output": f"upscaled [1,3,{scale}H,{scale}W]"}  # fmt: skip
    onnx.helper.set_model_props(model, props)
    model.producer_name = "esc"
    onnx.save(model, str(path))


def _check(network: torch.nn.Module, path: Path, dtype: torch.dtype) -> tuple[Optional[float], tuple[int, int]]:
    """Max abs difference between onnxruntime (CPU) and the eager network on a random image."""
    if importlib.util.find_spec("onnxruntime") is None:
        return None, (0, 0)
    import onnxruntime as ort

    window = int(getattr(network.config, "window_size", 8) or 8)
    shape = (window + 5, window + 3)  # not a multiple of the window: the padding inside the graph runs
    generator = torch.Generator().manual_seed(0)
    image = torch.rand(1, 3, *shape, generator=generator).to(dtype)
    with torch.no_grad():
        expected = network(image).float().numpy()
    options = ort.SessionOptions()
    options.intra_op_num_threads = max(1, min(4, os.cpu_count() or 1))
    options.log_severity_level = 3  # errors only: its constant-folding notes are not the user's business
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    actual = session.run(None, {INPUT_NAME: image.numpy()})[0].astype(np.float32)
    return float(np.abs(actual - expected).max()), shape

