"""A minimal Matroska stream writer for piping raw RGB frames into ffmpeg with exact timestamps.

The stream is an EBML header, a Segment of unknown size, Info with 1 ns ticks and one
`V_UNCOMPRESSED` track; each frame is its own Cluster holding one BlockGroup with a
BlockDuration, so every frame carries its own timestamp and duration (variable frame rates
survive the pipe). Callers write `mkv_header(...)` once, then per frame
`mkv_frame_prefix(...)`, the pixels, and `mkv_frame_suffix(...)`.
"""

from __future__ import annotations

import struct


def _vint_size(n: int) -> bytes:
    """An EBML size as an 8-byte vint (always valid, simplest to compute)."""
    return b"\x01" + n.to_bytes(7, "big")


def _uint(n: int) -> bytes:
    return n.to_bytes(max(1, (n.bit_length() + 7) // 8), "big")


def _el(eid: int, payload: bytes) -> bytes:
    return eid.to_bytes((eid.bit_length() + 7) // 8, "big") + _vint_size(len(payload)) + payload


def mkv_header(width: int, height: int, pix_fmt: str, default_duration_ns: int) -> bytes:
    """EBML header, a Segment of unknown size, Info (1 ns ticks) and one raw RGB video track."""
    fourcc = {"rgb24": b"RGB\x18", "rgb48le": b"RGB\x30"}[pix_fmt]
    ebml = _el(
        0x1A45DFA3,
        _el(0x4286, _uint(1)) + _el(0x42F7, _uint(1)) + _el(0x42F2, _uint(4)) + _el(0x42F3, _uint(8))
        + _el(0x4282, b"matroska") + _el(0x4287, _uint(4)) + _el(0x4285, _uint(2)),
    )
    info = _el(0x1549A966, _el(0x2AD7B1, _uint(1)) + _el(0x4D80, b"esc") + _el(0x5741, b"esc"))
    video = _el(0xE0, _el(0xB0, _uint(width)) + _el(0xBA, _uint(height)) + _el(0x2EB524, fourcc))
    entry = _el(
        0xAE,
        _el(0xD7, _uint(1)) + _el(0x73C5, _uint(1)) + _el(0x83, _uint(1)) + _el(0x9C, _uint(0))
        + _el(0x86, b"V_UNCOMPRESSED") + _el(0x23E383, _uint(max(1, default_duration_ns))) + video,
    )
    tracks = _el(0x1654AE6B, entry)
    segment = b"\x18\x53\x80\x67" + b"\x01\xff\xff\xff\xff\xff\xff\xff"
    return ebml + segment + info + tracks


def mkv_frame_prefix(ts_ns: int, duration_ns: int, frame_bytes: int) -> bytes:
    """Bytes before one frame's pixels: a Cluster at `ts_ns` holding one BlockGroup with its duration."""
    block_head = b"\x81" + struct.pack(">h", 0) + b"\x00"  # track 1, relative time 0, no flags
    block = b"\xa1" + _vint_size(len(block_head) + frame_bytes) + block_head
    group_payload_len = len(block) + frame_bytes + len(_el(0x9B, _uint(max(1, duration_ns))))
    group = b"\xa0" + _vint_size(group_payload_len) + block
    ts_el = _el(0xE7, _uint(max(0, ts_ns)))
    cluster_len = len(ts_el) + len(group) + frame_bytes + len(_el(0x9B, _uint(max(1, duration_ns))))
    return b"\x1f\x43\xb6\x75" + _vint_size(cluster_len) + ts_el + group


def mkv_frame_suffix(duration_ns: int) -> bytes:
    """Bytes after one frame's pixels: the BlockDuration closing its BlockGroup."""
    return _el(0x9B, _uint(max(1, duration_ns)))
