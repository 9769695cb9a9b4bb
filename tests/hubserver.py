"""A tiny Hugging Face Hub look-alike on 127.0.0.1 for the weights tests.

It answers `HEAD`/`GET /{owner}/{name}/resolve/{revision}/{path}` the way the Hub's
file endpoint does (`X-Repo-Commit`, `ETag`, `Content-Length`) and replies 404 with
`X-Error-Code: RepoNotFound | EntryNotFound | RevisionNotFound` for what it lacks.
Every request is recorded so a test can assert that an offline run made none.

Knobs for failure tests, per served file:
- `etag`: the ETag to advertise instead of the sha256 of the bytes (a hostile or
  wrong one); `body`: bytes to send instead of the advertised ones (corruption);
  `stall`: a GET sends 16 bytes, then nothing (until shutdown, at most 15 s).
Helpers `closed_port()` (connection refused) and `BlackHole` (accepts, never answers)
model a Hub that is down or hanging.
"""

from __future__ import annotations

import hashlib
import socket
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Optional
from urllib.parse import unquote

from tests.loopback import LoopbackServer


@dataclass
class ServedFile:
    """One file of a repo: the bytes advertised, and optionally other bytes actually sent."""

    data: bytes
    etag: Optional[str] = None
    body: Optional[bytes] = None
    stall: bool = False

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


@dataclass
class ServedRepo:
    """A repo at one commit, reachable by that commit or by any of `refs` (branch/tag names)."""

    files: dict[str, ServedFile]
    commit: str = "1" * 40
    refs: tuple[str, ...] = ("main",)


@dataclass
class Request:
    method: str
    path: str
    authorization: Optional[str]


@dataclass
class FakeHub:
    """The state the handler serves; mutate `repos` between requests freely."""

    repos: dict[str, ServedRepo] = field(default_factory=dict)
    requests: list[Request] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    stop: threading.Event = field(default_factory=threading.Event)

    def add(self, repo_id: str, files: dict[str, bytes], *, commit: str = "1" * 40, refs=("main",)) -> ServedRepo:
        repo = ServedRepo({k: ServedFile(v) for k, v in files.items()}, commit, tuple(refs))
        self.repos[repo_id] = repo
        return repo

    def count(self, method: Optional[str] = None) -> int:
        with self.lock:
            return sum(1 for r in self.requests if method is None or r.method == method)


def _handler_for(hub: FakeHub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:  # keep test output clean
            pass

        def _not_found(self, code: str, commit: Optional[str] = None) -> None:
            body = f'{{"error": "{code}"}}'.encode()
            self.send_response(404)
            self.send_header("X-Error-Code", code)
            self.send_header("X-Error-Message", code)
            if commit:
                self.send_header("X-Repo-Commit", commit)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command == "GET":
                self.wfile.write(body)

        def _serve(self) -> None:
            path = unquote(self.path.split("?", 1)[0])
            with hub.lock:
                hub.requests.append(Request(self.command, path, self.headers.get("Authorization")))
            parts = path.lstrip("/").split("/")
            if len(parts) < 5 or parts[2] != "resolve":
                self._not_found("RepoNotFound")
                return
            repo_id, revision, filename = "/".join(parts[:2]), parts[3], "/".join(parts[4:])
            repo = hub.repos.get(repo_id)
            if repo is None:
                self._not_found("RepoNotFound")
                return
            if revision != repo.commit and revision not in repo.refs:
                self._not_found("RevisionNotFound")
                return
            served = repo.files.get(filename)
            if served is None:
                self._not_found("EntryNotFound", repo.commit)
                return
            etag = served.etag if served.etag is not None else served.sha256
            body = served.body if served.body is not None else served.data
            self.send_response(200)
            self.send_header("X-Repo-Commit", repo.commit)
            self.send_header("ETag", f'"{etag}"')
            self.send_header("Content-Length", str(len(served.data)))
            self.send_header("Content-Type", "application/octet-stream")
            self.end_headers()
            if self.command == "GET" and served.stall:  # a few bytes, then silence (bounded: 15 s or shutdown)
                self.wfile.write(body[:16])
                self.wfile.flush()
                hub.stop.wait(15)
                self.close_connection = True
            elif self.command == "GET":
                self.wfile.write(body[: len(served.data)])

        do_GET = _serve
        do_HEAD = _serve

    return Handler


class HubServer(LoopbackServer):
    """Context manager: a threaded FakeHub server on 127.0.0.1 with an ephemeral port."""

    def __init__(self, hub: Optional[FakeHub] = None) -> None:
        self.hub = hub or FakeHub()
        super().__init__(_handler_for(self.hub), self.hub.stop)


def closed_port() -> int:
    """A loopback port with nothing listening (connections are refused at once)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class BlackHole:
    """A loopback port that accepts connections and never answers (a hung Hub)."""

    def __init__(self) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(16)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._sock.getsockname()[1]}"

    def __enter__(self) -> "BlackHole":
        return self

    def __exit__(self, *exc) -> None:
        self._sock.close()


def model_bytes(config, seed: int = 0) -> bytes:
    """The safetensors bytes of a randomly initialised network with `config` (an ESCConfig)."""
    import torch
    from safetensors.torch import save

    from esc_cli.model import build_network

    torch.manual_seed(seed)
    network = build_network(config)
    return save({k: v.contiguous() for k, v in network.state_dict().items()})


def tiny_config(scale: int = 2):
    """A small ESC config (window 8) whose network runs in milliseconds."""
    from esc_cli.model import ESCConfig

    return ESCConfig(variant="esc", scale=scale, dim=16, pdim=8, kernel_size=7, n_blocks=1, conv_blocks=2,
                     window_size=8, num_heads=2, exp_ratio=1.25, use_ln=False, upsampler="pixelshuffle")
