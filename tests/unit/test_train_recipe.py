"""The default-model training recipe (scripts/train_default.py): batch sampling and prefetch."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
from safetensors.torch import load_file

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "train_default.py"


def _recipe():
    spec = importlib.util.spec_from_file_location("train_default", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class _CountingPool:
    """Runs jobs at once but records how many results were requested and not yet taken."""

    def __init__(self, fn):
        self.fn = fn
        self.in_flight = 0
        self.most_in_flight = 0

    def apply_async(self, _fn, args):
        pool = self
        pool.in_flight += 1
        pool.most_in_flight = max(pool.most_in_flight, pool.in_flight)

        class _Result:
            def get(self_inner):
                pool.in_flight -= 1
                return pool.fn(*args)

        return _Result()


def test_prefetch_keeps_order_and_a_bounded_number_in_flight():
    recipe = _recipe()
    pool = _CountingPool(lambda step: step * 10)
    got = list(recipe.prefetched_batches(pool, 3, 40, depth=4))
    assert got == [s * 10 for s in range(3, 40)]
    assert pool.most_in_flight == 4


def test_per_step_batches_depend_on_seed_and_step_only():
    recipe = _recipe()
    recipe._pool_init(["astronaut.png", "camera.png"], 7, 2, 8, 2, {})
    a_lr, a_hr = recipe._pool_batch(5)
    recipe._pool_batch(6)
    b_lr, b_hr = recipe._pool_batch(5)
    assert a_lr.shape == (2, 3, 8, 8) and a_hr.shape == (2, 3, 16, 16)
    assert np.array_equal(a_lr.numpy(), b_lr.numpy()) and np.array_equal(a_hr.numpy(), b_hr.numpy())
    c_lr, _ = recipe._pool_batch(6)
    assert not np.array_equal(a_lr.numpy(), c_lr.numpy())


def test_training_is_the_same_for_any_worker_count(tmp_path):
    import subprocess

    weights = []
    for workers in (1, 2):
        runs = tmp_path / f"w{workers}"
        cmd = [sys.executable, str(SCRIPT), "--scale", "2", "--name", "t", "--runs", str(runs),
               "--workers", str(workers), "--steps", "4", "--batch", "2", "--patch", "8",
               "--val-every", "100", "--val-crop", "32"]
        subprocess.run(cmd, check=True, capture_output=True, timeout=600)
        weights.append(load_file(str(runs / "t" / "latest.safetensors")))
    assert weights[0].keys() == weights[1].keys()
    for key in weights[0]:
        assert (weights[0][key] == weights[1][key]).all(), key


def test_luma_loss_weighs_luma_and_only_a_share_of_chroma():
    import torch

    recipe = _recipe()
    hr = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    wr, wg, wb = recipe.LUMA_WEIGHTS
    # A change of colour with no change of BT.601 luma costs only the chroma share.
    chroma_only = torch.tensor([wg, -wr, 0.0]).view(1, 3, 1, 1) * 0.1
    rgb_mse = float(chroma_only.pow(2).mean())
    loss = float(recipe.training_loss(hr + chroma_only, hr, "mse-y", chroma_weight=0.25))
    assert abs(loss - 0.25 * rgb_mse) < 1e-9
    assert float(recipe.training_loss(hr + chroma_only, hr, "mse-y", chroma_weight=0.0)) < 1e-12
    # A grey shift of d moves the luma by d * sum(weights).
    d = 0.05
    loss = float(recipe.training_loss(hr + d, hr, "mse-y", chroma_weight=0.0))
    assert abs(loss - (d * (wr + wg + wb)) ** 2) < 1e-9
    # The PSNR-Y metric uses the same weights (x 255 for 8-bit, plus the 16 offset).
    assert abs(wr * 255 - 65.481) < 1e-9 and abs(wg * 255 - 128.553) < 1e-9 and abs(wb * 255 - 24.966) < 1e-9
    assert abs(float(recipe.training_loss(hr + d, hr, "mse")) - d * d) < 1e-8


def test_augmentations_are_off_by_default_and_do_what_they_say():
    recipe = _recipe()
    images, weights = recipe.load_training_images(["astronaut.png", "coins.png"], 8, 2)

    def batch(**augment):
        return recipe.sample_batch(np.random.default_rng(11), images, weights, 4, 8, 2, **augment)

    plain_lr, plain_hr = batch()
    off_lr, off_hr = batch(zoom_out=1.0, channel_shuffle=False)
    assert np.array_equal(plain_lr.numpy(), off_lr.numpy()) and np.array_equal(plain_hr.numpy(), off_hr.numpy())
    # The first crop's image, position, flips and rotation are drawn before its channel
    # order, so with shuffling it holds the same values per pixel, in some channel order.
    _, shuffled_hr = batch(channel_shuffle=True)
    assert np.array_equal(np.sort(shuffled_hr[0].numpy(), axis=0), np.sort(plain_hr[0].numpy(), axis=0))
    assert not np.array_equal(shuffled_hr.numpy(), plain_hr.numpy())
    zoom_lr, zoom_hr = batch(zoom_out=0.5)
    assert zoom_lr.shape == plain_lr.shape and zoom_hr.shape == plain_hr.shape
    assert not np.array_equal(zoom_hr.numpy(), plain_hr.numpy())
    assert float(zoom_hr.min()) >= 0.0 and float(zoom_hr.max()) <= 1.0
