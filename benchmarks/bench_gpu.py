"""One HD frame through ESC x2 on a CUDA GPU in fp32, fp16 and bf16, through the engine.

    python benchmarks/bench_gpu.py                  # about a minute on any recent card
    python benchmarks/bench_gpu.py --model esc_cli/weights/bundled/esc-default-x2.safetensors
    python benchmarks/bench_gpu.py --repeat 20 --frames 4

Prints the card, then per precision: ms per frame (median of `--repeat` timed calls
after a warm-up, `torch.cuda.synchronize()` around each), frames/s, the tile the engine
chose, peak GPU memory allocated during the timed calls, and PSNR against the fp32
output. A second set of rows pushes `--frames` frames through `upscale_batch` (several
frames per forward pass) and a third forces 512-pixel tiles (tiling overhead on the GPU).
Default model: ESC x2 (the paper's "ESC" size) with fixed random weights in the golden
checkpoints' scale; `--model` takes any checkpoint (a trained one gives meaningful PSNRs).
Without CUDA it prints why and exits with status 1.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402


def hd_frame() -> torch.Tensor:
    """`[3, 1080, 1920]` float in `[0, 1]`: a real photo (scikit-image's astronaut) resized to HD."""
    try:
        from skimage import data

        img = torch.from_numpy(data.astronaut()).permute(2, 0, 1).float()[None] / 255
    except ImportError:  # scikit-image is a test extra; fall back to smooth noise
        gen = torch.Generator().manual_seed(0)
        img = F.interpolate(torch.rand(1, 3, 68, 120, generator=gen), size=(512, 512), mode="bicubic")
    return F.interpolate(img, size=(1080, 1920), mode="bicubic", align_corners=False).clamp(0, 1)[0]


def random_esc_x2() -> torch.nn.Module:
    from esc_cli.model import esc
    from esc_cli.model import build_network

    net = build_network(esc(2))
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in net.named_parameters():
            if name.endswith("weight") and p.dim() == 1:  # LayerNorm scales stay 1
                continue
            p.copy_(torch.randn(p.shape, generator=gen) * 0.02)
    return net.eval().requires_grad_(False)


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = float(((a.float() - b.float()) ** 2).mean())
    return float("inf") if mse == 0 else 10 * math.log10(1 / mse)


def measure(model: torch.nn.Module, frames: torch.Tensor, dtype: torch.dtype, tile, repeat: int):
    """Median seconds per call, peak bytes, the tile used and the output of one call."""
    from esc_cli.engine import Upscaler

    up = Upscaler(model, device="cuda", dtype=dtype, tile=tile)
    run = (lambda: up.upscale(frames[0])) if frames.shape[0] == 1 else (lambda: up.upscale_batch(frames))
    out = run()  # warm-up: cuDNN autotuning, allocator, pinned host blocks
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(repeat):
        torch.cuda.synchronize()
        start = time.perf_counter()
        out = run()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times), torch.cuda.max_memory_allocated(), up.last_tile, up.last_batch, out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="checkpoint path (default: random-weight ESC x2)")
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--frames", type=int, default=4, help="frames per upscale_batch call")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("bench_gpu: no CUDA device (torch.cuda.is_available() is False); nothing measured. "
              "Run it on a machine with an NVIDIA GPU and a CUDA build of torch.", file=sys.stderr)
        return 1
    from esc_cli.api import load_model

    torch.backends.cudnn.benchmark = True
    name = torch.cuda.get_device_name()
    free, total = torch.cuda.mem_get_info()
    print(f"card: {name}, {total / 2**30:.1f} GiB ({free / 2**30:.1f} free); torch {torch.__version__}, "
          f"CUDA {torch.version.cuda}")
    frame = hd_frame()
    label = args.model or "ESC x2 (random weights)"
    dtypes = [("fp32", torch.float32), ("fp16", torch.float16)]
    if torch.cuda.get_device_capability()[0] >= 8:
        dtypes.append(("bf16", torch.bfloat16))
    print(f"model: {label}; input 1920x1080 -> 3840x2160")
    print(f"{'case':<22} {'dtype':<5} {'ms/frame':>9} {'frames/s':>9} {'tile':>5} {'batch':>5} "
          f"{'peak GiB':>9} {'PSNR vs fp32':>13}")
    cases = [("1 frame, auto tile", 1, None), (f"{args.frames} frames, batch", args.frames, None),
             ("1 frame, tile 512", 1, 512)]
    for case, n, tile in cases:
        frames = frame.expand(n, -1, -1, -1).contiguous()
        reference = None
        for dname, dtype in dtypes:
            model = load_model(args.model) if args.model else random_esc_x2()
            sec, peak, used, batch, out = measure(model, frames, dtype, tile, args.repeat)
            if reference is None:
                reference = out
            quality = "ref" if dtype == torch.float32 else f"{psnr(out, reference):.2f}"
            print(f"{case:<22} {dname:<5} {1000 * sec / n:9.1f} {n / sec:9.2f} {used:>5} {batch:>5} "
                  f"{peak / 2**30:9.2f} {quality:>13}", flush=True)
            del model, out
            torch.cuda.empty_cache()
    return 0


if __name__ == "__main__":
    sys.exit(main())
