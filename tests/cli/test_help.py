"""Help reads like a shell tool's: placeholders such as FILE and N, none for flags, grouped options, examples."""

from __future__ import annotations

import re

import pytest
from typer.testing import CliRunner

from esc_cli.cli import app

COMMANDS = [[], ["upscale"], ["video"], ["sample"], ["models"], ["models", "list"], ["models", "pull"],
            ["models", "verify"], ["models", "path"], ["models", "info"], ["models", "convert"], ["models", "export"]]  # fmt: skip
TYPE_LABEL = re.compile(r"<(bool|str|int|float|path|list|text|integer)[^>]*>", re.IGNORECASE)


def _help(args: list[str]) -> str:
    result = CliRunner().invoke(app, [*args, "--help"], env={"COLUMNS": "120", "NO_COLOR": "1"})
    assert result.exit_code == 0, result.output
    return result.output


def test_every_command_is_covered():
    top = {c.name for c in app.registered_commands} | {g.name for g in app.registered_groups}
    assert top <= {args[0] for args in COMMANDS if args}


@pytest.mark.parametrize("args", COMMANDS, ids=lambda a: " ".join(a) or "esc")
def test_no_type_placeholders_or_braces(args):
    text = _help(args)
    assert not TYPE_LABEL.search(text), TYPE_LABEL.search(text).group(0)
    usage = next(line for line in text.splitlines() if "Usage:" in line)
    assert "{" not in usage and "<" not in usage, usage


def test_flags_show_no_value_and_options_show_shell_placeholders():
    lines = _help(["upscale"]).splitlines()

    def row(option: str) -> str:
        return next(line for line in lines if line.startswith("│") and re.search(rf"{option}\b", line))

    for flag in ("--overwrite", "--skip-existing", "--recursive", "--json", "--quiet"):
        after = row(flag).split(flag, 1)[1]
        assert not re.match(r"\s+(-\w\s+)?[A-Z]{2,}", after), row(flag)
    assert "PATH" in row("--output") and "N" in row("--quality") and "NAME|FILE" in row("--model")
    assert "Usage: esc upscale [OPTIONS] INPUT..." in "\n".join(lines)


@pytest.mark.parametrize("command", ["upscale", "video", "sample"])
def test_examples_and_panels(command):
    text = _help([command])
    assert "Examples:" in text and f"esc {command} " in text.split("Examples:", 1)[1]
    if command != "sample":
        for panel in ("Input and output", "Model", "Engine", "Reporting"):
            assert f"─ {panel} " in text, panel
