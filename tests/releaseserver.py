"""A loopback stand-in for the release host (GitHub releases) of the official ESC checkpoints.

`GET {url}/releases/download/1.0.0/<file>` answers with a 302 to `{url}/objects/<file>`, as
GitHub redirects to its object store; the second path serves the bytes with a
`Content-Length`. Per file a `mode` makes it misbehave:

- `ok`: the bytes; `404`: not found (also for any file not added);
- `truncate`: advertises the full length, sends half, closes the connection;
- `stall`: advertises the full length, sends a few bytes, then sends nothing more
  (for at most `STALL_LIMIT` seconds, so no test can hang on it);
- `error`: HTTP 503.

Junk, malicious pickles and wrong checkpoints are just other bytes (see the helpers below).
HEAD is answered like GET without a body (recorded as `HEAD /path`). Every request is recorded; everything listens on 127.0.0.1 only.
"""

from __future__ import annotations

import io
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Optional
from urllib.parse import unquote

from tests.loopback import LoopbackServer

RELEASE_PATH = "/releases/download/1.0.0"
STALL_LIMIT = 15.0
GOLDEN = Path(__file__).parent / "fixtures" / "golden"


@dataclass
class Asset:
    data: bytes
    mode: str = "ok"


@dataclass
class FakeRelease:
    assets: dict[str, Asset] = field(default_factory=dict)
    requests: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    stop: threading.Event = field(default_factory=threading.Event)

    def add(self, name: str, data: bytes, mode: str = "ok") -> Asset:
        self.assets[name] = Asset(data, mode)
        return self.assets[name]

    def count(self, prefix: str = "") -> int:
        with self.lock:
            return sum(1 for path in self.requests if path.startswith(prefix))


def _handler_for(release: FakeRelease) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:
            pass

        def _reply(self, status: int, body: bytes = b"", headers: Optional[dict] = None) -> None:
            self.send_response(status)
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command == "GET":
                self.wfile.write(body)

        def do_HEAD(self) -> None:
            self.do_GET()

        def do_GET(self) -> None:
            path = unquote(self.path.split("?", 1)[0])
            with release.lock:
                release.requests.append(path if self.command == "GET" else f"HEAD {path}")
            if path.startswith(RELEASE_PATH + "/"):
                name = path[len(RELEASE_PATH) + 1:]
                if name in release.assets:
                    self._reply(302, headers={"Location": f"/objects/{name}"})
                else:
                    self._reply(404, b"Not Found")
                return
            name = path[len("/objects/"):] if path.startswith("/objects/") else None
            asset = release.assets.get(name) if name else None
            if asset is None or asset.mode == "404":
                self._reply(404, b"Not Found")
                return
            if asset.mode == "error":
                self._reply(503, b"busy")
                return
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(len(asset.data)))
            self.end_headers()
            if self.command == "HEAD":
                return
            if asset.mode == "truncate":
                self.wfile.write(asset.data[: len(asset.data) // 2])
                self.wfile.flush()
                self.close_connection = True
                return
            if asset.mode == "stall":
                self.wfile.write(asset.data[:16])
                self.wfile.flush()
                release.stop.wait(STALL_LIMIT)
                self.close_connection = True
                return
            self.wfile.write(asset.data)

    return Handler


class ReleaseServer(LoopbackServer):
    """Context manager: a threaded FakeRelease on 127.0.0.1; `base` is the value for ESC_UPSTREAM_URL."""

    def __init__(self, release: Optional[FakeRelease] = None) -> None:
        self.release = release or FakeRelease()
        super().__init__(_handler_for(self.release), self.release.stop)

    @property
    def base(self) -> str:
        return self.url + RELEASE_PATH


# --- bytes to serve ------------------------------------------------------------------


def golden_pth(name: str) -> bytes:
    """An official-format checkpoint (official config, random weights): `esc_light_x4`, `esc_fp_x3`, `esc_real_x4`."""
    return (GOLDEN / f"{name}.pth").read_bytes()


def official_pth(config, seed: int = 0) -> bytes:
    """A BasicSR-style `.pth` (`{'params_ema': state_dict}`) of a random network with `config`."""
    import torch

    from esc_cli.model import build_network

    torch.manual_seed(seed)
    state = build_network(config).state_dict()
    buffer = io.BytesIO()
    torch.save({"params_ema": state}, buffer)
    return buffer.getvalue()


class _Payload:
    """Unpickling this calls `marker.write_text` style code: a weights-only load must refuse it."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        import builtins

        return (builtins.exec, (f"open({self.marker!r}, 'w').write('ran')",))


def malicious_pth(marker: Path) -> bytes:
    """A torch.save file whose pickle would create `marker` if it were ever unpickled unsafely."""
    import torch

    buffer = io.BytesIO()
    torch.save({"params_ema": {"w": _Payload(str(marker))}}, buffer)
    return buffer.getvalue()


JUNK = b"<html><body>this is not a checkpoint</body></html>\n" * 64
