"""Each documented exit code (README, docs/usage.md) for the failure it names; 130 and 143 are in the signal
tests of test_upscale.py and test_video.py."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from PIL import Image

from esc_cli.cli import main
from esc_cli.errors import EXIT_NOTHING_DONE, EXIT_OK, EXIT_SOME_FAILED, EXIT_USAGE


@pytest.fixture
def photos(tmp_path):
    good = tmp_path / "good.png"
    Image.new("RGB", (12, 10), "teal").save(good)
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    return good, broken


def run(*args: str) -> int:
    return main(["upscale", *args, "-s", "2", "-m", "default-x2", "--device", "cpu"])


def test_0_when_everything_is_done(photos, tmp_path):
    assert run(str(photos[0]), "-o", str(tmp_path / "out.png")) == EXIT_OK


def test_1_when_some_items_failed(photos, tmp_path):
    assert run(str(photos[0]), str(photos[1]), "-o", str(tmp_path / "out")) == EXIT_SOME_FAILED


@pytest.mark.parametrize("bad", [["-m", "esc-ligth-x4"], ["-m", "./nowhere.safetensors"], ["--alpha", "bogus"],
                                 ["--scale", "0.5"], ["--quality", "0"], ["--frobnicate"], ["--device", "tpu"]])  # fmt: skip
def test_2_for_a_bad_option_value_or_unknown_model(photos, tmp_path, bad):
    out = tmp_path / "out.png"
    assert main(["upscale", str(photos[0]), "-o", str(out), *bad]) == EXIT_USAGE
    assert not out.exists()


def test_3_when_nothing_could_be_processed(photos, tmp_path):
    assert run(str(tmp_path / "missing.png")) == EXIT_NOTHING_DONE
    assert run(str(photos[1]), "-o", str(tmp_path / "out.png")) == EXIT_NOTHING_DONE


def test_a_typo_in_the_model_name_exits_2_from_the_real_command(photos, tmp_path):
    """The console script maps the error the same way, with one line naming the model and the fix."""
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    result = subprocess.run([sys.executable, "-m", "esc_cli", "upscale", str(photos[0]), "-m", "esc-ligth-x4"],
                            capture_output=True, text=True, env=env, timeout=120)  # fmt: skip
    assert result.returncode == EXIT_USAGE
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "esc-ligth-x4" in lines[0] and "esc models list" in lines[0], result.stderr
    assert "Traceback" not in result.stderr
