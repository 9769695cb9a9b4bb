#!/usr/bin/env python
"""Train the small default ESC model that ships inside the package (issue 6).

Data: the photographs bundled with scikit-image (no download). A few are held out for
validation. Degradation: PIL bicubic downscale of a random HR crop; augmentation: random
flips and 90-degree rotations. Loss: L1 on RGB. Optimiser: Adam with linear warmup and a
cosine decay over a fixed number of steps. Deterministic given --seed and --steps;
resumable with --resume (model, optimiser, scheduler, RNG states and step are saved in
runs/<name>/last.pt). Validation PSNR-Y (BT.601, border crop = scale) against PIL
bicubic upscaling of the same low-resolution input is logged to runs/<name>/train.log.

Example (the command behind the shipped x4 weights is in docs/default-model.md):

    nice -n 10 .venv/bin/python scripts/train_default.py --scale 4 --name x4 \
        --steps 6000 --out esc_cli/weights/bundled/esc-default-x4.safetensors
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from esc_cli.model import ESCConfig, build_network  # noqa: E402

# scikit-image sample images (file names inside skimage/data). Grayscale ones are
# replicated to three channels.
TRAIN_IMAGES = [
    "astronaut.png",
    "motorcycle_left.png",
    "motorcycle_right.png",
    "retina.jpg",
    "hubble_deep_field.jpg",
    "ihc.png",
    "camera.png",
    "brick.png",
    "grass.png",
    "gravel.png",
    "coins.png",
    "text.png",
    "cell.png",
]
VAL_IMAGES = ["chelsea.png", "coffee.png", "rocket.jpg"]


def skimage_data_dir() -> Path:
    """The folder holding scikit-image's bundled sample images."""
    import skimage.data

    return Path(skimage.data.__file__).parent


def load_rgb(name: str) -> np.ndarray:
    """An image from scikit-image's data folder as `[H, W, 3]` uint8 RGB."""
    with Image.open(skimage_data_dir() / name) as im:
        im.load()
        if im.mode in ("RGBA", "LA", "P"):
            im = im.convert("RGBA").convert("RGB")
        else:
            im = im.convert("RGB")
        return np.asarray(im, dtype=np.uint8).copy()


def downscale(hr: np.ndarray, scale: int) -> np.ndarray:
    """PIL bicubic downscale of `[H, W, 3]` uint8 (H, W multiples of scale)."""
    h, w = hr.shape[:2]
    im = Image.fromarray(hr).resize((w // scale, h // scale), Image.BICUBIC)
    return np.asarray(im, dtype=np.uint8)


def upscale_bicubic(lr: np.ndarray, scale: int) -> np.ndarray:
    """PIL bicubic upscale of `[h, w, 3]` uint8: the baseline."""
    h, w = lr.shape[:2]
    im = Image.fromarray(lr).resize((w * scale, h * scale), Image.BICUBIC)
    return np.asarray(im, dtype=np.uint8)


def to_tensor(img: np.ndarray) -> torch.Tensor:
    """`[H, W, 3]` uint8 -> `[3, H, W]` float in [0, 1]."""
    return torch.from_numpy(np.array(img, dtype=np.uint8, copy=True)).permute(2, 0, 1).float().div_(255.0)


def to_uint8(t: torch.Tensor) -> np.ndarray:
    """`[3, H, W]` float in [0, 1] -> `[H, W, 3]` uint8 (rounded, clipped)."""
    return t.clamp(0, 1).mul(255.0).round().byte().permute(1, 2, 0).numpy()


# BT.601 luma coefficients for RGB in [0, 1] (Y = 16 + sum(c * rgb), 8-bit scale).
LUMA_COEFFS = (65.481, 128.553, 24.966)
# The same weights for RGB and luma both in [0, 1] (the training loss; the offset cancels).
LUMA_WEIGHTS = tuple(c / 255.0 for c in LUMA_COEFFS)


def psnr_y(a: np.ndarray, b: np.ndarray, border: int) -> float:
    """PSNR on the BT.601 luma (16..235) of two `[H, W, 3]` uint8 images, `border` pixels cropped."""

    def luma(x: np.ndarray) -> np.ndarray:
        x = x.astype(np.float64) / 255.0
        cr, cg, cb = LUMA_COEFFS
        return 16.0 + cr * x[..., 0] + cg * x[..., 1] + cb * x[..., 2]

    ya, yb = luma(a), luma(b)
    if border:
        ya, yb = ya[border:-border, border:-border], yb[border:-border, border:-border]
    mse = float(np.mean((ya - yb) ** 2))
    return float("inf") if mse == 0 else 10.0 * math.log10(255.0**2 / mse)


def mod_crop(img: np.ndarray, scale: int) -> np.ndarray:
    h, w = img.shape[:2]
    return img[: h - h % scale, : w - w % scale]


@torch.no_grad()
def upscale_model(model: torch.nn.Module, lr: np.ndarray) -> np.ndarray:
    """Run the network on a whole `[h, w, 3]` uint8 image; returns uint8 `[sh, sw, 3]`."""
    device = next(model.parameters()).device
    out = model(to_tensor(lr).unsqueeze(0).to(device))[0]
    return to_uint8(out.float().cpu())


def evaluate(model: torch.nn.Module, images: dict[str, np.ndarray], scale: int) -> dict[str, tuple[float, float]]:
    """Per image: (PSNR-Y of the model, PSNR-Y of PIL bicubic), LR = PIL bicubic downscale."""
    was_training = model.training
    model.eval()
    results = {}
    for name, hr in images.items():
        hr = mod_crop(hr, scale)
        lr = downscale(hr, scale)
        sr = upscale_model(model, lr)
        bic = upscale_bicubic(lr, scale)
        results[name] = (psnr_y(sr, hr, scale), psnr_y(bic, hr, scale))
    model.train(was_training)
    return results


def sample_batch(
    rng: np.random.Generator,
    images: list[np.ndarray],
    weights: np.ndarray,
    batch: int,
    patch: int,
    scale: int,
    zoom_out: float = 1.0,
    channel_shuffle: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random HR crops (patch*scale), flips/rot90, and their PIL-bicubic LR versions.

    `zoom_out < 1`: half the crops are taken from a region up to `1/zoom_out` times larger
    and shrunk to the crop size (PIL bicubic), new content at other scales. `channel_shuffle`:
    the RGB channels of each crop in a random order. Both draw random numbers only when on,
    so runs without them are unchanged.
    """
    hp = patch * scale
    lrs, hrs = [], []
    for _ in range(batch):
        img = images[rng.choice(len(images), p=weights)]
        h, w = img.shape[:2]
        side = hp
        if zoom_out < 1.0 and rng.random() < 0.5:
            side = min(int(hp / rng.uniform(zoom_out, 1.0)), h, w)
        y = int(rng.integers(0, h - side + 1))
        x = int(rng.integers(0, w - side + 1))
        crop = img[y : y + side, x : x + side]
        if side != hp:
            crop = np.asarray(Image.fromarray(crop).resize((hp, hp), Image.BICUBIC), dtype=np.uint8)
        if rng.random() < 0.5:
            crop = crop[:, ::-1]
        if rng.random() < 0.5:
            crop = crop[::-1]
        crop = np.rot90(crop, int(rng.integers(0, 4)))
        if channel_shuffle:
            crop = crop[..., rng.permutation(3)]
        crop = np.ascontiguousarray(crop)  # writable copy
        hrs.append(to_tensor(crop))
        lrs.append(to_tensor(downscale(crop, scale)))
    return torch.stack(lrs), torch.stack(hrs)


def load_training_images(names: list[str], patch: int, scale: int) -> tuple[list[np.ndarray], np.ndarray]:
    """The training images large enough for a `patch * scale` crop, and their sampling
    weights: every image equally likely (the big retina and Hubble images are largely black)."""
    images = [im for im in (load_rgb(n) for n in names) if min(im.shape[:2]) >= patch * scale]
    return images, np.full(len(images), 1.0 / len(images))


_POOL_ARGS: tuple = ()


def _pool_init(names: list[str], seed: int, batch: int, patch: int, scale: int, augment: dict) -> None:
    """Worker initialiser: load the training images once per worker process."""
    global _POOL_ARGS
    torch.set_num_threads(1)
    images, weights = load_training_images(names, patch, scale)
    _POOL_ARGS = (seed, images, weights, batch, patch, scale, augment)


def _pool_batch(step: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The batch of training step `step`: a pure function of (seed, step), so any number of
    workers, and a resume at any step, give the same sequence."""
    seed, images, weights, batch, patch, scale, augment = _POOL_ARGS
    return sample_batch(np.random.default_rng([seed, step]), images, weights, batch, patch, scale, **augment)


def prefetched_batches(pool, start: int, stop: int, depth: int):
    """Batches of steps `start..stop-1` from the worker pool, in order, at most `depth` ahead.

    (`Pool.imap` would run ahead without bound and hold every finished batch in memory.)
    """
    from collections import deque

    pending: deque = deque()
    nxt = start
    while nxt < stop or pending:
        while nxt < stop and len(pending) < depth:
            pending.append(pool.apply_async(_pool_batch, (nxt,)))
            nxt += 1
        yield pending.popleft().get()


def training_loss(sr: torch.Tensor, hr: torch.Tensor, kind: str, chroma_weight: float = 0.25) -> torch.Tensor:
    """Loss between `[B, 3, H, W]` RGB batches in [0, 1]: `l1`, `mse`, or `mse-y`.

    `mse-y` is the MSE of the BT.601 luma (the channel PSNR-Y is computed on) plus
    `chroma_weight` times the plain RGB MSE, which keeps the colours anchored.
    """
    if kind == "l1":
        return F.l1_loss(sr, hr)
    if kind == "mse":
        return F.mse_loss(sr, hr)
    if kind == "mse-y":
        w = sr.new_tensor(LUMA_WEIGHTS).view(1, 3, 1, 1)
        diff = sr - hr
        return (diff * w).sum(1).pow(2).mean() + chroma_weight * diff.pow(2).mean()
    raise ValueError(f"unknown loss {kind!r}")


def lr_factor(step: int, total: int, warmup: int, floor: float) -> float:
    """Linear warmup to 1, then cosine decay to `floor` at `total`."""
    if step < warmup:
        return (step + 1) / warmup
    t = min(1.0, (step - warmup) / max(1, total - warmup))
    return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * t))


def export_safetensors(model: torch.nn.Module, path: Path, meta: dict, fp16: bool) -> None:
    """Write the state dict (contiguous, optionally fp16) with JSON metadata, atomically."""
    from safetensors.torch import save_file

    state = {}
    for k, v in model.state_dict().items():
        v = v.detach().contiguous().clone()
        if fp16 and v.is_floating_point():
            v = v.half()
        state[k] = v
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    save_file(state, str(tmp), metadata={k: str(v) for k, v in meta.items()})
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def eval_files(paths: list[Path], threads: int) -> int:
    """Print per-image and mean PSNR-Y (model vs PIL bicubic) for each weight file, as Markdown."""
    from esc_cli.api import load_model

    torch.set_num_threads(threads)
    val = {n.split(".")[0]: load_rgb(n) for n in VAL_IMAGES}
    for path in paths:
        model = load_model(path)
        scale = model.scale
        n_params = sum(t.numel() for t in model.parameters())
        t0 = time.time()
        res = evaluate(model, val, scale)
        print(f"\n{path} (x{scale}, {n_params} parameters, {path.stat().st_size} bytes, {time.time() - t0:.1f} s)\n")
        print("| image | bicubic PSNR-Y | model PSNR-Y | gain |")
        print("|---|---|---|---|")
        for name, (a, b) in res.items():
            print(f"| {name} | {b:.2f} dB | {a:.2f} dB | {a - b:+.2f} dB |")
        ma = float(np.mean([a for a, _ in res.values()]))
        mb = float(np.mean([b for _, b in res.values()]))
        print(f"| **mean** | {mb:.2f} dB | {ma:.2f} dB | **{ma - mb:+.2f} dB** |")
    return 0


def augment_options(args: argparse.Namespace) -> dict:
    """`sample_batch`'s augmentation keywords from the command line."""
    return {"zoom_out": args.zoom_out, "channel_shuffle": args.channel_shuffle}


def calibrate_steps(
    model: torch.nn.Module,
    args: argparse.Namespace,
    pool,
    device: torch.device,
    images: list[np.ndarray],
    weights: np.ndarray,
) -> int:
    """Time 30 training steps on a throw-away copy of `model` (same batch shape, fresh Adam) and
    return how many steps fit in `args.auto_steps_minutes`, keeping 8% for validation and
    checkpoints. The model, the seeds and the data sequence are left untouched."""
    import copy

    probe = copy.deepcopy(model)
    opt = torch.optim.Adam(probe.parameters(), lr=args.lr * 0.01)
    if pool is not None:
        batches = prefetched_batches(pool, 0, 30, 2 * args.workers + 2)
    else:
        probe_rng = np.random.default_rng([args.seed, 1 << 30])
        augment = augment_options(args)
        batches = (
            sample_batch(probe_rng, images, weights, args.batch, args.patch, args.scale, **augment) for _ in range(30)
        )
    t0 = 0.0
    for i, (lr_img, hr_img) in enumerate(batches):
        if i == 10:
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            t0 = time.perf_counter()
        loss = training_loss(probe(lr_img.to(device)), hr_img.to(device), args.loss, args.chroma_weight)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    per_step = (time.perf_counter() - t0) / 20
    del probe, opt
    return max(1, int(args.auto_steps_minutes * 60 * 0.92 / per_step))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scale", type=int, help="upscaling factor to train (2, 3 or 4)")
    p.add_argument("--name", help="run folder: runs/<name>")
    p.add_argument(
        "--eval",
        type=Path,
        nargs="+",
        metavar="WEIGHTS",
        help="only measure these weight files (loaded through esc_cli.api.load_model) on the held-out images",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, default=4500)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--patch", type=int, default=32, help="LR patch side")
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument(
        "--loss",
        choices=("l1", "mse", "mse-y"),
        default="l1",
        help="training loss; mse (the PSNR objective itself) for a final fine-tuning stage; "
        "mse-y: MSE on BT.601 luma (what PSNR-Y measures) plus --chroma-weight x RGB MSE",
    )
    p.add_argument(
        "--chroma-weight", type=float, default=0.25, help="weight of the RGB MSE term in --loss mse-y"
    )
    p.add_argument(
        "--zoom-out",
        type=float,
        default=1.0,
        help="take half the HR crops from a region up to 1/ZOOM_OUT larger, shrunk to size (1: off)",
    )
    p.add_argument("--channel-shuffle", action="store_true", help="random RGB channel order per crop")
    p.add_argument("--warmup", type=int, default=150)
    p.add_argument("--lr-floor", type=float, default=0.01, help="final LR as a fraction of --lr")
    p.add_argument("--dim", type=int, default=32)
    p.add_argument("--pdim", type=int, default=16)
    p.add_argument("--kernel-size", type=int, default=13)
    p.add_argument("--n-blocks", type=int, default=2)
    p.add_argument("--conv-blocks", type=int, default=3)
    p.add_argument("--window", type=int, default=8)
    p.add_argument("--heads", type=int, default=2)
    p.add_argument("--exp-ratio", type=float, default=1.25)
    p.add_argument("--val-every", type=int, default=500)
    p.add_argument("--val-crop", type=int, default=0, help="centre-crop held-out images to this HR side (0: whole)")
    p.add_argument("--ckpt-every", type=int, default=250)
    p.add_argument("--minutes", type=float, default=0.0, help="stop (after a checkpoint) past this wall time")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", default="cpu", help="torch device to train on (cpu, cuda)")
    p.add_argument(
        "--workers",
        type=int,
        default=0,
        help="sample batches in this many worker processes; with workers > 0 each step's batch is "
        "a pure function of (seed, step), the same for any worker count (0: one random stream in "
        "the training process, the recipe of the shipped x2/x3 weights)",
    )
    p.add_argument(
        "--auto-steps-minutes",
        type=float,
        default=0.0,
        help="time 30 throw-away steps, then set --steps so that training takes about this many "
        "minutes; the chosen --steps is logged (pass it explicitly to reproduce the run)",
    )
    p.add_argument("--resume", action="store_true", help="continue from runs/<name>/last.pt")
    p.add_argument(
        "--init",
        type=Path,
        default=None,
        help="start from these weights (safetensors): every tensor whose name and shape match is copied "
        "(fine-tuning, a new scale from another scale's body, or more --n-blocks: added blocks start "
        "as the identity); ignored with --resume",
    )
    p.add_argument("--out", type=Path, default=None, help="export final weights here (safetensors)")
    p.add_argument("--fp16", action="store_true", help="export weights as float16")
    p.add_argument("--runs", type=Path, default=REPO / "runs")
    args = p.parse_args(argv)
    if args.eval:
        return eval_files(args.eval, args.threads)
    if args.scale is None or args.name is None:
        p.error("--scale and --name are required to train")

    torch.set_num_threads(args.threads)
    # Autograd frees and re-allocates the same activations every step: keep them in the
    # process rather than page-faulting them in afresh (same numbers, less system time).
    from esc_cli.api import retain_freed_memory

    retain_freed_memory()
    device = torch.device(args.device)
    if device.type == "cuda":
        # cuBLAS needs this for deterministic results; TF32 matmuls/convs are the training speed.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    torch.manual_seed(args.seed)
    torch.use_deterministic_algorithms(True, warn_only=True)
    scale = args.scale
    patch = args.patch

    run_dir = args.runs / args.name
    run_dir.mkdir(parents=True, exist_ok=True)
    log_file = open(run_dir / "train.log", "a", buffering=1)

    def log(msg: str) -> None:
        line = f"{time.strftime('%H:%M:%S')} {msg}"
        log_file.write(line + "\n")
        log_file.flush()
        print(line, flush=True)

    config = ESCConfig(
        variant="esc",
        scale=scale,
        dim=args.dim,
        pdim=args.pdim,
        kernel_size=args.kernel_size,
        n_blocks=args.n_blocks,
        conv_blocks=args.conv_blocks,
        window_size=args.window,
        num_heads=args.heads,
        exp_ratio=args.exp_ratio,
        use_ln=False,
        upsampler="pixelshuffle",
    )
    model = build_network(config).to(device)
    model.train()
    n_params = sum(t.numel() for t in model.parameters())

    train, weights = load_training_images(TRAIN_IMAGES, patch, scale)
    augment = augment_options(args)
    pool = None
    if args.workers > 0:
        import multiprocessing as mp

        pool = mp.get_context("spawn").Pool(
            args.workers, initializer=_pool_init, initargs=(TRAIN_IMAGES, args.seed, args.batch, patch, scale, augment)
        )

    if args.auto_steps_minutes > 0 and not (args.resume and (run_dir / "last.pt").exists()):
        args.steps = calibrate_steps(model, args, pool, device, train, weights)
        log(f"auto steps: {args.steps} (--auto-steps-minutes {args.auto_steps_minutes})")

    opt = torch.optim.Adam(model.parameters(), lr=args.lr, betas=(0.9, 0.99))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: lr_factor(s, args.steps, args.warmup, args.lr_floor)
    )
    rng = np.random.default_rng(args.seed)
    step = 0
    elapsed = 0.0

    if args.init is not None and not (args.resume and (run_dir / "last.pt").exists()):
        from esc_cli.weights.files import read_state_dict

        source = read_state_dict(args.init)
        own = model.state_dict()
        copied = {k: v.to(device, torch.float32) for k, v in source.items() if k in own and own[k].shape == v.shape}
        model.load_state_dict(copied, strict=False)
        fresh = sorted(set(own) - set(copied))
        # A block added on top of a smaller source network starts as the identity (its last
        # conv at zero), so the grown network starts exactly where the source left off.
        with torch.no_grad():
            for k in fresh:
                if ".conv_out." in k:
                    model.state_dict()[k].zero_()
        log(f"init from {args.init}: {len(copied)} tensors copied, freshly initialised: {fresh}")

    ckpt_path = run_dir / "last.pt"
    if args.resume and ckpt_path.exists():
        ck = torch.load(ckpt_path, weights_only=False, map_location=device)  # our own file, written below
        if ck["args"]["steps"] != args.steps or ck["config"] != asdict(config):
            log("warning: resuming with different --steps or config than the checkpoint")
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        sched.load_state_dict(ck["scheduler"])
        torch.set_rng_state(ck["torch_rng"].cpu())
        rng.bit_generator.state = ck["numpy_rng"]
        step = ck["step"]
        elapsed = ck.get("elapsed", 0.0)
        log(f"resumed from {ckpt_path} at step {step}")

    val = {n.split(".")[0]: load_rgb(n) for n in VAL_IMAGES}
    if args.val_crop:
        c = args.val_crop
        val = {
            n: im[(im.shape[0] - c) // 2 : (im.shape[0] - c) // 2 + c, (im.shape[1] - c) // 2 : (im.shape[1] - c) // 2 + c]
            for n, im in val.items()
        }
    log(
        f"start scale={scale} params={n_params} config={json.dumps(asdict(config))} "
        f"args={json.dumps({k: str(v) for k, v in vars(args).items()})}"
    )

    def checkpoint() -> None:
        tmp = run_dir / "last.pt.tmp"
        torch.save(
            {
                "model": model.state_dict(),
                "optimizer": opt.state_dict(),
                "scheduler": sched.state_dict(),
                "torch_rng": torch.get_rng_state(),
                "numpy_rng": rng.bit_generator.state,
                "step": step,
                "elapsed": elapsed,
                "config": asdict(config),
                "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
            },
            tmp,
        )
        os.replace(tmp, ckpt_path)

    def meta() -> dict:
        return {
            "format": "pt",
            "config": json.dumps(asdict(config)),
            "steps": step,
            "seed": args.seed,
            "recipe": "scripts/train_default.py",
            "init": str(args.init.name) if args.init else "",
        }

    def validate() -> None:
        res = evaluate(model, val, scale)
        parts = " ".join(f"{n}={a:.2f}/{b:.2f}" for n, (a, b) in res.items())
        gain = float(np.mean([a - b for a, b in res.values()]))
        log(f"val step={step} mean_gain_db={gain:+.3f} (model/bicubic) {parts}")

    t_start = time.time() - elapsed
    t_window, loss_acc, n_acc = time.time(), 0.0, 0
    batches = prefetched_batches(pool, step, args.steps, 2 * args.workers + 2) if pool is not None else None
    while step < args.steps:
        if batches is not None:
            lr_img, hr_img = next(batches)
        else:
            lr_img, hr_img = sample_batch(rng, train, weights, args.batch, patch, scale, **augment)
        lr_img = lr_img.to(device, non_blocking=True)
        hr_img = hr_img.to(device, non_blocking=True)
        sr = model(lr_img)
        loss = training_loss(sr, hr_img, args.loss, args.chroma_weight)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        step += 1
        loss_acc += float(loss.detach())
        n_acc += 1
        elapsed = time.time() - t_start
        if step % 50 == 0:
            rate = n_acc / (time.time() - t_window)
            eta = (args.steps - step) / max(rate, 1e-9) / 60
            log(
                f"step={step} loss={loss_acc / n_acc:.5f} lr={sched.get_last_lr()[0]:.2e} "
                f"steps/s={rate:.2f} elapsed_min={elapsed / 60:.1f} eta_min={eta:.0f}"
            )
            t_window, loss_acc, n_acc = time.time(), 0.0, 0
        if step % args.ckpt_every == 0 or step == args.steps:
            checkpoint()
            export_safetensors(model, run_dir / "latest.safetensors", meta(), args.fp16)
        if step % args.val_every == 0 or step == args.steps:
            validate()
        if args.minutes and elapsed > args.minutes * 60 and step < args.steps:
            checkpoint()
            log(f"time budget reached at step {step}; stopping (resume with --resume)")
            break

    if pool is not None:
        pool.terminate()
    export_safetensors(model, run_dir / "latest.safetensors", meta(), args.fp16)
    if step >= args.steps and args.out is not None:
        export_safetensors(model, args.out, meta(), args.fp16)
        log(f"exported {args.out}")
    log(f"done step={step} elapsed_min={elapsed / 60:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
