"""The root Typer app, `--version`, and the one place errors become messages and exit codes."""

from __future__ import annotations

import sys
from typing import Annotated, Optional

import typer
from rich.markup import escape

from esc_cli import __version__
from esc_cli.cli import commands_export, commands_models, commands_sample, commands_upscale, commands_video
from esc_cli.cli.console import err_console
from esc_cli.cli.helpfmt import Group
from esc_cli.errors import EXIT_INTERRUPTED, EXIT_USAGE, EscError

app = typer.Typer(
    name="esc",
    cls=Group,
    help="Upscale images and video with ESC (ICCV 2025): exact, fast, offline-capable.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"esc {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: Annotated[
        Optional[bool],
        typer.Option("--version", "-V", help="Print the version and exit.", callback=_print_version, is_eager=True),
    ] = None,
) -> None:
    """Upscale images and video with ESC."""


commands_upscale.register(app)
commands_video.register(app)
commands_sample.register(app)
commands_export.register(commands_models.models_app)
app.add_typer(commands_models.models_app, name="models")


def main(argv: Optional[list[str]] = None) -> int:
    """Console entry point: run the app and map `EscError` to its exit code, with no traceback."""
    try:
        result = app(args=argv, standalone_mode=False)
    except EscError as exc:
        err_console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        return exc.exit_code
    except KeyboardInterrupt:
        err_console.print("interrupted", highlight=False)
        return EXIT_INTERRUPTED
    except typer.Exit as exc:
        return exc.exit_code
    except (typer.Abort,):
        return EXIT_INTERRUPTED
    except typer.TyperException as exc:  # usage errors (bad option, missing argument) carry their own exit code
        show = getattr(exc, "show", None)
        if show is None:  # pragma: no cover - every usage error of typer's parser can show itself
            raise
        show()
        code = getattr(exc, "exit_code", None)
        return code if code else EXIT_USAGE
    return result if isinstance(result, int) else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
