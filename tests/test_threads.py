"""kmcodec.threads: the codec's thread count changes its speed, never its bytes."""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time

import numpy as np
import pytest

import kmcodec
from kmcodec import codec, quantize, threads


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


class _Stop(Exception):
    pass


@pytest.mark.skipif(not hasattr(signal, "pthread_kill"), reason="signals are sent to a thread on POSIX only")
@pytest.mark.parametrize("wait", ["strips", "ordered strips", "fit pieces"])
def test_a_signal_delivered_to_a_worker_thread_stops_the_waiting_caller(monkeypatch, wait):
    """The OS may deliver Ctrl-C to any thread; Python runs the handler in the main thread, which must
    not sleep until the work it waits for is done (a whole strip's coding: seconds at 12 MP)."""
    monkeypatch.setenv(threads.ENV, "2")
    handled, done = threading.Event(), threading.Event()
    seen: list[bool] = []

    def stop(signum, frame):
        handled.set()
        raise _Stop

    def work(item: int, *rest: object) -> int:
        if item == 1:  # a worker thread: signal it, then wait for the main thread to have acted
            time.sleep(0.2)  # the main thread is waiting for the results by then
            signal.pthread_kill(threading.get_ident(), signal.SIGUSR1)
            seen.append(handled.wait(10))
            done.set()
        return item

    previous = signal.signal(signal.SIGUSR1, stop)
    try:
        with pytest.raises(_Stop):
            if wait == "strips":
                codec._in_threads(work, range(4))
            elif wait == "ordered strips":
                list(codec._ordered_in_threads(work, range(4)))
            else:
                quantize._split(4, lambda start, stop: work(1 if start else 0), grain=1)
    finally:
        signal.signal(signal.SIGUSR1, previous)
    assert done.wait(10)  # the fit's pool is not waited for on the way out
    assert seen == [True]  # the handler ran while the worker still waited
