"""Helpers of the fault-injection suite: run the real `esc` command in a subprocess and check what
every hostile input or fault must leave behind (see docs/reliability.md)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
from PIL import Image


@dataclass
class Run:
    rc: int
    stdout: str
    stderr: str

    @property
    def events(self) -> list[dict]:
        return [json.loads(line) for line in self.stdout.splitlines() if line.startswith("{")]

    def items(self, status: Optional[str] = None) -> list[dict]:
        return [e for e in self.events if e.get("event") == "item" and (status is None or e["status"] == status)]


def esc(args: Sequence[str], cwd: Path, *, timeout: float = 180, preexec: Optional[Callable[[], None]] = None,
        env: Optional[dict] = None) -> Run:
    """Run `python -m esc_cli ARGS` in `cwd` offline (no Hub) and return its exit code and output."""
    full_env = {**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})}
    proc = subprocess.run([sys.executable, "-m", "esc_cli", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, preexec_fn=preexec, env=full_env)
    return Run(proc.returncode, proc.stdout, proc.stderr)


def noise_png(path: Path, size: tuple[int, int] = (16, 12), seed: int = 0, mode: str = "RGB") -> Path:
    """A small image of random pixels (the hardest content for encoders)."""
    width, height = size
    channels = {"RGB": 3, "RGBA": 4, "L": 1}[mode]
    arr = np.random.default_rng(seed).integers(0, 256, (height, width, channels), dtype=np.uint8)
    Image.fromarray(arr[..., 0] if channels == 1 else arr, mode=mode).save(path)
    return path


def digests(folder: Path) -> dict[str, str]:
    """sha256 of every regular file under `folder` (by relative path); links are not followed."""
    out = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file() and not path.is_symlink():
            out[str(path.relative_to(folder))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def leftovers(folder: Path) -> list[str]:
    """Temp or partial files (`esc-tmp`, `.esc-` work folders) anywhere under `folder`."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if "esc-tmp" in p.name or p.name.startswith(".esc-"))


def valid_image(path: Path) -> tuple[int, int]:
    """Decode `path` fully (raises on a corrupt file); returns its size."""
    with Image.open(path) as im:
        im.load()
        return im.size


def one_line_naming(run: Run, name: str) -> list[str]:
    """The stderr lines that name `name` (each a one-line message, no traceback)."""
    assert "Traceback" not in run.stderr, run.stderr
    return [line for line in run.stderr.splitlines() if name in line]
