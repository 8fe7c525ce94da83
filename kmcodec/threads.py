"""How many threads the codec's own work may use: one per CPU, fewer where something else fills the cores.

A batch runs one file per worker process (or Dask worker thread), so the
codec in each worker runs single-threaded there (:func:`limited`); the
environment variable ``KMC_THREADS`` sets the number for a whole process.
The count changes the speed only: every result is the same bytes at any
count.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import contextvars
import os
from collections.abc import Iterator
from typing import TypeVar

T = TypeVar("T")

#: The environment variable that sets the threads of the process: a whole number >= 1, used as given.
ENV = "KMC_THREADS"

#: Seconds at a time that a thread waits for the codec's worker threads.  A signal (Ctrl-C,
#: SIGTERM) that the OS delivers to a worker thread wakes no one, and Python runs its handler
#: only in the main thread, so a waiter that slept until the work was done would act on Ctrl-C
#: seconds late (up to 2.7 s on a 12 MP encode at k = 256).
WAIT_SLICE = 0.05

_limit: contextvars.ContextVar[int | None] = contextvars.ContextVar("kmcodec_threads", default=None)


def count() -> int:
    """Threads the codec may use here: :func:`limited`'s, else ``KMC_THREADS``, else the CPUs."""
    limit = _limit.get()
    if limit is not None:
        return limit
    value = os.environ.get(ENV, "")
    if value.isdigit() and int(value) >= 1:  # anything else is ignored, as OMP_NUM_THREADS's junk is
        return int(value)
    return os.cpu_count() or 1


@contextlib.contextmanager
def limited(threads: int) -> Iterator[None]:
    """Within the block, in this thread, the codec uses at most *threads* threads."""
    token = _limit.set(max(1, min(threads, count())))
    try:
        yield
    finally:
        _limit.reset(token)


def result(future: concurrent.futures.Future[T]) -> T:
    """``future.result()``, waited for in slices of :data:`WAIT_SLICE`, so that signal handlers run meanwhile."""
    while True:
        try:
            return future.result(timeout=WAIT_SLICE)
        except concurrent.futures.TimeoutError:
            if future.done():  # the work's own TimeoutError (the same class from Python 3.11)
                raise
