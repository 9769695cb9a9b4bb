"""Official weights from the cache, the Hub mirror or the upstream release, in-process against loopback servers."""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import pytest

from esc_cli.errors import CheckpointError, DownloadError, IntegrityError, SourceNotFoundError, UnsafeCheckpointError
from esc_cli.model.config import esc_light
from esc_cli.weights import catalog, hub, store, upstream
from tests.hubserver import HubServer, closed_port, model_bytes
from tests.releaseserver import JUNK, ReleaseServer, golden_pth, malicious_pth, official_pth

LIGHT = "ESC_light_X4.pth"
GOLDEN_LIGHT = golden_pth("esc_light_x4")


@pytest.fixture
def servers(tmp_path, monkeypatch):
    """A fake Hub (no repositories) and a fake release host, with the library and esc pointed at them."""
    from huggingface_hub import constants

    with HubServer() as hubsrv, ReleaseServer() as relsrv:
        monkeypatch.setattr(constants, "ENDPOINT", hubsrv.url)
        monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", hubsrv.url + "/{repo_id}/resolve/{revision}/{filename}")
        monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "cache"))
        monkeypatch.setenv(catalog.HUB_ORG_ENV, "org")
        monkeypatch.setenv(catalog.UPSTREAM_URL_ENV, relsrv.base)
        monkeypatch.setenv(store.STORE_ENV, str(tmp_path / "store"))
        for name in ("HF_HUB_OFFLINE", "HF_TOKEN", hub.STALL_ENV):
            monkeypatch.delenv(name, raising=False)
        yield hubsrv, relsrv


def _resolve(name: str = "esc-light-x4", **kw) -> Path:
    from esc_cli.api.models import resolve_entry

    return resolve_entry(catalog.find(name), progress=False, **kw)


def _left(tmp_path: Path) -> list[str]:
    """Files left in the store and the Hub cache's blobs."""
    found = [p for p in (tmp_path / "store").rglob("*") if p.is_file()] + list((tmp_path / "cache").rglob("blobs/*"))
    return sorted(str(p.relative_to(tmp_path)) for p in found)


def test_missing_hub_repo_moves_on_to_the_release_then_the_cache_answers(servers, tmp_path):
    from esc_cli.api.loading import load_model

    hubsrv, relsrv = servers
    relsrv.release.add(LIGHT, GOLDEN_LIGHT)
    path = _resolve()
    assert path == tmp_path / "store" / "esc-light-x4.safetensors"
    assert load_model(path).config == esc_light(4)
    assert [r.path for r in hubsrv.hub.requests] == ["/org/esc-light-x4/resolve/main/model.safetensors"]
    assert relsrv.release.requests == [  # a bounded HEAD, then the GET; each follows the 302
        f"HEAD /releases/download/1.0.0/{LIGHT}", f"HEAD /objects/{LIGHT}",
        f"/releases/download/1.0.0/{LIGHT}", f"/objects/{LIGHT}",
    ]  # fmt: skip
    record = store.read_record(catalog.find("esc-light-x4"))
    assert record.upstream_sha256 == hashlib.sha256(GOLDEN_LIGHT).hexdigest() and record.upstream_size == len(GOLDEN_LIGHT)
    assert record.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert _left(tmp_path) == ["store/esc-light-x4.json", "store/esc-light-x4.safetensors"]
    hub_count, rel_count = hubsrv.hub.count(), relsrv.release.count()
    assert _resolve() == path
    assert (hubsrv.hub.count(), relsrv.release.count()) == (hub_count, rel_count)  # answered from the store


def test_list_verify_and_path_see_the_converted_file(servers, tmp_path):
    from esc_cli.api import catalog as api
    from esc_cli.api.listing import cache_locations, list_models

    servers[1].release.add(LIGHT, GOLDEN_LIGHT)
    path = _resolve()
    rows = {row.entry.name: row for row in list_models()}
    assert (rows["esc-light-x4"].state, rows["esc-light-x4"].origin, rows["esc-light-x4"].path) == ("cached", "upstream", path)
    assert rows["esc-light-x2"].to_dict()["upstream_url"] == f"{servers[1].base}/ESC_light_X2.pth"
    assert api.model_path("esc-light-x4") == path
    assert cache_locations()["upstream"] == str(tmp_path / "store")
    (checked,) = api.verify_models(["esc-light-x4"])
    assert checked.state == "ok"
    data = path.read_bytes()
    path.write_bytes(data[:-1] + bytes([data[-1] ^ 0xFF]))
    (checked,) = api.verify_models(["esc-light-x4"])
    assert checked.state == "mismatch" and checked.failed


def test_the_hub_mirror_comes_before_the_release(servers):
    hubsrv, relsrv = servers
    data = model_bytes(esc_light(4))
    hubsrv.hub.add("org/esc-light-x4", {"model.safetensors": data})
    relsrv.release.add(LIGHT, GOLDEN_LIGHT)
    assert _resolve().read_bytes() == data
    assert relsrv.release.count() == 0


def test_the_default_model_comes_through_the_release_then_from_the_store_offline(servers, monkeypatch):
    from esc_cli.api.models import open_model
    from esc_cli.model.config import esc

    hubsrv, relsrv = servers
    relsrv.release.add("ESC_DFLIP_X4.pth", official_pth(esc(4), seed=2))
    notes: list[str] = []
    network = open_model(None, scale=4, warn=notes.append, progress=False)
    assert notes == [] and network.config == esc(4) and network.name == "esc-dflip-x4"
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    requests = (hubsrv.hub.count(), relsrv.release.count())
    assert open_model(None, scale=3.5, warn=notes.append, progress=False).config == esc(4)
    assert notes == [] and (hubsrv.hub.count(), relsrv.release.count()) == requests


def test_progress_reaches_the_size_of_the_release_file(servers):
    from esc_cli.api.models import resolve_entry

    relsrv = servers[1]
    relsrv.release.add(LIGHT, GOLDEN_LIGHT)
    seen: list[tuple[int, object]] = []
    resolve_entry(catalog.find("esc-light-x4"), progress=lambda done, total: seen.append((done, total)))
    assert seen[0] == (0, len(GOLDEN_LIGHT)) and seen[-1] == (len(GOLDEN_LIGHT), len(GOLDEN_LIGHT))


@pytest.mark.parametrize(
    "served, mode, error, message",
    [
        (JUNK, "ok", CheckpointError, "not a PyTorch checkpoint"),
        (golden_pth("esc_fp_x3"), "ok", CheckpointError, "holds esc-fp x3, not esc-light-x4"),
        (GOLDEN_LIGHT, "truncate", DownloadError, "connection was cut after"),
        (GOLDEN_LIGHT, "404", SourceNotFoundError, "HTTP 404"),
        (GOLDEN_LIGHT, "error", DownloadError, r"HTTP 503 \(tried twice\)"),
        (b"", "ok", CheckpointError, "empty file"),
    ],
    ids=["junk", "wrong-variant", "truncated", "404", "503", "empty"],
)
def test_bad_release_files_fail_in_one_line_and_leave_nothing(servers, tmp_path, monkeypatch, served, mode, error, message):
    monkeypatch.setattr(upstream, "_RETRY_WAIT", 0.01)
    servers[1].release.add(LIGHT, served, mode)
    with pytest.raises(error, match=message) as caught:
        _resolve()
    text = str(caught.value)
    assert "\n" not in text and text.count("esc-light-x4") >= 1 and ".partial-" not in text
    assert _left(tmp_path) == []


def test_a_missing_file_on_both_sources_names_both(servers, tmp_path):
    with pytest.raises(SourceNotFoundError) as caught:
        _resolve()
    text = str(caught.value)
    assert "repository org/esc-light-x4 not found" in text and f"no release file at {servers[1].base}/{LIGHT}" in text
    assert "HTTP 404" in text and "\n" not in text
    assert _left(tmp_path) == []


def test_a_pickle_that_would_run_code_is_refused_never_run(servers, tmp_path):
    marker = tmp_path / "ran"
    servers[1].release.add(LIGHT, malicious_pth(marker))
    with pytest.raises(UnsafeCheckpointError, match="would run code"):
        _resolve()
    assert not marker.exists()
    assert _left(tmp_path) == []


def test_first_download_is_trusted_and_other_bytes_later_are_refused(servers, tmp_path):
    relsrv = servers[1]
    relsrv.release.add(LIGHT, GOLDEN_LIGHT)
    path = _resolve()
    path.unlink()  # the conversion is gone; its record still binds the release file
    relsrv.release.add(LIGHT, official_pth(esc_light(4), seed=1))
    with pytest.raises(IntegrityError, match="the first download had"):
        _resolve()
    assert not path.exists()
    relsrv.release.add(LIGHT, GOLDEN_LIGHT)
    assert _resolve() == path


def test_a_pinned_release_sha256_is_enforced(servers, tmp_path):
    from esc_cli.api.models import resolve_entry

    servers[1].release.add(LIGHT, GOLDEN_LIGHT)
    entry = dataclasses.replace(catalog.find("esc-light-x4"), upstream_sha256="0" * 64)
    with pytest.raises(IntegrityError, match="not the pinned"):
        resolve_entry(entry, progress=False)
    assert _left(tmp_path) == []
    good = dataclasses.replace(entry, upstream_sha256=hashlib.sha256(GOLDEN_LIGHT).hexdigest())
    assert resolve_entry(good, progress=False).is_file()


def test_a_damaged_conversion_is_fetched_again_online_and_named_offline(servers, tmp_path, monkeypatch):
    relsrv = servers[1]
    relsrv.release.add(LIGHT, GOLDEN_LIGHT)
    path = _resolve()
    good = path.read_bytes()
    damaged = good[:-1] + bytes([good[-1] ^ 0xFF])
    path.write_bytes(damaged)
    assert _resolve().read_bytes() == good
    assert relsrv.release.count("/objects/") == 2  # the file was fetched again (GETs; HEADs are recorded apart)
    path.write_bytes(damaged)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(IntegrityError, match="damaged.*esc models pull esc-light-x4"):
        _resolve()


def test_a_damaged_unpinned_hub_blob_is_fetched_again(servers):
    hubsrv = servers[0]
    data = model_bytes(esc_light(4))
    hubsrv.hub.add("org/esc-light-x4", {"model.safetensors": data})
    path = _resolve()
    blob = path.resolve()
    blob.chmod(0o644)
    blob.write_bytes(b"x" * len(data))
    assert _resolve().read_bytes() == data
    assert hubsrv.hub.count("GET") == 2


def test_offline_makes_no_request_to_either_source(servers, monkeypatch):
    hubsrv, relsrv = servers
    relsrv.release.add(LIGHT, GOLDEN_LIGHT)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(DownloadError, match="HF_HUB_OFFLINE is set; unset it and run `esc models pull esc-light-x4`"):
        _resolve()
    assert hubsrv.hub.count() == 0 and relsrv.release.count() == 0


def test_a_hanging_release_host_fails_within_the_hub_timeout(servers, tmp_path, monkeypatch):
    """The HEAD is bounded by ESC_HUB_TIMEOUT, not by the longer stall timeout."""
    from tests.hubserver import BlackHole

    monkeypatch.setenv("ESC_HUB_TIMEOUT", "0.3")
    monkeypatch.setenv(hub.STALL_ENV, "60")
    with BlackHole() as hole:
        monkeypatch.setenv(catalog.UPSTREAM_URL_ENV, hole.url)
        with pytest.raises(DownloadError, match="no answer; gave up after"):
            _resolve()
    assert _left(tmp_path) == []


def test_a_stalled_body_fails_within_the_stall_timeout(servers, tmp_path, monkeypatch):
    monkeypatch.setenv(hub.STALL_ENV, "0.3")
    servers[1].release.add(LIGHT, GOLDEN_LIGHT, "stall")
    with pytest.raises(DownloadError, match="stalled; gave up after"):
        _resolve()
    assert _left(tmp_path) == []


def test_a_stalled_hub_body_fails_after_one_read_timeout_not_five_retries(servers, tmp_path, monkeypatch, capfd):
    hubsrv, relsrv = servers
    hubsrv.hub.add("org/esc-light-x4", {"model.safetensors": model_bytes(esc_light(4))})
    hubsrv.hub.repos["org/esc-light-x4"].files["model.safetensors"].stall = True
    monkeypatch.setenv(hub.STALL_ENV, "0.3")
    with pytest.raises(DownloadError, match="broke off .*read timeout 0.3 s.*; then the release: .*HTTP 404"):
        _resolve()  # a broken Hub transfer moves on to the release, which has no file here
    assert hubsrv.hub.count("GET") == 1
    assert "Error while downloading" not in capfd.readouterr().err  # the library's retry lines stay off stderr
    assert _left(tmp_path) == []


def test_both_sources_refusing_fail_at_once_with_both_reasons(servers, monkeypatch):
    from huggingface_hub import constants

    down = f"http://127.0.0.1:{closed_port()}"
    monkeypatch.setattr(constants, "ENDPOINT", down)
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", down + "/{repo_id}/resolve/{revision}/{filename}")
    monkeypatch.setenv(catalog.UPSTREAM_URL_ENV, down)
    with pytest.raises(DownloadError) as caught:
        _resolve()
    text = str(caught.value)
    assert text.count("cannot reach") == 2 and f"{down}/{LIGHT}" in text


def test_leftovers_of_a_killed_download_are_swept_but_fresh_ones_kept(servers, tmp_path):
    import os

    folder = tmp_path / "store"
    folder.mkdir()
    old, fresh = folder / ".partial-esc-light-x4.1.pth", folder / ".partial-esc-light-x4.2.pth"
    old.write_bytes(b"x")
    fresh.write_bytes(b"y")
    os.utime(old, (1, 1))
    servers[1].release.add(LIGHT, GOLDEN_LIGHT)
    _resolve()
    assert not old.exists() and fresh.exists()


def test_the_store_lives_under_hf_home(monkeypatch, tmp_path):
    from huggingface_hub import constants

    monkeypatch.delenv(store.STORE_ENV, raising=False)
    monkeypatch.setattr(constants, "HF_HOME", str(tmp_path / "home"))
    assert store.store_dir() == tmp_path / "home" / "esc" / "upstream"
    assert store.converted_path(catalog.find("esc-x2")) == tmp_path / "home" / "esc" / "upstream" / "esc-x2.safetensors"


def test_every_official_row_has_both_sources(monkeypatch):
    monkeypatch.setenv(catalog.UPSTREAM_URL_ENV, "http://mirror.example/esc/")
    rows = [e for e in catalog.CATALOG if not e.bundled]
    assert "esc-real-mse-x4" in {e.name for e in rows}
    for entry in rows:
        assert entry.repo_id and entry.upstream_url() == f"http://mirror.example/esc/{entry.upstream_file}"
    monkeypatch.delenv(catalog.UPSTREAM_URL_ENV)
    assert catalog.find("esc-real-mse-x4").upstream_url() == (
        "https://github.com/dslisleedh/ESC/releases/download/1.0.0/ESC_Real_X4_MSE.pth"
    )
