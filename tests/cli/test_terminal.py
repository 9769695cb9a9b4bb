"""What a person sees in a real terminal (tmux): one line per finished item above the live bars, the summary
after the bars are gone, nothing left of the bars, labels of one width."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import time
import uuid

import pytest
from PIL import Image

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux (apt-get install tmux)")


def _screen_after(command: str, tmp_path, *, width: int = 110, height: int = 40, timeout: float = 120) -> list[str]:
    socket = f"esc-test-{uuid.uuid4().hex[:8]}"
    tmux = ["tmux", "-L", socket]
    script = f"{command}; echo EXIT=$?; sleep 60"
    env = dict(os.environ, HF_HUB_OFFLINE="1", TERM="xterm-256color")
    env.pop("NO_COLOR", None)
    subprocess.run([*tmux, "new-session", "-d", "-x", str(width), "-y", str(height), script], check=True, env=env,
                   cwd=tmp_path)  # fmt: skip
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            screen = subprocess.run([*tmux, "capture-pane", "-p"], capture_output=True, text=True).stdout
            if "EXIT=" in screen:
                return screen.rstrip().splitlines()
            time.sleep(0.3)
        pytest.fail(f"the command did not finish in {timeout} s:\n{screen}")
    finally:
        subprocess.run([*tmux, "kill-server"], capture_output=True)


def test_batch_in_a_real_terminal(tmp_path):
    for i in range(3):
        Image.new("RGB", (48, 40), (40 * i, 90, 160)).save(tmp_path / f"p{i}.png")
    esc = f"{shlex.quote(sys.executable)} -m esc_cli"
    lines = _screen_after(f"{esc} upscale . -s 2 -m default-x2 --tile 16 --device cpu", tmp_path)
    text = "\n".join(lines)
    assert lines[-1] == "EXIT=0", text
    items = [line for line in lines if line.startswith("[") and " -> " in line]
    assert len(items) == 3 and all("/3] p" in line and "_x2.png (" in line for line in items), text
    summary = lines.index(next(line for line in lines if line.startswith("3 done, 0 skipped, 0 failed")))
    assert summary > max(lines.index(line) for line in items), "the summary comes after every item line"
    assert summary == len(lines) - 2, "nothing follows the summary but the exit status: the bars are gone"
    assert not any("━" in line or "images" in line.split() for line in lines), "no bar is left on screen"


def test_a_failed_item_leaves_its_line(tmp_path):
    Image.new("RGB", (16, 16), "teal").save(tmp_path / "ok.png")
    (tmp_path / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x01" * 50)
    esc = f"{shlex.quote(sys.executable)} -m esc_cli"
    lines = _screen_after(f"{esc} upscale ok.png bad.png -s 2 -m default-x2 --device cpu", tmp_path)
    text = "\n".join(lines)
    assert lines[-1] == "EXIT=1", text
    assert any(line.startswith("failed:") and "bad.png" in line for line in lines), text
    assert any(" -> " in line and "ok_x2.png" in line for line in lines), text
    assert lines[-2].startswith("1 done, 0 skipped, 1 failed"), text
