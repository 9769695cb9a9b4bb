"""A folder job's wall time against the sum of the model's own time, old and new paths side by side.

Old: items one after another (`ESC_OVERLAP=0`) and PNG at zlib level 6. New: the overlapped loop (decode ahead,
encode behind) and PNG at level 4. Each configuration runs the same folder of photos (scikit-image's, resized
to `--size`) with the bundled x4 model on the CPU, alternating old and new `--rounds` times; the model time is
the sum of the network's forward calls in the run, so the ratio wall / model is what everything else adds
(decoding, blending, quantising, encoding, writing).

    python benchmarks/bench_pipeline.py [--size 256] [--images 6] [--rounds 2] [--threads 2]
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image


def make_folder(folder: Path, size: int, count: int) -> None:
    from skimage import data

    names = ["astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field", "immunohistochemistry"]
    for i in range(count):
        array = np.asarray(getattr(data, names[i % len(names)])())
        image = Image.fromarray(array).convert("RGB").resize((size, size), Image.LANCZOS)
        image.save(folder / f"photo{i}.png")


def run(folder: Path, out: Path, fmt: str, overlap: bool, png_level: int, network) -> tuple[float, float]:
    from esc_cli.api.images import upscale_images
    from esc_cli.api.options import UpscaleOptions

    os.environ["ESC_OVERLAP"] = "1" if overlap else "0"
    model_seconds = [0.0]
    real = network.forward

    def timed(*args, **kwargs):
        start = time.perf_counter()
        try:
            return real(*args, **kwargs)
        finally:
            model_seconds[0] += time.perf_counter() - start

    network.forward = timed  # nn.Module.__call__ finds the instance attribute first
    try:
        shutil.rmtree(out, ignore_errors=True)
        options = UpscaleOptions(scale=4, output=str(out), format=fmt, png_level=png_level, device="cpu")
        start = time.perf_counter()
        summary = upscale_images([str(folder)], options, network=network)
        wall = time.perf_counter() - start
    finally:
        del network.forward
    assert summary.exit_code == 0
    return wall, model_seconds[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--images", type=int, default=6)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from esc_cli.api.models import open_model
    from esc_cli.engine.memory import retain_freed_memory

    retain_freed_memory()
    network = open_model("default-x4")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "in"
        folder.mkdir()
        make_folder(folder, args.size, args.images)
        run(folder, Path(tmp) / "warm", "jpg", True, 4, network)  # warm-up: allocator, caches
        results: dict[tuple[str, str], list[tuple[float, float]]] = {}
        for _ in range(args.rounds):
            for fmt in ("jpg", "png"):
                for name, overlap, level in (("old", False, 6), ("new", True, 4)):
                    results.setdefault((fmt, name), []).append(run(folder, Path(tmp) / "out", fmt, overlap, level, network))
    print(f"{args.images} photos {args.size}x{args.size} -> x4 ({args.size * 4}x{args.size * 4}), bundled default-x4, "
          f"CPU, {args.threads} threads, best of {args.rounds}")
    print("| output | path | wall s | model s | wall / model |")
    print("|---|---|---|---|---|")
    for (fmt, name), runs in results.items():
        wall, model = min(runs, key=lambda r: r[0] / r[1])
        print(f"| {fmt} | {name} | {wall:.2f} | {model:.2f} | {wall / model:.3f} |")


if __name__ == "__main__":
    main()
