"""The catalog table: required rows, parameter counts, names, default and fallback choice."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from safetensors.torch import save_file

from esc_cli.errors import ModelNotFoundError
from esc_cli.model import build_network
from esc_cli.weights import catalog
from esc_cli.weights.digest import is_sha256
from tests.hubserver import tiny_config

LAYOUTS = Path(__file__).parents[1] / "fixtures" / "official_state_dict_layouts.json"

REQUIRED = [
    *(f"esc-light-x{s}" for s in (2, 3, 4)),
    *(f"esc-x{s}" for s in (2, 3, 4)),
    *(f"esc-dflip-x{s}" for s in (2, 3, 4)),
    *(f"esc-xl-x{s}" for s in (2, 3, 4)),
    *(f"esc-fp-x{s}" for s in (2, 3, 4)),
    "esc-real-x4",
    "default-x2",
    "default-x4",
]


def test_every_required_model_is_in_the_table_once():
    names = [e.name for e in catalog.CATALOG]
    assert len(names) == len(set(names))
    for name in REQUIRED:
        assert name in names, name
        assert catalog.find(name).name == name


@pytest.mark.parametrize("entry", [e for e in catalog.CATALOG if not e.bundled], ids=lambda e: e.name)
def test_official_rows_are_complete_and_their_config_has_the_stated_parameters(entry):
    assert entry.repo and catalog.is_valid_name(entry.repo)
    assert entry.filename == "model.safetensors"
    assert entry.revision
    assert entry.sha256 is None or is_sha256(entry.sha256)
    assert entry.license
    assert entry.upstream.startswith("https://github.com/dslisleedh/ESC/releases/download/")
    assert entry.upstream.endswith(".pth")
    config = entry.expected_config()
    assert config.scale == entry.scale and config.variant == entry.variant
    if entry.family != "esc-xl":  # 12.5 M parameters: counted against the layouts below instead
        network = build_network(config)
        assert sum(p.numel() for p in network.parameters()) == entry.params


def test_parameter_counts_match_the_official_layouts():
    layouts = json.loads(LAYOUTS.read_text())
    key = {"esc-light": "ESC_light", "esc": "ESC", "esc-dflip": "ESC", "esc-xl": "ESC_XL", "esc-fp": "ESC_FP",
           "esc-real": "ESC_Real", "esc-real-mse": "ESC_Real"}  # fmt: skip
    for entry in catalog.CATALOG:
        if entry.bundled:
            continue
        layout = layouts[f"{key[entry.family]}_X{entry.scale}"]
        assert layout["params"] == entry.params, entry.name


def test_hub_org_comes_from_the_environment(monkeypatch):
    entry = catalog.find("esc-x4")
    monkeypatch.delenv(catalog.HUB_ORG_ENV, raising=False)
    assert entry.repo_id == f"{catalog.DEFAULT_HUB_ORG}/esc-x4"
    monkeypatch.setenv(catalog.HUB_ORG_ENV, "my-mirror")
    assert entry.repo_id == "my-mirror/esc-x4"
    assert entry.source == "hf://my-mirror/esc-x4/model.safetensors@main"


@pytest.mark.parametrize(
    "requested, chosen",
    [(1.0, 2), (1.5, 2), (2.0, 2), (2.5, 3), (3.0, 3), (3.01, 4), (4.0, 4), (6.0, 4), (16.0, 4), (None, 4)],
)
def test_pick_scale_takes_the_smallest_model_scale_at_least_the_request(requested, chosen):
    assert catalog.pick_scale(requested) == chosen
    entry = catalog.default_entry(requested)
    assert entry.family == catalog.DEFAULT_FAMILY and entry.scale == chosen


def test_pick_scale_with_fewer_scales():
    assert catalog.pick_scale(3, (2, 4)) == 4
    assert catalog.pick_scale(5, (2, 4)) == 4
    assert catalog.pick_scale(1.2, (4,)) == 4


def test_names_aliases_and_families():
    assert catalog.find("ESC-Light-X4").name == "esc-light-x4"
    assert catalog.find("esc_light_x4").name == "esc-light-x4"
    assert catalog.find("ESC_DFLIP_X3").name == "esc-dflip-x3"  # upstream file stem
    assert catalog.find("ESC_DIV2K_X2.pth").name == "esc-x2"
    assert catalog.find("ESC_XL_DF2K_X4_FT").name == "esc-xl-x4"
    assert catalog.find("esc-light", scale=2).name == "esc-light-x2"
    assert catalog.find("esc-light", scale=3.5).name == "esc-light-x4"
    assert catalog.find("esc-real", scale=2).name == "esc-real-x4"  # the only scale it has
    assert catalog.find("nothing-like-it") is None


def test_lookup_suggests_close_names():
    with pytest.raises(ModelNotFoundError, match="did you mean esc-light-x4"):
        catalog.lookup("esc-ligth-x4")
    with pytest.raises(ModelNotFoundError, match="esc models list"):
        catalog.lookup("zzz")


def _write_tiny(folder: Path, scale: int, seed: int = 0) -> Path:
    import torch

    torch.manual_seed(seed)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"esc-default-x{scale}.safetensors"
    save_file({k: v.contiguous() for k, v in build_network(tiny_config(scale)).state_dict().items()}, str(path))
    return path


def test_fallback_uses_the_bundled_files_present(tmp_path, monkeypatch):
    monkeypatch.setenv(catalog.BUNDLED_DIR_ENV, str(tmp_path))
    with pytest.raises(ModelNotFoundError, match="no bundled model"):
        catalog.fallback_entry(4)
    _write_tiny(tmp_path, 2)
    assert catalog.fallback_entry(4).name == "default-x2"  # the only one there
    _write_tiny(tmp_path, 4)
    assert catalog.fallback_entry(4).name == "default-x4"
    assert catalog.fallback_entry(1.5).name == "default-x2"
    assert catalog.fallback_entry(3).name == "default-x4"  # no x3 bundled
    assert [e.name for e in catalog.entries(include_missing_bundled=False) if e.bundled] == ["default-x2", "default-x4"]
    assert catalog.find("default", scale=3).name == "default-x4"


def test_bundled_sha256_is_read_from_the_file_and_follows_changes(tmp_path, monkeypatch):
    monkeypatch.setenv(catalog.BUNDLED_DIR_ENV, str(tmp_path))
    path = _write_tiny(tmp_path, 4, seed=1)
    entry = catalog.find("default-x4")
    assert catalog.pinned_sha256(entry) is None  # the table's pin is for the shipped files only
    assert catalog.bundled_sha256(entry) == hashlib.sha256(path.read_bytes()).hexdigest()
    _write_tiny(tmp_path, 4, seed=2)
    assert catalog.bundled_sha256(entry) == hashlib.sha256(path.read_bytes()).hexdigest()


def test_shipped_bundled_files_match_their_pinned_sha256(monkeypatch):
    from esc_cli.api.models import bundled_file
    from esc_cli.weights import catalog

    monkeypatch.delenv(catalog.BUNDLED_DIR_ENV, raising=False)
    rows = [e for e in catalog.CATALOG if e.bundled]
    assert {e.scale for e in rows if e.sha256} == {2, 3, 4}
    for entry in rows:
        assert bundled_file(entry).is_file()  # raises IntegrityError on a mismatch


def test_a_tampered_shipped_file_is_refused(monkeypatch, tmp_path):
    import dataclasses

    import pytest

    from esc_cli.api.models import bundled_file
    from esc_cli.errors import IntegrityError
    from esc_cli.weights import catalog

    monkeypatch.delenv(catalog.BUNDLED_DIR_ENV, raising=False)
    entry = next(e for e in catalog.CATALOG if e.bundled)
    wrong = dataclasses.replace(entry, sha256="0" * 64)
    with pytest.raises(IntegrityError, match="reinstall"):
        bundled_file(wrong)
