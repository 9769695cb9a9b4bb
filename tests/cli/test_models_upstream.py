"""Official weights through the authors' release: real `esc` subprocesses against a fake Hub with no
ESC repositories and a fake release host, both on 127.0.0.1 (every subprocess has a timeout)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from esc_cli.model.config import esc, esc_light
from esc_cli.weights import catalog
from tests.cli.test_models import _env, _image, _one_error_line, open_model_in, run, run_many
from tests.hubserver import HubServer, closed_port
from tests.releaseserver import ReleaseServer, golden_pth, malicious_pth, official_pth

DFLIP = official_pth(esc(4), seed=5)


def _release_env(tmp_path: Path, hub_url: str, release_base: str, **extra: str) -> dict[str, str]:
    return _env(tmp_path, hub_url, ESC_UPSTREAM_URL=release_base, **extra)


def _store(tmp_path: Path) -> Path:
    return tmp_path / "hf" / "esc" / "upstream"


@pytest.mark.slow  # six interpreters (about 7 s here); tests/unit/test_sources.py covers the same in-process
def test_pull_and_default_model_through_the_release_then_offline_with_both_servers_stopped(tmp_path):
    with HubServer() as hubsrv, ReleaseServer() as relsrv:
        relsrv.release.add("ESC_light_X4.pth", golden_pth("esc_light_x4"))
        relsrv.release.add("ESC_DFLIP_X4.pth", DFLIP)
        env = _release_env(tmp_path, hubsrv.url, relsrv.base)
        pulled = run(["models", "pull", "esc-light-x4"], env)
        code, default = open_model_in(None, 4, env)  # no --model: the official ESC-DFLIP x4 through the release
        requests = (hubsrv.hub.count(), relsrv.release.count())
    assert pulled.returncode == 0, pulled.stderr
    name, path = pulled.stdout.strip().split("\t")
    assert name == "esc-light-x4" and Path(path) == _store(tmp_path) / "esc-light-x4.safetensors"
    assert code == 0 and default["notes"] == [] and default["config"] == esc(4).to_dict()
    assert requests == (2, 8)  # one Hub HEAD per model (404); from the release a HEAD and a GET, each redirected

    down = f"http://127.0.0.1:{closed_port()}"
    offline = _release_env(tmp_path, down, down, HF_HUB_OFFLINE="1")
    listing, verify, where = run_many([
        (["models", "list", "--json"], offline),
        (["models", "verify", "--json"], offline),
        (["models", "path", "--cache"], offline),
    ])  # fmt: skip
    code, light = open_model_in("esc-light-x4", 4, offline)
    assert code == 0 and light["config"] == esc_light(4).to_dict()
    code, default = open_model_in(None, 3.5, offline)
    assert code == 0 and default["notes"] == [] and default["config"] == esc(4).to_dict()
    rows = {row["name"]: row for row in map(json.loads, listing.stdout.splitlines())}
    assert rows["esc-light-x4"]["state"] == "cached" and rows["esc-light-x4"]["origin"] == "upstream"
    assert rows["esc-x4"]["state"] == "not cached" and rows["esc-x4"]["upstream_url"] == f"{down}/ESC_DIV2K_X4.pth"
    checked = {row["name"]: row["state"] for row in map(json.loads, verify.stdout.splitlines())}
    assert verify.returncode == 0 and checked["esc-light-x4"] == "ok" and checked["esc-dflip-x4"] == "ok"
    assert f"upstream\t{_store(tmp_path)}" in where.stdout.splitlines()


def test_bad_release_files_exit_3_with_one_line_and_an_empty_store(tmp_path):
    marker = tmp_path / "ran"
    with HubServer() as hubsrv, ReleaseServer() as relsrv:
        relsrv.release.add("ESC_light_X4.pth", malicious_pth(marker))
        relsrv.release.add("ESC_light_X2.pth", golden_pth("esc_light_x4"))  # a checkpoint of the wrong scale
        env = _release_env(tmp_path, hubsrv.url, relsrv.base)
        unsafe, wrong, missing = run_many([(["models", "pull", name], env) for name in ("esc-light-x4", "esc-light-x2", "esc-fp-x2")])
    assert unsafe.returncode == 3 and "would run code" in _one_error_line(unsafe.stderr)
    assert not marker.exists()
    assert wrong.returncode == 3 and "holds esc x4, not esc-light-x2" in _one_error_line(wrong.stderr)
    line = _one_error_line(missing.stderr)
    assert missing.returncode == 3 and "repository testorg/esc-fp-x2 not found" in line and "HTTP 404" in line
    assert not [p for p in _store(tmp_path).rglob("*") if p.is_file()]


def test_pull_all_fills_the_store_and_reports_what_failed(tmp_path):
    with HubServer() as hubsrv, ReleaseServer() as relsrv:
        relsrv.release.add("ESC_FP_X3.pth", golden_pth("esc_fp_x3"))
        result = run(["models", "pull", "--all"], _release_env(tmp_path, hubsrv.url, relsrv.base))
    assert result.returncode == 1  # some failed
    assert [line.split("\t")[0] for line in result.stdout.splitlines()] == ["esc-fp-x3"]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    official = [e for e in catalog.CATALOG if not e.bundled]
    assert len(errors) == len(official) - 1 and all("HTTP 404" in line for line in errors)


@pytest.mark.slow
def test_upscale_without_model_uses_the_official_model_from_the_release(tmp_path):
    with HubServer() as hubsrv, ReleaseServer() as relsrv:
        relsrv.release.add("ESC_DFLIP_X4.pth", DFLIP)
        image = _image(tmp_path / "in.png", (9, 7))
        result = run(["upscale", str(image), "-o", str(tmp_path / "out.png")], _release_env(tmp_path, hubsrv.url, relsrv.base))
    assert result.returncode == 0, result.stderr
    assert "bundled" not in result.stderr
    assert Image.open(tmp_path / "out.png").size == (36, 28)
