"""Tiled engine on the CPU: wall time, the model's share of it, peak memory, seamlessness.

    python benchmarks/bench_engine.py                  # speed: 256/512/1024 inputs (minutes)
    python benchmarks/bench_engine.py speed --sizes 256 512
    python benchmarks/bench_engine.py table            # PSNR vs tile/overlap, golden ESC-light x4
    python benchmarks/bench_engine.py table --model esc_cli/weights/bundled/x.safetensors --size 128
    python benchmarks/bench_engine.py memory           # peak bytes per input pixel per variant
    python benchmarks/bench_engine.py tiles --size 1024 --overlap 32   # CPU speed against tile size

`speed` uses a small random-weight ESC (x2, dim 32, 2 blocks, window 16) on a real photo
(scikit-image's astronaut, resized) so it runs in minutes on 2 cores. Every case runs in
a fresh process, which reports its peak RSS (VmHWM) above the RSS it had before the
call (model and input already loaded), so cases do not inherit each other's peaks.
"model" is the time spent inside the network's forward (timing hooks around
`model(x)`), "overhead" everything else in the engine (cropping, copies, blending,
canvas, progress); "stats" rows include the statistics pass, whose forwards count as
model time.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

SMALL = dict(variant="esc", scale=2, dim=32, pdim=8, kernel_size=13, n_blocks=2, conv_blocks=2,
             window_size=16, num_heads=2, exp_ratio=1.25, use_ln=False, upsampler="pixelshuffle")
GOLDEN = ROOT / "tests" / "fixtures" / "golden" / "esc_light_x4.pth"


# ----------------------------------------------------------------------------- helpers


def photo(size: int) -> torch.Tensor:
    """`[3, size, size]` float in `[0, 1]`: the astronaut photo, area-resized (a natural image)."""
    from skimage import data

    img = torch.from_numpy(data.astronaut()).permute(2, 0, 1).float()[None] / 255
    if size <= 256:
        img = F.avg_pool2d(img[:, :, : 2 * size, 128 : 128 + 2 * size], 2)
    else:
        img = F.interpolate(img, size=(size, size), mode="bicubic", align_corners=False, antialias=True)
    return img[0].clamp(0, 1).contiguous()


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = float(((a.float() - b.float()) ** 2).mean())
    return float("inf") if mse == 0 else 10 * math.log10(1 / mse)


def small_model():
    from esc_cli.model import ESCConfig, build_network

    torch.manual_seed(0)  # PyTorch's default initialisation, seeded: speed does not depend on values
    return build_network(ESCConfig(**SMALL)).eval().requires_grad_(False)


def load(model: str):
    if model == "small":
        return small_model()
    if model == "golden":
        model = str(GOLDEN)
    from esc_cli.api import load_model

    return load_model(model)


def rss_kib(field: str) -> int:
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def reset_peak() -> None:
    """Reset VmHWM to the current RSS (Linux clear_refs 5); harmless elsewhere."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as fh:
            fh.write("5")
    except OSError:
        pass


class ModelTimer:
    """Forward pre/post hooks that add up the time spent inside `model(x)`."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.seconds = 0.0
        self.calls = 0
        self._start = 0.0
        model.register_forward_pre_hook(self._pre)
        model.register_forward_hook(self._post, always_call=True)  # also when the stats pass stops early

    def _pre(self, module, args) -> None:
        self._start = time.perf_counter()

    def _post(self, module, args, output) -> None:
        self.seconds += time.perf_counter() - self._start
        self.calls += 1


def child(spec: dict) -> dict:
    """One case in this (fresh) process: returns times, peak memory, output path."""
    torch.set_num_threads(spec["threads"])
    from esc_cli.engine import Upscaler

    model = load(spec["model"])
    x = photo(spec["size"])
    timer = ModelTimer(model)
    up = Upscaler(model, device="cpu", tile=spec["tile"], overlap=spec.get("overlap"),
                  whole_image_stats=spec.get("stats", False))
    if spec.get("warmup", True):
        up.upscale(x[:, :64, :64])
    timer.seconds, timer.calls = 0.0, 0
    base = rss_kib("VmRSS")
    reset_peak()
    start = time.perf_counter()
    y = up.upscale(x)
    wall = time.perf_counter() - start
    peak = rss_kib("VmHWM")
    out = spec.get("out")
    if out:
        torch.save(y, out)
    return {"wall": wall, "model": timer.seconds, "calls": timer.calls, "tile": up.last_tile,
            "peak_mib": (peak - base) / 1024, "base_mib": base / 1024}


def run_child(spec: dict) -> dict:
    proc = subprocess.run([sys.executable, __file__, "_child", json.dumps(spec)], capture_output=True,
                          text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"case {spec} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------------- commands


def cmd_speed(args) -> None:
    print(f"small random ESC x2 {SMALL}; {args.threads} threads; astronaut photo resized")
    print(f"{'input':>6} {'tile':>6} {'used':>5} {'wall s':>7} {'model %':>8} {'overhead %':>10} "
          f"{'calls':>5} {'peak MiB':>9} {'PSNR dB':>8}")
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes:
            ref_path = os.path.join(tmp, f"ref{size}.pt")
            cases = [("0", 0, False), ("auto", None, False), ("128", 128, False), ("128+st", 128, True)]
            ref = None
            for label, tile, stats in cases:
                out = ref_path if tile == 0 else os.path.join(tmp, "out.pt")
                r = run_child({"model": "small", "size": size, "tile": tile, "threads": args.threads,
                               "out": out, "stats": stats})
                y = torch.load(out)
                if tile == 0:
                    ref = y
                quality = "" if ref is None or tile == 0 else f"{psnr(y, ref):8.2f}"
                share = 100 * r["model"] / r["wall"]
                print(f"{size:>6} {label:>6} {r['tile']:>5} {r['wall']:7.2f} {share:8.1f} {100 - share:10.1f} "
                      f"{r['calls']:>5} {r['peak_mib']:9.1f} {quality:>8}", flush=True)


def cmd_table(args) -> None:
    from esc_cli.engine import Upscaler

    torch.set_num_threads(args.threads)
    model = load(args.model)
    x = photo(args.size)
    start = time.perf_counter()
    with torch.inference_mode():
        whole = model(x[None])[0].clamp(0, 1)
    whole_s = time.perf_counter() - start
    w = int(model.window_size)
    print(f"model {args.model} (window {w}), photo {tuple(x.shape[1:])}, PSNR of tiled vs whole image "
          f"(whole image: {whole_s:.1f} s)")
    print(f"{'tile':>5} {'overlap':>7} {'patch':>5} {'stats':>6} {'PSNR dB':>8} {'s':>6}")
    for tile in args.tiles:
        for overlap in args.overlaps:
            for stats in (False, True) if args.stats else (False,):
                start = time.perf_counter()
                up = Upscaler(model, device="cpu", tile=tile, overlap=overlap, whole_image_stats=stats)
                y = up.upscale(x)
                print(f"{tile:>5} {overlap:>7} {up.last_patch:>5} {str(stats):>6} {psnr(y, whole):8.2f} "
                      f"{time.perf_counter() - start:6.1f}", flush=True)


def cmd_memory(args) -> None:
    """Peak RSS per input pixel of one forward, per variant, at two tile sizes (slope)."""
    print(f"{'variant':>12} {'tile':>5} {'peak MiB':>9} {'B/px':>9} {'slope':>9} {'estimate':>10}")
    for name in args.variants:
        peaks = {}
        for tile in args.tiles:
            r = run_child_memory({"variant": name, "tile": tile, "threads": args.threads})
            peaks[tile] = r
        t0, t1 = args.tiles[0], args.tiles[-1]
        slope = (peaks[t1]["peak"] - peaks[t0]["peak"]) * 2**20 / (t1 * t1 - t0 * t0)
        for tile in args.tiles:
            est = peaks[tile]["estimate"]
            per_px = peaks[tile]["peak"] * 2**20 / (tile * tile)
            print(f"{name:>12} {tile:>5} {peaks[tile]['peak']:9.1f} {per_px:9.0f} {slope:9.0f} {est:10.0f}",
                  flush=True)


def child_memory(spec: dict) -> dict:
    torch.set_num_threads(spec["threads"])
    from esc_cli.engine.devices import bytes_per_pixel
    from esc_cli.model import NAMED_VARIANTS, build_network

    net = build_network(NAMED_VARIANTS[spec["variant"]](4 if "real" in spec["variant"] else 2))
    net = net.eval().requires_grad_(False)
    t = spec["tile"]
    x = torch.rand(1, 3, t, t)
    with torch.inference_mode():
        net(x[:, :, :32, :32])
        base = rss_kib("VmRSS")
        reset_peak()
        net(x)
        peak = rss_kib("VmHWM")
    return {"peak": (peak - base) / 1024,
            "estimate": bytes_per_pixel(net, torch.float32, torch.device("cpu"))}


def run_child_memory(spec: dict) -> dict:
    proc = subprocess.run([sys.executable, __file__, "_child_memory", json.dumps(spec)], capture_output=True,
                          text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"case {spec} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def cmd_tiles(args) -> None:
    """Throughput of the small model against tile size (default overlap, no stats): the CPU tile cap."""
    from esc_cli.engine import Upscaler

    torch.set_num_threads(args.threads)
    model = load(args.model)
    x = photo(args.size)
    print(f"{args.model} on {args.size}x{args.size}, overlap {args.overlap}, no stats pass")
    print(f"{'tile':>5} {'s':>7} {'Mpx/s':>7}")
    for tile in args.tiles:
        up = Upscaler(model, device="cpu", tile=tile, overlap=args.overlap, whole_image_stats=False)
        up.upscale(x[:, :64, :64])
        start = time.perf_counter()
        up.upscale(x)
        sec = time.perf_counter() - start
        print(f"{tile:>5} {sec:7.2f} {x.shape[1] * x.shape[2] / sec / 1e6:7.3f}", flush=True)


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "_child":
        print(json.dumps(child(json.loads(sys.argv[2]))))
        return
    if len(sys.argv) > 2 and sys.argv[1] == "_child_memory":
        print(json.dumps(child_memory(json.loads(sys.argv[2]))))
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    sub = parser.add_subparsers(dest="cmd")
    p = sub.add_parser("speed")
    p.add_argument("--sizes", type=int, nargs="+", default=[256, 512, 1024])
    p = sub.add_parser("table")
    p.add_argument("--model", default="golden")
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--tiles", type=int, nargs="+", default=[32, 64, 128])
    p.add_argument("--overlaps", type=int, nargs="+", default=[0, 8, 16, 32])
    p.add_argument("--stats", action="store_true", help="also run each case with whole-image statistics")
    p = sub.add_parser("memory")
    p.add_argument("--variants", nargs="+", default=["esc-light", "esc", "esc-fp", "esc-real"])
    p.add_argument("--tiles", type=int, nargs="+", default=[128, 256])
    p = sub.add_parser("tiles")
    p.add_argument("--model", default="small")
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--tiles", type=int, nargs="+", default=[64, 128, 256, 512])
    p.add_argument("--overlap", type=int, default=32)
    args = parser.parse_args()
    if args.cmd is None:
        args.sizes = [256, 512, 1024]
    {"speed": cmd_speed, None: cmd_speed, "table": cmd_table, "memory": cmd_memory, "tiles": cmd_tiles}[args.cmd](args)


if __name__ == "__main__":
    main()
