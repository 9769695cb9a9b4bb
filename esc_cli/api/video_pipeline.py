"""The segment pipeline: decode -> upscale -> encode one segment of a video, three stages at once.

A decode thread (ffmpeg -> raw RGB -> `[3, H, W]` float tensors) feeds a bounded queue; the
calling thread batches frames through a `FrameProcessor` (the engine, more passes and an
antialiased bicubic resample when `scale` is not the model's, edge padding to the encoded size);
an encode thread streams the resulting integer frames into an ffmpeg encoder (the processor quantises them
as the engine finishes their blocks; a float result is converted there).
Queues hold a few frames, so memory does not grow with the video's length.

Timing: every frame keeps the presentation timestamp of its source frame (frames travel to the
encoder in a Matroska pipe with per-frame timestamps, see `esc_cli.io.frames`, and the encoder
uses the source's time base). Constant and variable frame rates are both preserved.
"""

from __future__ import annotations

import os
import queue
import threading
from pathlib import Path
from typing import Callable, Optional, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from esc_cli.api.video_job import VideoJob
from esc_cli.engine.rescale import plan_passes, resample
from esc_cli.errors import VideoError
from esc_cli.io.atomic import remove_quietly
from esc_cli.io.canvas import quantize, quantize_into
from esc_cli.io.frames import FrameReader, FrameWriter, raw_pix_fmt
from esc_cli.io.probe import pix_fmt_depth

_END = object()


class FrameProcessor:
    """Upscales a batch `[N, 3, H, W]` float `[0, 1]` to `[N, 3, eh, ew]` float `[0, 1]` (host), or, with
    `frame_dtype`, straight to the encoder's `[N, eh, ew, 3]` uint8/uint16 frames.

    Runs the engine `passes` times, resamples to `out_size` with antialiased bicubic when the
    model's scale does not land on it, then pads to `enc_size` by repeating the last row/column.
    With `frame_dtype` and a model scale that lands on `out_size`, the last pass's finished blocks are
    quantised as they leave the engine: no float frame of the output size exists (docs/engine.md,
    "Block-wise output").
    """

    def __init__(self, upscaler, *, model_scale: int, scale: float, in_size: tuple[int, int],
                 out_size: tuple[int, int], enc_size: tuple[int, int], frame_dtype: Optional[np.dtype] = None) -> None:
        self.upscaler = upscaler
        self.passes = plan_passes(model_scale, scale)
        self.out_size = out_size
        self.enc_size = enc_size
        self.frame_dtype = None if frame_dtype is None else np.dtype(frame_dtype)
        self._batch = getattr(upscaler, "upscale_batch", None)
        reach = model_scale**self.passes
        lands = (in_size[0] * reach, in_size[1] * reach) == tuple(out_size)
        self._blocks = getattr(upscaler, "upscale_blocks", None) if lands else None

    def _once(self, x: Tensor) -> Tensor:
        if self._batch is not None:
            return self._batch(x)
        return torch.stack([self.upscaler.upscale(img) for img in x])

    def __call__(self, batch: Tensor):
        if self.frame_dtype is not None and self._blocks is not None:
            return self._quantized(batch)
        x = batch
        for _ in range(self.passes):
            x = self._once(x)
        ow, oh = self.out_size
        x = resample(x, (oh, ow))
        ew, eh = self.enc_size
        if (ew, eh) != (ow, oh):
            x = F.pad(x, (0, ew - ow, 0, eh - oh), mode="replicate")
        if self.frame_dtype is None:
            return x
        frames = np.empty((int(x.shape[0]), eh, ew, 3), dtype=self.frame_dtype)
        for n, frame in enumerate(x):
            quantize_into(frame, frames[n])
        return frames

    def _quantized(self, batch: Tensor) -> np.ndarray:
        x = batch
        for _ in range(self.passes - 1):
            x = self._once(x)
        (ow, oh), (ew, eh) = self.out_size, self.enc_size
        frames = np.empty((int(batch.shape[0]), eh, ew, 3), dtype=self.frame_dtype)

        def store(top: int, left: int, block: Tensor) -> None:
            for n in range(int(block.shape[0])):
                quantize_into(block[n], frames[n, top : top + block.shape[2], left : left + block.shape[3]])

        assert self._blocks is not None
        self._blocks(x.contiguous(), store)
        frames[:, oh:, :ow] = frames[:, oh - 1 : oh, :ow]  # pad to the encoded size: repeat the edges
        frames[:, :, ow:] = frames[:, :, ow - 1 : ow]
        return frames


def frame_dtype_for(job: VideoJob) -> np.dtype:
    """The dtype of the raw frames `job`'s encoder takes (uint8, or little-endian uint16 above 8 bits)."""
    return raw_pix_fmt(pix_fmt_depth(job.settings.pix_fmt))[1]


def processor_for(job: VideoJob, upscaler, *, scale: float) -> FrameProcessor:
    """The `FrameProcessor` that turns `job`'s source frames into the frames its encoder takes."""
    return FrameProcessor(upscaler, model_scale=int(upscaler.scale), scale=scale,
                          in_size=(job.info.width, job.info.height), out_size=job.out_size, enc_size=job.enc_size,
                          frame_dtype=frame_dtype_for(job))


def to_tensor(frame: np.ndarray) -> Tensor:
    """`[H, W, 3]` uint8/uint16 RGB -> `[3, H, W]` float32 in `[0, 1]`."""
    peak = 255.0 if frame.dtype == np.uint8 else 65535.0
    if frame.dtype == np.uint8:
        t = torch.from_numpy(np.array(frame, copy=True)).permute(2, 0, 1).float()
    else:
        t = torch.from_numpy(frame.astype(np.float32)).permute(2, 0, 1)
    return t.mul_(1.0 / peak).contiguous()


def to_array(image: Tensor, dtype: np.dtype) -> np.ndarray:
    """`[3, H, W]` float in `[0, 1]` -> `[H, W, 3]` uint8 or uint16 (rounded, clamped)."""
    return quantize(image, 16 if np.dtype(dtype).itemsize == 2 else 8)


# --------------------------------------------------------------------------- one segment


def _put(q: "queue.Queue", item, stop: threading.Event) -> bool:
    while not stop.is_set():
        try:
            q.put(item, timeout=0.1)
            return True
        except queue.Full:
            continue
    return False


def _get(q: "queue.Queue", stop: threading.Event, errors: list):
    while True:
        if errors:
            raise errors[0]
        try:
            return q.get(timeout=0.1)
        except queue.Empty:
            if stop.is_set():
                raise errors[0] if errors else VideoError("pipeline stopped")


def encode_segment(
    job: VideoJob,
    k: int,
    processor: Callable[[Tensor], Union[Tensor, np.ndarray]],
    *,
    batch_frames: int = 1,
    queue_frames: int = 4,
    on_frames: Optional[Callable[[int], None]] = None,
) -> Path:
    """Decode, upscale and encode segment `k` of `job` to `job.segment_path(k)`; return that path.

    Runs three stages concurrently (decode thread, inference in the calling thread, encode
    thread) joined by queues of `queue_frames` frames. The file appears only when complete
    (partial file + rename); on any error or interruption ffmpeg is killed, the partial file
    deleted and the exception re-raised. `on_frames(n)` is called as frames are upscaled.
    """
    seg = job.segments[k]
    info = job.info
    final = job.segment_path(k)
    partial = job.workdir / f".seg-{k:05d}.partial"
    last = k == len(job.segments) - 1
    stop = threading.Event()
    errors: list[BaseException] = []
    q_in: queue.Queue = queue.Queue(maxsize=max(2, queue_frames))
    q_out: queue.Queue = queue.Queue(maxsize=max(2, queue_frames))
    tb = info.time_base
    ew, eh = job.enc_size
    nominal_ns = int(round(1e9 / float(info.fps))) if info.fps > 0 else 40_000_000
    base_tick = info.tick(seg.start)
    counts = {"decoded": 0, "encoded": 0}
    reader_box: list[FrameReader] = []
    writer_box: list[FrameWriter] = []

    def ns(tick: int) -> int:
        return int(round((tick - base_tick) * tb * 1_000_000_000))

    def decode() -> None:
        try:
            reader = FrameReader(info, start=seg.start, count=None if last else seg.count)
            reader_box.append(reader)
            while not stop.is_set():
                frame = reader.read()
                if frame is None:
                    break
                counts["decoded"] += 1
                if not _put(q_in, to_tensor(frame), stop):
                    return
            _put(q_in, _END, stop)
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread
            errors.append(exc)
            stop.set()

    def encode() -> None:
        try:
            writer = FrameWriter(partial, width=ew, height=eh, settings=job.settings, time_base=tb,
                                 frame_rate=info.fps, default_duration_ns=nominal_ns, fmt="nut",
                                 color_args=job.color_args(), sar=info.sar)
            writer_box.append(writer)
            i = seg.start
            while True:
                item = _get(q_out, stop, errors)
                if item is _END:
                    break
                t0, t1 = info.tick(i), info.tick(i + 1)
                frame = item if isinstance(item, np.ndarray) else to_array(item, writer.dtype)
                writer.write(frame, ns(t0), max(1, ns(t1) - ns(t0)))
                counts["encoded"] += 1
                i += 1
            writer.close()
        except BaseException as exc:  # noqa: BLE001
            if not errors:
                errors.append(exc)
            stop.set()

    job.workdir.mkdir(parents=True, exist_ok=True)
    remove_quietly(partial)
    threads = [threading.Thread(target=decode, name=f"esc-decode-{k}", daemon=True),
               threading.Thread(target=encode, name=f"esc-encode-{k}", daemon=True)]
    for t in threads:
        t.start()
    try:
        finished = False
        while not finished:
            batch: list[Tensor] = []
            while len(batch) < batch_frames:
                item = _get(q_in, stop, errors)
                if item is _END:
                    finished = True
                    break
                batch.append(item)
            if batch:
                out = processor(torch.stack(batch))
                for img in out:
                    if not _put(q_out, img, stop):
                        raise errors[0] if errors else VideoError("pipeline stopped")
                if on_frames is not None:
                    on_frames(len(batch))
        if not _put(q_out, _END, stop):
            raise errors[0] if errors else VideoError("pipeline stopped")
        while threads[1].is_alive():
            threads[1].join(timeout=0.1)
        if errors:
            raise errors[0]
        expected = seg.count
        if counts["encoded"] != counts["decoded"] or (not last and counts["encoded"] != expected) or counts["encoded"] == 0:
            raise VideoError(
                f"{info.path}: segment {k} decoded {counts['decoded']} frames and encoded {counts['encoded']}, "
                f"expected {expected}; the file may be damaged"
            )
        os.replace(partial, final)
        return final
    except BaseException:
        stop.set()
        for w in writer_box:
            w.abort()
        for r in reader_box:
            r.close()
        for t in threads:
            t.join(timeout=5)
        remove_quietly(partial)
        raise
    finally:
        for r in reader_box:
            r.close()
