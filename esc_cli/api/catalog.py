"""What `esc models` does: list, pull, verify, locate, inspect and convert model weights."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Union

from esc_cli.api.loading import refuse_non_finite
from esc_cli.api.models import bundled_file, check_against_entry, resolve_entry
from esc_cli.errors import CheckpointError, EscError, ModelNotFoundError, OutputError, UnknownModelError
from esc_cli.io.atomic import atomic_output, check_output_path
from esc_cli.model import ESCConfig, network_from_state_dict
from esc_cli.weights import catalog, hub, sources, store
from esc_cli.weights.catalog import CatalogEntry
from esc_cli.weights.digest import is_sha256, sha256_file
from esc_cli.weights.files import read_state_dict
from esc_cli.weights.refs import CatalogRef, FileRef, HubRef, hub_ref, parse_ref

ProgressFactory = Callable[[str], Optional[hub.ProgressCallback]]
"""Given a model name, a progress callback for its download (or None for no bar)."""


# --- pull ----------------------------------------------------------------------------


@dataclass
class PullResult:
    name: str
    path: Optional[Path] = None
    error: Optional[EscError] = None


def _hub_or_catalog(name: str) -> Union[CatalogRef, HubRef]:
    ref = parse_ref(name)
    if isinstance(ref, FileRef):
        raise UnknownModelError(f"{name}: is a local file; `pull` takes catalog names and hf:// references")
    return ref


def pull_models(
    names: list[str], *, progress: Optional[ProgressFactory] = None, on_done: Optional[Callable[[PullResult], None]] = None
) -> list[PullResult]:
    """Download each named model (catalog name or hf:// reference): official rows from the
    Hub mirror, else from the upstream release (converted into `store.store_dir()`).

    A branch revision is refreshed (the Hub is asked for its current commit). Errors are
    collected per name, not raised.
    """
    results = []
    for name in names:
        result = PullResult(name)
        try:
            ref = _hub_or_catalog(name)
            bar = progress(name) if progress else False
            if isinstance(ref, CatalogRef):
                entry = ref.entry
                result.name = entry.name
                result.path = resolve_entry(entry, refresh=True, progress=bar)
            else:
                result.path = hub.fetch(ref, refresh=True, progress=bar)
        except EscError as exc:
            result.error = exc
        results.append(result)
        if on_done:
            on_done(result)
    return results


def official_names() -> list[str]:
    """Every official (not bundled) catalog name, for `esc models pull --all`."""
    return [e.name for e in catalog.entries() if not e.bundled]


# --- verify --------------------------------------------------------------------------


@dataclass
class VerifyResult:
    """One file checked: `state` is ok, mismatch, unverified (no reference hash), bad (does not load) or not cached."""

    name: str
    state: str
    path: Optional[Path] = None
    sha256: Optional[str] = None
    detail: str = ""

    @property
    def failed(self) -> bool:
        return self.state in ("mismatch", "bad")


def _verify_file(name: str, path: Path, expected: Optional[str], entry: Optional[CatalogEntry]) -> VerifyResult:
    actual = sha256_file(path)
    if expected is not None and actual != expected:
        return VerifyResult(name, "mismatch", path, actual, f"expected sha256 {expected}")
    try:
        state = read_state_dict(path)
        refuse_non_finite(state, str(path))
        network = network_from_state_dict(state)
        check_against_entry(network, entry, path)
    except CheckpointError as exc:
        return VerifyResult(name, "bad", path, actual, str(exc))
    what = f"{network.variant} x{network.scale}"
    if expected is None:
        return VerifyResult(name, "unverified", path, actual, f"loads as {what}; no pinned sha256 to compare")
    return VerifyResult(name, "ok", path, actual, f"sha256 matches; loads as {what}")


def verify_models(names: Optional[list[str]] = None) -> list[VerifyResult]:
    """Check cached and bundled files (all, or the named ones) against their sha256 and catalog config.

    The reference hash is the catalog pin, else the blob name the Hub gave (the sha256 of
    an LFS file); for a file converted from the release, the digest recorded at conversion. No network. Files that fail are reported, not deleted: `esc models pull`
    replaces a cached file that fails its pin.
    """
    results = []
    targets: list[Union[CatalogRef, HubRef]]
    if names:
        targets = [_hub_or_catalog(n) for n in names]
    else:
        targets = [CatalogRef(e) for e in catalog.entries(include_missing_bundled=False)]
    for target in targets:
        if isinstance(target, CatalogRef):
            entry = target.entry
            if entry.bundled:
                path = catalog.bundled_path(entry)
                if not path.is_file():
                    results.append(VerifyResult(entry.name, "not cached", None, None, "bundled file missing"))
                    continue
                results.append(_verify_file(entry.name, path, catalog.pinned_sha256(entry), entry))
                continue
            ref, name = hub_ref(entry), entry.name
            converted = store.cached(entry) if hub.cached_file(ref) is None else None
            if converted is not None:
                record = store.read_record(entry)
                results.append(_verify_file(name, converted, record.sha256 if record else None, entry))
                continue
        else:
            ref, name, entry = target, str(target), None
        cached = hub.cached_file(ref)
        if cached is None:
            if names:
                results.append(VerifyResult(name, "not cached", None, None, f"run `esc models pull {name}`"))
            continue
        expected = ref.sha256
        if expected is None and is_sha256(cached.resolve().name):
            expected = cached.resolve().name
        results.append(_verify_file(name, cached, expected, entry))
    return results


# --- path / info ---------------------------------------------------------------------


def model_path(name: str, *, pull: bool = False, progress: Optional[hub.ProgressCallback] = None) -> Path:
    """The local file of a model reference; without `pull`, no network (raise if not cached)."""
    ref = parse_ref(name)
    if isinstance(ref, FileRef):
        return ref.path.resolve()
    if isinstance(ref, CatalogRef) and ref.entry.bundled:
        return bundled_file(ref.entry)
    bar = progress if progress is not None else False
    if isinstance(ref, CatalogRef):
        if pull:
            return resolve_entry(ref.entry, progress=bar)
        cached = sources.cached(ref.entry)[0]
    elif pull:
        return hub.fetch(ref, progress=bar)
    else:
        cached = hub.cached_file(ref)
    if cached is None:
        raise ModelNotFoundError(f"{name}: not downloaded yet; run `esc models pull {name}` (or add --pull)")
    return cached


@dataclass
class ModelInfo:
    path: Path
    size: int
    sha256: str
    config: ESCConfig
    params: int
    catalog_name: Optional[str] = None
    metadata: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {
            "path": str(self.path), "size": self.size, "sha256": self.sha256, "variant": self.config.variant,
            "scale": self.config.scale, "params": self.params, "config": self.config.to_dict(),
            "catalog_name": self.catalog_name, "metadata": self.metadata,
        }  # fmt: skip


def _candidates(config: ESCConfig, sha: str, filename: str) -> list[CatalogEntry]:
    """Catalog rows a file may be: by pinned sha256, else by upstream file name, else by config.

    ESC trained on DIV2K and on DFLIP share one network, so a config alone may match two rows.
    """
    by_sha = [e for e in catalog.CATALOG if e.sha256 is not None and e.sha256 == sha]
    if by_sha:
        return by_sha
    same = [e for e in catalog.CATALOG if e.expected_config() == config]
    stem = Path(filename).name.lower()
    named = [e for e in same if e.upstream.rsplit("/", 1)[-1].lower() == stem]
    return named or same


def _matching_entry(config: ESCConfig, sha: str, filename: str) -> Optional[CatalogEntry]:
    rows = _candidates(config, sha, filename)
    return rows[0] if len(rows) == 1 else None


def _safetensors_metadata(path: Path) -> dict:
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as fh:
            return dict(fh.metadata() or {})
    except Exception:  # not safetensors, or no header metadata
        return {}


def model_info(ref: str) -> ModelInfo:
    """Detected variant, config and parameter count of a file (or a cached/bundled catalog model)."""
    path = model_path(ref)
    state = read_state_dict(path)
    network = network_from_state_dict(state)
    params = sum(int(p.numel()) for p in network.parameters())
    sha = sha256_file(path)
    names = [e.name for e in _candidates(network.config, sha, path.name)]
    return ModelInfo(path, path.stat().st_size, sha, network.config, params, " or ".join(names) or None,
                     _safetensors_metadata(path))


# --- convert -------------------------------------------------------------------------


@dataclass
class ConvertResult:
    out_dir: Path
    files: list[Path]
    sha256: str
    config: ESCConfig
    params: int
    entry: Optional[CatalogEntry]


def convert_checkpoint(
    source: Union[str, Path], out_dir: Union[str, Path], *, name: Optional[str] = None, overwrite: bool = False
) -> ConvertResult:
    """Write `model.safetensors`, `config.json` and a model card `README.md` into `out_dir`.

    `source` is an official `.pth` (BasicSR dict: `params_ema` is taken, else `params`) or
    any checkpoint `esc` reads; it is checked to load strictly as an ESC network first.
    `name` picks the catalog row for the card (default: matched by the upstream file name
    or, if unique, by config). Existing files are kept unless `overwrite`; each file is
    written to a temp file and renamed, so a failure leaves no half-written output.
    """
    from safetensors.torch import save_file

    from esc_cli.weights.convert import config_document, model_card, safetensors_metadata, safetensors_tensors

    source, out_dir = Path(source), Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise OutputError(f"{out_dir}: exists and is not a folder; give a folder for the converted files")
    state = read_state_dict(source)
    try:
        network = network_from_state_dict(state)
    except CheckpointError as exc:
        raise CheckpointError(f"{source}: {exc}") from None
    config = network.config
    params = sum(int(p.numel()) for p in network.parameters())
    source_sha = sha256_file(source)
    entry = catalog.lookup(name) if name else _matching_entry(config, "", source.name)
    if entry is not None and entry.expected_config() not in (None, config):
        raise CheckpointError(f"{source}: holds {config.variant} x{config.scale}, which is not {entry.name}")
    targets = [out_dir / "model.safetensors", out_dir / "config.json", out_dir / "README.md"]
    for target in targets:
        check_output_path(target, [source], overwrite=overwrite)
    out_dir.mkdir(parents=True, exist_ok=True)
    with atomic_output(targets[0], [source], overwrite=overwrite) as tmp:
        save_file(safetensors_tensors(state), str(tmp), metadata=safetensors_metadata())
        # the saved file must give back the same network
        network_from_state_dict(read_state_dict(tmp))
        model_sha = sha256_file(tmp)
    document = config_document(config, params=params, source_name=source.name, source_sha256=source_sha, entry=entry)
    document["model_sha256"] = model_sha
    with atomic_output(targets[1], [source], overwrite=overwrite) as tmp:
        tmp.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    card = model_card(config, params=params, source_name=source.name, source_sha256=source_sha,
                      model_sha256=model_sha, entry=entry)
    with atomic_output(targets[2], [source], overwrite=overwrite) as tmp:
        tmp.write_text(card, encoding="utf-8")
    for target in targets:
        os.chmod(target, 0o644)
    return ConvertResult(out_dir, targets, model_sha, config, params, entry)
