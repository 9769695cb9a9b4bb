"""The README's first command, as a newcomer runs it: an empty folder, no network, no image of their own."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

from PIL import Image

README = Path(__file__).resolve().parents[2] / "README.md"


def _first_command() -> str:
    """The README's first shell line, without its comment."""
    lines = README.read_text(encoding="utf-8").split("```bash", 1)[1].split("```", 1)[0].strip().splitlines()
    return lines[0].split("#", 1)[0].strip()


def test_the_readme_first_command_upscales_a_photo_offline(tmp_path):
    command = _first_command()
    steps = [step.strip() for step in command.split("&&")]
    assert steps[0].startswith("pip install"), command  # the install steps are what CI runs before the tests
    runnable = [s for s in steps if not s.startswith("pip ")]
    assert runnable and all(shlex.split(s)[0] == "esc" for s in runnable), command
    bin_dir = Path(sys.executable).parent  # the environment the package is installed in
    env = dict(os.environ, HF_HUB_OFFLINE="1", PATH=f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    env.pop("ESC_BUNDLED_DIR", None)
    result = subprocess.run(" && ".join(runnable), shell=True, cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=300)  # fmt: skip
    assert result.returncode == 0, result.stderr
    with Image.open(tmp_path / "photo.png") as small, Image.open(tmp_path / "photo_x4.png") as big:
        assert big.size == (small.width * 4, small.height * 4)
        assert big.getextrema() != ((0, 0), (0, 0), (0, 0))  # not a black image
    assert "error" not in result.stderr.lower()


def test_sample_is_idempotent_and_never_overwrites_another_file(tmp_path):
    from esc_cli.cli import main

    target = tmp_path / "photo.png"
    assert main(["sample", str(target)]) == 0
    first = target.read_bytes()
    assert main(["sample", str(target)]) == 0  # the same file again: kept as it is
    assert target.read_bytes() == first
    mine = tmp_path / "mine.png"
    mine.write_bytes(b"my own picture")
    assert main(["sample", str(mine)]) == 3 and mine.read_bytes() == b"my own picture"
    assert main(["sample", str(mine), "--overwrite"]) == 0
    assert mine.read_bytes() == first
    assert not [p for p in tmp_path.iterdir() if "esc-tmp" in p.name]
