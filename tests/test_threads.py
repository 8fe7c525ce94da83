"""kmcodec.threads: the codec's thread count changes its speed, never its bytes."""

from __future__ import annotations

import os

import numpy as np

import kmcodec
from kmcodec import threads


def test_the_codec_writes_the_same_bytes_at_any_thread_count(monkeypatch):
    rng = np.random.default_rng(3)
    pixels = rng.integers(0, 256, (120, 300, 3), dtype=np.uint8)
    options = {"colors": 40, "rows_per_strip": 8}
    default = kmcodec.encode(pixels, **options)
    with threads.limited(1):
        assert threads.count() == 1
        assert kmcodec.encode(pixels, **options) == default
    monkeypatch.setenv(threads.ENV, "3")
    assert threads.count() == 3
    assert kmcodec.encode(pixels, **options) == default
    monkeypatch.setenv(threads.ENV, "junk")
    assert threads.count() == (os.cpu_count() or 1)
