"""The one declarative table of every model `esc` can name: Hub conversions and bundled defaults.

Every official row has two sources: its release asset (`UPSTREAM_RELEASE`/<file>, the base
overridable by `$ESC_UPSTREAM_URL`; `esc_cli.weights.upstream` converts it locally) and its
Hub mirror. Each official ESC checkpoint (a GitHub release asset of dslisleedh/ESC) is published by
this project converted to safetensors in its own Hub repository `{org}/{repo}`, holding
`model.safetensors`, `config.json` and a model card (`esc models convert` writes all three;
docs/models.md gives the publishing steps). The organisation is `DEFAULT_HUB_ORG`, or the
value of `$ESC_HUB_ORG` for a mirror.

Pins: `revision` is the Hub revision fetched and `sha256` the digest of `model.safetensors`.
The conversions have not been uploaded from here (the Hub is unreachable in this build),
so the official rows use the `main` branch and no sha256 yet; whoever publishes them
replaces both with the commit id and the digest `esc models convert` prints. Without a
pinned sha256, a download is still checked against the sha256 the Hub advertises as
the ETag of an LFS file.

Bundled defaults live in `esc_cli/weights/bundled/` (or `$ESC_BUNDLED_DIR`, meant for
tests and repackagers); their sha256 is read from the file lazily when not pinned here.

This module does no network I/O and imports no network library.
"""

from __future__ import annotations

import difflib
import os
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable, Optional

from esc_cli.errors import ModelNotFoundError, UnknownModelError
from esc_cli.model.config import ESCConfig, esc, esc_fp, esc_light, esc_real, esc_xl
from esc_cli.weights.digest import sha256_file

DEFAULT_HUB_ORG = "esc-cli"
"""Hub organisation holding the converted official weights (override with $ESC_HUB_ORG)."""

HUB_ORG_ENV = "ESC_HUB_ORG"
BUNDLED_DIR_ENV = "ESC_BUNDLED_DIR"
HUB_FILENAME = "model.safetensors"
UPSTREAM_REPO = "https://github.com/dslisleedh/ESC"
UPSTREAM_RELEASE = f"{UPSTREAM_REPO}/releases/download/1.0.0"
"""The one base URL of the official release files (override with $ESC_UPSTREAM_URL)."""
UPSTREAM_URL_ENV = "ESC_UPSTREAM_URL"
UPSTREAM_LICENSE = "unverified: the code is MIT; the weights' own terms could not be read offline"
"""What is known of the weights' terms. The upstream repository's code is MIT; whether the
release assets carry other terms was not checked from here (no network): read the
repository's LICENSE and release notes at UPSTREAM_REPO before redistributing them."""

SCALES = (2, 3, 4)
DEFAULT_FAMILY = "esc-dflip"
"""The model used without --model: ESC (5 blocks, 0.95-0.97 M parameters, about 5 MFLOP per
input pixel) trained on the larger DFLIP set (DIV2K, Flickr2K, LSDIR, DiverSeg-IP). It is the
same network, at the same cost, as the DIV2K-trained `esc`, with the better training data;
ESC-XL costs 13 times more per pixel and ESC-light/ESC-FP trade quality for speed."""

_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9.-]*$")


@dataclass(frozen=True)
class CatalogEntry:
    """One downloadable or bundled model.

    `name` is what `--model` accepts (`esc-light-x4`); `family` the name without the scale.
    `variant` is the network class (`esc`, `esc-fp`, `esc-real`); `params` the parameter count.
    Hub rows give `repo` (the repository name inside the organisation), `filename`
    (path inside the repository) and `revision`; bundled rows give the file name in the
    bundled folder as `filename` and `repo=None`. `sha256` pins the bytes where known.
    `upstream` is the original release file this entry was converted from.
    """

    name: str
    family: str
    variant: str
    scale: int
    params: Optional[int]
    description: str
    repo: Optional[str]
    filename: str
    revision: Optional[str]
    sha256: Optional[str]
    license: str
    upstream: str
    config: Optional[Callable[[int], ESCConfig]] = None
    upstream_sha256: Optional[str] = None
    """sha256 of the release file itself where it is known (none could be read from here)."""

    @property
    def bundled(self) -> bool:
        """True for the defaults shipped inside the package."""
        return self.repo is None

    @property
    def repo_id(self) -> Optional[str]:
        """`org/repo` on the Hub (the organisation read from $ESC_HUB_ORG at call time)."""
        return None if self.repo is None else f"{hub_org()}/{self.repo}"

    @property
    def source(self) -> str:
        """Where the bytes come from: `hf://org/repo/file@rev` or `bundled:file`."""
        if self.repo is None:
            return f"bundled:{self.filename}"
        return f"hf://{self.repo_id}/{self.filename}@{self.revision}"

    @property
    def upstream_file(self) -> Optional[str]:
        """The release asset name (`ESC_DFLIP_X4.pth`), None for bundled rows."""
        return None if self.repo is None else self.upstream.rsplit("/", 1)[-1]

    def upstream_url(self) -> Optional[str]:
        """The release file's URL under `upstream_base()` (None for bundled rows)."""
        return None if self.upstream_file is None else f"{upstream_base()}/{self.upstream_file}"

    def expected_config(self) -> Optional[ESCConfig]:
        """The hyper-parameters the file must hold (None for bundled rows: read from the file)."""
        return None if self.config is None else self.config(self.scale)


def hub_org() -> str:
    """The Hub organisation: $ESC_HUB_ORG when set, else `DEFAULT_HUB_ORG`."""
    org = os.environ.get(HUB_ORG_ENV, "").strip().strip("/")
    return org or DEFAULT_HUB_ORG


def upstream_base() -> str:
    """The release base URL: $ESC_UPSTREAM_URL when set (a mirror, or a test server), else `UPSTREAM_RELEASE`."""
    base = os.environ.get(UPSTREAM_URL_ENV, "").strip().rstrip("/")
    return base or UPSTREAM_RELEASE


def bundled_dir_overridden() -> bool:
    """True when $ESC_BUNDLED_DIR points the bundled rows at files of the caller's."""
    return bool(os.environ.get(BUNDLED_DIR_ENV))


def bundled_dir() -> Path:
    """The folder of bundled weights: $ESC_BUNDLED_DIR when set, else the package's `bundled/`."""
    override = os.environ.get(BUNDLED_DIR_ENV)
    if override:
        return Path(override)
    return Path(__file__).resolve().parent / "bundled"


# --- the table -------------------------------------------------------------------------

_PARAMS = {  # from the official state dicts (ARCHITECTURE.md / official_state_dict_layouts.json)
    ("esc-light", 2): 603_600, ("esc-light", 3): 612_255, ("esc-light", 4): 624_372,
    ("esc", 2): 946_728, ("esc", 3): 955_383, ("esc", 4): 967_500,
    ("esc-xl", 2): 12_455_916, ("esc-xl", 3): 12_481_851, ("esc-xl", 4): 12_518_160,
    ("esc-fp", 2): 523_675, ("esc-fp", 3): 530_170, ("esc-fp", 4): 539_263,
    ("esc-real", 4): 2_265_307, ("esc-real-mse", 4): 2_265_307,
}  # fmt: skip


def _official(family: str, scale: int, variant: str, config, upstream_file: str, description: str) -> CatalogEntry:
    params = _PARAMS["esc" if family == "esc-dflip" else family, scale]  # same network as `esc`
    return CatalogEntry(
        name=f"{family}-x{scale}",
        family=family,
        variant=variant,
        scale=scale,
        params=params,
        description=description,
        repo=f"{family}-x{scale}",
        filename=HUB_FILENAME,
        revision="main",  # replace with the commit id once published (see docs/models.md)
        sha256=None,  # unknown until the conversion is published; `esc models convert` prints it
        license=UPSTREAM_LICENSE,
        upstream=f"{UPSTREAM_RELEASE}/{upstream_file}",
        config=config,
    )


# sha256 of the shipped files (docs/default-model.md). They pin the package's own folder;
# files brought through $ESC_BUNDLED_DIR are the caller's and are not checked against them.
BUNDLED_SHA256 = {
    2: "8cd00fb7cc76ba8962194e98d770b526b57bdaafbf86dd0b94eccb6489f220b1",
    3: "9c1f85237b04bdae65e80949a84761eca50de2c0fe1870a2e5e5c7cb699032fa",
    4: "977e8ae520a5450cf4cb97b9e26190e788d41b13e8efeaa9846814b1ff0d7473",
}


def _bundled(scale: int) -> CatalogEntry:
    return CatalogEntry(
        name=f"default-x{scale}",
        family="default",
        variant="esc",
        scale=scale,
        params=None,  # read from the file
        description=f"Bundled x{scale} fallback trained by this project (works offline)",
        repo=None,
        filename=f"esc-default-x{scale}.safetensors",
        revision=None,
        sha256=BUNDLED_SHA256.get(scale),
        license="MIT (this project)",
        upstream="esc_cli/weights/bundled",
        config=None,
    )


CATALOG: tuple[CatalogEntry, ...] = (
    *(_official("esc-light", s, "esc", esc_light, f"ESC_light_X{s}.pth", "ESC-light, DIV2K: fastest ESC") for s in SCALES),
    *(_official("esc", s, "esc", esc, f"ESC_DIV2K_X{s}.pth", "ESC trained on DIV2K (paper setting)") for s in SCALES),
    *(_official("esc-dflip", s, "esc", esc, f"ESC_DFLIP_X{s}.pth", "ESC trained on DFLIP: best quality per time") for s in SCALES),
    _official("esc-xl", 2, "esc", esc_xl, "ESC_XL_DF2K_X2.pth", "ESC-XL, DF2K: highest fidelity, 13x the cost"),
    _official("esc-xl", 3, "esc", esc_xl, "ESC_XL_DF2K_X3_FT.pth", "ESC-XL, DF2K: highest fidelity, 13x the cost"),
    _official("esc-xl", 4, "esc", esc_xl, "ESC_XL_DF2K_X4_FT.pth", "ESC-XL, DF2K: highest fidelity, 13x the cost"),
    *(_official("esc-fp", s, "esc-fp", esc_fp, f"ESC_FP_X{s}.pth", "ESC-FP: fewest FLOPs") for s in SCALES),
    _official("esc-real", 4, "esc-real", esc_real, "ESC_Real_X4_GAN.pth", "ESC-Real (GAN): real-world photos"),
    _official("esc-real-mse", 4, "esc-real", esc_real, "ESC_Real_X4_MSE.pth", "ESC-Real (MSE): real-world photos, less texture"),
    *(_bundled(s) for s in SCALES),
)
"""Every model `esc` can name. Release file names for ESC-XL x2/x3 follow the x4 pattern
and are unverified; the others match the upstream test configurations."""


@lru_cache(maxsize=1)
def _by_name() -> dict[str, CatalogEntry]:
    table = {e.name: e for e in CATALOG}
    assert len(table) == len(CATALOG), "duplicate catalog names"
    return table


def entries(*, include_missing_bundled: bool = True) -> list[CatalogEntry]:
    """All catalog rows in table order; optionally without bundled rows whose file is absent."""
    return [e for e in CATALOG if include_missing_bundled or not e.bundled or bundled_path(e).is_file()]


def families() -> list[str]:
    """Family names (`esc-light`, ..., `default`) in table order."""
    seen: dict[str, None] = {}
    for e in CATALOG:
        seen.setdefault(e.family, None)
    return list(seen)


def _normalise(name: str) -> str:
    text = name.strip().lower().replace("_", "-")
    for suffix in (".pth", ".safetensors"):
        if text.endswith(suffix):
            text = text[: -len(suffix)]
    return text


def _upstream_aliases() -> dict[str, CatalogEntry]:
    """`esc-dflip-x4` is also reachable as `ESC_DFLIP_X4` (its upstream file stem)."""
    return {_normalise(e.upstream.rsplit("/", 1)[-1]): e for e in CATALOG if not e.bundled}


def find(name: str, *, scale: Optional[float] = None) -> Optional[CatalogEntry]:
    """The entry a name denotes, or None.

    Accepts an exact name (`esc-xl-x4`), the upstream file stem (`ESC_XL_DF2K_X4_FT`),
    or a family (`esc-light`) which takes the scale `pick_scale(scale)` (x4 without one).
    Case and `_`/`-` do not matter.
    """
    table = _by_name()
    if name in table:
        return table[name]
    key = _normalise(name)
    if key in table:
        return table[key]
    alias = _upstream_aliases().get(key)
    if alias is not None:
        return alias
    if key in families():
        available = [e for e in CATALOG if e.family == key]
        if key == "default":
            available = [e for e in available if bundled_path(e).is_file()] or available
        return _closest_scale(available, scale)
    return None


def lookup(name: str, *, scale: Optional[float] = None) -> CatalogEntry:
    """Like `find`, but raise `ModelNotFoundError` naming the closest names when nothing matches."""
    entry = find(name, scale=scale)
    if entry is not None:
        return entry
    names = [e.name for e in CATALOG] + families()
    close = difflib.get_close_matches(_normalise(name), names, n=3, cutoff=0.6)
    hint = f" (did you mean {', '.join(close)}?)" if close else ""
    raise UnknownModelError(f"{name}: no such catalog model or file{hint}; see `esc models list`")


def is_valid_name(name: str) -> bool:
    """Catalog names are lowercase letters, digits, `.` and `-`."""
    return _NAME_RE.fullmatch(name) is not None


# --- choosing a model per scale ------------------------------------------------------


def pick_scale(scale: Optional[float], available: tuple[int, ...] = SCALES) -> int:
    """The model scale to run for a requested upscaling factor.

    The smallest available scale that is at least the request (x2 for 1 < s <= 2, x3 for
    2 < s <= 3, x4 for 3 < s), else the largest: the network's output is then resized,
    and shrinking a sharper result loses less than enlarging a softer one. ESC costs
    nearly the same per input pixel at every scale, so the larger model is not slower.
    """
    if not available:
        raise ValueError("no scales available")
    ordered = sorted(available)
    if scale is None:
        return 4 if 4 in ordered else ordered[-1]
    for s in ordered:
        if s >= scale - 1e-9:
            return s
    return ordered[-1]


def _closest_scale(rows: list[CatalogEntry], scale: Optional[float]) -> Optional[CatalogEntry]:
    if not rows:
        return None
    chosen = pick_scale(scale, tuple(sorted({e.scale for e in rows})))
    return next(e for e in rows if e.scale == chosen)


def default_entry(scale: Optional[float]) -> CatalogEntry:
    """The official model used without --model for `scale` (ESC-DFLIP at `pick_scale(scale)`)."""
    entry = _closest_scale([e for e in CATALOG if e.family == DEFAULT_FAMILY], scale)
    assert entry is not None
    return entry


def fallback_entry(scale: Optional[float]) -> CatalogEntry:
    """The bundled model for `scale` among the bundled files that exist.

    Raises `ModelNotFoundError` when no bundled file is present.
    """
    present = [e for e in CATALOG if e.bundled and bundled_path(e).is_file()]
    entry = _closest_scale(present, scale)
    if entry is None:
        raise ModelNotFoundError(
            f"no bundled model in {bundled_dir()}: reinstall esc, or pass --model FILE or a catalog name"
        )
    return entry


# --- bundled files -------------------------------------------------------------------


def bundled_path(entry: CatalogEntry) -> Path:
    """Where a bundled entry's file is (whether or not it exists)."""
    if not entry.bundled:
        raise ValueError(f"{entry.name} is not bundled")
    return bundled_dir() / entry.filename


def pinned_sha256(entry: CatalogEntry) -> Optional[str]:
    """The sha256 a row pins; None where it pins nothing, bundled rows whose files come
    from $ESC_BUNDLED_DIR included."""
    if entry.bundled and bundled_dir_overridden():
        return None
    return entry.sha256


def bundled_sha256(entry: CatalogEntry) -> str:
    """The pinned sha256 of a bundled entry, else the digest of its file (read once per file state)."""
    pinned = pinned_sha256(entry)
    if pinned is not None:
        return pinned
    path = bundled_path(entry)
    stat = path.stat()
    return _digest_cached(str(path), stat.st_size, stat.st_mtime_ns)


@lru_cache(maxsize=16)
def _digest_cached(path: str, size: int, mtime_ns: int) -> str:
    return sha256_file(path)
