"""fsspec URLs (`s3://`, `gs://`, `file://`, ...) as image inputs and outputs of a scaled-out run.

The driver lists the URLs with fsspec and mirrors them as empty placeholder files in a local
temp folder, so the one planning code of `upscale_images` (names, formats, collisions, earlier
outputs, junk) runs unchanged on the placeholders. Each worker then reads its item's bytes
from the input URL into its own temp folder, runs the same `esc_cli.api.jobs.process_job`
(`esc_cli.scale.workers.UrlImageWorker`), and writes the result to the output URL (local filesystems: temp file + rename; object stores: one PUT, which is
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
from esc_cli.io.images import output_format_for
from esc_cli.scale.urls import Pairs, is_url, load_fsspec, relabel_event, relabel_text


def _mirror(arg: str, local: Path, recursive: bool, pairs: Pairs) -> str:
    """List one input URL into placeholders under `local`; returns the argument to plan with."""
    try:
        fs, root = load_fsspec().core.url_to_fs(arg)
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

    load_fsspec()
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


__all__ = ["upscale_urls"]
