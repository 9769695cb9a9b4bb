"""Turning a model reference (catalog name, file, hf:// URL, or nothing) into a loaded network.

Without a reference the best official model for the scale is used (`esc-dflip-x{2,3,4}`,
see `esc_cli.weights.catalog.default_entry`), from the cache, the Hub mirror or the
upstream release; when none of them gives it, the bundled default for that scale is used
instead, with a one-line notice through `warn` naming what was tried and the command that fixes it. An explicit reference never falls back.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Union

import torch

from esc_cli.api.loading import load_model
from esc_cli.errors import CheckpointError, DownloadError, IntegrityError, ModelNotFoundError
from esc_cli.model import ESCNetwork
from esc_cli.weights import catalog, hub, sources
from esc_cli.weights.catalog import CatalogEntry
from esc_cli.weights.digest import sha256_file
from esc_cli.weights.refs import CatalogRef, FileRef, HubRef, ModelRef, parse_ref

Progress = Union[hub.ProgressCallback, bool, None]


@dataclass(frozen=True)
class ResolvedModel:
    """A model reference resolved to a local file.

    `entry` is the catalog row when the reference named one (or was the default);
    `fallback_from` is the official entry that could not be had when the bundled
    default stands in for it.
    """

    path: Path
    ref: ModelRef
    entry: Optional[CatalogEntry] = None
    fallback_from: Optional[CatalogEntry] = None


def bundled_file(entry: CatalogEntry) -> Path:
    """The file of a bundled row, checked against its pinned sha256 when the table has one
    (unless $ESC_BUNDLED_DIR supplies the files)."""
    path = catalog.bundled_path(entry)
    if not path.is_file():
        raise ModelNotFoundError(
            f"{entry.name}: the bundled file {path} is missing; reinstall esc or choose another model (esc models list)"
        )
    pinned = catalog.pinned_sha256(entry)
    if pinned is not None and sha256_file(path) != pinned:
        raise IntegrityError(f"{path}: does not match the sha256 pinned for {entry.name}; reinstall esc")
    return path


def resolve_entry(entry: CatalogEntry, *, refresh: bool = False, progress: Progress = None) -> Path:
    """Local path of a catalog row: the bundled file, or the official file from the cache, the
    Hub mirror or the upstream release, in that order (`esc_cli.weights.sources`)."""
    if entry.bundled:
        return bundled_file(entry)
    return sources.fetch_entry(entry, refresh=refresh, progress=progress)


def resolve_model(
    ref: Optional[str],
    *,
    scale: Optional[float] = 4,
    warn: Optional[Callable[[str], None]] = None,
    progress: Progress = None,
) -> ResolvedModel:
    """Resolve a `--model` value (or None for the default) to a local checkpoint file.

    Raises `ModelNotFoundError`, `DownloadError`/`IntegrityError` or `UsageError` with a
    one-line message; only the default (ref=None) falls back to the bundled model.
    """
    if ref is None:
        return _resolve_default(scale, warn, progress)
    parsed = parse_ref(ref, scale=scale)
    if isinstance(parsed, FileRef):
        return ResolvedModel(parsed.path, parsed)
    if isinstance(parsed, HubRef):
        return ResolvedModel(hub.fetch(parsed, progress=progress), parsed)
    return ResolvedModel(resolve_entry(parsed.entry, progress=progress), parsed, parsed.entry)


def _resolve_default(scale: Optional[float], warn: Optional[Callable[[str], None]], progress: Progress) -> ResolvedModel:
    entry = catalog.default_entry(scale)
    try:
        return ResolvedModel(resolve_entry(entry, progress=progress), CatalogRef(entry), entry)
    except (DownloadError, CheckpointError) as exc:  # DownloadError includes IntegrityError
        try:
            fallback = catalog.fallback_entry(scale)
            path = bundled_file(fallback)
        except (ModelNotFoundError, IntegrityError):
            raise exc from None
        if warn is not None:
            offline = "HF_HUB_OFFLINE" in str(exc)
            reason = "not in the cache" if offline else "could not be downloaded"
            where = "HF_HUB_OFFLINE is set" if offline else f"tried {sources.tried(entry)}"
            warn(
                f"{entry.name} {reason}; using the bundled {fallback.name} (lower quality); "
                f"run `esc models pull {entry.name}` when online ({where})"
            )
        return ResolvedModel(path, CatalogRef(fallback), fallback, fallback_from=entry)


def check_against_entry(network: ESCNetwork, entry: Optional[CatalogEntry], path: Path) -> None:
    """Refuse a file whose network is not the one the catalog row describes."""
    if entry is None:
        return
    expected = entry.expected_config()
    if expected is not None and network.config != expected:
        raise CheckpointError(
            f"{path}: holds {network.variant} x{network.scale} ({network.config}), not {entry.name}; "
            "delete it from the cache and pull it again"
        )


def open_model(
    ref: Optional[str],
    *,
    scale: float = 4,
    device: Union[str, torch.device] = "cpu",
    dtype: torch.dtype = torch.float32,
    warn: Optional[Callable[[str], None]] = None,
    progress: Progress = None,
) -> ESCNetwork:
    """Load the network `ref` names; with `ref=None` the best official model for `scale`.

    `ref`: a catalog name (`esc-light-x4`, or a family such as `esc-light`, which takes the
    scale chosen for `scale`), a local `.pth`/`.safetensors` file, or
    `hf://owner/repo/path.safetensors[@revision][#sha256=hex]`. The default is ESC-DFLIP at
    the smallest scale >= `scale` (x4 above 4), falling back to the bundled default with a
    one-line `warn` when it can be neither found in the cache nor reached within 3.5 s (`$ESC_HUB_TIMEOUT`).
    Returns an eval-mode network on `device`/`dtype` mapping `[B, 3, H, W]` RGB in `[0, 1]`
    to `[B, 3, sH, sW]`, where s is the network's own scale (`.scale`), and `.name`: the
    catalog name it was resolved to (the bundled one after a fallback), else `ref`.
    """
    resolved = resolve_model(ref, scale=scale, warn=warn, progress=progress)
    network = load_model(resolved.path, device=device, dtype=dtype)
    check_against_entry(network, resolved.entry, resolved.path)
    network.name = resolved.entry.name if resolved.entry is not None else str(ref)
    return network
