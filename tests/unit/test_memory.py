"""esc_cli.engine.memory: freed blocks stay in the process and are reused without page faults."""

from __future__ import annotations

import subprocess
import sys

import pytest

# Allocate, fill and free a 64 MiB tensor 16 times; print the minor page faults of each.
PROBE = """
import resource, sys, torch
if sys.argv[1] == "retain":
    from esc_cli.engine.memory import retain_freed_memory
    assert retain_freed_memory() and retain_freed_memory()  # applied, and idempotent
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(16):
    before = faults()
    t = torch.ones(16 * 2**20); del t
    print(faults() - before)
"""


def _fill_faults(mode: str) -> list[int]:
    out = subprocess.run([sys.executable, "-c", PROBE, mode], check=True, capture_output=True, text=True)
    return [int(line) for line in out.stdout.split()][-16:]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc tuning is Linux-only")
def test_retained_memory_is_reused_without_page_faults():
    # 64 MiB is 16,384 pages of 4 KiB: glibc's default maps it afresh every time.
    assert min(_fill_faults("default")) > 16_000
    # Retained, the freed block is reused: while glibc's free lists settle (an aligned
    # request can be a little larger than the block just freed) a few fills still take
    # fresh pages, then the same block serves every fill with no fault at all.
    retained = _fill_faults("retain")
    assert min(retained[8:]) < 500
    assert sum(retained[8:]) <= 4 * 16_384


def test_environment_switch_turns_it_off():
    import os

    code = "from esc_cli.engine.memory import retain_freed_memory; print(retain_freed_memory())"
    env = dict(os.environ, ESC_RETAIN_FREED_MEMORY="0")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True, env=env)
    assert out.stdout.strip() == "False"
