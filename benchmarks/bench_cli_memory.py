"""The `esc` CLI with and without `retain_freed_memory()` (esc_cli/engine/memory.py).

    python benchmarks/bench_cli_memory.py                  # 1024x1024 photo, ESC-light x4, 512 tiles
    python benchmarks/bench_cli_memory.py --size 512 --tile 256 --repeat 3

Runs `esc upscale` as a subprocess on a resized crop of scikit-image's astronaut with the
golden-format ESC-light x4 (random weights; speed does not depend on them), alternating
the default run with one under `ESC_RETAIN_FREED_MEMORY=0`. It prints, per run, the wall
time, the child's user and system CPU seconds, its minor page faults and its peak RSS,
then the best-time ratio, and checks that both settings write byte-identical images.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = ROOT / "tests" / "fixtures" / "golden" / "esc_light_x4.pth"


def make_photo(path: Path, size: int) -> None:
    from PIL import Image
    from skimage import data

    Image.fromarray(data.astronaut()).resize((size, size), Image.BICUBIC).save(path)


def run_cli(src: Path, out: Path, tile: int, threads: int, retain: bool) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), ESC_RETAIN_FREED_MEMORY="1" if retain else "0")
    cmd = [sys.executable, "-m", "esc_cli", "upscale", str(src), "-o", str(out), "-m", str(GOLDEN),
           "--device", "cpu", "--dtype", "fp32", "--tile", str(tile), "--overwrite", "--quiet"]
    start = time.perf_counter()
    child = subprocess.Popen(cmd, env=env, cwd=ROOT)
    _, status, usage = os.wait4(child.pid, 0)  # this child's own resource usage
    wall = time.perf_counter() - start
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0:
        raise SystemExit(f"esc upscale failed with exit code {child.returncode}")
    return {"wall": wall, "user": usage.ru_utime, "sys": usage.ru_stime, "minflt": usage.ru_minflt,
            "maxrss_mib": usage.ru_maxrss / 1024}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=1024, help="input side in pixels")
    parser.add_argument("--tile", type=int, default=512, help="--tile for esc upscale")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        src = tmp / "photo.png"
        make_photo(src, args.size)
        print(f"esc upscale {args.size}x{args.size} -> x4, ESC-light, --tile {args.tile}, {args.threads} threads")
        print(f"{'freed memory':<14}{'wall s':>8}{'user s':>8}{'sys s':>8}{'minflt':>10}{'max RSS MiB':>13}")
        best = {True: float("inf"), False: float("inf")}
        for _ in range(args.repeat):
            for retain in (True, False):
                row = run_cli(src, tmp / f"out_{int(retain)}.png", args.tile, args.threads, retain)
                best[retain] = min(best[retain], row["wall"])
                label = "retained" if retain else "glibc default"
                print(f"{label:<14}{row['wall']:>8.1f}{row['user']:>8.1f}{row['sys']:>8.1f}{row['minflt']:>10d}"
                      f"{row['maxrss_mib']:>13.0f}", flush=True)
        same = (tmp / "out_1.png").read_bytes() == (tmp / "out_0.png").read_bytes()
        print(f"best wall: retained {best[True]:.1f} s, glibc default {best[False]:.1f} s, "
              f"speed-up {best[False] / best[True]:.2f}x; outputs identical: {same}")


if __name__ == "__main__":
    main()
