"""The typed events every front end reports through: batch start, item start, progress, item end, summary.

A run emits `BatchStarted`, then for each item `ItemStarted`, any number of `ItemProgress`
and exactly one `ItemFinished`, then one `BatchFinished`. The CLI renders them as text,
Rich progress or NDJSON (`event_dict`); the NDJSON field names are documented in
docs/usage.md ("JSON events").
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Callable, Optional, Union

from esc_cli import __version__
from esc_cli.errors import EXIT_NOTHING_DONE, EXIT_OK, EXIT_SOME_FAILED


@dataclass
class BatchStarted:
    total: int
    model: str
    model_scale: int
    scale: float
    passes: int
    device: str
    dtype: str
    tile: Optional[int]
    event: str = "start"
    version: str = __version__


@dataclass
class ItemStarted:
    index: int
    total: int
    input: str
    output: Optional[str]
    event: str = "item_start"


@dataclass
class ItemProgress:
    """Tile progress of the current item: `stage` is e.g. "color 1/2" or "alpha 1/1"."""

    index: int
    stage: str
    total_tiles: int
    done_tiles: int
    tile: int
    device: str
    dtype: str
    notice: str = ""
    event: str = "progress"


@dataclass
class ItemFinished:
    index: int
    total: int
    status: str  # "done", "skipped" or "failed"
    input: str
    output: Optional[str]
    seconds: float
    tile: Optional[int] = None
    device: Optional[str] = None
    dtype: Optional[str] = None
    error: Optional[str] = None
    reason: Optional[str] = None  # why it was skipped
    width: Optional[int] = None
    height: Optional[int] = None
    out_width: Optional[int] = None
    out_height: Optional[int] = None
    notes: list[str] = field(default_factory=list)
    event: str = "item"


@dataclass
class BatchFinished:
    done: int
    skipped: int
    failed: int
    seconds: float
    exit_code: int
    ignored: int = 0  # junk and non-images found in folders (also reported as "skipped" items)
    interrupted: bool = False
    error: Optional[str] = None
    event: str = "summary"


Event = Union[BatchStarted, ItemStarted, ItemProgress, ItemFinished, BatchFinished]
EventCallback = Callable[[Event], None]


def event_dict(event: Event) -> dict:
    """An event as a JSON-ready dict with "event" first."""
    data = asdict(event)
    return {"event": data.pop("event"), **data}


def exit_code_for(done: int, skipped: int, failed: int) -> int:
    """0 when nothing failed (and something was there), 1 when some failed, 3 when nothing could be processed."""
    if failed == 0:
        return EXIT_OK if done + skipped > 0 else EXIT_NOTHING_DONE
    return EXIT_SOME_FAILED if done + skipped > 0 else EXIT_NOTHING_DONE


