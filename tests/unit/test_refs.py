"""Model references: hf:// grammar, catalog names, local files and their precedence."""

from __future__ import annotations

import pytest

from esc_cli.errors import ModelNotFoundError, UsageError
from esc_cli.weights.refs import CatalogRef, FileRef, HubRef, parse_hf, parse_ref

SHA = "ab" * 32


@pytest.mark.parametrize(
    "text, expected",
    [
        ("hf://owner/repo", HubRef("owner/repo", "model.safetensors", "main")),
        ("hf://owner/repo/weights/x4.safetensors", HubRef("owner/repo", "weights/x4.safetensors", "main")),
        ("hf://owner/repo/m.safetensors@v1.0", HubRef("owner/repo", "m.safetensors", "v1.0")),
        ("hf://owner/repo@dev", HubRef("owner/repo", "model.safetensors", "dev")),
        ("hf://owner/repo/m.pth@refs/pr/3", HubRef("owner/repo", "m.pth", "refs/pr/3")),
        ("hf://o-1/r_2.x/m.safetensors@" + "c" * 40, HubRef("o-1/r_2.x", "m.safetensors", "c" * 40)),
        (f"hf://owner/repo/m.safetensors#sha256={SHA}", HubRef("owner/repo", "m.safetensors", "main", SHA)),
        (f"hf://owner/repo@v2#sha256={SHA.upper()}", HubRef("owner/repo", "model.safetensors", "v2", SHA)),
    ],
)
def test_hf_references_parse(text, expected):
    assert parse_hf(text) == expected
    assert parse_ref(text) == expected
    assert parse_hf(str(expected)) == expected  # round trip


@pytest.mark.parametrize(
    "text",
    [
        "hf://",
        "hf://owner",
        "hf://../repo/m.safetensors",
        "hf://owner/../m.safetensors",
        "hf://owner/repo/../../etc/passwd",
        "hf://owner/repo/a//b.safetensors",
        "hf://owner/repo/m.safetensors@",
        "hf://owner/repo/m.safetensors@../main",
        "hf://owner/repo/m.safetensors@/abs",
        "hf://owner/repo/m.safetensors#md5=00",
        "hf://owner/repo/m.safetensors#sha256=1234",
        "hf://own er/repo",
        "hf://owner/repo/back\\slash.safetensors",
    ],
)
def test_malformed_hf_references_are_usage_errors(text):
    with pytest.raises(UsageError):
        parse_ref(text)


def test_catalog_names_and_families():
    ref = parse_ref("esc-fp-x3")
    assert isinstance(ref, CatalogRef) and ref.entry.name == "esc-fp-x3"
    assert parse_ref("esc-xl", scale=2).entry.name == "esc-xl-x2"
    assert parse_ref("ESC_light_X4").entry.name == "esc-light-x4"


def test_local_files(tmp_path, monkeypatch):
    ckpt = tmp_path / "mine.pth"
    ckpt.write_bytes(b"x")
    assert parse_ref(str(ckpt)) == FileRef(ckpt)
    monkeypatch.chdir(tmp_path)
    assert parse_ref("mine.pth") == FileRef(ckpt.relative_to(tmp_path))
    # a file that shares a catalog name: the catalog wins, ./ picks the file
    (tmp_path / "esc-x4").write_bytes(b"x")
    assert isinstance(parse_ref("esc-x4"), CatalogRef)
    assert isinstance(parse_ref("./esc-x4"), FileRef)


def test_missing_files_and_unknown_names(tmp_path):
    with pytest.raises(ModelNotFoundError, match="no such file"):
        parse_ref(str(tmp_path / "absent.safetensors"))
    with pytest.raises(ModelNotFoundError, match="no such file"):
        parse_ref("absent.pth")
    with pytest.raises(ModelNotFoundError, match="did you mean esc-fp-x4"):
        parse_ref("esc-fb-x4")
    with pytest.raises(UsageError):
        parse_ref("  ")
