"""PNG compression levels 1-9 on upscaler-like outputs of real photos: size and encode time (Pillow's zlib).

The photos are scikit-image's (astronaut, coffee, chelsea), upscaled x4 with antialiased bicubic, which has the
smoothness of a super-resolution output. Each level is timed best of `--repeat` on one thread; the sizes are
exact. Prints a table and the level the default was chosen from.

    python benchmarks/bench_png.py [--repeat 2]
"""

from __future__ import annotations

import argparse
import io
import time

import numpy as np
from PIL import Image


def photos() -> dict[str, Image.Image]:
    from skimage import data

    out = {}
    for name in ("astronaut", "coffee", "chelsea"):
        small = Image.fromarray(np.asarray(getattr(data, name)()))
        out[name] = small.resize((small.width * 4, small.height * 4), Image.BICUBIC)
    return out


def encode(image: Image.Image, level: int) -> tuple[int, float]:
    buffer = io.BytesIO()
    start = time.perf_counter()
    image.save(buffer, format="PNG", compress_level=level)
    return buffer.tell(), time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    images = photos()
    pixels = sum(im.width * im.height for im in images.values())
    print(f"{len(images)} photos x4 bicubic, {pixels / 1e6:.1f} Mpx in all: " +
          ", ".join(f"{k} {v.width}x{v.height}" for k, v in images.items()))
    rows = []
    for level in range(1, 10):
        size = 0
        seconds = 0.0
        for image in images.values():
            times = []
            for _ in range(args.repeat):
                nbytes, took = encode(image, level)
                times.append(took)
            size += nbytes
            seconds += min(times)
        rows.append((level, size, seconds))
    base_size = rows[5][1]
    base_time = rows[5][2]
    print("| level | MB | size vs 6 | s per Mpx | time vs 6 |")
    print("|---|---|---|---|---|")
    for level, size, seconds in rows:
        print(f"| {level} | {size / 1e6:.2f} | {size / base_size:.3f} | {seconds / (pixels / 1e6):.3f} | {seconds / base_time:.2f} |")


if __name__ == "__main__":
    main()
