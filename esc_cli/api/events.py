"""The typed events every front end reports through: batch start, item start, progress, item end, summary.

A run emits `BatchStarted`, then for each item `ItemStarted`, any number of `ItemProgress`
and exactly one `ItemFinished`, then one `BatchFinished`. A video run (`esc video`) is a batch
of one item with the same shape: `VideoStarted` (a `BatchStarted` with the source and encoder
fields), `ItemStarted`, `VideoProgress` (frames instead of tiles), `VideoFinished` (an
`ItemFinished` with the frame, codec, segment and stream counts; a failed video reports a plain
`ItemFinished`), then `BatchFinished`. The CLI renders them as text,
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


@dataclass(kw_only=True)
class VideoStarted(BatchStarted):
    """`BatchStarted` of a video (`total` is 1): the source, its planned output and the encoder.

    `width`/`height` are the source's displayed frame size, `out_width`/`out_height` the encoded
    size (padded to even when the pixel format needs it); `segments_done` counts segments kept
    from an interrupted run (`--resume`); `vfr` is true for a variable frame rate.
    """

    command: str = "video"
    input: str
    output: str
    frames: int
    fps: float
    width: int
    height: int
    out_width: int
    out_height: int
    codec: str
    pix_fmt: str
    segments: int
    segments_done: int
    vfr: bool


@dataclass(kw_only=True)
class VideoProgress:
    """Frame progress of a video: `frames_done` of `frames_total` at `fps` frames per second (frames
    upscaled in this run), `eta_seconds` (None until known), working on segment `segment` of `segments`."""

    index: int = 1
    frames_done: int
    frames_total: int
    fps: float
    eta_seconds: Optional[float]
    segment: int
    segments: int
    device: Optional[str] = None
    dtype: Optional[str] = None
    event: str = "progress"


@dataclass(kw_only=True)
class VideoFinished(ItemFinished):
    """`ItemFinished` of a video that was written: `frames` encoded, the encoder, how many segments
    there were and how many were reused from an interrupted run, and the streams muxed in
    (`{"audio": n, "subtitle": n, "attachment": n, "transcoded": [...], "dropped": [...]}`)."""

    frames: int
    codec: str
    pix_fmt: str
    segments: int
    segments_reused: int
    streams: dict


Event = Union[BatchStarted, ItemStarted, ItemProgress, ItemFinished, BatchFinished, VideoStarted, VideoProgress,
              VideoFinished]
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


