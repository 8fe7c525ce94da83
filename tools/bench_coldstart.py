"""Cold-start benchmark: the README's first command in fresh processes, with an empty numba cache, then a warm one.

After ``pip install`` numba's on-disk cache is empty, so a new user's first
``kmc encode`` compiles every kernel it needs before it codes a pixel; later
runs load the compiled kernels from the cache.  Each round runs, each in a
fresh Python process and in this order::

    kmc encode IMAGE OUT.kmc -k K --force     (with --rdo L: also --rdo L)
    kmc inspect OUT.kmc
    kmc decode OUT.kmc OUT.png --force

first with ``NUMBA_CACHE_DIR`` pointing at a new empty folder (cold: what the
README's first command costs a new user, each command finding the cache its
predecessors wrote), then again with the cache those runs left (warm).
IMAGE is the bundled demo image unless ``--image`` names another.

Reported per command: wall-clock seconds and the process's CPU seconds
(user + system, from the operating system's child accounting), median and
best over ``--rounds`` rounds, each round with its own empty cache; and the
load average before and after.  On a shared machine the wall clock of a
cold run stretches with the load (compiling is single-threaded and CPU
bound), its CPU seconds much less.

``--kernels`` adds one more cold round whose processes record the seconds
numba spends compiling each kernel (each top-level ``Dispatcher.compile``
call, the helpers it compiles on the way included) and lists them per
command.  That round is instrumented, so it is not one of the timed rounds.

The processes import the ``kmcodec`` this interpreter imports (its path is
printed), so run it with ``PYTHONPATH`` set as for the tests to time a
working copy.

Usage::

    python tools/bench_coldstart.py                      # demo image, k = 32, 3 rounds
    python tools/bench_coldstart.py --rounds 1 --kernels
    python tools/bench_coldstart.py --image photo.png -k 256 --rdo 5 --json out.json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

try:
    import resource
except ImportError:  # Windows: wall clock only
    resource = None

DEMO = Path(__file__).resolve().parent.parent / "fixtures" / "images" / "demo.png"
CHILD_FLAG = "--child-record"


# ---------------------------------------------------------------------------
# The instrumented child process
# ---------------------------------------------------------------------------
@contextlib.contextmanager
def recording_compiles() -> Iterator[list[dict]]:
    """Within the block, record every top-level numba compilation in this process: yields the list of records.

    Wraps ``numba.core.dispatcher.Dispatcher.compile`` while the block runs.
    A record is ``{"kernel": "module.qualname", "signature", "wall", "cpu"}``
    (seconds); compilations nested in another (the helpers a kernel compiles
    while it is typed) count in the outer one's record.
    """
    from numba.core import dispatcher

    original = dispatcher.Dispatcher.compile
    records: list[dict] = []
    depth = [0]

    def compile(self, sig):
        wall, cpu = time.perf_counter(), time.process_time()
        depth[0] += 1
        try:
            return original(self, sig)
        finally:
            depth[0] -= 1
            if depth[0] == 0:
                func = self.py_func
                records.append(
                    {
                        "kernel": f"{func.__module__}.{func.__qualname__}",
                        "signature": str(sig),
                        "wall": time.perf_counter() - wall,
                        "cpu": time.process_time() - cpu,
                    }
                )

    dispatcher.Dispatcher.compile = compile
    try:
        yield records
    finally:
        dispatcher.Dispatcher.compile = original


def child(record_path: str, kmc_args: list[str]) -> None:
    """Run ``kmc KMC_ARGS`` in this process, writing its compilations to *record_path* as JSON."""
    from kmcodec.cli import main

    with recording_compiles() as records:
        try:
            main(kmc_args)
        except SystemExit as exc:
            if exc.code:
                raise
        finally:
            Path(record_path).write_text(json.dumps(records))


# ---------------------------------------------------------------------------
# Running the commands
# ---------------------------------------------------------------------------
def commands(image: Path, folder: Path, colors: int, rdo: float | None) -> list[tuple[str, list[str]]]:
    """(name, kmc arguments) of the README's first command, writing into *folder*."""
    kmc = folder / "demo.kmc"
    encode = ["encode", str(image), str(kmc), "-k", str(colors), "--force"]
    if rdo is not None:
        encode += ["--rdo", f"{rdo:g}"]
    return [
        ("encode", encode),
        ("inspect", ["inspect", str(kmc)]),
        ("decode", ["decode", str(kmc), str(folder / "demo-out.png"), "--force"]),
    ]


def _children_cpu() -> float:
    if resource is None:
        return float("nan")
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_command(kmc_args: list[str], cache: Path, record: Path | None = None) -> dict:
    """Run ``kmc KMC_ARGS`` in a fresh process with numba's cache in *cache*: its wall and CPU seconds.

    With *record*, the process records its compilations there (see :func:`child`).
    """
    if record is None:
        argv = [sys.executable, "-m", "kmcodec", *kmc_args]
    else:
        argv = [sys.executable, str(Path(__file__).resolve()), CHILD_FLAG, str(record), "--", *kmc_args]
    env = dict(os.environ, NUMBA_CACHE_DIR=str(cache))
    cpu = _children_cpu()
    wall = time.perf_counter()
    # cwd outside any source tree: python -m puts cwd first on sys.path, and kmcodec must come from PYTHONPATH
    done = subprocess.run(argv, env=env, cwd=tempfile.gettempdir(), capture_output=True, text=True, check=False)
    wall = time.perf_counter() - wall
    cpu = _children_cpu() - cpu
    if done.returncode:
        msg = f"kmc {' '.join(kmc_args)} failed (exit {done.returncode}):\n{done.stderr.strip()}"
        raise SystemExit(msg)
    return {"wall": wall, "cpu": cpu}


def run_round(steps: list[tuple[str, list[str]]], cache: Path, record_dir: Path | None = None) -> dict[str, dict]:
    """Run the steps in order with the cache in *cache*: {name: {"wall", "cpu"[, "compiles"]}}."""
    results = {}
    for name, kmc_args in steps:
        record = None if record_dir is None else record_dir / f"{name}.json"
        results[name] = run_command(kmc_args, cache, record)
        if record is not None:
            results[name]["compiles"] = json.loads(record.read_text())
    return results


def _load() -> float:
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")


def bench(steps: list[tuple[str, list[str]]], rounds: int, kernels: bool) -> dict:
    """Cold then warm runs of *steps*, *rounds* times, each round with a new empty cache."""
    runs = []
    profile = None
    load = [_load()]
    with tempfile.TemporaryDirectory(prefix="kmc-coldstart-") as tmp:
        for i in range(rounds):
            cache = Path(tmp) / f"cache-{i}"
            cache.mkdir()
            cold = run_round(steps, cache)
            warm = run_round(steps, cache)
            runs.append({"cold": cold, "warm": warm})
            print(f"round {i + 1}/{rounds}: " + ", ".join(f"{n} {cold[n]['wall']:.1f} s" for n, _ in steps), flush=True)
        if kernels:
            cache = Path(tmp) / "cache-kernels"
            cache.mkdir()
            profile = run_round(steps, cache, record_dir=Path(tmp))
    load.append(_load())
    return {"runs": runs, "kernels": profile, "load": load}


# ---------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------
def summary(runs: list[dict], names: list[str]) -> list[dict]:
    """Per command and state (cold, warm): median and best wall and CPU seconds over the rounds."""
    rows = []
    for name in names:
        row = {"command": name}
        for state in ("cold", "warm"):
            for clock in ("wall", "cpu"):
                values = [r[state][name][clock] for r in runs]
                row[f"{state}_{clock}"] = {"median": statistics.median(values), "best": min(values)}
        rows.append(row)
    return rows


def kernel_table(compiles: list[dict]) -> list[dict]:
    """The compilations of one process grouped by kernel, most CPU first: kernel, signatures, wall, cpu."""
    by: dict[str, dict] = {}
    for c in compiles:
        k = by.setdefault(c["kernel"], {"kernel": c["kernel"], "signatures": 0, "wall": 0.0, "cpu": 0.0})
        k["signatures"] += 1
        k["wall"] += c["wall"]
        k["cpu"] += c["cpu"]
    return sorted(by.values(), key=lambda k: -k["cpu"])


def report(result: dict, steps: list[tuple[str, list[str]]]) -> list[str]:
    """The lines printed: the timing table, then (with --kernels) the compilations per command."""
    names = [n for n, _ in steps]
    lines = [
        f"seconds, median (best) of {len(result['runs'])} rounds; load average {result['load'][0]:.1f} before, "
        f"{result['load'][1]:.1f} after",
        "",
        "| command | cold wall | cold CPU | warm wall | warm CPU |",
        "|---|---:|---:|---:|---:|",
    ]
    args = dict(steps)
    for row in summary(result["runs"], names):
        cells = [
            f"{row[key]['median']:.2f} ({row[key]['best']:.2f})"
            for key in ("cold_wall", "cold_cpu", "warm_wall", "warm_cpu")
        ]
        lines.append(f"| kmc {' '.join(_short(a) for a in args[row['command']])} | " + " | ".join(cells) + " |")
    if result["kernels"] is not None:
        lines += ["", "Compilations of one more cold round (instrumented), seconds:"]
        for name in names:
            run = result["kernels"][name]
            table = kernel_table(run["compiles"])
            total_cpu = sum(k["cpu"] for k in table)
            lines.append("")
            lines.append(
                f"{name}: process {run['wall']:.2f} wall, {run['cpu']:.2f} CPU; "
                f"compiling {len(table)} kernels {total_cpu:.2f} CPU"
            )
            lines += [f"  {k['wall']:7.2f} wall {k['cpu']:7.2f} CPU  {k['kernel']}  x{k['signatures']}" for k in table]
    return lines


def _short(arg: str) -> str:
    """A path as its file name, for the table."""
    return Path(arg).name if os.sep in arg else arg


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--image", type=Path, default=DEMO, help="image to encode (default: the bundled demo image)")
    parser.add_argument("-k", "--colors", type=int, default=32, help="palette size (default 32, as the README)")
    parser.add_argument("--rdo", type=float, default=None, help="also pass --rdo LAMBDA to kmc encode")
    parser.add_argument("--rounds", type=int, default=3, help="rounds, each with a new empty cache (default 3)")
    parser.add_argument("--kernels", action="store_true", help="also list each kernel's compile seconds")
    parser.add_argument("--json", type=Path, default=None, help="also write every measurement to this JSON file")
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    import kmcodec

    print(f"kmcodec {kmcodec.__version__} from {Path(kmcodec.__file__).parent}; {sys.executable}")
    with tempfile.TemporaryDirectory(prefix="kmc-coldstart-out-") as out:
        steps = commands(args.image.resolve(), Path(out), args.colors, args.rdo)
        result = bench(steps, args.rounds, args.kernels)
    print("\n".join(report(result, steps)))
    if args.json is not None:
        args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, **result}, indent=1))


if __name__ == "__main__":
    if sys.argv[1:2] == [CHILD_FLAG]:
        child(sys.argv[2], sys.argv[4:])
    else:
        main()
