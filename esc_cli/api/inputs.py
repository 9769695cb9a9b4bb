"""Finding the inputs of a batch: files, folders (optionally recursive), globs and stdin ("-")."""

from __future__ import annotations

import glob
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

from esc_cli.io.images import is_junk, looks_like_image

_GLOB_CHARS = re.compile(r"[*?\[]")


@dataclass(frozen=True)
class InputItem:
    """One thing to upscale: a file (`path`) or standard input (`path is None`).

    `root` is the folder given on the command line it was found in (outputs mirror the
    tree below it); None for files named directly.
    """

    path: Optional[Path]
    root: Optional[Path] = None
    scanned: bool = False  # found by a folder scan or a glob, not named on the command line

    @property
    def label(self) -> str:
        return "-" if self.path is None else str(self.path)


@dataclass(frozen=True)
class Ignored:
    """A path that was not processed, and why (junk, not an image, earlier output)."""

    path: str
    reason: str
    failed: bool = False  # True for inputs that do not exist / match nothing


def _scan_folder(folder: Path, recursive: bool, exclude: Sequence[Path]) -> tuple[list[Path], list[Ignored]]:
    files: list[Path] = []
    ignored: list[Ignored] = []
    excluded = [os.path.abspath(p) for p in exclude]
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=False):
        here = Path(dirpath)
        keep = []
        for d in sorted(dirnames):
            full = os.path.abspath(here / d)
            if d.startswith(".") or full in excluded:
                continue
            keep.append(d)
        dirnames[:] = keep if recursive else []
        for name in sorted(filenames):
            path = here / name
            if is_junk(path):
                if not name.startswith(".esc-") and ".esc-tmp" not in name:
                    ignored.append(Ignored(str(path), "junk file"))
                continue
            if not looks_like_image(path):
                ignored.append(Ignored(str(path), "not an image (by extension)"))
                continue
            files.append(path)
    return files, ignored


def collect_inputs(
    args: Sequence[str], *, recursive: bool = False, exclude: Sequence[Path] = ()
) -> tuple[list[InputItem], list[Ignored]]:
    """Expand command-line inputs: files, folders (`recursive` descends), globs and "-".

    Folder scans keep files with an image extension and skip junk and hidden files (each
    reported as `Ignored`); folders in `exclude` (the output folder) are not entered.
    Files named directly are always tried, whatever their extension. A path that does
    not exist or a glob matching nothing is an `Ignored` with `failed=True`.
    """
    items: list[InputItem] = []
    ignored: list[Ignored] = []
    seen: set[str] = set()

    def add(item: InputItem) -> None:
        key = "-" if item.path is None else os.path.abspath(item.path)
        if key not in seen:
            seen.add(key)
            items.append(item)

    def add_folder(folder: Path) -> None:
        files, skipped = _scan_folder(folder, recursive, exclude)
        ignored.extend(skipped)
        for f in files:
            add(InputItem(f, folder, scanned=True))

    for arg in args:
        if arg == "-":
            add(InputItem(None))
            continue
        path = Path(arg)
        if path.is_dir():
            add_folder(path)
        elif path.exists() or path.is_symlink():
            add(InputItem(path))
        elif _GLOB_CHARS.search(arg):
            matches = sorted(glob.glob(arg, recursive=True))
            if not matches:
                ignored.append(Ignored(arg, "no file matches this pattern", failed=True))
            for m in matches:
                mp = Path(m)
                if mp.is_dir():
                    add_folder(mp)
                elif looks_like_image(mp):
                    add(InputItem(mp, scanned=True))
                elif mp.is_file():
                    ignored.append(Ignored(m, "junk file" if is_junk(mp) else "not an image (by extension)"))
        else:
            ignored.append(Ignored(arg, "no such file or folder", failed=True))
    return items, ignored
