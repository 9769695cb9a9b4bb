"""esc_cli.engine.memory: freed blocks stay in the process and are reused without page faults."""

from __future__ import annotations

import subprocess
import sys

import pytest

# Allocate and fill a 64 MiB tensor 4 times to settle the heap, then 3 more times: print
# the minor page faults of those 3. (glibc may place the 2nd or 3rd block afresh while
# its free lists settle, after which the same block is reused every time.)
PROBE = """
import resource, sys, torch
if sys.argv[1] == "retain":
    from esc_cli.engine.memory import retain_freed_memory
    assert retain_freed_memory() and retain_freed_memory()  # applied, and idempotent
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(4):
    t = torch.ones(16 * 2**20); del t
before = faults()
for _ in range(3):
    t = torch.ones(16 * 2**20); del t
print(faults() - before)
"""


def _steady_fill_faults(mode: str) -> int:
    out = subprocess.run([sys.executable, "-c", PROBE, mode], check=True, capture_output=True, text=True)
    return int(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc tuning is Linux-only")
def test_retained_memory_is_reused_without_page_faults():
    # 64 MiB is 16,384 pages of 4 KiB: glibc's default mmaps it afresh each time.
    assert _steady_fill_faults("default") > 3 * 16_000
    assert _steady_fill_faults("retain") < 500


def test_environment_switch_turns_it_off():
    import os

    code = "from esc_cli.engine.memory import retain_freed_memory; print(retain_freed_memory())"
    env = dict(os.environ, ESC_RETAIN_FREED_MEMORY="0")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True, env=env)
    assert out.stdout.strip() == "False"
