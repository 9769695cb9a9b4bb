"""Help that reads like a shell tool's: `FILE`, `DIR`, `N`, `NAME` placeholders, none for flags.

Typer prints a type label (`<bool>`, `<str>`, `<list[str]>`) beside every parameter and wraps a required
argument in braces in the usage line (`{inputs}...`). The command classes below drop the label where a
flag or a named argument makes it noise and print arguments by their metavar. They lean on Typer's
help internals, which change between releases: pyproject.toml pins the Typer minor version that
`tests/cli/test_help.py` checks.
"""

from __future__ import annotations

from typing import Any, Optional

from typer.core import TyperArgument, TyperCommand, TyperGroup, TyperOption


class _FlagOption(TyperOption):
    """A flag (`--overwrite`) takes no value: no placeholder."""

    def display_type_rich(self, ctx: Any) -> Optional[str]:
        return None


class _NamedArgument(TyperArgument):
    """An argument with a metavar (`INPUT...`) shows it as is: no type label, no braces."""

    def display_type_rich(self, ctx: Any) -> Optional[str]:
        return None

    def _usage_display_name(self) -> str:
        name = self.metavar or self.name or ""
        return name if self.required else f"[{name}]"


def _tidy(params: list[Any]) -> None:
    for param in params:
        if isinstance(param, TyperOption) and (param.is_flag or param.count) and type(param) is TyperOption:
            param.__class__ = _FlagOption
        elif isinstance(param, TyperArgument) and param.metavar and type(param) is TyperArgument:
            param.__class__ = _NamedArgument


def _tidy_help_option(option: Optional[Any]) -> Optional[Any]:
    if option is not None and hasattr(option, "display_type_rich"):
        option.display_type_rich = lambda ctx=None: None  # type: ignore[method-assign]
    return option


class _ShellHelp:
    """Tidies the parameters of a Typer command or group once they are built, and its --help option."""

    params: list[Any]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[call-arg]
        _tidy(self.params)

    def get_help_option(self, ctx: Any) -> Optional[Any]:
        return _tidy_help_option(super().get_help_option(ctx))  # type: ignore[misc]


class Command(_ShellHelp, TyperCommand):
    """A Typer command whose help shows shell-style placeholders."""


class Group(_ShellHelp, TyperGroup):
    """A Typer group (the root `esc`, `esc models`) whose help shows shell-style placeholders."""
