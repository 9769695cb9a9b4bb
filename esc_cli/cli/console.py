"""Rich consoles: human messages go to stderr so stdout stays clean for images and JSON."""

from rich.console import Console

err_console = Console(stderr=True)
