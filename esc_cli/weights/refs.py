"""Parsing model references: a catalog name, a local file, or `hf://owner/repo/path[@revision]`.

Grammar of Hub references (checked strictly, since parts become URL and cache paths):

    hf://OWNER/REPO[/PATH/IN/REPO][@REVISION][#sha256=HEX]

PATH defaults to `model.safetensors`; REVISION (a branch, tag or 40-hex commit; it may
contain `/` as in `refs/pr/1`) defaults to `main`; the optional `#sha256=` pins the
file's digest so a download with other bytes is refused.

Resolution order for a bare string: `hf://` prefix, then catalog name, then an existing
file; write `./name` to mean a file that shares a catalog name.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

from esc_cli.errors import UnknownModelError, UsageError
from esc_cli.weights import catalog
from esc_cli.weights.catalog import CatalogEntry
from esc_cli.weights.digest import is_sha256

HF_SCHEME = "hf://"
DEFAULT_FILENAME = catalog.HUB_FILENAME
DEFAULT_REVISION = "main"

_ID_PART = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")
_PATH_PART = re.compile(r"^[A-Za-z0-9._+=@,()\[\] -]{1,255}$")
_REVISION = re.compile(r"^[A-Za-z0-9._/-]{1,255}$")


@dataclass(frozen=True)
class HubRef:
    """A file in a Hub model repository, optionally pinned by sha256."""

    repo_id: str
    filename: str = DEFAULT_FILENAME
    revision: str = DEFAULT_REVISION
    sha256: Optional[str] = None

    def __str__(self) -> str:
        text = f"{HF_SCHEME}{self.repo_id}/{self.filename}@{self.revision}"
        return text + (f"#sha256={self.sha256}" if self.sha256 else "")


@dataclass(frozen=True)
class FileRef:
    """A checkpoint on the local disk."""

    path: Path

    def __str__(self) -> str:
        return str(self.path)


@dataclass(frozen=True)
class CatalogRef:
    """A catalog row (official Hub conversion or bundled default)."""

    entry: CatalogEntry

    def __str__(self) -> str:
        return self.entry.name


ModelRef = Union[HubRef, FileRef, CatalogRef]


def _check_segment(part: str, what: str, text: str) -> None:
    if part in ("", ".", "..") or not _PATH_PART.fullmatch(part):
        raise UsageError(f"{text}: invalid {what} {part!r} (use letters, digits and ._-; no '..')")


def parse_hf(text: str) -> HubRef:
    """Parse `hf://owner/repo[/path][@rev][#sha256=hex]`; raise `UsageError` when malformed."""
    if not text.startswith(HF_SCHEME):
        raise UsageError(f"{text}: not an hf:// reference")
    body = text[len(HF_SCHEME):]
    sha = None
    if "#" in body:
        body, _, fragment = body.partition("#")
        key, _, value = fragment.partition("=")
        if key != "sha256" or not is_sha256(value.lower()):
            raise UsageError(f"{text}: the fragment must be #sha256=<64 hex digits>")
        sha = value.lower()
    revision = DEFAULT_REVISION
    if "@" in body:
        body, _, revision = body.rpartition("@")
        if not revision or not _REVISION.fullmatch(revision) or ".." in revision or revision.startswith("/") or revision.endswith("/"):
            raise UsageError(f"{text}: invalid revision {revision!r} after '@' (a branch, tag or commit id)")
    parts = body.split("/")
    if len(parts) < 2:
        raise UsageError(f"{text}: expected hf://OWNER/REPO/PATH/IN/REPO.safetensors, optionally @REVISION")
    owner, repo, path_parts = parts[0], parts[1], parts[2:]
    for part, what in ((owner, "owner"), (repo, "repository name")):
        if not _ID_PART.fullmatch(part) or ".." in part:
            raise UsageError(f"{text}: invalid {what} {part!r}")
    if path_parts == [] or path_parts == [""]:
        filename = DEFAULT_FILENAME
    else:
        for part in path_parts:
            _check_segment(part, "path segment", text)
        filename = "/".join(path_parts)
    return HubRef(f"{owner}/{repo}", filename, revision, sha)


def parse_ref(text: str, *, scale: Optional[float] = None) -> ModelRef:
    """Classify a `--model` value; catalog families take the model scale for `scale`.

    Raises `UsageError` for a malformed hf:// reference and `UnknownModelError` (exit 2) when the
    text is neither a catalog name nor an existing file.
    """
    text = text.strip()
    if not text:
        raise UsageError("empty model reference; give a catalog name, a file or hf://owner/repo/file")
    if text.lower().startswith(HF_SCHEME):
        return parse_hf(HF_SCHEME + text[len(HF_SCHEME):])
    explicit_path = text.startswith((".", "/", "~")) or "/" in text or "\\" in text
    if not explicit_path:
        entry = catalog.find(text, scale=scale)
        if entry is not None:
            return CatalogRef(entry)
    path = Path(text).expanduser()
    if path.exists():
        return FileRef(path)
    if explicit_path or path.suffix.lower() in (".pth", ".pt", ".safetensors", ".ckpt", ".bin"):
        raise UnknownModelError(f"{text}: no such file; give an existing .pth or .safetensors checkpoint")
    catalog.lookup(text, scale=scale)  # raises with suggestions
    raise UnknownModelError(f"{text}: no such model")  # pragma: no cover - lookup raised


def hub_ref(entry: CatalogEntry) -> HubRef:
    """The Hub file of an official catalog row (organisation from $ESC_HUB_ORG)."""
    if entry.bundled or entry.repo_id is None or entry.revision is None:
        raise ValueError(f"{entry.name} is bundled, not on the Hub")
    return HubRef(entry.repo_id, entry.filename, entry.revision, entry.sha256)
