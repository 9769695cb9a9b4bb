"""Throughput of `--devices` (and `--ray`) against a one-process run: images and video segments.

    python benchmarks/bench_scale.py --devices plain cpu cpu,cpu --images 16 --size 128
    python benchmarks/bench_scale.py --devices plain cuda:0 cuda:0,cuda:0 --images 64 --size 512 --video-seconds 4
    python benchmarks/bench_scale.py --devices ray --ray local        # needs the ray extra

For every configuration: start-up (call -> first item started: worker start and model load),
steady throughput (first item started -> last finished) and the whole wall time, for a folder
of random RGB PNGs upscaled x2 by the bundled default model (or --model). With --video-seconds,
also a testsrc clip in segments of --segment-seconds, and the decode / encode rates of ffmpeg
alone, which bound what more workers can give. Prints a Markdown table; --json FILE saves it.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from esc_cli.api.events import ItemStarted  # noqa: E402
from esc_cli.api.images import UpscaleOptions, upscale_images  # noqa: E402
from esc_cli.api.loading import load_model  # noqa: E402

BUNDLED = Path(__file__).resolve().parents[1] / "esc_cli" / "weights" / "bundled" / "esc-default-x2.safetensors"


def runner_for(config: str, ray_address: str):
    if config == "plain":
        return None
    if config == "ray":
        from esc_cli.scale.ray_backend import RayImageRunner

        return RayImageRunner(ray_address)
    from esc_cli.scale import LocalImageRunner, parse_devices

    return LocalImageRunner(parse_devices(config))


def segment_runner_for(config: str, ray_address: str):
    if config == "plain":
        return None
    if config == "ray":
        from esc_cli.scale.ray_backend import RaySegmentRunner

        return RaySegmentRunner(ray_address)
    from esc_cli.scale import LocalSegmentRunner, parse_devices

    return LocalSegmentRunner(parse_devices(config))


def bench_images(config: str, folder: Path, network, args) -> dict:
    out = Path(tempfile.mkdtemp(prefix="esc-bench-out-"))
    marks: dict = {}

    def on_event(event) -> None:
        if isinstance(event, ItemStarted) and "first" not in marks:
            marks["first"] = time.perf_counter()

    device = None if config in ("plain", "ray") else None
    options = UpscaleOptions(scale=2, output=str(out), device=args.plain_device if config == "plain" else device)
    t0 = time.perf_counter()
    summary = upscale_images([str(folder)], options, network=network, runner=runner_for(config, args.ray), on_event=on_event)
    t1 = time.perf_counter()
    steady = t1 - marks.get("first", t0)
    mp = args.images * (args.size * 2) ** 2 / 1e6
    return {"what": "images", "config": config, "items": summary.done, "startup_s": round(marks.get("first", t0) - t0, 2),
            "steady_s": round(steady, 2), "wall_s": round(t1 - t0, 2), "items_per_s": round(summary.done / steady, 2),
            "out_mpix_per_s": round(mp / steady, 2)}


def make_clip(path: Path, seconds: float, size: str) -> Path:
    from esc_cli.io.ffmpeg import ffmpeg_exe

    subprocess.run([ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-nostdin", "-y", "-f", "lavfi", "-i",
                    f"testsrc2=size={size}:rate=25:duration={seconds}", "-c:v", "libx264", "-pix_fmt", "yuv420p",
                    str(path)], check=True)
    return path


def bench_video(config: str, clip: Path, network, args) -> dict:
    from esc_cli.api.video import upscale_video

    out = Path(tempfile.mkdtemp(prefix="esc-bench-v-")) / "out.mp4"
    marks: dict = {}

    def progress(p) -> None:
        marks.setdefault("first", time.perf_counter())

    t0 = time.perf_counter()
    kwargs = {} if config == "plain" else {"segment_runner": segment_runner_for(config, args.ray)}
    result = upscale_video(clip, out, network=network, scale=2, segment_seconds=args.segment_seconds,
                           device=args.plain_device if config == "plain" else None, progress=progress, **kwargs)
    t1 = time.perf_counter()
    steady = t1 - marks.get("first", t0)
    return {"what": "video", "config": config, "items": result.frames, "startup_s": round(marks.get("first", t0) - t0, 2),
            "steady_s": round(steady, 2), "wall_s": round(t1 - t0, 2), "items_per_s": round(result.frames / steady, 2),
            "out_mpix_per_s": round(result.frames * result.out_size[0] * result.out_size[1] / 1e6 / steady, 2)}


def ffmpeg_rates(clip: Path, out_size: str, frames: int) -> list[dict]:
    """Decode rate of the source and x264 (medium, CRF 18, 4 threads) encode rate at the output size."""
    from esc_cli.io.ffmpeg import ffmpeg_exe

    rows = []
    t0 = time.perf_counter()
    subprocess.run([ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-nostdin", "-i", str(clip), "-f", "null", "-"],
                   check=True)
    rows.append({"what": "ffmpeg decode", "config": "source", "items": frames,
                 "items_per_s": round(frames / (time.perf_counter() - t0), 1)})
    t0 = time.perf_counter()
    subprocess.run([ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-nostdin", "-f", "lavfi", "-i",
                    f"testsrc2=size={out_size}:rate=25", "-frames:v", str(frames), "-c:v", "libx264", "-preset", "medium",
                    "-crf", "18", "-threads", "4", "-f", "null", "-"], check=True)
    rows.append({"what": "x264 encode", "config": f"{out_size}, 4 threads", "items": frames,
                 "items_per_s": round(frames / (time.perf_counter() - t0), 1)})
    return rows


def model_load(device: str) -> dict:
    t0 = time.perf_counter()
    net = load_model(str(BUNDLED))
    t1 = time.perf_counter()
    from esc_cli.engine import Upscaler

    up = Upscaler(net, device=device)
    up.upscale(torch.rand(3, 64, 64))
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    t2 = time.perf_counter()
    return {"what": "model load", "config": device, "items": 1, "startup_s": round(t1 - t0, 3),
            "steady_s": round(t2 - t1, 3), "wall_s": round(t2 - t0, 3)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--devices", nargs="+", default=["plain", "cpu", "cpu,cpu"])
    parser.add_argument("--plain-device", default=None, help="--device of the plain run (default automatic)")
    parser.add_argument("--ray", default="local")
    parser.add_argument("--images", type=int, default=16)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--video-seconds", type=float, default=0.0)
    parser.add_argument("--video-size", default="320x240")
    parser.add_argument("--segment-seconds", type=float, default=1.0)
    parser.add_argument("--model", default=str(BUNDLED))
    parser.add_argument("--json", default=None)
    args = parser.parse_args()

    network = load_model(args.model)
    rows = [model_load("cuda" if torch.cuda.is_available() else "cpu")]
    rng = np.random.default_rng(0)
    folder = Path(tempfile.mkdtemp(prefix="esc-bench-in-"))
    for i in range(args.images):
        Image.fromarray((rng.random((args.size, args.size, 3)) * 255).astype(np.uint8)).save(folder / f"im{i:04d}.png")
    for config in args.devices:
        rows.append(bench_images(config, folder, network, args))
        print(rows[-1], flush=True)
    if args.video_seconds > 0:
        clip = make_clip(folder.parent / f"esc-bench-{os.getpid()}.mp4", args.video_seconds, args.video_size)
        w, h = (int(v) for v in args.video_size.split("x"))
        frames = int(round(args.video_seconds * 25))
        rows += ffmpeg_rates(clip, f"{2 * w}x{2 * h}", frames)
        for config in args.devices:
            rows.append(bench_video(config, clip, network, args))
            print(rows[-1], flush=True)
    host = f"{os.cpu_count()} cores" + (f", {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else "")
    print(f"\n{host}, torch {torch.__version__}, {args.images} images {args.size}x{args.size} x2\n")
    print("| what | config | items | start-up s | steady s | wall s | items/s | output Mpx/s |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        print(f"| {r['what']} | {r['config']} | {r.get('items', '')} | {r.get('startup_s', '')} | {r.get('steady_s', '')} | "
              f"{r.get('wall_s', '')} | {r.get('items_per_s', '')} | {r.get('out_mpix_per_s', '')} |")
    if args.json:
        Path(args.json).write_text(json.dumps({"host": host, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
