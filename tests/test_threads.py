"""kmcodec.threads: the codec's thread count changes its speed, never its bytes."""

from __future__ import annotations

import multiprocessing
import os

import numpy as np
import pytest

import kmcodec
from kmcodec import quantize, threads


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


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork on this platform")
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")  # Python >= 3.12: it is
def test_a_forked_child_encodes_after_its_parent_used_the_fit_threads(monkeypatch):
    """A multiprocessing pool forked after an encode: the child's fit must not wait on the parent's threads."""
    monkeypatch.setenv(threads.ENV, "2")  # the fit splits its work over the pool even on a one-CPU machine
    pixels = np.random.default_rng(5).integers(0, 256, (300, 300, 3), dtype=np.uint8)  # 90,000 colours: split
    expected = kmcodec.encode(pixels, 16)
    assert quantize._POOL is not None  # the parent's pool, with its threads, exists when the child forks
    with multiprocessing.get_context("fork").Pool(1) as pool:
        assert pool.apply_async(kmcodec.encode, (pixels, 16)).get(timeout=60) == expected
