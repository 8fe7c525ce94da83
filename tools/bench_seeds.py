"""How far the seed moves kmcodec's quality at equal k: SSIMULACRA2 against pngquant over several seeds.

k-means finds a local optimum, and which one depends on the seed.  At small
k the SSIMULACRA2 of one image can move by several points from one seed to
the next (issue 18 found wiki007 at k = 16 from -3.2 to -0.8 against
``pngquant --nofs``), so a worst case measured at one seed says little.  This
benchmark encodes every image at one k with seeds 0 .. N-1 (``kmc encode``'s
defaults, or ``--dither``) and reports, per seed, the median and the worst
image of "ours minus pngquant", and how many images fall more than
``--margin`` points below.  pngquant (``--nofs``, or its default dithering
with ``--dither``) is deterministic, so it runs once per image.

``--starts 3,8`` also runs each seed with ``kmcodec.quantize.STARTS`` (the
k-means++ starts the fit keeps the best of) set to each value: a lab knob,
for measuring a change to the fit before making it.

Example (25 photos, k = 16, 10 seeds: about 10 minutes on 2 cores)::

    python tools/bench_seeds.py ../shared/corpus/photos --k 16 --seeds 10 --jobs 2 --json seeds.json
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from benchlib import find_images
from PIL import Image

import kmcodec
from kmcodec import metrics, quantize, threads

#: Issue 18: no image more than this many SSIMULACRA2 points below pngquant at equal k.
MARGIN = 3.0


def pngquant(rgb: np.ndarray, k: int, dither: bool) -> np.ndarray:
    """pngquant's palette image of *rgb* at *k* colours (its default dithering, or ``--nofs``)."""
    exe = shutil.which("pngquant")
    if exe is None:
        sys.exit("bench_seeds: pngquant is not on PATH (Debian: apt-get install pngquant)")
    with tempfile.TemporaryDirectory(prefix="bench_seeds-") as tmp:
        source, out = Path(tmp) / "in.png", Path(tmp) / "out.png"
        Image.fromarray(rgb).save(source, compress_level=1)
        command = [exe, *([] if dither else ["--nofs"]), "--force", "--output", str(out), str(k), "--", str(source)]
        subprocess.run(command, check=True, capture_output=True)
        with Image.open(out) as image:
            return np.asarray(image.convert("RGB"))


def image_scores(
    path: Path, k: int, seeds: int, starts: list[int] | None, dither: bool, peer: Callable = pngquant
) -> dict:
    """One image: the peer's score, and ours (score, bytes) for every variant and seed ("3/0": starts 3, seed 0)."""
    with Image.open(path) as image:
        rgb = np.asarray(image.convert("RGB"))
    scores: dict = {"image": path.name, "peer": metrics.ssimulacra2(rgb, peer(rgb, k, dither)), "ours": {}}
    default = quantize.STARTS
    try:
        for variant in starts or [default]:
            quantize.STARTS = variant
            for seed in range(seeds):
                data = kmcodec.encode(rgb, colors=k, seed=seed, dither=1.0 if dither else 0.0)
                scores["ours"][f"{variant}/{seed}"] = [metrics.ssimulacra2(rgb, kmcodec.decode(data)), len(data)]
    finally:
        quantize.STARTS = default
    return scores


def summarize(records: list[dict], margin: float = MARGIN) -> dict:
    """Per variant and seed: the median and worst of ours minus the peer, and the images below -margin."""
    variants: dict[str, dict[int, dict]] = {}
    for name in records[0]["ours"]:
        variant, seed = name.split("/")
        diffs = {r["image"]: r["ours"][name][0] - r["peer"] for r in records}
        worst = min(diffs, key=diffs.get)
        variants.setdefault(variant, {})[int(seed)] = {
            "median": statistics.median(diffs.values()),
            "worst": diffs[worst],
            "worst_image": worst,
            "below": sorted(image for image, d in diffs.items() if d < -margin),
            "bytes": sum(r["ours"][name][1] for r in records),
        }
    return variants


def report(summary: dict, k: int, dither: bool, margin: float = MARGIN) -> str:
    peer = "pngquant (dithered)" if dither else "pngquant --nofs"
    lines = []
    for variant, seeds in summary.items():
        lines += [
            f"## STARTS = {variant}: kmc encode{' --dither' if dither else ''} -k {k} minus {peer} (SSIMULACRA2)",
            "",
            f"| seed | median | worst (image) | images more than {margin:g} below | total bytes |",
            "|---|---|---|---|---|",
        ]
        for seed, s in sorted(seeds.items()):
            below = ", ".join(s["below"]) or "none"
            lines.append(
                f"| {seed} | {s['median']:+.2f} | {s['worst']:+.2f} ({s['worst_image']}) | {below} | {s['bytes']:,} |"
            )
        medians = [s["median"] for s in seeds.values()]
        worsts = [s["worst"] for s in seeds.values()]
        missed = sum(bool(s["below"]) for s in seeds.values())
        lines += [
            "",
            f"Over {len(seeds)} seeds: median {statistics.mean(medians):+.2f} on average "
            f"({min(medians):+.2f} to {max(medians):+.2f}); worst {statistics.mean(worsts):+.2f} on average "
            f"({min(worsts):+.2f} to {max(worsts):+.2f}); seeds with an image more than {margin:g} below: "
            f"{missed} of {len(seeds)}.",
            "",
        ]
    return "\n".join(lines)


def _one(args: tuple, peer: Callable = pngquant) -> dict:
    path, k, seeds, starts, dither = args
    with threads.limited(1):  # the jobs fill the cores
        return image_scores(path, k, seeds, starts, dither, peer)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path, help="a folder of images (PNG, JPEG, ...)")
    parser.add_argument("--k", type=int, default=16, help="the palette size (default 16)")
    parser.add_argument("--seeds", type=int, default=10, help="seeds 0 .. N-1 (default 10)")
    parser.add_argument("--starts", help="comma-separated values of kmcodec.quantize.STARTS to run (lab knob)")
    parser.add_argument("--dither", action="store_true", help="kmc encode --dither against pngquant's dithering")
    parser.add_argument("--limit", type=int, help="only the first N images")
    parser.add_argument("--jobs", type=int, default=1, help="images measured at once (default 1)")
    parser.add_argument("--json", type=Path, help="write every score here")
    args = parser.parse_args(argv)
    starts = [int(v) for v in args.starts.split(",")] if args.starts else None
    paths = find_images(args.folder, args.limit)
    work = [(path, args.k, args.seeds, starts, args.dither) for path in paths]
    with ProcessPoolExecutor(args.jobs) as pool:
        records = []
        for record in pool.map(_one, work):
            records.append(record)
            print(f"  {record['image']}: done", file=sys.stderr, flush=True)
    summary = summarize(records)
    print(report(summary, args.k, args.dither))
    if args.json:
        args.json.write_text(json.dumps({"k": args.k, "dither": args.dither, "records": records, "summary": summary}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
