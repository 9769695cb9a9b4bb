"""Every error `esc` raises on purpose, and the exit code each one maps to.

Deep code raises a specific subclass with a one-line message that names the file and
the fix; only the CLI turns errors into messages and exit codes.
"""

from __future__ import annotations

# Documented exit codes (docs/usage.md).
EXIT_OK = 0
EXIT_SOME_FAILED = 1
EXIT_USAGE = 2
EXIT_NOTHING_DONE = 3
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143


class EscError(Exception):
    """Base of all errors `esc` raises deliberately."""

    exit_code: int = EXIT_NOTHING_DONE


class UsageError(EscError):
    """The command line or an API argument is wrong."""

    exit_code = EXIT_USAGE


class CheckpointError(EscError):
    """A weights file or state dict is not a valid ESC checkpoint."""


class UnsafeCheckpointError(CheckpointError):
    """A pickle tried to do more than hold tensors; it was refused, not run."""


class ModelNotFoundError(EscError):
    """A model reference names no catalog entry, file or Hub object."""


class UnknownModelError(ModelNotFoundError):
    """A model name or path that names nothing (a typo, most likely): a usage error, like a bad option value."""

    exit_code = EXIT_USAGE


class DownloadError(EscError):
    """Weights could not be fetched from the Hub (network, missing repo/file/revision)."""


class IntegrityError(DownloadError):
    """Downloaded bytes do not match the pinned sha256."""


class InputError(EscError):
    """An input image or video cannot be read or is refused (corrupt, too large)."""


class OutputError(EscError):
    """An output cannot be written (exists, would overwrite an input, no space)."""


class VideoError(EscError):
    """ffmpeg failed while decoding or encoding; the message carries its last lines."""


class EngineError(EscError):
    """Inference failed in a way tiling and precision fallbacks could not recover."""


class MissingExtraError(EscError):
    """An optional extra (onnx, spandrel, ray) is not installed; the message names the pip command."""


class Terminated(BaseException):
    """Raised by a command's SIGTERM handler so `finally` blocks and temp-file cleanup run.

    A `BaseException` (like `KeyboardInterrupt`), so per-item `except Exception` in batch
    loops cannot swallow it; the command exits with `EXIT_TERMINATED` (143).
    """

    exit_code = EXIT_TERMINATED


class SourceNotFoundError(DownloadError):
    """The source answered that it has no such repository, file or revision (HTTP 404)."""


class OutputExistsError(OutputError):
    """The output exists (or appeared while the item ran) and neither --overwrite nor --skip-existing is set."""
