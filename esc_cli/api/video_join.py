"""Joining a video job's segments into the output, with the source's other streams muxed in."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Optional

from esc_cli.api.video_job import NoticeFn, VideoJob
from esc_cli.errors import VideoError
from esc_cli.io.atomic import atomic_output
from esc_cli.io.mux import concat_list, mux


def join_segments(job: VideoJob, *, overwrite: bool = False, notice: Optional[NoticeFn] = None) -> dict:
    """Concatenate every segment (stream copy) and mux the source's other streams into `job.output`.

    Writes atomically (temp file next to the output, renamed when ffmpeg exits 0). Returns the
    stream summary of `esc_cli.io.mux.mux`.
    """
    info = job.info
    paths = [job.segment_path(s.index) for s in job.segments]
    missing = [p.name for p in paths if not p.is_file()]
    if missing:
        raise VideoError(f"{job.output}: cannot join, segments missing: {', '.join(missing)}")
    if len(paths) == 1:
        video_args = ["-i", str(paths[0])]
    else:
        durations = [float((info.tick(s.end) - info.tick(s.start)) * info.time_base) for s in job.segments]
        video_args = concat_list(paths, durations, job.workdir / "segments.ffconcat")
    offset = float(info.timestamps[0] * info.time_base) - info.start_time
    with atomic_output(job.output, [info.path], overwrite=overwrite) as tmp:
        streams = mux(video_args, info, tmp, video_offset=offset if abs(offset) > 1e-6 else 0.0, notice=notice)
        _default_mode(tmp)
    return streams


def _default_mode(path: Path) -> None:
    """Give a temp file (created 0600) the mode a new file would get under the current umask."""
    mask = os.umask(0)
    os.umask(mask)
    with contextlib.suppress(OSError):
        os.chmod(path, 0o666 & ~mask)
