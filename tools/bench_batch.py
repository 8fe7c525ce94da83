"""Batch benchmark: ``kmc encode DIR -o OUT`` with ``--jobs 1`` against ``--jobs 2``, or on Dask.

Makes a folder of images, deterministically: crops of the photos in
``--photos`` (default ``../shared/corpus/photos`` when it exists), or, without
photos or with ``--synthetic``, drawn images (a gradient, shapes, a blur and
some noise).  Each image is 256 to 512 pixels a side.  One deliberately broken
file (a truncated PNG) joins them.

Then it runs the whole command once per job count, as a subprocess of this
process (``python -m kmcodec encode DIR -o OUT --jobs N -k K``, output captured,
so no progress bar), and reports for each the wall time, the CPU time of the
command and its workers (CPU / wall: the cores it kept busy), and the load
averages before and after.  With ``--scheduler local`` (or an address) each job
count is run twice, with the local worker pool and with ``--scheduler``
(needs ``pip install '.[dask]'``), and the outputs of all runs are compared.  It checks
that every good image was encoded, that the outputs of both runs are byte for
byte the same, and that the command exited 1 naming the broken file.  Other
work on the machine slows either run: read the load averages beside the ratio.

Usage::

    python tools/bench_batch.py                         # 200 images, -k 64, --jobs 1 then 2
    python tools/bench_batch.py --images 40 --synthetic
    python tools/bench_batch.py --photos ~/pictures --keep /tmp/batch
    python tools/bench_batch.py --jobs 2 --scheduler local   # the local pool against a Dask LocalCluster
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
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


def run(source: Path, output: Path, jobs: int, colors: int, scheduler: str | None = None) -> dict:
    """Run the whole batch command once; return its wall and CPU seconds, exit status and stderr."""
    command = [sys.executable, "-m", "kmcodec", "encode", str(source), "-o", str(output)]
    command += ["-k", str(colors)]
    if scheduler is None or scheduler == "local":
        command += ["--jobs", str(jobs)]
    if scheduler is not None:
        command += ["--scheduler", scheduler]
    load_before = os.getloadavg()
    cpu_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    cpu_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (cpu_after.ru_utime - cpu_before.ru_utime) + (cpu_after.ru_stime - cpu_before.ru_stime)
    return {
        "name": f"--jobs {jobs}" + (f" --scheduler {scheduler}" if scheduler else ""),
        "jobs": jobs,
        "wall": wall,
        "cpu": cpu,
        "status": done.returncode,
        "stdout": done.stdout,
        "stderr": done.stderr,
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
    parser.add_argument("--scheduler", help="also run each job count with --scheduler local or tcp://HOST:PORT")
    args = parser.parse_args()

    photos = []
    if not args.synthetic and args.photos.is_dir():
        photos = sorted(p for p in args.photos.iterdir() if p.suffix.lower() in {".png", ".jpg", ".jpeg"})
    work = args.keep or Path(tempfile.mkdtemp(prefix="kmc-bench-batch-"))
    source = work / "images"
    schedulers = [None] if args.scheduler is None else [None, args.scheduler]
    configs = [(j, sched) for j in args.jobs for sched in schedulers]

    def out_dir(jobs: int, scheduler: str | None, attempt: int) -> Path:
        return work / f"out-jobs{jobs}{'-dask' if scheduler else ''}-{attempt}"

    try:
        shutil.rmtree(source, ignore_errors=True)
        source.mkdir(parents=True)
        start = time.perf_counter()
        make_images(source, args.images, photos, args.seed)
        kind = f"crops of {len(photos)} photos in {args.photos}" if photos else "synthetic drawings"
        size = sum(p.stat().st_size for p in source.iterdir())
        print(f"{args.images} images + 1 broken ({kind}), {size:,} bytes, made in {time.perf_counter() - start:.1f} s")
        print(f"command: {sys.executable} -m kmcodec encode {source} -o OUT --jobs N -k {args.colors}")

        results: dict[tuple[int, str | None], list[dict]] = {c: [] for c in configs}
        for attempt in range(args.repeat):  # interleaved, so a busy spell on the machine hits every config
            for jobs, scheduler in configs:
                folder = out_dir(jobs, scheduler, attempt)
                shutil.rmtree(folder, ignore_errors=True)
                results[jobs, scheduler].append(run(source, folder, jobs, args.colors, scheduler))
        ok = True
        best = {}
        for config, runs in results.items():
            for attempt, r in enumerate(runs):
                (b1, b5, b15), (a1, a5, a15) = r["load"]
                print(
                    f"{r['name']} (run {attempt + 1}): {r['wall']:7.2f} s wall, {r['cpu']:7.2f} s CPU "
                    f"({r['cpu'] / r['wall']:.2f} cores busy), exit {r['status']}, "
                    f"load {b1:.2f} {b5:.2f} {b15:.2f} -> {a1:.2f} {a5:.2f} {a15:.2f}"
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
        if len(best) >= 2:
            base = next(iter(best.values()))
            for r in list(best.values())[1:]:
                print(f"best of {args.repeat}: {base['name']} / {r['name']}: {base['wall'] / r['wall']:.2f} x speed-up")
        return 0 if ok else 1
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
