"""`esc --version`, `--help` and `models list` start without importing torch (docs/usage.md, "Start-up")."""

from __future__ import annotations

import subprocess
import sys

import pytest

PROBE = """
import sys
from esc_cli.cli import main
try:
    code = main(sys.argv[1:])
except SystemExit as exc:
    code = exc.code
print("TORCH" if "torch" in sys.modules else "NO-TORCH", code, file=sys.stderr)
"""


@pytest.mark.parametrize("args", [["--version"], ["--help"], ["models", "list"], ["models", "list", "--json"],
                                  ["upscale", "--help"], ["video", "--help"], ["sample", "--help"]])  # fmt: skip
def test_no_torch_import(args):
    result = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True, timeout=120)
    last = result.stderr.strip().splitlines()[-1]
    assert last in ("NO-TORCH 0", "NO-TORCH None"), result.stderr


def test_the_probe_sees_torch_when_a_command_needs_it(tmp_path):
    """The same probe reports torch for a real upscale, so the check above can fail."""
    from PIL import Image

    Image.new("RGB", (8, 8), "teal").save(tmp_path / "a.png")
    args = ["upscale", str(tmp_path / "a.png"), "-s", "2", "-m", "default-x2", "-q"]
    result = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True, timeout=300)
    assert result.stderr.strip().splitlines()[-1] == "TORCH 0", result.stderr
