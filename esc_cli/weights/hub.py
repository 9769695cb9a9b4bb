"""The only module of `esc` that talks to the network: files from the Hugging Face Hub.

Downloads go through `huggingface_hub.hf_hub_download` into the standard cache, so
`HF_HOME`/`HF_HUB_CACHE`, `HF_ENDPOINT`, `HF_HUB_OFFLINE` and `HF_TOKEN` mean what they
mean for every other Hub tool. On top of the library this module

- asks the Hub once, with one bounded request (`$ESC_HUB_TIMEOUT`, default 3.5 s, no
  retries), before handing over to the library: an unreachable or hanging endpoint fails
  in that time instead of after the library's ~23 s (refused) to minutes (hanging) of
  retries, and a missing repository, file or revision gets a one-line message;
- refuses an ETag that could not be a plain file name (the library uses it as the blob's
  name: `../` would write outside the cache), then downloads the commit that request
  resolved, and checks that the blob landed inside the cache;
- checks the bytes' sha256 against the pin given (or, without a pin, against an ETag that
  is a sha256, which is what the Hub advertises for LFS files): on a mismatch the blob
  and its snapshot link are deleted and `IntegrityError` raised;
- sends no token unless `HF_TOKEN` is set (a token saved by `hf auth login` is not sent:
  the endpoint may be a mirror);
- answers from the cache without any request when the file is there (an unpinned branch
  is refreshed only when asked, by `esc models pull`);
- sends no telemetry in its User-Agent (`HF_HUB_DISABLE_TELEMETRY` is switched on for the
  process). With it on, huggingface_hub 2.4 first GETs `{endpoint}/api/agent-harnesses`
  with its own 3 s timeout, again on every run while the endpoint is unreachable, which
  alone would add 3 s to the bound above (measured: 6.6 s instead of 3.6 s on a hanging
  endpoint).

Progress goes to a callback `(bytes_done, bytes_total_or_None)`; with none, the library's
own bar is shown on a terminal (silenced by `HF_HUB_DISABLE_PROGRESS_BARS=1`). A body that
stalls for `$ESC_DOWNLOAD_STALL_TIMEOUT` (10 s) or breaks off fails at once instead of being
resumed five times by the library (see `_StopBeforeResume`). Cache folder names, cache
look-ups and progress bars are huggingface_hub's own (`repo_folder_name`,
`try_to_load_from_cache`, its `tqdm`); only the branch ref is written here (`_write_ref`),
because the library's writer is private and the ref must wait for the sha256 check.
"""

from __future__ import annotations

import logging
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Union

from esc_cli.errors import DownloadError, IntegrityError, SourceNotFoundError
from esc_cli.weights.digest import is_sha256, sha256_file
from esc_cli.weights.refs import HubRef

ProgressCallback = Callable[[int, Optional[int]], None]
"""Called with (bytes downloaded so far, total bytes or None) as a download advances."""

DEFAULT_TIMEOUT = 3.5
TIMEOUT_ENV = "ESC_HUB_TIMEOUT"
STALL_ENV = "ESC_DOWNLOAD_STALL_TIMEOUT"
DEFAULT_STALL = 10.0
_COMMIT_RE = re.compile(r"^[0-9a-f]{40}$")
_SAFE_ETAG = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+=-]{0,127}$")
_TRUE = {"1", "on", "yes", "true"}


@dataclass(frozen=True)
class HubSettings:
    """Where and how to reach the Hub, resolved from arguments and the environment."""

    endpoint: str
    cache_dir: Path
    offline: bool
    token: Union[str, bool]
    timeout: float

    def __repr__(self) -> str:  # never print a token
        return (
            f"HubSettings(endpoint={self.endpoint!r}, cache_dir={str(self.cache_dir)!r}, offline={self.offline}, "
            f"token={'set' if self.token else 'none'}, timeout={self.timeout})"
        )


def settings(
    *,
    endpoint: Optional[str] = None,
    cache_dir: Union[str, Path, None] = None,
    offline: Optional[bool] = None,
    timeout: Optional[float] = None,
) -> HubSettings:
    """Resolve the endpoint, cache folder, offline flag, token and timeout.

    Defaults come from huggingface_hub (which reads `HF_ENDPOINT`, `HF_HOME`, `HF_HUB_CACHE`
    and `HF_HUB_OFFLINE` when it is imported); `HF_HUB_OFFLINE` set later also counts.
    The token is `$HF_TOKEN` or none at all. The timeout is `$ESC_HUB_TIMEOUT`, else
    `$HF_HUB_ETAG_TIMEOUT`, else 3.5 s (bounded to 0.1-60 s).
    """
    from huggingface_hub import constants

    _no_telemetry(constants)
    if offline is None:
        offline = bool(constants.HF_HUB_OFFLINE) or os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in _TRUE
    if timeout is None:
        timeout = DEFAULT_TIMEOUT
        for name in (TIMEOUT_ENV, "HF_HUB_ETAG_TIMEOUT"):  # ours first, then the library's own knob
            try:
                timeout = float(os.environ[name])
                break
            except (KeyError, ValueError):
                continue
    timeout = min(max(timeout, 0.1), 60.0)
    token: Union[str, bool] = os.environ.get("HF_TOKEN", "").strip() or False
    return HubSettings(
        endpoint=(endpoint or constants.ENDPOINT).rstrip("/"),
        cache_dir=Path(cache_dir if cache_dir is not None else constants.HF_HUB_CACHE).expanduser(),
        offline=offline,
        token=token,
        timeout=timeout,
    )


def stall_timeout() -> float:
    """Seconds a download's reply or body may stall: `$ESC_DOWNLOAD_STALL_TIMEOUT`, default 10 (0.1-300)."""
    try:
        value = float(os.environ.get(STALL_ENV, DEFAULT_STALL))
    except ValueError:
        value = DEFAULT_STALL
    return min(max(value, 0.1), 300.0)


class _Stalled(Exception):
    """A Hub transfer broke off or stalled mid-body (see `_StopBeforeResume`)."""


def _no_telemetry(constants) -> None:
    """No torch version or agent detection in the User-Agent, and no registry request."""
    if hasattr(constants, "HF_HUB_DISABLE_TELEMETRY"):
        constants.HF_HUB_DISABLE_TELEMETRY = True


def storage_folder(ref: HubRef, cache_dir: Path) -> Path:
    """The cache folder of `ref`'s repository, named by huggingface_hub (`models--owner--name`)."""
    from huggingface_hub.file_download import repo_folder_name

    return cache_dir / repo_folder_name(repo_id=ref.repo_id, repo_type="model")


def cached_file(ref: HubRef, *, cache_dir: Union[str, Path, None] = None) -> Optional[Path]:
    """The cached copy of `ref` (its revision resolved through the cache's refs), or None. No network."""
    from huggingface_hub import try_to_load_from_cache

    cache = settings(cache_dir=cache_dir).cache_dir if cache_dir is None else Path(cache_dir)
    found = try_to_load_from_cache(ref.repo_id, ref.filename, cache_dir=str(cache), revision=ref.revision)
    if isinstance(found, str) and os.path.isfile(found):
        return Path(found)
    return None


def remove_cached(ref: HubRef, path: Path, *, cache_dir: Path) -> None:
    """Delete a cached file: its blob (only inside this repo's `blobs/`) and its snapshot link."""
    blobs = (storage_folder(ref, cache_dir) / "blobs").resolve()
    try:
        target = path.resolve()
    except OSError:
        target = None
    if target is not None and target.parent == blobs and target.is_file():
        target.unlink()
    if path.is_symlink() or path.is_file():
        path.unlink()


def verify_cached(ref: HubRef, path: Path) -> Optional[bool]:
    """Check a cached file against `ref.sha256`, else against its blob name when that is a sha256.

    Returns True (matches), False (differs) or None (nothing to compare against).
    """
    expected = ref.sha256
    if expected is None:
        blob_name = path.resolve().name
        expected = blob_name if is_sha256(blob_name) else None
    if expected is None:
        return None
    return sha256_file(path) == expected


def fetch(
    ref: HubRef,
    *,
    refresh: bool = False,
    progress: Union[ProgressCallback, bool, None] = None,
    endpoint: Optional[str] = None,
    cache_dir: Union[str, Path, None] = None,
    offline: Optional[bool] = None,
    timeout: Optional[float] = None,
) -> Path:
    """Return a verified local path of `ref`, downloading it into the Hub cache if needed.

    A cached copy is used without any request unless `refresh` is set and the revision is
    a branch or tag (then the Hub is asked for its current commit; on a network failure
    the cached copy is still used). A cached copy that fails its pinned sha256 (or, with
    no pin, the sha256 its LFS blob is named by) is deleted and fetched again. `progress`: a callback, False for no bar, None for the library's bar.

    Raises `DownloadError` (unreachable, offline and not cached, missing repository, file
    or revision, refused ETag, transfer failure) or `IntegrityError` (bytes differ from the
    sha256); both name the reference and the fix.
    """
    conf = settings(endpoint=endpoint, cache_dir=cache_dir, offline=offline, timeout=timeout)
    cached = cached_file(ref, cache_dir=conf.cache_dir)
    damaged = cached is not None and verify_cached(ref, cached) is False  # the pin, else the blob's sha256 name
    if damaged:
        assert cached is not None
        remove_cached(ref, cached, cache_dir=conf.cache_dir)
        cached = None
    if damaged and conf.offline:
        raise IntegrityError(
            f"{ref}: the cached copy was damaged (its sha256 differs) and was deleted; "
            "run `esc models pull` once with network access"
        )
    pinned_revision = _COMMIT_RE.fullmatch(ref.revision) is not None
    if cached is not None and (not refresh or pinned_revision or ref.sha256 is not None or conf.offline):
        return cached  # pinned bytes need no refresh
    if conf.offline:
        raise DownloadError(
            f"{ref}: not in the cache ({conf.cache_dir}) and HF_HUB_OFFLINE is set; "
            "unset it and run `esc models pull` once with network access"
        )
    meta = _resolve(ref, conf, cached)
    if meta is None:  # network failure with a cached copy at hand
        assert cached is not None
        return cached
    return _download(ref, conf, meta, progress)


@dataclass(frozen=True)
class _Meta:
    commit: str
    etag: str
    size: Optional[int]


def _transport_errors() -> tuple[type[BaseException], ...]:
    """The HTTP client's network errors (huggingface_hub 2.x uses httpx2; older ones httpx or requests)."""
    errors: list[type[BaseException]] = []
    for module, name in (("httpx2", "TransportError"), ("httpx", "TransportError"), ("requests", "RequestException")):
        try:
            errors.append(getattr(__import__(module), name))
        except (ImportError, AttributeError):
            continue
    return tuple(errors)


def _resolve(ref: HubRef, conf: HubSettings, cached: Optional[Path]) -> Optional[_Meta]:
    """One bounded HEAD for `ref`: its commit, ETag and size; None if unreachable but cached."""
    import inspect

    from huggingface_hub import errors as hf_errors
    from huggingface_hub.file_download import get_hf_file_metadata, hf_hub_url

    url = hf_hub_url(ref.repo_id, ref.filename, revision=ref.revision, endpoint=conf.endpoint)
    kwargs = {"token": conf.token, "timeout": conf.timeout, "endpoint": conf.endpoint}
    if "retry_on_errors" in inspect.signature(get_hf_file_metadata).parameters:
        kwargs["retry_on_errors"] = False
    start = time.monotonic()
    try:
        meta = get_hf_file_metadata(url, **kwargs)
    except (*_transport_errors(), hf_errors.OfflineModeIsEnabled, OSError) as exc:
        if isinstance(exc, hf_errors.HfHubHTTPError):
            raise _http_error(ref, conf, exc) from None
        if cached is not None:
            return None
        waited = time.monotonic() - start
        reason = _short(exc) or type(exc).__name__
        raise DownloadError(
            f"{ref}: cannot reach {conf.endpoint} ({reason}; gave up after {waited:.1f} s); "
            "check the connection or HF_ENDPOINT, or use a cached or local model"
        ) from None
    except hf_errors.HfHubHTTPError as exc:  # pragma: no cover - HfHubHTTPError is an OSError
        raise _http_error(ref, conf, exc) from None
    commit, etag = meta.commit_hash, meta.etag
    if commit is None or not _COMMIT_RE.fullmatch(commit):
        raise DownloadError(f"{ref}: {conf.endpoint} sent no valid X-Repo-Commit; is HF_ENDPOINT a Hub-compatible server?")
    if etag is None or not _SAFE_ETAG.fullmatch(etag) or ".." in etag:
        raise DownloadError(f"{ref}: refused the ETag {etag!r} from {conf.endpoint}: it is not a plain file name")
    return _Meta(commit, etag, meta.size)


def _http_error(ref: HubRef, conf: HubSettings, exc: Exception) -> DownloadError:
    from huggingface_hub import errors as hf_errors

    if isinstance(exc, hf_errors.GatedRepoError):
        return DownloadError(f"{ref}: {ref.repo_id} is gated; accept its terms on the Hub and set HF_TOKEN")
    if isinstance(exc, hf_errors.RepositoryNotFoundError):
        return SourceNotFoundError(
            f"{ref}: repository {ref.repo_id} not found on {conf.endpoint} "
            "(or private: set HF_TOKEN); check the name, or ESC_HUB_ORG for a mirror"
        )
    if isinstance(exc, hf_errors.RevisionNotFoundError):
        return SourceNotFoundError(f"{ref}: revision {ref.revision!r} not found in {ref.repo_id}; check the branch, tag or commit after '@'")
    if isinstance(exc, hf_errors.RemoteEntryNotFoundError):
        return SourceNotFoundError(f"{ref}: no file {ref.filename!r} in {ref.repo_id} at {ref.revision}; check the path in the repository")
    status = getattr(getattr(exc, "response", None), "status_code", None)
    return DownloadError(f"{ref}: {conf.endpoint} answered HTTP {status}: {_short(exc)}")


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else ""


def _download(ref: HubRef, conf: HubSettings, meta: _Meta, progress: Union[ProgressCallback, bool, None]) -> Path:
    """Download the commit `meta` resolved, record the ref, and check location and sha256."""
    from huggingface_hub import constants, hf_hub_download
    from huggingface_hub import errors as hf_errors

    stall = stall_timeout()
    tqdm_class = _bar_class(progress if callable(progress) else None, visible=progress is None)
    saved_timeout = constants.HF_HUB_DOWNLOAD_TIMEOUT
    constants.HF_HUB_DOWNLOAD_TIMEOUT = stall  # the library's read timeout, read at each request
    guard = _StopBeforeResume()
    library_log = logging.getLogger("huggingface_hub.file_download")
    library_log.addFilter(guard)
    try:
        pointer = hf_hub_download(
            ref.repo_id,
            ref.filename,
            revision=meta.commit,
            cache_dir=str(conf.cache_dir),
            endpoint=conf.endpoint,
            token=conf.token,
            etag_timeout=conf.timeout,
            tqdm_class=tqdm_class,
        )
    except _Stalled as exc:
        raise DownloadError(
            f"{ref}: the download from {conf.endpoint} broke off ({exc}; read timeout {stall:g} s); "
            f"run the command again, or raise {STALL_ENV} on a slow link"
        ) from None
    except hf_errors.HfHubHTTPError as exc:
        raise _http_error(ref, conf, exc) from None
    except (*_transport_errors(), hf_errors.LocalEntryNotFoundError, OSError) as exc:
        raise DownloadError(f"{ref}: download from {conf.endpoint} failed ({_short(exc)}); run the command again") from None
    finally:
        constants.HF_HUB_DOWNLOAD_TIMEOUT = saved_timeout
        library_log.removeFilter(guard)
    path = Path(pointer)
    folder = storage_folder(ref, conf.cache_dir)
    blob = path.resolve()
    if not blob.is_relative_to(folder.resolve()):  # blobs/<etag> (or a copy in snapshots/ without symlinks)
        if path.is_symlink():
            path.unlink()
        raise DownloadError(f"{ref}: the downloaded file resolved outside the cache ({blob}); refused")
    expected = ref.sha256 or (meta.etag if is_sha256(meta.etag) else None)
    if expected is not None:
        actual = sha256_file(path)
        if actual != expected:
            remove_cached(ref, path, cache_dir=conf.cache_dir)
            what = "the pinned sha256" if ref.sha256 else "the sha256 the server advertised"
            raise IntegrityError(
                f"{ref}: downloaded bytes have sha256 {actual[:16]}..., not {what} {expected[:16]}...; "
                "the file was deleted: try again, or report a corrupted upload or mirror"
            )
    _write_ref(folder, ref.revision, meta.commit)  # only now may offline runs find it by branch
    return path


def _write_ref(folder: Path, revision: str, commit: str) -> None:
    """Record `refs/<revision> = commit` (the library's own writer is private), so offline runs find the file.

    `_download` fetched the commit, not the branch, so the library wrote no ref; writing
    it only after the sha256 check keeps a branch on its last good commit.
    """
    if revision == commit:
        return
    ref_path = folder / "refs" / revision
    if ".." in Path(revision).parts:  # revisions were validated when parsed; be strict anyway
        return
    ref_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = ref_path.with_name(f".{ref_path.name}.{os.getpid()}.tmp")
    tmp.write_text(commit)
    os.replace(tmp, ref_path)


def _bar_class(callback: Optional[ProgressCallback], *, visible: bool) -> type:
    """huggingface_hub's own tqdm (drawn only when `visible`) that also reports counts to `callback`."""
    from huggingface_hub.utils import tqdm as hf_tqdm

    class _Bar(hf_tqdm):  # type: ignore[misc, valid-type]
        def __init__(self, *args, **kwargs) -> None:
            if not visible:
                kwargs["disable"] = True  # a disabled tqdm keeps `n` and `total` but counts nothing itself
            super().__init__(*args, **kwargs)
            self.n = int(kwargs.get("initial") or 0)
            self._report()

        def _report(self) -> None:
            if callback is not None:
                callback(self.n, int(self.total) if self.total is not None else None)

        def update(self, n: float = 1) -> Optional[bool]:
            if visible:
                shown = super().update(n)
                self._report()
                return shown
            self.n += int(n)
            self._report()
            return None

    return _Bar


class _StopBeforeResume(logging.Filter):
    """Ends a Hub transfer where huggingface_hub would resume it after a broken or stalled body.

    The library retries such a body up to five times, each after its read timeout (measured:
    65 s on a body that stalls after 16 bytes); it announces every retry with a warning on
    its `file_download` logger. Raising here, at the first one, makes a stall cost one read
    timeout (`$ESC_DOWNLOAD_STALL_TIMEOUT`) and keeps the library's retry lines off stderr.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if message.startswith("Error while downloading from"):
            reason = message.split(": ", 1)[-1].splitlines()[0] if ": " in message else "interrupted"
            raise _Stalled(reason)
        return True
