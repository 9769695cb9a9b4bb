"""Shared fixtures: thread count, fixture paths, tiny random models."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

# No test may reach the real release host: the official release base URL points at a
# loopback port where nothing listens unless a test sets its own (tests/releaseserver.py).
DEAD_UPSTREAM = "http://127.0.0.1:9/esc-release"
os.environ["ESC_UPSTREAM_URL"] = DEAD_UPSTREAM

FIXTURES = Path(__file__).parent / "fixtures"
GOLDEN = FIXTURES / "golden"

# One thread: tiny models run ~100x slower with two threads on a loaded 2-core machine,
# and tests that start subprocesses leave the other core to them.
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def golden_dir() -> Path:
    return GOLDEN


@pytest.fixture
def tiny_config():
    """A small ESC config (window 8) that runs in milliseconds."""
    from esc_cli.model import ESCConfig

    return ESCConfig(variant="esc", scale=2, dim=16, pdim=8, kernel_size=7, n_blocks=1, conv_blocks=2,
                     window_size=8, num_heads=2, exp_ratio=1.25, use_ln=False, upsampler="pixelshuffle")


@pytest.fixture
def tiny_model(tiny_config):
    """A random-weight tiny ESC x2 in eval mode."""
    from esc_cli.model import build_network

    torch.manual_seed(0)
    return build_network(tiny_config).eval().requires_grad_(False)


def restore_sigint() -> None:
    """`preexec_fn` for subprocesses a test interrupts: undo an inherited SIG_IGN.

    A shell's background job (`cmd &`, nohup, some CI runners) starts with SIGINT
    ignored, and a Python child then never raises KeyboardInterrupt.
    """
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)
