"""How long `esc models pull` takes to fail when the weights' sources are down, hanging or stalling.

    python benchmarks/bench_weights_failfast.py

Runs real `esc` subprocesses against loopback stand-ins only (a closed port: refused; a
socket that accepts and never answers: hanging; the fake release host's `stall` mode).
Each case prints the wall time including the interpreter start, and the same command's
baseline: `esc models pull hf://...` (the Hub alone, as every pull was before the release
source existed) under the same conditions, measured in the same run.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.hubserver import BlackHole, HubServer, closed_port  # noqa: E402
from tests.releaseserver import ReleaseServer, golden_pth  # noqa: E402


def _pull(ref: str, hub: str, release: str, **extra: str) -> tuple[float, int, str]:
    with tempfile.TemporaryDirectory() as home:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "ESC_"))}
        env.update(HF_HOME=home, HF_ENDPOINT=hub, ESC_HUB_ORG="org", ESC_UPSTREAM_URL=release, OMP_NUM_THREADS="1", **extra)
        start = time.monotonic()
        proc = subprocess.run([sys.executable, "-m", "esc_cli", "models", "pull", ref], env=env, capture_output=True,
                              text=True, timeout=120)  # fmt: skip
        wall = time.monotonic() - start
    last = (proc.stderr.strip().splitlines() or [""])[-1]
    return wall, proc.returncode, last[:160]


def _case(label: str, hub: str, release: str, **extra: str) -> None:
    both = _pull("esc-x4", hub, release, **extra)
    alone = _pull("hf://org/esc-x4", hub, release, **extra)
    print(f"{label:<34} catalog pull {both[0]:5.1f} s (exit {both[1]})   Hub-only baseline {alone[0]:5.1f} s (exit {alone[1]})")
    print(f"{'':<34} {both[2]}")


def main() -> None:
    refused = f"http://127.0.0.1:{closed_port()}"
    _case("both refused", refused, refused)
    with BlackHole() as hole:
        _case("both hanging", hole.url, hole.url + "/release")
        _case("Hub hanging, release refused", hole.url, refused)
    with HubServer() as hub, ReleaseServer() as release:
        release.release.add("ESC_DIV2K_X4.pth", golden_pth("esc_light_x4"), "stall")
        _case("Hub 404, release body stalls", hub.url, release.base)
        release.release.add("ESC_DIV2K_X4.pth", golden_pth("esc_light_x4"), "404")
        _case("Hub 404, release 404", hub.url, release.base)
        hub.hub.add("org/esc-x4", {"model.safetensors": b"x" * 100_000})
        hub.hub.repos["org/esc-x4"].files["model.safetensors"].stall = True
        _case("Hub body stalls, release 404", hub.url, release.base)


if __name__ == "__main__":
    main()
