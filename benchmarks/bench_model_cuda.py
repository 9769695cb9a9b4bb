"""The model on a CUDA GPU: golden parity, fp32/fp16/bf16 speed and accuracy, naive baseline.

    python benchmarks/bench_model_cuda.py

1. Every golden case (tests/fixtures/golden) on the GPU in fp32 with TF32 off: max abs
   error against the official outputs.
2. ESC-light x4 and ESC x2 (random golden-scale weights) on a crop of a real photo at
   256x256 and 512x512: ms per image in fp32, fp16 and bf16 (median of 10 after warm-up,
   synchronised), peak memory, PSNR of fp16/bf16 against fp32, and the naive baseline
   (tests/reference/naive_esc.py) in fp32 with its speed-up.
Without CUDA it says so and exits with status 1.
"""

from __future__ import annotations

import json
import math
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from benchmarks.bench_model import CASES, MFLOP_PER_PIXEL, _state_dict, photo  # noqa: E402


def _median_ms(fn, repeat: int = 10) -> float:
    fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def _psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = (a.float().clamp(0, 1) - b.float().clamp(0, 1)).pow(2).mean().item()
    return float("inf") if mse == 0 else 10 * math.log10(1 / mse)


def golden_parity(device: torch.device) -> None:
    import esc_cli
    from safetensors.torch import load_file

    golden = ROOT / "tests" / "fixtures" / "golden"
    for entry in json.loads((golden / "cases.json").read_text()):
        model = esc_cli.load_model(golden / f"{entry['name']}.pth", device=device)
        tensors = load_file(str(golden / f"{entry['name']}.io.safetensors"))
        worst = 0.0
        with torch.inference_mode():
            for case in entry["cases"]:
                y = model(tensors[case["input"]].to(device)).cpu()
                worst = max(worst, (y - tensors[case["output"]]).abs().max().item())
        print(f"golden {entry['name']:<22} max |error| {worst:.1e}  {'ok' if worst <= 1e-4 else 'FAIL'}")


def speed(device: torch.device) -> None:
    import esc_cli
    from tests.reference.naive_esc import naive_esc_forward

    print(f"{'model':<13}{'input':>9}{'fp32 ms':>9}{'GFLOP/s':>9}{'fp16 ms':>9}{'bf16 ms':>9}"
          f"{'fp16 dB':>9}{'bf16 dB':>9}{'peak MiB':>10}{'naive ms':>10}{'speedup':>9}")
    for name, scale, _ in CASES[::2]:
        sd = _state_dict(name, scale)
        sd_dev = {k: v.to(device) for k, v in sd.items()}
        for size in (256, 512):
            x = photo(size).to(device)
            row = {}
            outs = {}
            for label, dtype in (("fp32", torch.float32), ("fp16", torch.float16), ("bf16", torch.bfloat16)):
                model = esc_cli.load_model(sd, device=device, dtype=dtype)
                xd = x.to(dtype)
                torch.cuda.reset_peak_memory_stats()
                with torch.inference_mode():
                    row[label] = _median_ms(lambda m=model, inp=xd: m(inp))
                    outs[label] = model(xd).float()
                if label == "fp32":
                    row["peak"] = torch.cuda.max_memory_allocated() / 2**20
                del model
            cfg = esc_cli.load_model(sd).config
            with torch.inference_mode():
                naive = _median_ms(
                    lambda: naive_esc_forward(x, sd_dev, scale=scale, window=cfg.window_size, heads=cfg.num_heads), 5
                )
            gflops = MFLOP_PER_PIXEL[(name, scale)] * 1e6 * size * size / (row["fp32"] / 1e3) / 1e9
            print(f"{name + f' x{scale}':<13}{f'{size}x{size}':>9}{row['fp32']:>9.2f}{gflops:>9.0f}{row['fp16']:>9.2f}"
                  f"{row['bf16']:>9.2f}{_psnr(outs['fp16'], outs['fp32']):>9.1f}{_psnr(outs['bf16'], outs['fp32']):>9.1f}"
                  f"{row['peak']:>10.0f}{naive:>10.2f}{naive / row['fp32']:>9.2f}", flush=True)


def main() -> int:
    if not torch.cuda.is_available():
        print("no CUDA device: this benchmark needs a GPU", file=sys.stderr)
        return 1
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    device = torch.device("cuda")
    print(f"{torch.cuda.get_device_name()}  torch {torch.__version__}")
    golden_parity(device)
    speed(device)
    return 0


if __name__ == "__main__":
    sys.exit(main())
