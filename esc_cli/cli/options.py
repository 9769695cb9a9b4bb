"""Options shared by several commands, as `Annotated` aliases, with shell-style placeholders and help panels."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

# Help panels: options are grouped by what they are about.
PANEL_IO = "Input and output"
PANEL_MODEL = "Model"
PANEL_ENGINE = "Engine"
PANEL_VIDEO = "Video"
PANEL_SCALE = "Several devices"
PANEL_REPORT = "Reporting"

ModelOption = Annotated[
    Optional[str],
    typer.Option(
        "--model", "-m", metavar="NAME|FILE", rich_help_panel=PANEL_MODEL,
        help="Catalog name (esc models list), local .pth/.safetensors file, or hf://owner/repo/file (@rev optional).",
    ),
]  # fmt: skip
ScaleOption = Annotated[
    float, typer.Option("--scale", "-s", min=1.0, metavar="X", rich_help_panel=PANEL_MODEL, help="Upscaling factor (any value >= 1).")
]
DeviceOption = Annotated[
    str, typer.Option("--device", metavar="DEVICE", rich_help_panel=PANEL_ENGINE, help="auto, cpu, cuda, cuda:N or mps.")
]
DtypeOption = Annotated[str, typer.Option("--dtype", metavar="TYPE", rich_help_panel=PANEL_ENGINE, help="auto, fp32, fp16 or bf16.")]
TileOption = Annotated[
    Optional[int],
    typer.Option("--tile", min=0, metavar="N", rich_help_panel=PANEL_ENGINE,
                 help="Input pixels per tile side; 0 = whole image; default automatic."),
]  # fmt: skip
OverlapOption = Annotated[
    Optional[int],
    typer.Option("--overlap", min=0, metavar="N", rich_help_panel=PANEL_ENGINE,
                 help="Context around each tile, in input pixels (default 32)."),
]  # fmt: skip
OverwriteOption = Annotated[bool, typer.Option("--overwrite", rich_help_panel=PANEL_IO, help="Replace existing outputs.")]
JsonOption = Annotated[bool, typer.Option("--json", rich_help_panel=PANEL_REPORT, help="Print one JSON event per line on stdout.")]
QuietOption = Annotated[bool, typer.Option("--quiet", "-q", rich_help_panel=PANEL_REPORT, help="No progress or notices on stderr.")]
DevicesOption = Annotated[
    Optional[str],
    typer.Option("--devices", metavar="LIST", rich_help_panel=PANEL_SCALE,
                 help="One worker per device: cuda:0,cuda:1, all, or cpu,cpu (see docs/scale.md)."),
]  # fmt: skip
RayOption = Annotated[
    Optional[str],
    typer.Option("--ray", envvar="RAY_ADDRESS", metavar="ADDRESS", rich_help_panel=PANEL_SCALE,
                 help="Run on a Ray cluster: its address, or local (see docs/scale.md)."),
]  # fmt: skip
