"""``--rdo`` by eye: the bytes it saves at equal SSIMULACRA2 against the plain default, over k = 16-256.

For every image and each lambda of ``--lambdas``, ``kmcodec.encode(rgb, k,
rdo=lambda)`` and the plain ``kmcodec.encode(rgb, k, rdo=0)`` (the default fit, nearest labels)
at each k of ``--ks``: whole-file bytes and the decoded image's
SSIMULACRA2 (:func:`kmcodec.metrics.ssimulacra2`).  Reported per lambda:
the median (and worst) over the images of the Bjøntegaard rate difference
of the RDO curve against the plain one on SSIMULACRA2
(``tools/quality_curves.py``'s :func:`bd_rate`; below 0: fewer bytes for
the same quality), and per k the median change of SSIMULACRA2 and the
median bytes ratio against the plain file at the same k.

Images run in ``--jobs`` processes, each image's points in one process.

Usage::

    python tools/bench_rdo_curves.py /tmp/kmc-imageset/photos --limit 8 --lambdas 5,15
"""

from __future__ import annotations

import argparse
import statistics
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from benchlib import find_images
from PIL import Image
from quality_curves import DEFAULT_KS, bd_rate

import kmcodec
from kmcodec import metrics


def curves(path: Path, ks: list[int], lambdas: list[float]) -> dict[float, list[tuple[int, float]]]:
    """(bytes, SSIMULACRA2) at each k for the plain default (lambda 0) and each lambda, on one image."""
    with Image.open(path) as image:
        rgb = np.asarray(image.convert("RGB"))
    out = {}
    for lam in [0.0, *lambdas]:
        points = []
        for k in ks:
            data = kmcodec.encode(rgb, k, rdo=lam)  # 0: nearest labels (None would be the default's RDO from k = 48)
            points.append((len(data), metrics.ssimulacra2(rgb, kmcodec.decode(data))))
        out[lam] = points
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path, help="a folder of images, or one image")
    parser.add_argument("--limit", type=int, default=None, help="only the first N images (sorted by name)")
    parser.add_argument("--lambdas", default="5,15", help="comma-separated lambdas (default 5,15)")
    parser.add_argument("--ks", default=",".join(map(str, DEFAULT_KS)), help="palette sizes (default 16 ... 256)")
    parser.add_argument("--jobs", type=int, default=2, help="worker processes (default 2)")
    args = parser.parse_args()
    lambdas = [float(x) for x in args.lambdas.split(",")]
    ks = [int(k) for k in args.ks.split(",")]
    paths = find_images(args.folder, args.limit)
    with ProcessPoolExecutor(args.jobs) as pool:
        results = list(pool.map(curves, paths, [ks] * len(paths), [lambdas] * len(paths)))
    print(f"{len(paths)} images, k = {', '.join(map(str, ks))}, kmcodec {kmcodec.__version__}")
    for lam in lambdas:
        rates = [r for r in (bd_rate(res[lam], res[0.0]) for res in results) if r is not None]
        delta = [statistics.median(res[lam][i][1] - res[0.0][i][1] for res in results) for i in range(len(ks))]
        ratio = [statistics.median(res[lam][i][0] / res[0.0][i][0] for res in results) for i in range(len(ks))]
        print(
            f"--rdo {lam:g}: BD-rate on SSIMULACRA2 against the plain default, median {statistics.median(rates):+.2f} %"
            f" (worst {max(rates):+.2f} %, {len(rates)} images)"
        )
        print("  SSIMULACRA2 change per k: " + " ".join(f"{d:+.1f}" for d in delta))
        print("  bytes / plain per k:      " + " ".join(f"{b:.2f}" for b in ratio))


if __name__ == "__main__":
    main()
