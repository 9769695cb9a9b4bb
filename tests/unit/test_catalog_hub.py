"""`esc_cli.weights.hub` in-process against the loopback fake Hub (endpoint and cache passed explicitly)."""

from __future__ import annotations

import dataclasses
import hashlib
import time
from pathlib import Path

import pytest

from esc_cli.errors import DownloadError, IntegrityError
from esc_cli.weights import hub
from esc_cli.weights.refs import HubRef
from tests.hubserver import BlackHole, HubServer, closed_port

DATA = b"weights-" * 512
OTHER = b"WEIGHTS-" * 512
SHA = hashlib.sha256(DATA).hexdigest()


@pytest.fixture
def server():
    with HubServer() as srv:
        srv.hub.add("org/tiny", {"model.safetensors": DATA, "sub/other.safetensors": OTHER})
        yield srv


@pytest.fixture(autouse=True)
def _no_token(monkeypatch):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv(hub.TIMEOUT_ENV, raising=False)
    monkeypatch.delenv("HF_HUB_ETAG_TIMEOUT", raising=False)


def _fetch(ref: HubRef, srv, cache: Path, **kw) -> Path:
    return hub.fetch(ref, endpoint=srv.url if srv else None, cache_dir=cache, progress=False, **kw)


def _files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() or p.is_symlink())


def test_download_then_cache_then_offline(server, tmp_path):
    seen = []
    path = hub.fetch(HubRef("org/tiny"), endpoint=server.url, cache_dir=tmp_path, progress=lambda d, t: seen.append((d, t)))
    assert path.read_bytes() == DATA
    assert seen[-1] == (len(DATA), len(DATA))
    assert path.resolve().name == SHA and path.resolve().parent == tmp_path / "models--org--tiny" / "blobs"
    assert (tmp_path / "models--org--tiny" / "refs" / "main").read_text() == "1" * 40
    assert [(r.method, r.path) for r in server.hub.requests] == [
        ("HEAD", "/org/tiny/resolve/main/model.safetensors"),
        ("HEAD", f"/org/tiny/resolve/{'1' * 40}/model.safetensors"),
        ("GET", f"/org/tiny/resolve/{'1' * 40}/model.safetensors"),
    ]
    requests = server.hub.count()
    assert _fetch(HubRef("org/tiny"), server, tmp_path) == path
    assert server.hub.count() == requests  # answered from the cache
    assert hub.fetch(HubRef("org/tiny"), cache_dir=tmp_path, offline=True) == path
    assert hub.cached_file(HubRef("org/tiny"), cache_dir=tmp_path) == path
    nested = _fetch(HubRef("org/tiny", "sub/other.safetensors"), server, tmp_path)
    assert nested.read_bytes() == OTHER


def test_offline_and_not_cached_fails_at_once(tmp_path):
    start = time.monotonic()
    with pytest.raises(DownloadError, match="HF_HUB_OFFLINE"):
        hub.fetch(HubRef("org/tiny"), endpoint="http://127.0.0.1:9", cache_dir=tmp_path, offline=True)
    assert time.monotonic() - start < 1


@pytest.mark.parametrize(
    "ref, message",
    [
        (HubRef("org/absent"), "repository org/absent not found"),
        (HubRef("org/tiny", "absent.safetensors"), "no file 'absent.safetensors' in org/tiny"),
        (HubRef("org/tiny", revision="v9"), "revision 'v9' not found in org/tiny"),
    ],
)
def test_missing_repo_file_revision(server, tmp_path, ref, message):
    with pytest.raises(DownloadError, match=message):
        _fetch(ref, server, tmp_path)
    assert not list(tmp_path.rglob("blobs/*"))


def test_pinned_sha256_mismatch_is_refused_and_removed(server, tmp_path):
    served = server.hub.repos["org/tiny"].files["model.safetensors"]
    served.body = OTHER  # same length, other bytes; the ETag still claims DATA's sha256
    with pytest.raises(IntegrityError, match="pinned sha256"):
        _fetch(HubRef("org/tiny", sha256=SHA), server, tmp_path)
    folder = tmp_path / "models--org--tiny"
    assert list((folder / "blobs").iterdir()) == []
    assert not (folder / "snapshots" / ("1" * 40) / "model.safetensors").exists()
    served.body = None  # the server is fixed: the next try succeeds
    assert _fetch(HubRef("org/tiny", sha256=SHA), server, tmp_path).read_bytes() == DATA


def test_unpinned_file_is_checked_against_an_lfs_sha256_etag(server, tmp_path):
    server.hub.repos["org/tiny"].files["model.safetensors"].body = OTHER
    with pytest.raises(IntegrityError, match="advertised"):
        _fetch(HubRef("org/tiny"), server, tmp_path)
    assert list((tmp_path / "models--org--tiny" / "blobs").iterdir()) == []


def test_corrupted_cached_copy_is_replaced_when_pinned(server, tmp_path):
    path = _fetch(HubRef("org/tiny", sha256=SHA), server, tmp_path)
    blob = path.resolve()
    blob.chmod(0o644)
    blob.write_bytes(OTHER)
    again = _fetch(HubRef("org/tiny", sha256=SHA), server, tmp_path)
    assert again.read_bytes() == DATA


@pytest.mark.parametrize("etag", ["../../../../escaped", "a/b", "..", "x\\..\\y"])
def test_hostile_etags_are_refused_before_anything_is_written(server, tmp_path, etag):
    server.hub.repos["org/tiny"].files["model.safetensors"].etag = etag
    cache = tmp_path / "cache"
    with pytest.raises(DownloadError, match="refused the ETag"):
        _fetch(HubRef("org/tiny"), server, cache)
    assert _files(tmp_path) == []
    assert server.hub.count("GET") == 0


def test_refresh_follows_the_branch_and_survives_an_outage(server, tmp_path):
    first = _fetch(HubRef("org/tiny"), server, tmp_path)
    server.hub.add("org/tiny", {"model.safetensors": OTHER}, commit="2" * 40)
    assert _fetch(HubRef("org/tiny"), server, tmp_path) == first  # no refresh: cache
    second = _fetch(HubRef("org/tiny"), server, tmp_path, refresh=True)
    assert second.read_bytes() == OTHER and "2" * 40 in str(second)
    down = f"http://127.0.0.1:{closed_port()}"
    assert hub.fetch(HubRef("org/tiny"), endpoint=down, cache_dir=tmp_path, refresh=True, progress=False) == second


def test_pinned_copy_is_not_moved_by_a_refresh(server, tmp_path):
    first = _fetch(HubRef("org/tiny", sha256=SHA), server, tmp_path)
    server.hub.add("org/tiny", {"model.safetensors": OTHER}, commit="2" * 40)
    assert _fetch(HubRef("org/tiny", sha256=SHA), server, tmp_path, refresh=True) == first
    # an unpinned refresh to bad bytes leaves the branch pointing at the good commit
    server.hub.repos["org/tiny"].files["model.safetensors"].body = DATA
    with pytest.raises(IntegrityError):
        _fetch(HubRef("org/tiny"), server, tmp_path, refresh=True)
    assert (tmp_path / "models--org--tiny" / "refs" / "main").read_text() == "1" * 40
    assert hub.cached_file(HubRef("org/tiny"), cache_dir=tmp_path) == first


def test_refused_connection_fails_at_once(tmp_path):
    start = time.monotonic()
    with pytest.raises(DownloadError, match="cannot reach"):
        hub.fetch(HubRef("org/tiny"), endpoint=f"http://127.0.0.1:{closed_port()}", cache_dir=tmp_path)
    assert time.monotonic() - start < 2


def test_hanging_hub_fails_within_the_default_timeout(tmp_path):
    """The default bound (3.5 s, one request, no retries) keeps a hung endpoint under 5 s."""
    with BlackHole() as hole:
        start = time.monotonic()
        with pytest.raises(DownloadError, match="gave up after"):
            hub.fetch(HubRef("org/tiny"), endpoint=hole.url, cache_dir=tmp_path)
        elapsed = time.monotonic() - start
    assert hub.DEFAULT_TIMEOUT - 0.5 <= elapsed < 5.0


def test_timeout_comes_from_the_environment(monkeypatch):
    monkeypatch.delenv("HF_HUB_ETAG_TIMEOUT", raising=False)
    assert hub.settings().timeout == hub.DEFAULT_TIMEOUT
    monkeypatch.setenv("HF_HUB_ETAG_TIMEOUT", "7")
    assert hub.settings().timeout == 7
    monkeypatch.setenv(hub.TIMEOUT_ENV, "1.5")
    assert hub.settings().timeout == 1.5
    monkeypatch.setenv(hub.TIMEOUT_ENV, "junk")
    assert hub.settings().timeout == 7
    monkeypatch.setenv(hub.TIMEOUT_ENV, "0")
    assert hub.settings().timeout == 0.1


def test_token_is_sent_only_when_hf_token_is_set(server, tmp_path, monkeypatch):
    _fetch(HubRef("org/tiny"), server, tmp_path / "a")
    assert all(r.authorization is None for r in server.hub.requests)
    monkeypatch.setenv("HF_TOKEN", "hf_test_secret")
    assert "hf_test_secret" not in repr(hub.settings())
    server.hub.requests.clear()
    _fetch(HubRef("org/tiny"), server, tmp_path / "b")
    assert server.hub.requests and all(r.authorization == "Bearer hf_test_secret" for r in server.hub.requests)


def test_catalog_pin_is_enforced_through_the_api(server, tmp_path, monkeypatch):
    """A catalog row with a pinned sha256 refuses other bytes (the official rows will be pinned once published)."""
    from huggingface_hub import constants

    from esc_cli.api.models import resolve_entry
    from esc_cli.weights import catalog

    monkeypatch.setattr(constants, "ENDPOINT", server.url)  # as if HF_ENDPOINT had been set before import
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", server.url + "/{repo_id}/resolve/{revision}/{filename}")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setenv(catalog.HUB_ORG_ENV, "org")
    entry = dataclasses.replace(catalog.find("esc-x4"), repo="tiny", sha256=hashlib.sha256(b"other").hexdigest())
    with pytest.raises(IntegrityError, match="pinned sha256"):
        resolve_entry(entry, progress=False)
    assert list((tmp_path / "models--org--tiny" / "blobs").iterdir()) == []
    good = dataclasses.replace(entry, sha256=SHA)
    assert resolve_entry(good, progress=False).read_bytes() == DATA


@pytest.fixture
def hub_env(server, tmp_path, monkeypatch):
    """The library's import-time settings pointed at the fake Hub, a temp cache and temp bundled folder."""
    from huggingface_hub import constants

    from esc_cli.weights import catalog

    monkeypatch.setattr(constants, "ENDPOINT", server.url)
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", server.url + "/{repo_id}/resolve/{revision}/{filename}")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv(catalog.HUB_ORG_ENV, "org")
    monkeypatch.setenv(catalog.BUNDLED_DIR_ENV, str(tmp_path / "bundled"))
    return server


def _bundle(folder: Path, scale: int) -> Path:
    from tests.hubserver import model_bytes, tiny_config

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"esc-default-x{scale}.safetensors"
    path.write_bytes(model_bytes(tiny_config(scale)))
    return path


def test_default_falls_back_to_bundled_with_one_line_notice(hub_env, tmp_path):
    from esc_cli.api.models import open_model, resolve_model

    _bundle(tmp_path / "bundled", 2)
    notices: list[str] = []
    resolved = resolve_model(None, scale=2, warn=notices.append, progress=False)  # org/esc-dflip-x2 is not served
    assert resolved.entry.name == "default-x2" and resolved.fallback_from.name == "esc-dflip-x2"
    assert len(notices) == 1 and "\n" not in notices[0]
    assert "esc-dflip-x2 could not be downloaded; using the bundled default-x2" in notices[0]
    network = open_model(None, scale=1.5, warn=notices.append)
    assert network.scale == 2 and len(notices) == 2


def test_explicit_references_never_fall_back(hub_env, tmp_path):
    from esc_cli.api.models import resolve_model

    _bundle(tmp_path / "bundled", 4)
    notices: list[str] = []
    with pytest.raises(DownloadError, match="repository org/esc-dflip-x4 not found"):
        resolve_model("esc-dflip-x4", warn=notices.append, progress=False)
    assert notices == []


def test_without_a_bundled_file_the_download_error_stands(hub_env):
    from esc_cli.api.models import resolve_model

    with pytest.raises(DownloadError, match="esc-dflip-x4"):
        resolve_model(None, scale=4, warn=lambda m: None, progress=False)


def test_catalog_name_must_hold_the_catalog_network(hub_env):
    from esc_cli.api.models import open_model
    from esc_cli.errors import CheckpointError
    from tests.hubserver import model_bytes, tiny_config

    hub_env.hub.add("org/esc-fp-x2", {"model.safetensors": model_bytes(tiny_config(2))})
    with pytest.raises(CheckpointError, match="not esc-fp-x2"):
        open_model("esc-fp-x2", progress=False)
    network = open_model("hf://org/esc-fp-x2", progress=False)  # an hf:// reference takes what it gets
    assert network.scale == 2
