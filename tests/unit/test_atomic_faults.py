"""Temp naming, stale-temp cleanup and the no-replace final move of esc_cli.io.atomic."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from esc_cli.errors import OutputError, OutputExistsError
from esc_cli.io.atomic import (
    atomic_output,
    host_tag,
    is_stale_temp,
    move_no_replace,
    remove_stale_temps,
    temp_prefix,
)


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_temp_name_carries_host_and_pid(tmp_path):
    out = tmp_path / "a_x2.png"
    with atomic_output(out) as tmp:
        assert tmp.name.startswith(f".a_x2.{host_tag()}-{os.getpid()}-")
        assert tmp.name.endswith(".esc-tmp.png")
        assert not is_stale_temp(tmp)  # this process runs
        tmp.write_bytes(b"data")
    assert out.read_bytes() == b"data" and sorted(p.name for p in tmp_path.iterdir()) == ["a_x2.png"]


def test_stale_temps_of_gone_writers_removed_live_and_foreign_kept(tmp_path):
    dead = _dead_pid()
    stale = tmp_path / f".a.{host_tag()}-{dead}-abc123.esc-tmp.png"
    stale_dir = tmp_path / f".v.{host_tag()}-{dead}-abc123.esc-tmp.d"
    live = tmp_path / f".b.{host_tag()}-{os.getppid()}-abc123.esc-tmp.png"
    other_host = tmp_path / f".c.someotherhost-{dead}-abc123.esc-tmp.png"
    old_style = tmp_path / ".d.abc123.esc-tmp.png"  # writer unknown: left alone
    for path in (stale, live, other_host, old_style):
        path.write_bytes(b"x")
    stale_dir.mkdir()
    (stale_dir / "seg0.mkv").write_bytes(b"x")
    removed = remove_stale_temps(tmp_path)
    assert sorted(removed) == sorted([stale, stale_dir])
    assert live.exists() and other_host.exists() and old_style.exists()


def test_prefix_is_ours(tmp_path):
    assert temp_prefix(tmp_path / "x.y.png") == f".x.y.{host_tag()}-{os.getpid()}-"


def test_final_move_never_replaces_a_file_that_appeared(tmp_path):
    out = tmp_path / "o.png"
    with pytest.raises(OutputExistsError, match="o.png: (already exists|appeared)"):
        with atomic_output(out) as tmp:
            tmp.write_bytes(b"mine")
            out.write_bytes(b"theirs")  # another run finishes first
    assert out.read_bytes() == b"theirs" and sorted(p.name for p in tmp_path.iterdir()) == ["o.png"]


def test_move_no_replace_refuses_an_existing_name(tmp_path):
    tmp, out = tmp_path / "t", tmp_path / "o"
    tmp.write_bytes(b"mine")
    out.write_bytes(b"theirs")
    with pytest.raises(OutputExistsError, match="appeared while this item ran"):
        move_no_replace(tmp, out)
    assert out.read_bytes() == b"theirs"


def test_overwrite_replaces(tmp_path):
    out = tmp_path / "o.png"
    out.write_bytes(b"old")
    with atomic_output(out, overwrite=True) as tmp:
        tmp.write_bytes(b"new")
    assert out.read_bytes() == b"new"


def test_move_no_replace_moves(tmp_path):
    tmp, out = tmp_path / "t", tmp_path / "o"
    tmp.write_bytes(b"x")
    move_no_replace(tmp, out)
    assert out.read_bytes() == b"x" and not tmp.exists()


def test_existing_output_is_an_output_error_subclass(tmp_path):
    out = tmp_path / "o.png"
    out.write_bytes(b"x")
    with pytest.raises(OutputError, match="already exists"):
        with atomic_output(out):
            pass
    assert issubclass(OutputExistsError, OutputError) and Path(out).read_bytes() == b"x"
