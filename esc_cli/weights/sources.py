"""Where an official catalog row's weights come from, in order: the local caches, the Hub mirror, the release.

1. The caches, without a request: the Hub cache (`hf://{org}/{repo}/model.safetensors`)
   and the store of converted release files (`store.store_dir()`), each checked against
   its sha256 (the pin, the LFS blob name, or the recorded digest) before use.
2. The Hub mirror (`hub.fetch`): bounded by the Hub timeout; a missing repository or file
   moves on to the release at once.
3. The upstream release (`upstream.fetch`): converted to safetensors into the store.

`HF_HUB_OFFLINE=1` stops after step 1 without any request. When both sources fail, the
error names both failures in one line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Union

from esc_cli.errors import DownloadError, IntegrityError
from esc_cli.weights import hub, store, upstream
from esc_cli.weights.catalog import CatalogEntry
from esc_cli.weights.digest import sha256_file
from esc_cli.weights.refs import hub_ref

Progress = Union[hub.ProgressCallback, bool, None]


def cached(entry: CatalogEntry) -> tuple[Optional[Path], str]:
    """The cached file of an official row and where it came from (`hub`, `upstream`), else (None, ""). No network."""
    found = hub.cached_file(hub_ref(entry))
    if found is not None:
        return found, "hub"
    converted = store.cached(entry)
    if converted is not None:
        return converted, "upstream"
    return None, ""


def tried(entry: CatalogEntry) -> str:
    """The two places an official row is looked for, for messages."""
    return f"hf://{entry.repo_id} and {entry.upstream_url()}"


def _converted_ok(entry: CatalogEntry, path: Path) -> bool:
    """True when a converted file still has the sha256 recorded at conversion."""
    record = store.read_record(entry)
    return record is not None and sha256_file(path) == record.sha256


def fetch_entry(entry: CatalogEntry, *, refresh: bool = False, progress: Progress = None) -> Path:
    """A verified local file of an official row: cache, then Hub mirror, then release (see the module doc).

    `refresh` asks the Hub for a branch's current commit when the Hub copy is cached (a
    release file never changes, so a converted one is kept). Raises `DownloadError` (with
    `IntegrityError`, `SourceNotFoundError` below it) or `CheckpointError` with one line.
    """
    ref = hub_ref(entry)
    conf = hub.settings()
    hub_copy = hub.cached_file(ref)
    if hub_copy is not None:
        if refresh or hub.verify_cached(ref, hub_copy) is False:
            return hub.fetch(ref, refresh=refresh, progress=progress)  # replaces a damaged copy
        return hub_copy
    converted = store.cached(entry)
    if converted is not None:
        if _converted_ok(entry, converted):
            return converted
        store.remove(entry)  # damaged: the release file is fetched again (its record still binds it)
        if conf.offline:
            raise IntegrityError(
                f"{entry.name}: the converted file {converted} was damaged (sha256 differs from its record) "
                f"and was deleted; run `esc models pull {entry.name}` once with network access"
            )
    if conf.offline:
        raise DownloadError(
            f"{entry.name}: not in the cache ({conf.cache_dir} or {store.store_dir()}) and HF_HUB_OFFLINE is set; "
            f"unset it and run `esc models pull {entry.name}` once with network access"
        )
    try:
        return hub.fetch(ref, progress=progress, offline=False)
    except IntegrityError:
        raise  # the mirror served other bytes than it claims: say so rather than hide it
    except DownloadError as hub_exc:
        try:
            return upstream.fetch(entry, connect_timeout=conf.timeout, progress=progress)
        except DownloadError as up_exc:
            raise type(up_exc)(f"{hub_exc}; then the release: {up_exc}") from None
