"""Official checkpoints from the authors' release (`ESC_UPSTREAM_URL`, default GitHub `dslisleedh/ESC` 1.0.0).

One release file becomes one converted safetensors file in `store.store_dir()`:

1. A HEAD, then a GET, through huggingface_hub's own HTTP client (`get_session()`),
   redirects followed (GitHub answers with a 302 to its object store), no token sent.
   Bounds: the HEAD (connect and answer) and connecting take at most the Hub timeout
   (`$ESC_HUB_TIMEOUT`, 3.5 s), so a hanging host fails as fast as a hanging Hub; a GET
   reply or body that stalls for `$ESC_DOWNLOAD_STALL_TIMEOUT` (10 s, `hub.stall_timeout`) fails; a connection
   cut mid-body or a 5xx/429 answer is tried once more; a body over `MAX_BYTES`, or one
   still arriving after `MAX_SECONDS`, is refused.
2. The body streams into a temp file inside the store, with progress; its size must equal
   the advertised `Content-Length`.
3. Its sha256 must equal the catalog's `upstream_sha256` when pinned, else the one recorded
   by the first download (trust on first download).
4. It is read with `torch.load(weights_only=True)` (a pickle that would run code is
   refused, never run), loaded strictly as an ESC network, and its config must equal the
   catalog row's.
5. The tensors are saved as safetensors (a temp file again) and moved into place with the
   record of both digests.

Any failure removes every temp file; nothing half-written is left in the store.
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import Callable, Optional, Union

from esc_cli.errors import CheckpointError, DownloadError, IntegrityError, SourceNotFoundError
from esc_cli.weights import store
from esc_cli.weights.catalog import UPSTREAM_URL_ENV, CatalogEntry
from esc_cli.weights.hub import ProgressCallback, stall_timeout

MAX_BYTES = 512 * 1024 * 1024
"""No official checkpoint is near this (ESC-XL is about 50 MB); a larger body is refused."""
MAX_SECONDS = 1800.0
"""A transfer still running after this long (a trickle that never stalls long enough) is given up."""
_RETRY_STATUS = (429, 500, 502, 503, 504)
_RETRY_WAIT = 1.0
_CHUNK = 1 << 16


class _Retry(Exception):
    """A failure worth one more try (connection cut, 5xx)."""


def fetch(
    entry: CatalogEntry,
    *,
    connect_timeout: float,
    progress: Union[ProgressCallback, bool, None] = None,
) -> Path:
    """Download, check and convert `entry`'s release file; return the converted file in the store.

    Raises `SourceNotFoundError` (404), `DownloadError` (unreachable, stalled, cut short,
    too large), `IntegrityError` (bytes differ from the pin or the first download) or
    `CheckpointError`/`UnsafeCheckpointError` (not a checkpoint, a pickle that would run
    code, the wrong variant or scale); each one line naming the model, the URL and the fix.
    """
    url = entry.upstream_url()
    if url is None:
        raise ValueError(f"{entry.name} has no release file")
    store.sweep()
    raw = store.temp_path(entry, ".pth")
    converted = store.temp_path(entry, ".safetensors")
    try:
        digest, size = _download(entry, url, raw, connect_timeout, progress)
        _check_digest(entry, url, digest)
        model_sha = _convert(entry, url, raw, converted)
        record = store.Record(entry.upstream_file or "", digest, size, model_sha, url)
        return store.commit(entry, converted, record)
    finally:
        raw.unlink(missing_ok=True)
        converted.unlink(missing_ok=True)


# --- transfer ------------------------------------------------------------------------


def _download(entry: CatalogEntry, url: str, target: Path, connect_timeout: float,
              progress: Union[ProgressCallback, bool, None]) -> tuple[str, int]:  # fmt: skip
    """Stream `url` into `target` (at most two tries); return its sha256 and size."""
    import httpx2

    timeout = httpx2.Timeout(stall_timeout(), connect=connect_timeout)
    start = time.monotonic()
    for attempt in (0, 1, 2):
        try:
            if attempt == 0:  # a HEAD bounded like the Hub's, so a hanging host costs no stall timeout
                _probe(entry, url, httpx2.Timeout(connect_timeout))
                continue
            return _attempt(entry, url, target, timeout, progress)
        except _Retry as exc:
            if attempt == 2:
                raise DownloadError(f"{entry.name}: {url}: {exc} (tried twice); run the command again later") from None
            time.sleep(_RETRY_WAIT)
        except httpx2.TimeoutException as exc:
            waited = time.monotonic() - start
            what = "could not connect" if isinstance(exc, httpx2.ConnectTimeout) else ("no answer" if attempt == 0 else "stalled")
            raise DownloadError(
                f"{entry.name}: cannot reach {url} ({what}; gave up after {waited:.1f} s); "
                f"check the connection, or {UPSTREAM_URL_ENV} for a mirror"
            ) from None
        except httpx2.HTTPError as exc:  # refused, DNS, TLS, too many redirects
            waited = time.monotonic() - start
            reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
            raise DownloadError(
                f"{entry.name}: cannot reach {url} ({reason}; gave up after {waited:.1f} s); "
                f"check the connection, or {UPSTREAM_URL_ENV} for a mirror"
            ) from None
    raise AssertionError("unreachable")  # pragma: no cover


def _probe(entry: CatalogEntry, url: str, timeout) -> None:
    """HEAD `url` (redirects followed): a 404 ends here; a host that does not answer HEAD is left to the GET."""
    from huggingface_hub.utils import get_session

    reply = get_session().head(url, timeout=timeout, follow_redirects=True)
    if reply.status_code == 404:
        raise SourceNotFoundError(f"{entry.name}: no release file at {url} (HTTP 404); check {UPSTREAM_URL_ENV}")


def _attempt(entry: CatalogEntry, url: str, target: Path, timeout, progress) -> tuple[str, int]:
    import httpx2
    from huggingface_hub.utils import get_session

    with get_session().stream("GET", url, timeout=timeout, follow_redirects=True, headers={"Accept-Encoding": "identity"}) as reply:
        status = reply.status_code
        if status == 404:
            raise SourceNotFoundError(f"{entry.name}: no release file at {url} (HTTP 404); check {UPSTREAM_URL_ENV}")
        if status in _RETRY_STATUS:
            raise _Retry(f"HTTP {status}")
        if status != 200:
            raise DownloadError(f"{entry.name}: {url} answered HTTP {status}; check {UPSTREAM_URL_ENV}")
        expected = _content_length(reply.headers.get("Content-Length"))
        if expected is not None and expected > MAX_BYTES:
            raise DownloadError(f"{entry.name}: {url} is {expected:,} bytes, over the {MAX_BYTES:,} a checkpoint may be; refused")
        report = _reporter(progress, entry.name, expected)
        digest = hashlib.sha256()
        done = 0
        deadline = time.monotonic() + MAX_SECONDS
        try:
            with target.open("wb") as fh:
                report(0)
                for chunk in reply.iter_bytes(_CHUNK):
                    done += len(chunk)
                    if done > MAX_BYTES:
                        raise DownloadError(f"{entry.name}: {url} sent over {MAX_BYTES:,} bytes; refused")
                    if time.monotonic() > deadline:
                        raise DownloadError(f"{entry.name}: {url} took over {MAX_SECONDS:.0f} s ({done:,} bytes so far); run it again later")
                    fh.write(chunk)
                    digest.update(chunk)
                    report(done)
        except (httpx2.RemoteProtocolError, httpx2.ReadError) as exc:
            raise _Retry(f"the connection was cut after {done:,} bytes ({type(exc).__name__})") from None
        finally:
            report(None)
    if expected is not None and done != expected:
        raise _Retry(f"got {done:,} of {expected:,} bytes")
    if done == 0:
        raise CheckpointError(f"{entry.name}: {url} sent an empty file; check {UPSTREAM_URL_ENV}")
    return digest.hexdigest(), done


def _content_length(value: Optional[str]) -> Optional[int]:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _reporter(progress: Union[ProgressCallback, bool, None], name: str, total: Optional[int]) -> Callable[[Optional[int]], None]:
    """A function taking bytes done (None: finished) that feeds a callback or huggingface_hub's bar."""
    if callable(progress):
        return lambda done: None if done is None else progress(done, total)
    if progress is False:
        return lambda done: None
    from huggingface_hub.utils import tqdm as hf_tqdm  # the bar every Hub download shows (honours HF_HUB_DISABLE_PROGRESS_BARS)

    bar = hf_tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=name, leave=False)
    last = [0]

    def report(done: Optional[int]) -> None:
        if done is None:
            bar.close()
            return
        bar.update(done - last[0])
        last[0] = done

    return report


# --- checks and conversion -----------------------------------------------------------


def _check_digest(entry: CatalogEntry, url: str, digest: str) -> None:
    """The release file must match the catalog pin, else the first download's record."""
    if entry.upstream_sha256 is not None and digest != entry.upstream_sha256:
        raise IntegrityError(
            f"{entry.name}: {url} has sha256 {digest[:16]}..., not the pinned {entry.upstream_sha256[:16]}...; "
            "nothing was kept: report it, or check ESC_UPSTREAM_URL"
        )
    record = store.read_record(entry)
    if entry.upstream_sha256 is None and record is not None and record.upstream_sha256 != digest:
        raise IntegrityError(
            f"{entry.name}: {url} has sha256 {digest[:16]}..., but the first download had "
            f"{record.upstream_sha256[:16]}... (recorded in {store.record_path(entry)}); refused: "
            "delete that record only if the release really changed"
        )


def _convert(entry: CatalogEntry, url: str, raw: Path, target: Path) -> str:
    """Read `raw` safely, check it is `entry`'s network, write safetensors to `target`; return its sha256."""
    from safetensors.torch import save_file

    from esc_cli.model import network_from_state_dict
    from esc_cli.weights.convert import safetensors_metadata, safetensors_tensors
    from esc_cli.weights.digest import sha256_file
    from esc_cli.weights.files import read_state_dict

    try:
        state = read_state_dict(raw)
        network = network_from_state_dict(state)
    except CheckpointError as exc:
        reason = str(exc).replace(f"{raw}: ", "").replace(str(raw), "the file")
        raise type(exc)(f"{entry.name}: {url}: {reason}") from None
    expected = entry.expected_config()
    if expected is not None and network.config != expected:
        raise CheckpointError(
            f"{entry.name}: {url} holds {network.config.variant} x{network.config.scale}, not {entry.name}; "
            f"nothing was kept: check {UPSTREAM_URL_ENV}"
        )
    save_file(safetensors_tensors(state), str(target), metadata=safetensors_metadata())
    return sha256_file(target)
