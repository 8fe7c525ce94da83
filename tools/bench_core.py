#!/usr/bin/env python3
"""What kmcodec costs before and around its work: start-up, memory, install size, and the kernels' speed.

Each measurement runs in a fresh child process.  With ``--baseline PYTHON``
every measurement also runs with that interpreter (another build of
kmcodec installed in it, e.g. the numba build in a second venv), the two
interleaved, and each row gives the ratio this / baseline::

    python tools/bench_core.py                                  # this build only
    python tools/bench_core.py --baseline /path/to/old-venv/bin/python --repeat 5
    python tools/bench_core.py --big --photo ../shared/corpus/photos/wiki005.png
    python tools/bench_core.py --fresh-venv                     # pip install . into a new venv, first run, size

The sections:

* ``startup``: wall seconds of ``python -c "import kmcodec"`` beside
  ``python -c "import numpy, PIL.Image"`` (what kmcodec cannot avoid), and of
  ``kmc --version``, ``kmc encode`` / ``kmc inspect`` / ``kmc decode`` of the
  bundled 64 x 64 demo image, warm (after one unmeasured run of each);
* ``memory``: peak resident set (the child's ``ru_maxrss`` from ``os.wait4``)
  of ``kmc encode`` and ``kmc decode`` of a 1 x 1 image, and of a process
  that has run every kernel (encodes of 64 x 64 noise with --dither, --rdo,
  --colorspace oklab and every label method, and their decodes);
* ``--big``: a 12 MP image (the photo tiled with mirrored copies to 4000 x
  3000): ``kmc encode`` wall at k = 16 and 256, and ``kmcodec.decode`` of
  the result in process (CPU and wall, best of ``--repeat``, after one
  warm-up decode), beside Pillow's decode of the same image as a truecolor
  PNG (``Image.open(...).load()``);
* ``--fresh-venv``: a new virtual environment, ``pip install`` of this
  source tree, the first ``kmc encode`` of the demo image in it (wall), and
  the bytes installed in its site-packages less pip and setuptools.

The process under test imports the kmcodec its interpreter finds: this one
with the environment as given (``PYTHONPATH`` included), the baseline with
``PYTHONPATH`` removed; both with ``PYTHONDONTWRITEBYTECODE`` removed, so a
source tree gets the byte-code caches an installed package has.  Times are wall clock unless a column says CPU; on
a loaded machine, compare the ratios of one run.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "fixtures" / "images" / "demo.png"
DEFAULT_PHOTO = ROOT.parent / "shared" / "corpus" / "photos" / "wiki005.png"
#: Packages of a fresh venv that are not kmcodec's: left out of the installed size.
TOOLING = ("pip", "setuptools", "_distutils_hack", "pkg_resources", "wheel", "distutils-precedence.pth")


class Side:
    """An interpreter to run the children with, and its environment."""

    def __init__(self, name: str, python: str, keep_pythonpath: bool) -> None:
        self.name = name
        self.python = python
        self.env = dict(os.environ)
        # Byte-code caches on, as pip installs them: a source tree run with this set compiles every module each time.
        self.env.pop("PYTHONDONTWRITEBYTECODE", None)
        if not keep_pythonpath:
            self.env.pop("PYTHONPATH", None)

    def run(self, argv: list[str], cwd: Path) -> dict:
        """Run ``python ARGV``: {"wall", "cpu", "rss_mib"}; exits on failure."""
        start = time.perf_counter()
        proc = subprocess.Popen(
            [self.python, *argv], cwd=cwd, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        out = proc.stdout.read().decode()
        err = proc.stderr.read().decode()
        proc.stdout.close()
        proc.stderr.close()
        if proc.returncode:
            msg = f"{self.name}: python {' '.join(argv)} failed (exit {proc.returncode}):\n{err.strip()}"
            raise SystemExit(msg)
        return {"wall": wall, "cpu": usage.ru_utime + usage.ru_stime, "rss_mib": usage.ru_maxrss / 1024, "out": out}


def _repeat(sides: list[Side], argv: list[str], cwd: Path, repeat: int, warm: bool = True) -> dict[str, list[dict]]:
    """Each side runs *argv* *repeat* times, interleaved, after one unmeasured run with *warm*."""
    runs: dict[str, list[dict]] = {s.name: [] for s in sides}
    if warm:
        for s in sides:
            s.run(argv, cwd)
    for _ in range(repeat):
        for s in sides:
            runs[s.name].append(s.run(argv, cwd))
    return runs


def _row(label: str, runs: dict[str, list[dict]], key: str, unit: str, fmt: str = "{:.3f}") -> str:
    """A table row: median (best) per side, then the ratio of the medians this / baseline."""
    cells = []
    medians = []
    for values in runs.values():
        series = [r[key] for r in values]
        med = statistics.median(series)
        medians.append(med)
        cells.append(f"{fmt.format(med)} ({fmt.format(min(series))}) {unit}")
    ratio = f"{medians[0] / medians[1]:.2f}" if len(medians) == 2 and medians[1] > 0 else ""
    return f"| {label} | " + " | ".join(cells) + (f" | {ratio} |" if len(medians) == 2 else " |")


def _header(sides: list[Side], what: str) -> list[str]:
    names = [s.name for s in sides]
    cols = names + (["this / baseline"] if len(sides) == 2 else [])
    return ["", f"| {what} | " + " | ".join(cols) + " |", "|---|" + "---:|" * len(cols)]


def _kmc(*args: str) -> list[str]:
    return ["-m", "kmcodec", *map(str, args)]


def startup(sides: list[Side], work: Path, repeat: int) -> list[str]:
    from PIL import Image

    tiny = work / "tiny.png"
    Image.new("RGB", (1, 1), (200, 30, 60)).save(tiny)
    lines = [*_header(sides, "warm, wall seconds: median (best)")]
    rows = [
        ("python -c 'import numpy, PIL.Image'", ["-c", "import numpy, PIL.Image"]),
        ("python -c 'import kmcodec'", ["-c", "import kmcodec"]),
        ("kmc --version", _kmc("--version")),
        ("kmc encode demo.png -k 32", _kmc("encode", DEMO, "demo.kmc", "-k", "32", "--force")),
        ("kmc inspect demo.kmc", _kmc("inspect", "demo.kmc")),
        ("kmc decode demo.kmc", _kmc("decode", "demo.kmc", "demo-out.png", "--force")),
    ]
    for label, argv in rows:
        lines.append(_row(label, _repeat(sides, argv, work, repeat), "wall", "s"))
    return lines


#: A child that runs every kernel on 64 x 64 noise: each option set encoded, every file decoded.
EVERY_KERNEL = """
import numpy as np, kmcodec
rng = np.random.default_rng(0)
img = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
for options in ({"method": "cm"}, {"method": "cmm"}, {"method": "deflate,lzma,stored"}, {"dither": 1.0},
                {"rdo": 5.0}, {"colorspace": "oklab"}, {"effort": 3}, {"colors": 300}):
    options = {"colors": 16, **options}
    kmcodec.decode(kmcodec.encode(img, **options))
"""


def memory(sides: list[Side], work: Path, repeat: int) -> list[str]:
    from PIL import Image

    tiny = work / "one.png"
    Image.new("RGB", (1, 1), (200, 30, 60)).save(tiny)
    for s in sides:  # each side decodes its own file
        s.run(_kmc("encode", tiny, f"one-{s.name}.kmc", "--force"), work)
    lines = [*_header(sides, "peak RSS, MiB: median (best)")]
    lines.append(
        _row(
            "kmc encode 1x1.png",
            _repeat(sides, _kmc("encode", tiny, "o.kmc", "--force"), work, repeat),
            "rss_mib",
            "MiB",
            "{:.1f}",
        )
    )
    runs: dict[str, list[dict]] = {s.name: [] for s in sides}
    for _ in range(repeat):
        for s in sides:
            runs[s.name].append(s.run(_kmc("decode", f"one-{s.name}.kmc", "o.png", "--force"), work))
    lines.append(_row("kmc decode 1x1.kmc", runs, "rss_mib", "MiB", "{:.1f}"))
    lines.append(
        _row(
            "every kernel run once",
            _repeat(sides, ["-c", EVERY_KERNEL], work, repeat, warm=True),
            "rss_mib",
            "MiB",
            "{:.1f}",
        )
    )
    return lines


def tiled(photo: Path, path: Path, width: int = 4000, height: int = 3000) -> None:
    """Save *photo* tiled with mirrored copies to width x height at *path* (PNG, zlib level 1)."""
    import numpy as np
    from PIL import Image

    tile = np.asarray(Image.open(photo).convert("RGB"))
    row = np.concatenate([tile, tile[:, ::-1]], axis=1)
    block = np.concatenate([row, row[::-1]], axis=0)
    reps = (-(-height // block.shape[0]), -(-width // block.shape[1]), 1)
    Image.fromarray(np.tile(block, reps)[:height, :width]).save(path, compress_level=1)


#: A child that decodes FILE once (warm-up), then REPEAT times: prints the best CPU and wall seconds.
DECODE = """
import sys, time, kmcodec
data = open(sys.argv[1], "rb").read()
kmcodec.decode(data)
best_cpu = best_wall = float("inf")
for _ in range(int(sys.argv[2])):
    c, w = time.process_time(), time.perf_counter()
    kmcodec.decode(data)
    best_cpu = min(best_cpu, time.process_time() - c)
    best_wall = min(best_wall, time.perf_counter() - w)
print(best_cpu, best_wall)
"""
PILLOW_DECODE = """
import sys, time
from PIL import Image
best = float("inf")
for _ in range(int(sys.argv[2]) + 1):
    w = time.perf_counter()
    Image.open(sys.argv[1]).load()
    best = min(best, time.perf_counter() - w)
print(best)
"""


def big(sides: list[Side], work: Path, repeat: int, photo: Path) -> list[str]:
    from PIL import Image

    source = work / "big.png"
    tiled(photo, source)
    truecolor = work / "big-truecolor.png"
    Image.open(source).save(truecolor)  # Pillow's default zlib level
    lines = ["", f"12 MP: {photo.name} tiled to 4000 x 3000"]
    lines += _header(sides, "12 MP, seconds: median (best)")
    for k in (16, 256):
        runs = _repeat(sides, _kmc("encode", source, f"big{k}.kmc", "-k", k, "--force"), work, repeat)
        lines.append(_row(f"kmc encode -k {k}, wall", runs, "wall", "s"))
    for s in sides:  # each side decodes the file its own encoder wrote (the bytes are the same if the port is exact)
        for k in (16, 256):
            s.run(_kmc("encode", source, f"big{k}-{s.name}.kmc", "-k", k, "--force"), work)
    for k in (16, 256):
        for clock, index in (("CPU", 0), ("wall", 1)):
            runs = {}
            for s in sides:
                out = s.run(["-c", DECODE, f"big{k}-{s.name}.kmc", str(repeat)], work)["out"].split()
                runs[s.name] = [{"t": float(out[index])}]
            lines.append(_row(f"kmcodec.decode k = {k}, {clock} (best of {repeat})", runs, "t", "s"))
    pil = sides[0].run(["-c", PILLOW_DECODE, str(truecolor), str(repeat)], work)["out"].split()
    lines.append(f"| Pillow truecolor PNG decode, wall (best of {repeat}) | {float(pil[0]):.3f} s |")
    return lines


def fresh_venv(work: Path) -> list[str]:
    venv = work / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    start = time.perf_counter()
    subprocess.run([str(python), "-m", "pip", "install", "-q", str(ROOT)], check=True)
    install = time.perf_counter() - start
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    first = []
    for i in range(2):
        start = time.perf_counter()
        subprocess.run(
            [str(venv / "bin" / "kmc"), "encode", str(DEMO), str(work / f"first{i}.kmc")], check=True, env=env, cwd=work
        )
        first.append(time.perf_counter() - start)
    site = next((venv / "lib").glob("python*/site-packages"))
    total = 0
    for entry in site.iterdir():
        if entry.name.split("-")[0] in TOOLING or entry.name in TOOLING:
            continue
        files = [entry] if entry.is_file() else [p for p in entry.rglob("*") if p.is_file()]
        total += sum(p.stat().st_size for p in files)
    return [
        "",
        "| fresh venv | |",
        "|---|---:|",
        f"| pip install . (build included), wall | {install:.1f} s |",
        f"| first kmc encode demo.png, wall | {first[0]:.3f} s |",
        f"| second kmc encode demo.png, wall | {first[1]:.3f} s |",
        f"| site-packages less pip/setuptools | {total / 1e6:.1f} MB |",
    ]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", help="a second Python interpreter to run every measurement with")
    parser.add_argument("--repeat", type=int, default=5, help="measured runs per row (default 5)")
    parser.add_argument("--big", action="store_true", help="also the 12 MP encode and decode")
    parser.add_argument("--photo", type=Path, default=DEFAULT_PHOTO, help="photo tiled for --big")
    parser.add_argument("--fresh-venv", action="store_true", help="also install into a new venv and time its first run")
    parser.add_argument("--skip", default="", help="sections to leave out: startup,memory")
    args = parser.parse_args(argv)

    sides = [Side("this", sys.executable, keep_pythonpath=True)]
    if args.baseline:
        sides.append(Side("baseline", args.baseline, keep_pythonpath=False))
    skip = set(filter(None, args.skip.split(",")))
    lines = [f"load average {os.getloadavg()[0]:.2f}; " + "; ".join(f"{s.name}: {s.python}" for s in sides)]
    with tempfile.TemporaryDirectory(prefix="kmc-bench-core-") as tmp:
        work = Path(tmp)
        if "startup" not in skip:
            lines += startup(sides, work, args.repeat)
        if "memory" not in skip:
            lines += memory(sides, work, args.repeat)
        if args.big:
            lines += big(sides, work, args.repeat, args.photo)
        if args.fresh_venv:
            lines += fresh_venv(work)
    lines.append(f"load average {os.getloadavg()[0]:.2f} at the end")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
