"""The catalog with each row's local state, read without torch and without any network request.

`esc models list` runs on this alone, so it starts fast (docs/usage.md, "Start-up").
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from esc_cli.weights import catalog, hub, sources, store
from esc_cli.weights.catalog import CatalogEntry


def _parameter_count(path: Path) -> Optional[int]:
    """Parameters in a safetensors file, from its header alone (numpy view: no torch, no tensor read)."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="numpy") as handle:
            return sum(math.prod(handle.get_slice(k).get_shape()) for k in handle.keys() if not k.endswith("init_pos"))
    except (OSError, ValueError, RuntimeError):
        return None


# --- list ----------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelStatus:
    """A catalog row and where its file is locally: `state` is cached, not cached, bundled or missing;
    `origin` says which source a cached file came from (`hub` mirror or `upstream` release)."""

    entry: CatalogEntry
    state: str
    path: Optional[Path]
    variant: str = ""
    params: Optional[int] = None
    origin: str = ""

    def to_dict(self) -> dict:
        e = self.entry
        return {
            "name": e.name, "family": e.family, "variant": self.variant, "scale": e.scale, "params": self.params,
            "state": self.state, "path": str(self.path) if self.path else None, "source": e.source,
            "revision": e.revision, "sha256": e.sha256, "license": e.license, "upstream": e.upstream,
            "description": e.description, "origin": self.origin or None, "upstream_url": e.upstream_url(),
        }  # fmt: skip


def model_status(entry: CatalogEntry) -> ModelStatus:
    """Where a row's file is, without any network request."""
    if entry.bundled:
        path = catalog.bundled_path(entry)
        if not path.is_file():
            return ModelStatus(entry, "missing", None, entry.variant, entry.params)
        return ModelStatus(entry, "bundled", path, entry.variant, _parameter_count(path) or entry.params)
    cached, origin = sources.cached(entry)
    return ModelStatus(entry, "cached" if cached else "not cached", cached, entry.variant, entry.params, origin)


def list_models() -> list[ModelStatus]:
    """Every catalog row with its local state (no network)."""
    return [model_status(e) for e in catalog.entries()]


def cache_locations() -> dict[str, str]:
    """Where downloaded weights live: the Hub cache and the folder of converted release files."""
    return {"hub": str(hub.settings().cache_dir), "upstream": str(store.store_dir())}
