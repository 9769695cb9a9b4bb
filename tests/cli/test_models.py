"""`esc models` and model resolution end to end: real `esc` subprocesses and the real
huggingface_hub against a fake Hub on 127.0.0.1 (HF_ENDPOINT/HF_HOME must be set before the
library is imported, hence subprocesses). Every subprocess has a timeout; only loopback.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

from esc_cli.model.config import esc, esc_light
from tests.conftest import DEAD_UPSTREAM
from tests.hubserver import BlackHole, HubServer, closed_port, model_bytes, tiny_config

ORG = "testorg"
TIMEOUT = 120


def _env(tmp_path: Path, endpoint: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "ESC_", "HUGGINGFACE"))}
    env.update(
        HF_HOME=str(tmp_path / "hf"),
        HF_ENDPOINT=endpoint,
        ESC_HUB_ORG=ORG,
        ESC_BUNDLED_DIR=str(tmp_path / "bundled"),
        ESC_UPSTREAM_URL=DEAD_UPSTREAM,  # never the real release host
        OMP_NUM_THREADS="1",
    )
    env.update(extra)
    return env


def _esc(args: list[str], env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", "import sys; from esc_cli.cli.app import main; sys.exit(main(sys.argv[1:]))", *args],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    """Run `esc ARGS` in a fresh interpreter (bounded by TIMEOUT)."""
    return _finish(_esc(args, env), args)


def _finish(proc: subprocess.Popen, args) -> subprocess.CompletedProcess:
    try:
        out, err = proc.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"esc {' '.join(args)} did not finish in {TIMEOUT} s: {err[-2000:]}")
    return subprocess.CompletedProcess(args, proc.returncode, out, err)


OPEN_MODEL = """
import json, sys
from esc_cli.api.models import open_model
from esc_cli.errors import EscError
notes = []
ref = None if sys.argv[1] == "-" else sys.argv[1]
try:
    net = open_model(ref, scale=float(sys.argv[2]), warn=notes.append, progress=False)
except EscError as exc:
    print(json.dumps({"error": str(exc)}))
    sys.exit(exc.exit_code)
print(json.dumps({"notes": notes, "scale": net.scale, "config": net.config.to_dict()}))
"""


def open_model_in(ref: str | None, scale: float, env: dict[str, str]) -> tuple[int, dict]:
    """`esc_cli.api.models.open_model` (what every command uses for --model) in a fresh interpreter."""
    proc = subprocess.Popen([sys.executable, "-c", OPEN_MODEL, ref or "-", str(scale)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    result = _finish(proc, ["open_model", ref, scale])
    assert "Traceback" not in result.stderr, result.stderr
    return result.returncode, json.loads(result.stdout)


def run_many(commands: list[tuple[list[str], dict[str, str]]]) -> list[subprocess.CompletedProcess]:
    """Run several `esc` commands at once (they are independent) and wait for all."""
    procs = [(_esc(args, env), args) for args, env in commands]
    return [_finish(p, a) for p, a in procs]


def _image(path: Path, size=(12, 10)) -> Path:
    Image.new("RGB", size, (120, 60, 30)).save(path)
    return path


def _bundle(tmp_path: Path, scale: int = 4) -> Path:
    folder = tmp_path / "bundled"
    folder.mkdir(exist_ok=True)
    path = folder / f"esc-default-x{scale}.safetensors"
    path.write_bytes(model_bytes(tiny_config(scale), seed=7))
    return path


def _one_error_line(err: str) -> str:
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert "Traceback" not in err
    assert len(lines) == 1, err
    assert lines[0].startswith("error:"), err
    return lines[0]


TINY = model_bytes(tiny_config(2), seed=3)


def _gave_up_after(stderr: str) -> float:
    match = re.search(r"gave up after ([0-9.]+) s", stderr)
    assert match, stderr
    return float(match.group(1))


@pytest.fixture
def hubsrv():
    with HubServer() as srv:
        srv.hub.add(f"{ORG}/tiny", {"model.safetensors": TINY})
        yield srv


def test_pull_then_offline_runs_from_the_cache(hubsrv, tmp_path):
    hubsrv.hub.add(f"{ORG}/esc-light-x2", {"model.safetensors": model_bytes(esc_light(2))})
    env = _env(tmp_path, hubsrv.url)
    pulled = run(["models", "pull", "esc-light-x2", f"hf://{ORG}/tiny"], env)
    assert pulled.returncode == 0, pulled.stderr
    paths = dict(line.split("\t") for line in pulled.stdout.strip().splitlines())
    assert set(paths) == {"esc-light-x2", f"hf://{ORG}/tiny"}
    hub_dir = tmp_path / "hf" / "hub"
    for path in paths.values():
        assert Path(path).is_file() and hub_dir in Path(path).parents
    assert hubsrv.hub.count("GET") == 2
    # only file requests: no telemetry registry fetch (/api/agent-harnesses) that would add its own timeout
    assert all("/resolve/" in r.path for r in hubsrv.hub.requests), [r.path for r in hubsrv.hub.requests]

    # the Hub goes away; an offline run is answered from the cache without a request
    offline = _env(tmp_path, f"http://127.0.0.1:{closed_port()}", HF_HUB_OFFLINE="1")
    requests = hubsrv.hub.count()
    code, loaded = open_model_in("esc-light-x2", 2, offline)
    assert code == 0 and loaded["notes"] == []
    assert loaded["config"] == esc_light(2).to_dict()
    assert hubsrv.hub.count() == requests


@pytest.mark.slow
def test_upscale_offline_with_a_pulled_model(hubsrv, tmp_path):
    hubsrv.hub.add(f"{ORG}/esc-light-x2", {"model.safetensors": model_bytes(esc_light(2))})
    assert run(["models", "pull", "esc-light-x2"], _env(tmp_path, hubsrv.url)).returncode == 0
    offline = _env(tmp_path, f"http://127.0.0.1:{closed_port()}", HF_HUB_OFFLINE="1")
    image = _image(tmp_path / "in.png")
    upscaled = run(["upscale", str(image), "--model", "esc-light-x2", "-s", "2", "-o", str(tmp_path / "out.png")], offline)
    assert upscaled.returncode == 0, upscaled.stderr
    assert Image.open(tmp_path / "out.png").size == (24, 20)


@pytest.mark.slow
def test_offline_listing_path_and_verify(hubsrv, tmp_path):
    env = _env(tmp_path, hubsrv.url)
    assert run(["models", "pull", f"hf://{ORG}/tiny"], env).returncode == 0
    offline = _env(tmp_path, f"http://127.0.0.1:{closed_port()}", HF_HUB_OFFLINE="1")
    path_run, listing, verify, missing = run_many([
        (["models", "path", "--pull", f"hf://{ORG}/tiny"], offline),
        (["models", "list", "--json"], offline),
        (["models", "verify", "--json", f"hf://{ORG}/tiny"], offline),
        (["models", "path", "--pull", "esc-x3"], offline),
    ])  # fmt: skip
    assert path_run.returncode == 0 and Path(path_run.stdout.strip()).read_bytes() == TINY
    rows = {row["name"]: row for row in map(json.loads, listing.stdout.splitlines())}
    assert rows["esc-x3"]["state"] == "not cached" and rows["esc-dflip-x4"]["default"] is True
    assert verify.returncode == 0 and json.loads(verify.stdout)["state"] == "ok"
    assert missing.returncode == 3 and "HF_HUB_OFFLINE" in _one_error_line(missing.stderr)


def test_missing_repo_file_and_revision_each_fail_clearly(hubsrv, tmp_path):
    env = _env(tmp_path, hubsrv.url)
    result = run(["models", "pull", f"hf://{ORG}/absent", f"hf://{ORG}/tiny/absent.safetensors", f"hf://{ORG}/tiny@v9",
                  "esc-xl-x4", "esc-xxl-x4"], env)  # fmt: skip
    assert result.returncode == 3  # nothing pulled
    assert result.stdout == "" and "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    expected = [
        f"hf://{ORG}/absent/model.safetensors@main: repository {ORG}/absent not found",
        f"no file 'absent.safetensors' in {ORG}/tiny",
        f"revision 'v9' not found in {ORG}/tiny",
        f"repository {ORG}/esc-xl-x4 not found",
        "esc-xxl-x4: no such catalog model or file (did you mean",
    ]
    assert len(lines) == len(expected), result.stderr
    for line, text in zip(lines, expected):
        assert line.startswith("error:") and text in line, line
    assert not list((tmp_path / "hf").rglob("blobs/*"))


@pytest.mark.slow
def test_each_missing_object_alone_exits_3(hubsrv, tmp_path):
    env = _env(tmp_path, hubsrv.url)
    results = run_many([(["models", "pull", ref], env) for ref in
                        (f"hf://{ORG}/absent", f"hf://{ORG}/tiny/absent.safetensors", f"hf://{ORG}/tiny@v9")])  # fmt: skip
    for result, text in zip(results, ("not found", "no file", "revision")):
        assert result.returncode == 3 and text in _one_error_line(result.stderr)
    mixed = run(["models", "pull", f"hf://{ORG}/tiny", f"hf://{ORG}/absent"], env)
    assert mixed.returncode == 1  # some failed
    assert mixed.stdout.startswith(f"hf://{ORG}/tiny\t") and "absent not found" in _one_error_line(mixed.stderr)


def test_corrupted_bytes_against_a_pinned_sha256_are_refused_and_removed(hubsrv, tmp_path):
    good = hashlib.sha256(TINY).hexdigest()
    served = hubsrv.hub.repos[f"{ORG}/tiny"].files["model.safetensors"]
    served.body = bytes(b ^ 0xFF for b in TINY[:64]) + TINY[64:]  # same size, first bytes flipped
    env = _env(tmp_path, hubsrv.url)
    result = run(["models", "pull", f"hf://{ORG}/tiny#sha256={good}"], env)
    assert result.returncode == 3
    line = _one_error_line(result.stderr)
    assert "pinned sha256" in line and "deleted" in line
    repo_dir = tmp_path / "hf" / "hub" / f"models--{ORG}--tiny"
    assert list((repo_dir / "blobs").iterdir()) == []
    assert list(repo_dir.rglob("snapshots/*/*")) == []


def test_hub_down_fails_fast_or_falls_back_to_the_bundled_model(tmp_path):
    bundled = _bundle(tmp_path, 4)
    down = _env(tmp_path, f"http://127.0.0.1:{closed_port()}")
    start = time.monotonic()
    explicit = _esc(["models", "pull", "esc-x4"], down)
    code, loaded = open_model_in(None, 3.5, down)
    explicit = _finish(explicit, "pull")
    wall = time.monotonic() - start
    assert code == 0 and loaded["scale"] == 4 and loaded["config"] == tiny_config(4).to_dict()
    assert loaded["notes"] == [
        "esc-dflip-x4 could not be downloaded; using the bundled default-x4 (lower quality); "
        f"run `esc models pull esc-dflip-x4` when online (tried hf://{ORG}/esc-dflip-x4 and {DEAD_UPSTREAM}/ESC_DFLIP_X4.pth)"
    ]
    assert bundled.is_file()
    assert explicit.returncode == 3 and "cannot reach" in _one_error_line(explicit.stderr)
    assert _gave_up_after(explicit.stderr) < 1.0
    # an explicit model never falls back
    code, failed = open_model_in("esc-dflip-x4", 4, down)
    assert code == 3 and "cannot reach" in failed["error"]
    print(f"refused: gave up after {_gave_up_after(explicit.stderr)} s; two processes with interpreter start {wall:.1f} s")


@pytest.mark.slow
def test_upscale_without_model_falls_back_when_the_hub_is_down(tmp_path):
    _bundle(tmp_path, 4)
    image = _image(tmp_path / "in.png")
    result = run(["upscale", str(image), "-o", str(tmp_path / "a.png")], _env(tmp_path, f"http://127.0.0.1:{closed_port()}"))
    assert result.returncode == 0, result.stderr
    notices = [line for line in result.stderr.splitlines() if "bundled" in line]
    assert len(notices) == 1, result.stderr
    assert "esc-dflip-x4 could not be downloaded; using the bundled default-x4" in notices[0]
    assert Image.open(tmp_path / "a.png").size == (48, 40)


@pytest.mark.slow
def test_hanging_hub_fails_within_5_seconds(tmp_path):
    with BlackHole() as hole:
        start = time.monotonic()
        result = run(["models", "pull", f"hf://{ORG}/tiny"], _env(tmp_path, hole.url))
        wall = time.monotonic() - start
    assert result.returncode == 3 and "cannot reach" in _one_error_line(result.stderr)
    assert 2.5 <= _gave_up_after(result.stderr) < 5.0
    print(f"hanging: gave up after {_gave_up_after(result.stderr)} s; process with interpreter start {wall:.1f} s")


@pytest.mark.slow
def test_offline_default_falls_back_and_explicit_models_never_do(tmp_path):
    _bundle(tmp_path, 4)
    image = _image(tmp_path / "in.png")
    offline = _env(tmp_path, f"http://127.0.0.1:{closed_port()}", HF_HUB_OFFLINE="1")
    fallback, explicit = run_many([
        (["upscale", str(image), "-o", str(tmp_path / "b.png")], offline),
        (["upscale", str(image), "-m", "esc-dflip-x4", "-o", str(tmp_path / "c.png")], offline),
    ])  # fmt: skip
    assert fallback.returncode == 0, fallback.stderr
    assert "esc-dflip-x4 not in the cache; using the bundled default-x4" in fallback.stderr
    assert explicit.returncode == 3 and "HF_HUB_OFFLINE" in _one_error_line(explicit.stderr)
    assert not (tmp_path / "c.png").exists()


def test_default_model_comes_from_the_hub_then_from_the_cache(hubsrv, tmp_path):
    _bundle(tmp_path, 4)
    hubsrv.hub.add(f"{ORG}/esc-dflip-x4", {"model.safetensors": model_bytes(esc(4))})
    code, loaded = open_model_in(None, 4, _env(tmp_path, hubsrv.url))
    assert code == 0 and loaded["notes"] == [] and loaded["config"] == esc(4).to_dict()
    assert [r.path for r in hubsrv.hub.requests if r.method == "GET"] == [
        f"/{ORG}/esc-dflip-x4/resolve/{'1' * 40}/model.safetensors"
    ]
    offline = _env(tmp_path, f"http://127.0.0.1:{closed_port()}", HF_HUB_OFFLINE="1")
    code, loaded = open_model_in(None, 3.5, offline)  # x4 is the model for 3.5
    assert code == 0 and loaded["notes"] == [] and loaded["config"] == esc(4).to_dict()


@pytest.mark.slow
def test_upscale_default_model_comes_from_the_hub_when_reachable(hubsrv, tmp_path):
    _bundle(tmp_path, 4)
    hubsrv.hub.add(f"{ORG}/esc-dflip-x4", {"model.safetensors": model_bytes(esc(4))})
    image = _image(tmp_path / "in.png", (9, 7))
    result = run(["upscale", str(image), "-o", str(tmp_path / "out.png")], _env(tmp_path, hubsrv.url))
    assert result.returncode == 0, result.stderr
    assert "bundled" not in result.stderr
    assert Image.open(tmp_path / "out.png").size == (36, 28)
    assert [r.path for r in hubsrv.hub.requests if r.method == "GET"] == [
        f"/{ORG}/esc-dflip-x4/resolve/{'1' * 40}/model.safetensors"
    ]
