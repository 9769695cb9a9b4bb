"""fsspec URLs (`s3://`, `gs://`, `file://`, ...) as image inputs and outputs of a scaled-out run.

The driver lists the URLs with fsspec and mirrors them as empty placeholder files in a local
temp folder, so the one planning code of `upscale_images` (names, formats, collisions, earlier
outputs, junk) runs unchanged on the placeholders. Each worker then reads its item's bytes
from the input URL into its own temp folder, runs the same `_process`, and writes the result
to the output URL (local filesystems: temp file + rename; object stores: one PUT, which is
atomic). Events name the URLs, never the placeholders. Only the driver lists; the pixels go
straight from storage to the worker and back. Needs fsspec and the filesystem's package
(s3fs, gcsfs, adlfs, ...) on every node.
"""

from __future__ import annotations

import dataclasses
import os
import posixpath
import shutil
import tempfile
from pathlib import Path
from typing import Callable, Optional, Sequence

from esc_cli.errors import EscError, InputError, UsageError
from esc_cli.io.images import OUTPUT_FORMATS, output_format_for
from esc_cli.scale.local import ImageWorker

Pairs = list[tuple[str, str]]


def is_url(text: Optional[str]) -> bool:
    return bool(text) and "://" in str(text)


def _fsspec():
    try:
        import fsspec
    except ImportError:
        raise UsageError("URL inputs and outputs need fsspec (pip install fsspec s3fs/gcsfs)") from None
    return fsspec


def relabel_text(text: str, pairs: Pairs) -> str:
    """Replace each local prefix of `pairs` (longest first) by its URL in `text`."""
    for local, url in sorted(pairs, key=lambda p: -len(p[0])):
        text = text.replace(local + os.sep, url + "/").replace(local, url)
    return text


def relabel_event(event, pairs: Pairs):
    """A copy of an event dataclass with every path string mapped through `pairs`."""
    changes = {}
    for f in dataclasses.fields(event):
        value = getattr(event, f.name)
        if isinstance(value, str):
            changes[f.name] = relabel_text(value, pairs)
        elif isinstance(value, list) and all(isinstance(v, str) for v in value):
            changes[f.name] = [relabel_text(v, pairs) for v in value]
    return dataclasses.replace(event, **changes)


# --------------------------------------------------------------------------- worker side


class UrlImageWorker(ImageWorker):
    """An `ImageWorker` whose item comes from and goes to URLs (payload ends with url_in, url_out)."""

    def handle(self, payload, send):
        from esc_cli.api.events import ItemFinished
        from esc_cli.api.images import InputItem, Job, _process

        job, index, total, own, url_in, url_out = payload
        if job.skip or job.error:
            return _process(job, index, total, self.options, self.upscaler, send, [], None, None)
        fsspec = _fsspec()
        fs_in, p_in = fsspec.core.url_to_fs(url_in)
        fs_out, p_out = fsspec.core.url_to_fs(url_out)
        label, out_label = job.item.label, str(job.output)
        if fs_out.exists(p_out):
            if self.options.skip_existing:
                return ItemFinished(index, total, "skipped", label, out_label, 0.0, reason="output exists (--skip-existing)")
            if not (self.options.overwrite or own):
                return ItemFinished(index, total, "failed", label, out_label, 0.0,
                                    error=f"{out_label}: already exists; pass --overwrite to replace it or --skip-existing to keep it")
        with tempfile.TemporaryDirectory(prefix="esc-url-") as tmp:
            local_in = Path(tmp) / "in" / posixpath.basename(p_in)
            local_out = Path(tmp) / "out" / posixpath.basename(p_out)
            local_in.parent.mkdir()
            pairs = [(str(local_in), label), (str(local_out), out_label), (tmp, "<worker temp>")]
            relay = lambda event: send(relabel_event(event, pairs))  # noqa: E731
            try:
                fs_in.get_file(p_in, str(local_in))
            except Exception as exc:  # noqa: BLE001 - this item fails, the batch goes on
                return ItemFinished(index, total, "failed", label, out_label, 0.0,
                                    error=f"{label}: cannot read ({type(exc).__name__}: {exc})")
            local_job = Job(InputItem(local_in), local_out, job.format)
            options = dataclasses.replace(self.options, skip_existing=False, overwrite=False)
            event = _process(local_job, index, total, options, self.upscaler, relay, [local_in], None, None)
            if event.status == "done":
                try:
                    _upload(fs_out, str(local_out), p_out)
                except Exception as exc:  # noqa: BLE001
                    event = dataclasses.replace(event, status="failed", error=f"{out_label}: cannot write "
                                                f"({type(exc).__name__}: {exc})")
            return relabel_event(event, pairs)


def _upload(fs, local: str, target: str) -> None:
    """Local filesystems: temp file next to the target, then rename; object stores: one PUT."""
    parent = posixpath.dirname(target)
    if parent:
        fs.makedirs(parent, exist_ok=True)
    if "file" in (fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,)):
        fd, tmp = tempfile.mkstemp(prefix=f".{Path(target).stem}.", suffix=f".esc-tmp{Path(target).suffix}", dir=parent)
        os.close(fd)
        try:
            shutil.copyfile(local, tmp)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    else:
        fs.put_file(local, target)


def url_image_worker(device: str, state: dict, setup: dict) -> UrlImageWorker:
    return UrlImageWorker(device, state, setup)


# --------------------------------------------------------------------------- driver side


def _mirror(arg: str, local: Path, recursive: bool, pairs: Pairs) -> str:
    """List one input URL into placeholders under `local`; returns the argument to plan with."""
    try:
        fs, root = _fsspec().core.url_to_fs(arg)
    except (ImportError, ValueError) as exc:  # the store's package is missing, or an unknown scheme
        raise UsageError(f"{arg}: {exc}") from None
    base = arg.rstrip("/")
    try:
        if fs.isdir(root):
            files = fs.find(root) if recursive else [f["name"] for f in fs.ls(root, detail=True) if f["type"] == "file"]
            local.mkdir(parents=True)
            for f in files:
                rel = posixpath.relpath(f, root)
                if rel.startswith(".."):
                    continue
                (local / rel).parent.mkdir(parents=True, exist_ok=True)
                (local / rel).touch()
            pairs.append((str(local), base))
            return str(local)
        if fs.isfile(root):
            local.mkdir(parents=True)
            name = posixpath.basename(root)
            (local / name).touch()
            pairs.append((str(local), base.rsplit("/", 1)[0]))
            return str(local / name)
    except OSError as exc:
        raise InputError(f"{arg}: cannot list ({exc})") from None
    return arg  # reported as "no such file or folder" by the planner


def upscale_urls(inputs: Sequence[str], options, runner, *, on_event: Optional[Callable] = None,
                 warn: Optional[Callable[[str], None]] = None, **kwargs):
    """`upscale_images` for inputs and/or an output that are fsspec URLs, on a scale-out `runner`."""
    from esc_cli.api.images import upscale_images

    _fsspec()
    workdir = Path(tempfile.mkdtemp(prefix="esc-urls-"))
    pairs: Pairs = []
    try:
        args = [(_mirror(a, workdir / f"in{i}", options.recursive, pairs) if is_url(a) else a)
                for i, a in enumerate(inputs)]
        out = options.output
        if is_url(out):
            base = out.rstrip("/")
            suffix = posixpath.splitext(base)[1]
            placeholder = workdir / "out"
            if suffix and output_format_for(suffix) is not None and not out.endswith("/") and len(inputs) == 1:
                placeholder.mkdir()
                pairs.append((str(placeholder), base.rsplit("/", 1)[0]))
                options = dataclasses.replace(options, output=str(placeholder / posixpath.basename(base)))
            else:
                placeholder.mkdir()
                pairs.append((str(placeholder), base))
                options = dataclasses.replace(options, output=str(placeholder) + os.sep)
        runner.url_pairs = pairs
        emit = (lambda e: on_event(relabel_event(e, pairs))) if on_event else None
        note = (lambda m: warn(relabel_text(m, pairs))) if warn else None
        try:
            summary = upscale_images(args, options, on_event=emit, warn=note, runner=runner, **kwargs)
        except EscError as exc:
            raise type(exc)(relabel_text(str(exc), pairs)) from None
        summary.items = [relabel_event(e, pairs) for e in summary.items]
        return summary
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


__all__ = ["OUTPUT_FORMATS", "is_url", "relabel_event", "relabel_text", "upscale_urls", "url_image_worker"]
