#!/usr/bin/env python3
"""Time the encoder's PNG reading with and without the thread that inflates ahead.

    python tools/bench_png_read.py photo.png              # 5 interleaved runs of each
    python tools/bench_png_read.py photo.png --repeat 10 --rows 262

Two workloads on one :class:`kmcodec.png.PngReader`, in this process:
``blocks``, a bare loop over ``blocks(rows)`` (inflate and unfilter
only), and ``pass 1``, the encoder's colour count over the same blocks
(``ColorCounts.of``).  Each runs ``threaded`` (as the encoder reads) and
``inline`` (``blocks(rows, ahead=False)``: the same reads and
kernels, all in the calling thread), interleaved, after one warm-up of
each.  Prints the fastest and median wall time and the process CPU time
(both threads).  The thread can only pay off when a second core is free,
so run it on an idle machine; on a loaded one the wall times mostly
measure the other load.  --rows defaults to the encoder's strip height.
"""

from __future__ import annotations

import argparse
import functools
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from kmcodec import png
from kmcodec.labels import strip_height
from kmcodec.quantize import ColorCounts


def _timed(work: Callable[[], object]) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    work()
    return time.perf_counter() - wall, time.process_time() - cpu


def bench(path: str, repeat: int, rows: int | None = None) -> dict[tuple[str, str], list[tuple[float, float]]]:
    """{(workload, mode): [(wall s, cpu s), ...]} for *repeat* interleaved runs."""
    times: dict[tuple[str, str], list[tuple[float, float]]] = {}
    with open(path, "rb") as fp:
        reader = png.PngReader.open(fp, path)
        if reader is None:
            msg = f"{path}: not an 8-bit greyscale or truecolour PNG that kmcodec streams"
            raise SystemExit(msg)
        rows = rows or strip_height(reader.width, reader.height, None)
        has_alpha = reader.channels in (2, 4)

        def blocks(ahead: bool) -> None:
            for _ in reader.blocks(rows, ahead=ahead):
                pass

        def pass1(ahead: bool) -> None:
            pixels = reader.width * reader.height
            ColorCounts.of(lambda: reader.blocks(rows, ahead=ahead), reader.channels, has_alpha, pixels)

        for run in range(repeat + 1):
            for mode, ahead in (("threaded", True), ("inline", False)):
                for workload, work in (("blocks", blocks), ("pass 1", pass1)):
                    timing = _timed(functools.partial(work, ahead))
                    if run:  # the first is a warm-up
                        times.setdefault((workload, mode), []).append(timing)
    return times


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("png", help="an 8-bit greyscale or truecolour PNG")
    parser.add_argument("--repeat", type=int, default=5, help="runs of each (default 5)")
    parser.add_argument("--rows", type=int, help="rows per block (default: the encoder's strip height)")
    args = parser.parse_args(argv)
    for (workload, mode), runs in sorted(bench(args.png, args.repeat, args.rows).items()):
        walls, cpus = [w for w, _ in runs], [c for _, c in runs]
        print(
            f"{workload:7s} {mode:9s} wall best {min(walls):.3f} s, median {statistics.median(walls):.3f} s;"
            f" cpu median {statistics.median(cpus):.3f} s"
        )


if __name__ == "__main__":
    main()
