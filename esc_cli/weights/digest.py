"""sha256 of files, and the check that a file matches a pinned one."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Union

SHA256_RE = re.compile(r"^[0-9a-f]{64}$")


def sha256_file(path: Union[str, Path], *, chunk_size: int = 1 << 20) -> str:
    """The lowercase hex sha256 of the file's bytes (read in 1 MiB chunks)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(chunk_size), b""):
            digest.update(chunk)
    return digest.hexdigest()


def is_sha256(text: object) -> bool:
    """True for a 64-character lowercase hex string."""
    return isinstance(text, str) and SHA256_RE.fullmatch(text) is not None
