"""Peak RSS of one image upscaled x4 and written as PNG, for growing sizes: the bytes per output pixel.

Each size runs in a fresh process (`ru_maxrss`), through the same path as `esc upscale` (decode, tiled engine,
quantise, encode, atomic write), with a small random-weight ESC x4 so the network's own memory stays out of the
slope. `--bundled` uses the bundled default-x4 instead.

    python benchmarks/bench_memory.py [--sizes 256 512 1024] [--bundled]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

CHILD = r"""
import json, resource, sys, tempfile, pathlib
import numpy as np, torch
from PIL import Image
torch.set_num_threads(2)
size, bundled = int(sys.argv[1]), sys.argv[2] == "1"
from esc_cli.api.images import upscale_images
from esc_cli.api.options import UpscaleOptions
from esc_cli.engine.memory import retain_freed_memory
retain_freed_memory()
if bundled:
    network = None
    model = "default-x4"
else:
    from esc_cli.model import ESCConfig, build_network
    network = build_network(ESCConfig(variant="esc", scale=4, dim=16, pdim=8, kernel_size=7, n_blocks=1,
                                      conv_blocks=1, window_size=8, num_heads=2, exp_ratio=1.25)).eval()
    model = None
with tempfile.TemporaryDirectory() as tmp:
    src = pathlib.Path(tmp) / "in.png"
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(src, compress_level=1)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    options = UpscaleOptions(scale=4, model=model, output=str(pathlib.Path(tmp) / "out.png"), device="cpu", png_level=1)
    summary = upscale_images([str(src)], options, network=network)
    assert summary.exit_code == 0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({"size": size, "base": base, "peak": peak}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512, 1024])
    parser.add_argument("--bundled", action="store_true")
    args = parser.parse_args()
    rows = []
    for size in args.sizes:
        out = subprocess.run([sys.executable, "-c", CHILD, str(size), "1" if args.bundled else "0"],
                             capture_output=True, text=True, check=True).stdout  # fmt: skip
        rows.append(json.loads(out.strip().splitlines()[-1]))
    print(f"x4 to PNG, {'bundled default-x4' if args.bundled else 'small random ESC (dim 16)'}, CPU")
    print("| input | output | peak RSS | growth over the smallest | bytes per output px (slope) |")
    print("|---|---|---|---|---|")
    first = rows[0]
    for row in rows:
        out_px = (row["size"] * 4) ** 2
        grown = row["peak"] - first["peak"]
        d_px = out_px - (first["size"] * 4) ** 2
        slope = f"{grown / d_px:.1f}" if d_px else "-"
        print(f"| {row['size']}² | {row['size'] * 4}² | {row['peak'] / 2**30:.2f} GiB | {grown / 2**30:.2f} GiB | {slope} |")


if __name__ == "__main__":
    main()
