"""Output planning for a batch: each input's output path and format, and the collision checks."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

from esc_cli.api.inputs import InputItem
from esc_cli.api.options import UpscaleOptions, format_scale
from esc_cli.errors import UsageError
from esc_cli.io.atomic import remove_stale_temps
from esc_cli.io.images import OUTPUT_FORMATS, output_format_for

_EARLIER_OUTPUT = re.compile(r"^(?P<stem>.+)_x\d+(\.\d+)?$")


@dataclass
class ImageJob:
    """An input with its planned output (None = stdout) and format (None = the input's)."""

    item: InputItem
    output: Optional[Path]
    format: Optional[str]
    error: Optional[str] = None  # refused at planning time (duplicate output, would overwrite an input)
    skip: Optional[str] = None  # not processed, with the reason (earlier output of this batch)


def _output_is_file(output: str, items: Sequence[InputItem], args_have_folder: bool) -> bool:
    if output == "-":
        return True
    path = Path(output)
    if path.is_dir() or output.endswith(("/", os.sep)):
        return False
    if len(items) == 1 and not args_have_folder and items[0].root is None:
        return bool(path.suffix)
    return False


def plan_outputs(items: Sequence[InputItem], options: UpscaleOptions, *, args_have_folder: bool = False) -> list[ImageJob]:
    """Decide each item's output path and format.

    - no `-o`: next to the input, named by the template; stdin goes to stdout;
    - `-o FILE` (one input, with an extension) or `-o -`: exactly there;
    - `-o FOLDER`: inside it, mirroring the tree below each input folder.
    Raises `UsageError` for an impossible combination (several inputs into one file,
    an unknown output extension, `--format` contradicting `-o`'s extension).
    """
    jobs: list[ImageJob] = []
    out = options.output
    file_mode = out is not None and _output_is_file(out, items, args_have_folder)
    if out == "-" and (len(items) != 1 or args_have_folder):
        raise UsageError("-o - (stdout) takes exactly one input image")
    if out is not None and out != "-" and not file_mode and Path(out).suffix and not Path(out).is_dir():
        if output_format_for(Path(out).suffix) is not None and (len(items) > 1 or args_have_folder):
            raise UsageError(f"-o {out}: several inputs need an output folder, not a file")
    scale = format_scale(options.scale)
    for item in items:
        if file_mode:
            if out == "-":
                jobs.append(ImageJob(item=item, output=None, format=options.format))
                continue
            target = Path(out)
            fmt = output_format_for(target.suffix)
            if fmt is None:
                raise UsageError(f"-o {out}: unknown image extension {target.suffix!r}; use .png, .jpg, .webp or .tif")
            if options.format is not None and options.format != fmt:
                raise UsageError(f"-o {out} and --format {options.format} disagree; drop one")
            jobs.append(ImageJob(item=item, output=target, format=fmt))
            continue
        if item.path is None:  # stdin without "-o -"
            if out is None:
                jobs.append(ImageJob(item=item, output=None, format=options.format))
                continue
            stem, suffix = "stdin", ""
        else:
            stem, suffix = item.path.stem, item.path.suffix.lower().lstrip(".")
        fmt = options.format or (output_format_for(suffix) if suffix else None) or "png"
        ext = suffix if suffix and output_format_for(suffix) == fmt else OUTPUT_FORMATS[fmt]  # keep .jpeg, .tiff
        name = options.name_template.format(
            stem=stem,
            name=item.path.name if item.path is not None else "stdin",
            ext=ext,
            suffix=suffix,
            scale=scale,
        )
        if out is None:
            folder = item.path.parent  # type: ignore[union-attr]
        else:
            folder = Path(out)
            if item.root is not None and item.path is not None:
                folder = folder / item.path.parent.relative_to(item.root)
        target = folder / name
        target_fmt = output_format_for(target.suffix) or fmt
        jobs.append(ImageJob(item=item, output=target, format=target_fmt))
    _refuse_collisions(jobs)
    return jobs


def _file_id(path: Path) -> Optional[tuple[int, int]]:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino)


def _refuse_collisions(jobs: list[ImageJob]) -> None:
    """Mark jobs whose output is an input of the batch, or the output of an earlier job.

    An input found by a folder scan or a glob that is itself the planned output of another
    input (a rerun next to the inputs) is skipped, not upscaled again; so is one that looks
    like an earlier output (`a_x2.png` beside `a.png`). Files named one by one are taken
    as given.
    """
    input_ids: dict[tuple[int, int], ImageJob] = {}
    input_paths: dict[str, ImageJob] = {}
    for job in jobs:
        if job.item.path is not None:
            fid = _file_id(job.item.path)
            if fid is not None:
                input_ids[fid] = job
            input_paths[os.path.abspath(job.item.path)] = job
    planned: dict[str, ImageJob] = {}
    for job in jobs:
        if job.output is None:
            continue
        key = os.path.abspath(job.output)
        other = input_paths.get(key)
        fid = _file_id(job.output)
        if other is None and fid is not None:
            other = input_ids.get(fid)
        if other is not None and other is not job and other.item.scanned:
            other.skip = f"is the output of {job.item.label} in this batch"
        elif other is not None:
            job.error = f"{job.output}: is the input {other.item.label}; choose another output so the input is kept"
            continue
        if key in planned:
            job.error = f"{job.output}: also the output of {planned[key].item.label}; use --name or -o to separate them"
            continue
        planned[key] = job
    # earlier runs with another scale: "a_x2.png" next to "a.png" found by a folder scan
    by_folder: dict[str, set[str]] = {}
    for job in jobs:
        if job.item.path is not None and job.item.scanned:
            by_folder.setdefault(os.path.abspath(job.item.path.parent), set()).add(job.item.path.stem)
    for job in jobs:
        if job.skip or job.item.path is None or not job.item.scanned:
            continue
        match = _EARLIER_OUTPUT.match(job.item.path.stem)
        if match and match.group("stem") in by_folder.get(os.path.abspath(job.item.path.parent), set()):
            job.skip = f"looks like an earlier esc output of {match.group('stem')}"


def clean_stale_temps(folders: Sequence[Path], notify: Callable[[str], None]) -> int:
    """Remove the temps that killed runs of `esc` on this host left in `folders` (never a live run's).

    One note per folder that had any; returns how many files were removed.
    """
    removed = 0
    for folder in dict.fromkeys(folders):
        gone = remove_stale_temps(folder)
        if gone:
            removed += len(gone)
            names = ", ".join(path.name for path in gone[:3]) + (", ..." if len(gone) > 3 else "")
            notify(f"{folder}: removed {len(gone)} temporary file(s) left by an interrupted run ({names})")
    return removed


def output_folders(jobs: Sequence[ImageJob]) -> list[Path]:
    """The existing folders the jobs write into, each once."""
    return [folder for folder in dict.fromkeys(job.output.parent for job in jobs if job.output is not None)
            if folder.is_dir()]
