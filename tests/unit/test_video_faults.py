"""Video faults at the io layer: the pixel aspect ratio is kept exactly."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from esc_cli.io.frames import EncodeSettings, FrameWriter
from esc_cli.io.probe import probe


@pytest.mark.parametrize("suffix", [".mp4", ".mkv"])
def test_odd_sar_is_kept_exactly(tmp_path, suffix):
    """2864:2889 (a 321x179 source seen in the field) used to come out as 99:100."""
    out = tmp_path / f"sar{suffix}"
    w = FrameWriter(out, width=322, height=180, settings=EncodeSettings(pix_fmt="yuv420p", preset="ultrafast"),
                    time_base=Fraction(1, 1000), frame_rate=Fraction(10), default_duration_ns=100_000_000,
                    sar=Fraction(2864, 2889))
    for i in range(2):
        w.write(np.full((180, 322, 3), 40 * i, np.uint8), i * 100_000_000, 100_000_000)
    w.close()
    assert probe(out).sar == Fraction(2864, 2889)
