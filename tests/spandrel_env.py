"""Import spandrel in test environments whose torchvision wheel cannot load its compiled ops.

PyPI's torchvision wheels are built against CUDA torch; with the CPU torch wheel its `_C` library does not
load and `import torchvision` stops at registering fake kernels for `torchvision::nms`/`qnms`. ESC never calls
those operators, so declaring their schemas (no kernels) lets spandrel import. A torchvision that loads its
ops is left alone.
"""

from __future__ import annotations

import importlib

import torch

_LIBRARY = None


def import_spandrel():
    """`spandrel`, imported after declaring torchvision's two detection ops when they are missing."""
    global _LIBRARY
    try:
        torch.ops.torchvision.nms.default  # noqa: B018 - present when torchvision's _C loaded
    except (AttributeError, RuntimeError):
        if _LIBRARY is None:
            _LIBRARY = torch.library.Library("torchvision", "DEF")
            for op in ("nms", "qnms"):
                _LIBRARY.define(f"{op}(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    return importlib.import_module("spandrel")
