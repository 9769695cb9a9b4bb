"""`esc models export`: write a model as ONNX (dynamic height and width, checked with onnxruntime)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from esc_cli.cli.console import err_console
from esc_cli.cli.helpfmt import Command
from esc_cli.cli.options import OverwriteOption, QuietOption

EXAMPLES = """Examples:

  esc models export esc-light-x4 esc-light-x4.onnx

  esc models export ESC_FP_X3.pth esc-fp-x3-fp16.onnx --half

  esc models export default-x2 small.onnx --opset 20
"""


def export(
    ref: Annotated[str, typer.Argument(metavar="MODEL", help="Anything --model accepts: catalog name, .pth/.safetensors file, hf://...")],
    output: Annotated[Path, typer.Argument(metavar="FILE", help="The .onnx file to write.")],
    half: Annotated[bool, typer.Option("--half", help="fp16 weights, input and output (for GPUs); checked to 5e-2.")] = False,
    opset: Annotated[int, typer.Option("--opset", metavar="N", help="ONNX opset (default 18).")] = 18,
    check: Annotated[bool, typer.Option("--check/--no-check", help="Compare onnxruntime's output with the network's.")] = True,
    overwrite: OverwriteOption = False,
    quiet: QuietOption = False,
) -> None:
    """Export a model to ONNX: `image` [1,3,H,W] RGB in [0,1] -> `upscaled` [1,3,sH,sW], any H and W."""
    from esc_cli.api.export import export_onnx

    def note(message: str) -> None:
        if not quiet:
            err_console.print(f"note: {message}", highlight=False, markup=False, soft_wrap=True)

    result = export_onnx(ref, output, half=half, opset=opset, overwrite=overwrite, check=check, warn=note)
    typer.echo(str(result.path))
    if quiet:
        return
    if result.max_abs_error is None:
        checked = "not checked (--no-check, or onnxruntime is not installed)"
    else:
        h, w = result.check_shape
        checked = f"onnxruntime matches the network to {result.max_abs_error:.2g} on a {w}x{h} image"
    err_console.print(
        f"{result.model} x{result.scale} {result.dtype}, opset {result.opset}, {result.bytes / 1e6:.1f} MB; {checked}",
        highlight=False, markup=False, soft_wrap=True,
    )


def register(models_app: typer.Typer) -> None:
    """Add `export` to the `esc models` group."""
    models_app.command("export", cls=Command, epilog=EXAMPLES)(export)
