"""Batch benchmark: ``kmc encode DIR -o OUT`` by job count, and on Dask against the local pool.

Makes a folder of images, deterministically: crops of the photos in
``--photos`` (default ``../shared/corpus/photos`` when it exists), or, without
photos or with ``--synthetic``, drawn images (a gradient, shapes, a blur and
some noise).  Each image is 256 to 512 pixels a side.  One deliberately broken
file (a truncated PNG) joins them.

Then it runs the whole command once per configuration, as a subprocess of
this process (``python -m kmcodec encode DIR -o OUT --jobs N -k K``, output
captured, so no progress bar), interleaved when ``--repeat`` runs each more
than once, and reports for each the wall time, the CPU time of the command
and its workers (CPU / wall: the cores it kept busy), the peak memory of the
command's own process (the client, its workers not counted) and the load
averages before and after.  ``--scheduler`` adds Dask runs with ``--jobs``'s
largest count of workers (needs ``pip install '.[dask]'``):

- ``local``: ``--scheduler local``, a LocalCluster the command starts;
- ``deploy``: a real deployment started here as from a shell, ``dask
  scheduler`` and that many ``dask worker`` processes on loopback, then
  ``--scheduler tcp://127.0.0.1:PORT`` (its workers' CPU is not counted);
- ``tcp://HOST:PORT``: a running cluster.

It prints the throughput of each Dask run over the local pool's with as many
workers, and, with ``--memory N1 N2``, the client's peak memory on the first
N1 and N2 images on each Dask scheduler: a client that sends names and
receives small results holds about the same at both sizes.  It checks that
every good image was encoded, that the outputs of all runs are byte for
byte the same, and that each command exited 1 naming the broken file.
Other work on the machine slows any run: read the load averages beside the
ratios.

Usage::

    python tools/bench_batch.py                         # 200 images, -k 64, --jobs 1 then 2
    python tools/bench_batch.py --images 40 --synthetic
    python tools/bench_batch.py --photos ~/pictures --keep /tmp/batch
    python tools/bench_batch.py --jobs 2 --scheduler local deploy --memory 20 40   # issue 14's numbers
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_PHOTOS = ROOT.parent / "shared" / "corpus" / "photos"
BROKEN = "broken.png"
MIN_SIDE, MAX_SIDE = 256, 512


def photo_crop(photo: Image.Image, width: int, height: int, rng: np.random.Generator) -> Image.Image:
    """A random window of *photo*, 1 to 2 times the target size, resized to width x height."""
    scale = min(rng.uniform(1.0, 2.0), photo.width / width, photo.height / height)
    w, h = max(1, int(width * scale)), max(1, int(height * scale))
    left = int(rng.integers(0, photo.width - w + 1))
    top = int(rng.integers(0, photo.height - h + 1))
    return photo.crop((left, top, left + w, top + h)).resize((width, height), Image.Resampling.LANCZOS)


def synthetic(width: int, height: int, rng: np.random.Generator) -> Image.Image:
    """A drawn picture: a two-colour gradient, 5 to 30 filled shapes, a blur and sensor-like noise."""
    a, b = rng.integers(0, 256, (2, 3))
    t = np.linspace(0.0, 1.0, width)[None, :, None] * rng.uniform(0.3, 1.0)
    t = t + np.linspace(0.0, 1.0, height)[:, None, None] * rng.uniform(0.0, 0.7)
    image = Image.fromarray((a + (b - a) * np.clip(t, 0, 1)).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    for _ in range(int(rng.integers(5, 31))):
        x0, x1 = sorted(rng.integers(0, width, 2))
        y0, y1 = sorted(rng.integers(0, height, 2))
        fill = tuple(int(v) for v in rng.integers(0, 256, 3))
        if rng.random() < 0.5:
            draw.ellipse((x0, y0, x1, y1), fill=fill)
        else:
            draw.rectangle((x0, y0, x1, y1), fill=fill)
    image = image.filter(ImageFilter.GaussianBlur(float(rng.uniform(0.5, 3.0))))
    noise = rng.normal(0.0, rng.uniform(1.0, 6.0), (height, width, 3))
    return Image.fromarray(np.clip(np.asarray(image) + noise, 0, 255).astype(np.uint8))


def make_images(folder: Path, count: int, photos: list[Path], seed: int) -> None:
    """Write *count* PNGs named img000.png ... and the broken file into *folder*."""
    rng = np.random.default_rng(seed)
    opened = [Image.open(p).convert("RGB") for p in photos]
    for i in range(count):
        width, height = (int(v) for v in rng.integers(MIN_SIDE, MAX_SIDE + 1, 2))
        image = photo_crop(opened[i % len(opened)], width, height, rng) if opened else synthetic(width, height, rng)
        image.save(folder / f"img{i:03d}.png")
    whole = (folder / "img000.png").read_bytes()
    (folder / BROKEN).write_bytes(whole[: len(whole) // 2])


@contextlib.contextmanager
def deployment(workers: int, work: Path) -> Iterator[str]:
    """``dask scheduler`` and *workers* ``dask worker`` processes of one thread on loopback; yields the address."""
    import distributed

    dask = str(Path(sys.executable).with_name("dask"))
    scheduler_file = work / "scheduler.json"
    scheduler_file.unlink(missing_ok=True)
    loopback = ["--host", "127.0.0.1", "--dashboard-address", "127.0.0.1:0"]
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    processes = [
        subprocess.Popen(
            [dask, "scheduler", "--port", "0", "--scheduler-file", str(scheduler_file), *loopback], **quiet
        )
    ]
    try:
        deadline = time.monotonic() + 60
        while not scheduler_file.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        worker = [dask, "worker", "--scheduler-file", str(scheduler_file), "--nthreads", "1", *loopback]
        processes += [subprocess.Popen(worker, **quiet) for _ in range(workers)]
        with distributed.Client(scheduler_file=str(scheduler_file), timeout="60s") as client:
            client.wait_for_workers(workers, timeout=60)
            address = client.scheduler.address
        yield address
    finally:
        for process in reversed(processes):
            process.terminate()
        for process in reversed(processes):
            process.wait(timeout=30)


def peak_rss(process: subprocess.Popen, every: float = 0.02) -> int:
    """The largest resident set of *process* itself (not its children) until it exits, sampled."""
    import psutil

    peak = 0
    with contextlib.suppress(psutil.Error):
        watched = psutil.Process(process.pid)
        while process.poll() is None:
            peak = max(peak, watched.memory_info().rss)
            time.sleep(every)
    return peak


def run(inputs: list[str], output: Path, jobs: int, colors: int, scheduler: str | None = None, name: str = "") -> dict:
    """Run the whole batch command once; return its wall and CPU seconds, client peak memory, exit status, stderr."""
    command = [sys.executable, "-m", "kmcodec", "encode", *inputs, "-o", str(output), "-k", str(colors)]
    if scheduler is None or scheduler == "local":
        command += ["--jobs", str(jobs)]
    if scheduler is not None:
        command += ["--scheduler", scheduler]
    load_before = os.getloadavg()
    cpu_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    with concurrent.futures.ThreadPoolExecutor(1) as watcher:
        peak = watcher.submit(peak_rss, process)
        stdout, stderr = process.communicate()
    wall = time.perf_counter() - start
    cpu_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (cpu_after.ru_utime - cpu_before.ru_utime) + (cpu_after.ru_stime - cpu_before.ru_stime)
    return {
        "name": name or f"--jobs {jobs}" + (f" --scheduler {scheduler}" if scheduler else ""),
        "jobs": jobs,
        "wall": wall,
        "cpu": cpu,
        "peak": peak.result(),
        "status": process.returncode,
        "stdout": stdout,
        "stderr": stderr,
        "load": (load_before, os.getloadavg()),
    }


def outputs(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*.kmc"))}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=200, help="good images in the batch (default 200)")
    parser.add_argument("--photos", type=Path, default=DEFAULT_PHOTOS, help="folder of photos to crop")
    parser.add_argument("--synthetic", action="store_true", help="draw the images even if photos exist")
    parser.add_argument("-k", "--colors", type=int, default=64, help="palette size (default 64)")
    parser.add_argument("--jobs", type=int, nargs="+", default=[1, 2], help="job counts to run (default 1 2)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the image generator")
    parser.add_argument("--keep", type=Path, help="make the images and outputs here and keep them")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each configuration, best kept (default 1)")
    parser.add_argument(
        "--scheduler", nargs="+", default=[], help="also run on Dask: local, deploy and/or tcp://HOST:PORT"
    )
    parser.add_argument(
        "--memory", type=int, nargs=2, metavar=("N1", "N2"), help="client peak memory on N1 and N2 images, on Dask"
    )
    args = parser.parse_args()

    photos = []
    if not args.synthetic and args.photos.is_dir():
        photos = sorted(p for p in args.photos.iterdir() if p.suffix.lower() in {".png", ".jpg", ".jpeg"})
    work = args.keep or Path(tempfile.mkdtemp(prefix="kmc-bench-batch-"))
    source = work / "images"
    workers = max(args.jobs)
    configs: list[tuple[int, str | None]] = [(j, None) for j in args.jobs]
    configs += [(workers, sched) for sched in args.scheduler]

    def out_dir(jobs: int, scheduler: str | None, attempt: int) -> Path:
        tag = "" if scheduler is None else "-" + ("deploy" if scheduler == "deploy" else "dask")
        return work / f"out-jobs{jobs}{tag}-{attempt}"

    try:
        with contextlib.ExitStack() as stack:
            address = stack.enter_context(deployment(workers, work)) if "deploy" in args.scheduler else None

            def scheduler_arg(scheduler: str | None) -> str | None:
                return address if scheduler == "deploy" else scheduler

            def label(jobs: int, scheduler: str | None) -> str:
                if scheduler == "deploy":
                    return f"dask scheduler + {workers} dask worker ({address})"
                return f"--jobs {jobs}" + (f" --scheduler {scheduler}" if scheduler else "")

            shutil.rmtree(source, ignore_errors=True)
            source.mkdir(parents=True)
            start = time.perf_counter()
            make_images(source, args.images, photos, args.seed)
            kind = f"crops of {len(photos)} photos in {args.photos}" if photos else "synthetic drawings"
            size = sum(p.stat().st_size for p in source.iterdir())
            print(
                f"{args.images} images + 1 broken ({kind}), {size:,} bytes, made in {time.perf_counter() - start:.1f} s"
            )
            print(f"command: {sys.executable} -m kmcodec encode {source} -o OUT --jobs N -k {args.colors}")
            if address:
                print(f"deployment: dask scheduler and {workers} dask worker --nthreads 1 on loopback, {address}")

            results: dict[tuple[int, str | None], list[dict]] = {c: [] for c in configs}
            for attempt in range(args.repeat):  # interleaved, so a busy spell on the machine hits every config
                for jobs, scheduler in configs:
                    folder = out_dir(jobs, scheduler, attempt)
                    shutil.rmtree(folder, ignore_errors=True)
                    r = run([str(source)], folder, jobs, args.colors, scheduler_arg(scheduler), label(jobs, scheduler))
                    results[jobs, scheduler].append(r)
            memory = []
            for scheduler in args.scheduler if args.memory else []:
                for count in args.memory:
                    folder = work / f"out-memory-{count}"
                    shutil.rmtree(folder, ignore_errors=True)
                    inputs = [str(source / f"img{i:03d}.png") for i in range(count)]
                    r = run(inputs, folder, workers, args.colors, scheduler_arg(scheduler), label(workers, scheduler))
                    memory.append((r["name"], count, r))
        ok = True
        best = {}
        for config, runs in results.items():
            for attempt, r in enumerate(runs):
                (b1, b5, b15), (a1, a5, a15) = r["load"]
                print(
                    f"{r['name']} (run {attempt + 1}): {r['wall']:7.2f} s wall, {r['cpu']:7.2f} s CPU "
                    f"({r['cpu'] / r['wall']:.2f} cores busy), client peak {r['peak'] / 2**20:.0f} MiB, "
                    f"exit {r['status']}, load {b1:.2f} {b5:.2f} {b15:.2f} -> {a1:.2f} {a5:.2f} {a15:.2f}"
                )
                print("    " + (r["stdout"].strip().splitlines() or ["(no output)"])[-1])
                errors = [line for line in r["stderr"].splitlines() if line.strip()]
                reported = errors == [line for line in errors if BROKEN in line] and len(errors) == 1
                if r["status"] != 1 or not reported:
                    ok = False
                    print(f"    FAIL: expected exit 1 and one error naming {BROKEN}; stderr:\n{r['stderr']}")
                else:
                    print(f"    {errors[0]}")
            best[config] = min(runs, key=lambda r: r["wall"])
        encoded = [outputs(out_dir(j, sched, a)) for j, sched in configs for a in range(args.repeat)]
        if len(encoded[0]) != args.images:
            ok = False
            print(f"FAIL: {len(encoded[0])} outputs for {args.images} good images")
        same = all(e == encoded[0] for e in encoded[1:])
        ok = ok and same
        names = ", ".join(r["name"] for r in best.values())
        print(f"outputs byte-identical across {names} ({len(encoded)} runs): {'yes' if same else 'NO'}")
        base = best[args.jobs[0], None]
        for (jobs, scheduler), r in best.items():
            if scheduler is None and (jobs, scheduler) != (args.jobs[0], None):
                print(f"best of {args.repeat}: {base['name']} / {r['name']}: {base['wall'] / r['wall']:.2f} x speed-up")
        pool = best.get((workers, None))
        for (_, scheduler), r in best.items():
            if scheduler is not None and pool is not None:
                ratio = pool["wall"] / r["wall"]
                print(f"best of {args.repeat}: throughput {r['name']} / {pool['name']}: {ratio:.2f} x")
        for name, count, r in memory:
            print(f"client peak memory, {name}, {count} images: {r['peak'] / 2**20:.0f} MiB ({r['wall']:.1f} s)")
        return 0 if ok else 1
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
