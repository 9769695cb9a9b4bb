"""`esc models`: list, pull, verify, locate, inspect and convert model weights.

Tables and paths go to stdout; progress and notices to stderr. Exit codes: 0 done,
1 some failed (pull/verify), 2 usage error, 3 nothing done (model not found, download
or integrity failure).
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Iterator, Optional

import typer
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn
from rich.table import Table

from esc_cli.cli.console import err_console
from esc_cli.cli.helpfmt import Command, Group
from esc_cli.cli.options import JsonOption, OverwriteOption, QuietOption
from esc_cli.errors import EXIT_NOTHING_DONE, EXIT_SOME_FAILED, UsageError
from esc_cli.weights import catalog, hub

if TYPE_CHECKING:
    from esc_cli.api.catalog import ProgressFactory

models_app = typer.Typer(
    cls=Group,
    help="List, download, verify and convert model weights.",
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)

_out = Console(soft_wrap=True)


def _examples(text: str) -> str:
    """An epilog block: `Examples:` then the given command lines, one paragraph each."""
    return "Examples:\n\n  " + text


def _params(n: Optional[int]) -> str:
    if n is None:
        return "?"
    return f"{n / 1e6:.2f}M" if n >= 1e6 else f"{n / 1e3:.0f}K"


def _short_source(entry: catalog.CatalogEntry) -> str:
    if entry.bundled:
        return "bundled"
    text = f"hf://{entry.repo_id}"
    if entry.filename != catalog.HUB_FILENAME:
        text += f"/{entry.filename}"
    text = text if entry.revision == "main" else f"{text}@{(entry.revision or '')[:12]}"
    return f"{text} | {entry.upstream_file}"


@models_app.command("list", cls=Command, epilog=_examples('esc models list\n\n  esc models list --json | jq -r .name'))
def list_command(json_mode: JsonOption = False) -> None:
    """Show every catalog model: variant, scale, parameters, whether it is cached, and its source."""
    from esc_cli.api.listing import cache_locations, list_models

    rows = list_models()
    defaults = {catalog.default_entry(s).name for s in catalog.SCALES}
    if json_mode:
        for row in rows:
            data = row.to_dict()
            data["default"] = row.entry.name in defaults
            typer.echo(json.dumps(data))
        return
    conf = hub.settings()
    where = cache_locations()
    caption = (f"* used without --model  ·  Hub {conf.endpoint}, org {catalog.hub_org()}  ·  release {catalog.upstream_base()}"
               f"  ·  cache {where['hub']} and {where['upstream']}")  # fmt: skip
    table = Table(title="ESC models", box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True, show_edge=False, caption=caption)
    for column, justify in (("name", "left"), ("variant", "left"), ("scale", "right"), ("params", "right"),
                            ("local", "left"), ("source", "left")):  # fmt: skip
        table.add_column(column, justify=justify, no_wrap=column != "source", overflow="fold")
    styles = {"cached": "green", "bundled": "green", "not cached": "dim", "missing": "red"}
    for row in rows:
        e = row.entry
        mark = "*" if e.name in defaults else ""
        local = f"{row.state} ({row.origin})" if row.origin else row.state
        table.add_row(f"{e.name}{mark}", row.variant, f"x{e.scale}", _params(row.params),
                      f"[{styles[row.state]}]{local}[/]", escape(_short_source(e)))  # fmt: skip
    _out.print(table)


@contextlib.contextmanager
def _download_bars(enabled: bool) -> Iterator[Optional[ProgressFactory]]:
    """A Rich progress display on stderr whose factory gives each download its bar."""
    if not enabled:
        yield None
        return
    progress = Progress(
        TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
        console=err_console, transient=False,
    )  # fmt: skip

    def factory(name: str) -> hub.ProgressCallback:
        task = progress.add_task(name, total=None)

        def update(done: int, total: Optional[int]) -> None:
            progress.update(task, completed=done, total=total)

        return update

    with progress:
        yield factory


@models_app.command("pull", cls=Command, epilog=_examples('esc models pull esc-dflip-x4\n\n  esc models pull hf://owner/repo/model.safetensors@main'))
def pull_command(
    names: Annotated[Optional[list[str]], typer.Argument(metavar="NAME...", help="Catalog names (esc models list) or hf://owner/repo/file (@rev optional).")] = None,
    all_models: Annotated[bool, typer.Option("--all", help="Every official model (for copying a filled cache to an offline machine).")] = False,
    quiet: QuietOption = False,
) -> None:
    """Download models (Hub mirror, else the authors' release, converted) and print their paths."""
    from esc_cli.api import catalog as api

    names = list(names or []) + (api.official_names() if all_models else [])
    if not names:
        raise UsageError("name at least one model, or pass --all; see `esc models list`")
    with _download_bars(enabled=not quiet and err_console.is_terminal) as factory:
        results = api.pull_models(names, progress=factory)
    failed = [r for r in results if r.error is not None]
    for r in results:
        if r.error is None:
            typer.echo(f"{r.name}\t{r.path}")
    if len(failed) == len(results) == 1:
        raise failed[0].error  # type: ignore[misc]
    for r in failed:
        err_console.print(f"[bold red]error:[/] {escape(str(r.error))}", highlight=False, soft_wrap=True)
    if failed:
        raise typer.Exit(EXIT_NOTHING_DONE if len(failed) == len(results) else EXIT_SOME_FAILED)


@models_app.command("verify", cls=Command, epilog=_examples('esc models verify\n\n  esc models verify esc-light-x4 --json'))
def verify_command(
    names: Annotated[Optional[list[str]], typer.Argument(metavar="NAME...", help="Models to check (default: every cached or bundled one).")] = None,
    json_mode: JsonOption = False,
) -> None:
    """Check cached and bundled weights against their sha256 and that they load as the catalog says."""
    from esc_cli.api import catalog as api

    results = api.verify_models(names or None)
    if json_mode:
        for r in results:
            typer.echo(json.dumps({"name": r.name, "state": r.state, "path": str(r.path) if r.path else None,
                                   "sha256": r.sha256, "detail": r.detail}))  # fmt: skip
    elif not results:
        err_console.print("nothing cached or bundled to verify; see `esc models list`")
    else:
        styles = {"ok": "green", "unverified": "yellow", "mismatch": "bold red", "bad": "bold red", "not cached": "dim"}
        table = Table(title="verify")
        for column in ("name", "state", "sha256", "detail"):
            table.add_column(column, overflow="fold")
        for r in results:
            table.add_row(escape(r.name), f"[{styles.get(r.state, '')}]{r.state}[/]", (r.sha256 or "")[:16], escape(r.detail))
        _out.print(table)
    bad = [r for r in results if r.failed]
    for r in bad:
        message = f"{r.name}: {r.state}: {r.path}; run `esc models pull {r.name}` to replace it"
        err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    if bad:
        raise typer.Exit(EXIT_SOME_FAILED)


@models_app.command("path", cls=Command, epilog=_examples('esc models path esc-light-x4\n\n  esc models path esc-light-x4 --pull'))
def path_command(
    name: Annotated[Optional[str], typer.Argument(metavar="NAME", help="Catalog name, hf:// reference or file.")] = None,
    pull: Annotated[bool, typer.Option("--pull", help="Download it first if it is not cached.")] = False,
    cache: Annotated[bool, typer.Option("--cache", help="Print where downloaded weights live (Hub cache, converted release files).")] = False,
) -> None:
    """Print the local file of a model (no network unless --pull), or with --cache the cache folders."""
    from esc_cli.api import catalog as api
    from esc_cli.api.listing import cache_locations

    if cache:
        for label, folder in cache_locations().items():
            typer.echo(f"{label}\t{folder}")
        return
    if name is None:
        raise UsageError("give a model name (esc models list), or --cache for the folders downloads go to")
    typer.echo(str(api.model_path(name, pull=pull)))


@models_app.command("info", cls=Command, epilog=_examples('esc models info ESC_light_X4.pth\n\n  esc models info default-x4 --json'))
def info_command(
    ref: Annotated[str, typer.Argument(metavar="NAME|FILE", help="A .pth/.safetensors file, or a cached/bundled catalog name.")],
    json_mode: JsonOption = False,
) -> None:
    """Show the detected variant, hyper-parameters and parameter count of a checkpoint."""
    from esc_cli.api import catalog as api

    info = api.model_info(ref)
    if json_mode:
        typer.echo(json.dumps(info.to_dict()))
        return
    c = info.config
    lines = [
        ("file", str(info.path)),
        ("size", f"{info.size:,} bytes"),
        ("sha256", info.sha256),
        ("variant", c.variant + (f" ({c.upsampler})" if c.variant == "esc-real" else "")),
        ("scale", f"x{c.scale}"),
        ("parameters", f"{info.params:,}"),
        ("catalog", info.catalog_name or "(no match)"),
    ]
    lines += [(k, str(v)) for k, v in c.to_dict().items() if k not in ("variant", "scale")]
    width = max(len(k) for k, _ in lines)
    for key, value in lines:
        typer.echo(f"{key:<{width}}  {value}")


@models_app.command("convert", cls=Command, epilog=_examples('esc models convert ESC_DFLIP_X4.pth out/esc-dflip-x4'))
def convert_command(
    source: Annotated[Path, typer.Argument(metavar="FILE", help="Official checkpoint (.pth with params_ema) or any ESC checkpoint.")],
    out_dir: Annotated[Path, typer.Argument(metavar="DIR", help="Folder to write model.safetensors, config.json and README.md into.")],
    name: Annotated[Optional[str], typer.Option("--name", metavar="NAME", help="Catalog name for the model card (default: detected).")] = None,
    overwrite: OverwriteOption = False,
) -> None:
    """Convert a checkpoint to a Hub-ready folder (model.safetensors, config.json, model card)."""
    from esc_cli.api import catalog as api

    result = api.convert_checkpoint(source, out_dir, name=name, overwrite=overwrite)
    for path in result.files:
        typer.echo(str(path))
    label = result.entry.name if result.entry else f"{result.config.variant} x{result.config.scale}"
    err_console.print(
        f"converted {label}: {result.params:,} parameters; model.safetensors sha256 {result.sha256}",
        highlight=False, soft_wrap=True, markup=False,
    )
