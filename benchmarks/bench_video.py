"""How much of `esc video`'s wall time is the model's forward pass (target: >= 90%).

Generates a clip with the bundled ffmpeg (default: 2 s of 320x180 testsrc2 at 30 fps with a
sine audio track), upscales it x2 through `esc_cli.api.video.upscale_video`, and prints:
wall time, time inside the network's forward (timed with forward hooks), their ratio,
frames per second, and for reference what decoding and encoding alone cost (the work the
pipeline hides behind inference).

    .venv/bin/python benchmarks/bench_video.py                    # bundled x2 model (or stand-in)
    .venv/bin/python benchmarks/bench_video.py --model FILE --device cuda --seconds 4

Without the bundled default weights (esc_cli/weights/bundled/esc-default-x2.safetensors) it
uses a random-weight stand-in with the training script's default shape and says so; the
cost of a forward depends on the shape, not the weight values.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from esc_cli.api.video import upscale_video  # noqa: E402
from esc_cli.io.ffmpeg import ffmpeg_exe  # noqa: E402
from esc_cli.io.probe import probe  # noqa: E402
from esc_cli.model import ESCConfig, build_network  # noqa: E402

BUNDLED = ROOT / "esc_cli" / "weights" / "bundled" / "esc-default-x2.safetensors"
# scripts/train_default.py defaults: the shape the bundled model is trained with
STAND_IN = ESCConfig(variant="esc", scale=2, dim=32, pdim=16, kernel_size=13, n_blocks=2, conv_blocks=3,
                     window_size=8, num_heads=2, exp_ratio=1.25, use_ln=False, upsampler="pixelshuffle")


def make_clip(path: Path, size: str, fps: int, seconds: float) -> None:
    subprocess.run(
        [ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-nostdin", "-y",
         "-f", "lavfi", "-i", f"testsrc2=size={size}:rate={fps}:duration={seconds}",
         "-f", "lavfi", "-i", f"sine=frequency=440:duration={seconds}",
         "-c:v", "libx264", "-pix_fmt", "yuv420p", "-crf", "18", "-c:a", "aac", str(path)],
        check=True,
    )


def load_network(model: str | None):
    if model:
        from esc_cli.api.loading import load_model

        return load_model(model), f"{model}"
    if BUNDLED.is_file():
        from esc_cli.api.loading import load_model

        return load_model(BUNDLED), f"bundled {BUNDLED.name}"
    torch.manual_seed(0)
    net = build_network(STAND_IN).eval().requires_grad_(False)
    return net, f"stand-in (bundled weights missing): random {STAND_IN}"


def timed(cmd: list[str]) -> float:
    t = time.perf_counter()
    subprocess.run(cmd, check=True, stdin=subprocess.DEVNULL, capture_output=True)
    return time.perf_counter() - t


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", help="checkpoint file (default: bundled x2, else a stand-in)")
    ap.add_argument("--size", default="320x180")
    ap.add_argument("--fps", type=int, default=30)
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--scale", type=float, default=2.0)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="auto")
    ap.add_argument("--tile", type=int, default=None)
    ap.add_argument("--batch", type=int, default=None, help="frames per inference call")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--preset", default=None, help="x264 preset (default: esc video's default, medium)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    net, label = load_network(args.model)
    forward = {"seconds": 0.0, "calls": 0, "t": 0.0}

    def pre(module, inputs):
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        forward["t"] = time.perf_counter()

    def post(module, inputs, output):
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        forward["seconds"] += time.perf_counter() - forward["t"]
        forward["calls"] += 1

    with tempfile.TemporaryDirectory(prefix="esc-bench-video-") as tmp:
        src = Path(tmp) / "clip.mp4"
        out = Path(tmp) / "clip_x2.mp4"
        make_clip(src, args.size, args.fps, args.seconds)
        info = probe(src)
        # one warm-up forward (allocator, oneDNN/cuDNN kernels), not counted
        w, h = info.width, info.height
        with torch.inference_mode():
            net.to(args.device)(torch.rand(1, 3, h, w, device=args.device))
        net.to("cpu")
        net.register_forward_pre_hook(pre)
        net.register_forward_hook(post)

        t0 = time.perf_counter()
        result = upscale_video(src, out, network=net, scale=args.scale, device=args.device, dtype=args.dtype,
                               tile=args.tile, batch_frames=args.batch, preset=args.preset)
        wall = time.perf_counter() - t0

        decode_s = timed([ffmpeg_exe(), "-nostdin", "-i", str(src), "-map", "0:v", "-f", "rawvideo", "-pix_fmt", "rgb24", "-y", "/dev/null"])
        encode_s = timed([ffmpeg_exe(), "-nostdin", "-i", str(out), "-map", "0:v", "-c:v", "libx264", "-preset",
                          args.preset or "medium", "-crf", "18", "-pix_fmt", "yuv420p", "-f", "null", "-"])
        outinfo = probe(out)

    share = forward["seconds"] / wall
    cpu = torch.get_num_threads()
    device = torch.cuda.get_device_name() if args.device.startswith("cuda") else f"CPU ({cpu} torch threads)"
    print(f"model:            {label}")
    print(f"device:           {device}, dtype {result.dtype}, tile {result.tile}")
    print(f"clip:             {info.width}x{info.height}, {info.frame_count} frames at {float(info.fps):g} fps, x{args.scale:g}"
          f" -> {outinfo.width}x{outinfo.height}, {outinfo.frame_count} frames, audio {result.streams['audio']}")
    print(f"wall:             {wall:.2f} s  ({result.frames / wall:.2f} frames/s)")
    print(f"model forward:    {forward['seconds']:.2f} s in {forward['calls']} calls ({forward['seconds'] / max(1, forward['calls']) * 1000:.1f} ms/call)")
    print(f"forward share:    {share * 100:.1f} % of wall time (target >= 90 %)")
    print(f"not hidden:       {wall - forward['seconds']:.2f} s (probe, ffmpeg start-up, frame conversion, mux)")
    print(f"for reference:    decode alone {decode_s:.2f} s, x264 encode of the output alone {encode_s:.2f} s")
    import resource

    print(f"peak RSS:         {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB (this process)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
