"""Muxing: the encoded video joined with the source's audio, subtitle and attachment streams.

`mux(...)` copies each stream, falling back to a transcode per stream the container refuses
(audio to AAC or Opus, text subtitles to the container's text format) and dropping what cannot
be held, with a notice for each. `concat_list` writes an ffconcat list with exact durations.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Optional, Sequence

from esc_cli.errors import VideoError
from esc_cli.io.ffmpeg import run_ffmpeg
from esc_cli.io.probe import StreamInfo, VideoInfo


def muxer_for(path: Path) -> str:
    """A short name for the output container, from the file's suffix."""
    return {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska", ".webm": "webm"}.get(
        path.suffix.lower(), path.suffix.lower().lstrip(".") or "matroska"
    )


TEXT_SUBTITLES = {"subrip", "srt", "ass", "ssa", "mov_text", "webvtt", "text", "microdvd", "subviewer", "jacosub", "sami", "realtext", "stl", "mpl2", "vplayer", "pjs"}


def fallback_codec(stream: StreamInfo, container: str) -> Optional[list[str]]:
    """Encoder options that convert `stream` to something `container` accepts; None = drop it."""
    if stream.kind == "audio":
        return ["libopus", "-b:a", "160k"] if container == "webm" else ["aac", "-b:a", "192k"]
    if stream.kind == "subtitle":
        if stream.codec not in TEXT_SUBTITLES:
            return None  # bitmap subtitles cannot be converted to text
        return {"mp4": ["mov_text"], "mov": ["mov_text"], "webm": ["webvtt"]}.get(container, ["srt"])
    return None


def _can_copy(stream: StreamInfo, source: Path, probe_dir: Path, suffix: str) -> bool:
    """True when the container behind `suffix` accepts `stream` copied as is (a trial remux of a second)."""
    trial = probe_dir / f".esc-trial-{os.getpid()}-{stream.index}{suffix}"
    try:
        run_ffmpeg(["-i", str(source), "-map", f"0:{stream.index}", "-c", "copy", "-t", "1", str(trial)], what="trial")
        return True
    except VideoError:
        return False
    finally:
        try:
            trial.unlink()
        except OSError:
            pass


def mux(
    video_args: Sequence[str],
    info: VideoInfo,
    output: Path,
    *,
    video_offset: float = 0.0,
    notice: Optional[Callable[[str], None]] = None,
) -> dict:
    """Write `output`: the video given by `video_args` (ffmpeg input options + `-i X`) copied, plus
    every audio, subtitle and attachment stream of `info.path`, and its metadata and chapters.

    Each stream is copied; when the container refuses a copy, that stream is transcoded
    (audio to AAC, or Opus for WebM; text subtitles to the container's text format) with a
    notice, and bitmap subtitles and attachments it cannot hold are dropped with a notice.
    Returns {"audio": n, "subtitle": n, "transcoded": [...], "dropped": [...]}.
    """
    say = notice or (lambda _msg: None)
    container = muxer_for(output)
    others = info.others()
    if container != "matroska":
        dropped_att = [s for s in others if s.kind == "attachment"]
        for s in dropped_att:
            say(f"stream #{s.index} ({s.kind}, {s.codec}): {container} cannot hold attachments; dropped")
        others = [s for s in others if s.kind != "attachment"]
    base = [*video_args]
    if video_offset:
        # -itsoffset applies to the next input: rebuild so it precedes the video input's -i
        i = base.index("-i")
        base[i:i] = ["-itsoffset", f"{video_offset:.9f}"]
    base += ["-i", str(info.path)]

    def attempt(plan: dict[int, Optional[list[str]]]) -> None:
        args = list(base) + ["-map", "0:v:0"]
        out_i = 1
        codec_args: list[str] = ["-c:v", "copy"]
        for s in others:
            how = plan.get(s.index, ["copy"])
            if how is None:
                continue
            args += ["-map", f"1:{s.index}"]
            codec_args += [f"-c:{out_i}", *how[:1], f"-map_metadata:s:{out_i}", f"1:s:{s.index}"]
            if len(how) > 1:
                codec_args += [f"-{how[1].lstrip('-')}:{out_i}", *how[2:3]]
            out_i += 1
        # per-stream tags (language, title) come from the source streams, the video's included
        args += codec_args + ["-map_metadata", "1", "-map_metadata:s:0", f"1:s:{info.video_index}", "-map_chapters", "1"]
        if container in ("mp4", "mov"):
            args += ["-movflags", "+faststart"]
        args += [str(output)]
        run_ffmpeg(args, what=f"writing {output.name}")

    plan: dict[int, Optional[list[str]]] = {}
    try:
        attempt(plan)
    except VideoError as first:
        for s in others:
            if _can_copy(s, info.path, output.parent, output.suffix):
                continue
            plan[s.index] = fallback_codec(s, container)
            if plan[s.index] is None:
                say(f"stream #{s.index} ({s.kind}, {s.codec}): {container} cannot hold it and it cannot be converted; dropped")
            else:
                say(f"stream #{s.index} ({s.kind}, {s.codec}): {container} refuses a copy; transcoded to {plan[s.index][0]}")
        if not plan:
            raise first
        attempt(plan)
    kept = [s for s in others if plan.get(s.index, ["copy"]) is not None]
    return {
        "audio": sum(1 for s in kept if s.kind == "audio"),
        "subtitle": sum(1 for s in kept if s.kind == "subtitle"),
        "attachment": sum(1 for s in kept if s.kind == "attachment"),
        "transcoded": [f"#{i}->{p[0]}" for i, p in plan.items() if p is not None],
        "dropped": [f"#{i}" for i, p in plan.items() if p is None],
    }


def concat_list(paths: Sequence[Path], durations: Sequence[float], list_path: Path) -> list[str]:
    """Write an ffconcat list of `paths` with exact `durations` (seconds); return ffmpeg input args for it."""
    lines = ["ffconcat version 1.0"]
    for p, d in zip(paths, durations):
        name = str(Path(p).resolve()).replace("'", "'\\''")
        lines += [f"file '{name}'", f"duration {d:.9f}"]
    list_path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return ["-f", "concat", "-safe", "0", "-i", str(list_path)]
