"""Options shared by several commands, as `Annotated` aliases."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

ModelOption = Annotated[
    Optional[str],
    typer.Option("--model", "-m", help="Catalog name, local .pth/.safetensors file, or hf://owner/repo/file[@rev]."),
]
ScaleOption = Annotated[float, typer.Option("--scale", "-s", min=1.0, help="Upscaling factor (any value >= 1).")]
DeviceOption = Annotated[str, typer.Option("--device", help="auto, cpu, cuda, cuda:N or mps.")]
DtypeOption = Annotated[str, typer.Option("--dtype", help="auto, fp32, fp16 or bf16.")]
TileOption = Annotated[
    Optional[int], typer.Option("--tile", min=0, help="Input pixels per tile side; 0 = whole image; default automatic.")
]
OverlapOption = Annotated[Optional[int], typer.Option("--overlap", min=0, help="Context around each tile, in input pixels (default 32).")]
OverwriteOption = Annotated[bool, typer.Option("--overwrite", help="Replace existing outputs.")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON event per line on stdout.")]
QuietOption = Annotated[bool, typer.Option("--quiet", "-q", help="No progress or notices on stderr.")]
OutputPathOption = Annotated[Optional[Path], typer.Option("--output", "-o", help="Output file or folder; - for stdout.")]
DevicesOption = Annotated[
    Optional[str],
    typer.Option("--devices", help="One worker per device: cuda:0,cuda:1, all, or cpu,cpu (see docs/scale.md)."),
]
RayOption = Annotated[
    Optional[str],
    typer.Option("--ray", envvar="RAY_ADDRESS", help="Run on a Ray cluster: its address, or local (see docs/scale.md)."),
]
