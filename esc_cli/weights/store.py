"""Where official checkpoints converted from the upstream release live, and what was recorded about them.

Layout, beside the Hugging Face cache (`$HF_HOME`, default `~/.cache/huggingface`):

    $HF_HOME/esc/upstream/<catalog name>.safetensors   the converted tensors
    $HF_HOME/esc/upstream/<catalog name>.json          digests of the release file and of the conversion

`$ESC_UPSTREAM_CACHE` moves the folder (tests, read-only homes). The record is the integrity
anchor where the catalog pins nothing: the first download's sha256 is trusted, and a
later download of the same release file with other bytes is refused. Nothing here talks
to the network.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from esc_cli.weights.catalog import CatalogEntry
from esc_cli.weights.digest import is_sha256

STORE_ENV = "ESC_UPSTREAM_CACHE"
PARTIAL_PREFIX = ".partial-"
"""Temp files of downloads and conversions in progress start with this (and are swept)."""


@dataclass(frozen=True)
class Record:
    """What was stored for one catalog row: the release file's sha256 and size, the conversion's sha256."""

    upstream_file: str
    upstream_sha256: str
    upstream_size: int
    sha256: str
    url: str

    def to_json(self) -> str:
        return json.dumps(self.__dict__, indent=2) + "\n"


def store_dir() -> Path:
    """The folder of converted release files: $ESC_UPSTREAM_CACHE, else `$HF_HOME/esc/upstream`.

    HF_HOME is taken as huggingface_hub resolved it (at its import), else from the environment.
    """
    override = os.environ.get(STORE_ENV, "").strip()
    if override:
        return Path(override).expanduser()
    try:
        from huggingface_hub import constants

        home = constants.HF_HOME
    except ImportError:  # pragma: no cover - a declared dependency
        home = os.environ.get("HF_HOME") or os.path.join(os.path.expanduser("~"), ".cache", "huggingface")
    return Path(home).expanduser() / "esc" / "upstream"


def converted_path(entry: CatalogEntry) -> Path:
    """Where the converted file of `entry` is (whether or not it exists)."""
    return store_dir() / f"{entry.name}.safetensors"


def record_path(entry: CatalogEntry) -> Path:
    return store_dir() / f"{entry.name}.json"


def read_record(entry: CatalogEntry) -> Optional[Record]:
    """The recorded digests of `entry`, or None when absent or unreadable (an unreadable record pins nothing)."""
    try:
        data = json.loads(record_path(entry).read_text(encoding="utf-8"))
        record = Record(str(data["upstream_file"]), str(data["upstream_sha256"]), int(data["upstream_size"]),
                        str(data["sha256"]), str(data["url"]))  # fmt: skip
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not (is_sha256(record.upstream_sha256) and is_sha256(record.sha256)):
        return None
    return record


def cached(entry: CatalogEntry) -> Optional[Path]:
    """The converted file of `entry` when present together with its record, else None. No network."""
    path = converted_path(entry)
    if path.is_file() and read_record(entry) is not None:
        return path
    return None


def commit(entry: CatalogEntry, converted_tmp: Path, record: Record) -> Path:
    """Move a finished conversion into place: the record first (a temp file renamed), then the tensors.

    Both temp files must be inside `store_dir()`, so each rename is atomic. A crash between
    the two leaves a record without a file, which `cached` ignores and the next download
    rewrites (its upstream sha256 still binds that download).
    """
    folder = store_dir()
    target = converted_path(entry)
    tmp_record = folder / f"{PARTIAL_PREFIX}{entry.name}.{os.getpid()}.json"
    tmp_record.write_text(record.to_json(), encoding="utf-8")
    os.replace(tmp_record, record_path(entry))
    os.chmod(converted_tmp, 0o644)
    os.replace(converted_tmp, target)
    return target


def temp_path(entry: CatalogEntry, suffix: str) -> Path:
    """A fresh temp file name inside the store (created with the folder if needed)."""
    folder = store_dir()
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{PARTIAL_PREFIX}{entry.name}.{os.getpid()}{suffix}"


def remove(entry: CatalogEntry) -> None:
    """Delete a converted file (its record stays: it still binds the release file's bytes)."""
    converted_path(entry).unlink(missing_ok=True)


def sweep(max_age: float = 3600.0) -> list[Path]:
    """Delete temp files a killed process left in the store (older than `max_age` seconds,
    so a download running in another process is never touched); return what was deleted."""
    import time

    folder = store_dir()
    if not folder.is_dir():
        return []
    removed = []
    now = time.time()
    for path in folder.iterdir():
        try:
            if path.name.startswith(PARTIAL_PREFIX) and now - path.stat().st_mtime > max_age:
                path.unlink()
                removed.append(path)
        except OSError:
            continue
    return removed
