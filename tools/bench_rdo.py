"""Rate-distortion-optimised labels against plain nearest-colour labels: bytes at equal PSNR.

For every image:

plain curve
    ``kmcodec.encode(img, k, rdo=0)`` (nearest labels; the default has RDO from
    48 colours up) at each k of ``--ks``: whole-file bytes and
    PSNR (the MADE chunk's, which is the decoded image's; an exact palette,
    PSNR inf, is left off the curve).
RDO points
    at each k of ``--rdo-ks``, the palette of the plain file at that k
    (``palette=``, so only the labels differ) encoded with each lambda of
    ``--lambdas``.
equal-PSNR ratio
    the point's bytes over the plain curve's bytes at the same PSNR,
    interpolated linearly in (PSNR, log bytes) between the two plain points
    around it.  A point outside the curve's PSNR range has no ratio ("out").
    Below 1: RDO gives fewer bytes than plain labels for the same PSNR.

Printed per (k, lambda): medians over the images of the PSNR change and the
bytes ratio against plain at the same k, the median (and worst) ratio at
equal PSNR over the images where it exists, and the encode time against the
plain encode at the same palette (best of ``--repeat``, both from the
array in memory, both through ``palette=`` so neither fits a palette).

With ``--whole FILE`` it only times whole encodes of FILE (a 12 MP photo,
say; palette fit included) at each k of ``--rdo-ks``, plain and with each
lambda, best of ``--repeat``, and prints bytes, PSNR and time ratios.

Usage::

    python tools/bench_rdo.py /work/shared/corpus/photos --limit 12
    python tools/bench_rdo.py /tmp/kmc-imageset/graphics --ks 2 4 8 16 32 64 128 256 --rdo-ks 16 64 256
    python tools/bench_rdo.py --whole /tmp/photo-12mp.png --rdo-ks 64 256 --lambdas 10 --repeat 3
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from pathlib import Path

import numpy as np
from benchlib import find_images
from PIL import Image

import kmcodec

DEFAULT_KS = [4, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256]
DEFAULT_RDO_KS = [32, 64, 128, 256]
DEFAULT_LAMBDAS = [2.0, 5.0, 10.0, 20.0, 40.0]


def best_time(fn, repeat: int) -> tuple[float, bytes]:
    best, out = math.inf, b""
    for _ in range(repeat):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return best, out


def equal_psnr_bytes(curve: list[tuple[float, int]], psnr: float) -> float | None:
    """Bytes of the plain curve at *psnr*, interpolated in log bytes; None outside its range."""
    points = sorted((p, math.log(b)) for p, b in curve if math.isfinite(p))
    if len(points) < 2 or not points[0][0] <= psnr <= points[-1][0]:
        return None
    xs, ys = zip(*points, strict=True)
    return math.exp(float(np.interp(psnr, xs, ys)))


def run_image(path: Path, ks: list[int], rdo_ks: list[int], lambdas: list[float], repeat: int) -> list[dict]:
    img = np.asarray(Image.open(path).convert("RGB"))
    curve, palettes, plain = [], {}, {}
    for k in sorted(set(ks) | set(rdo_ks)):
        data = kmcodec.encode(img, k, rdo=0)
        info = kmcodec.read_info(data)
        plain[k] = (len(data), info.psnr)
        palettes[k] = kmcodec.read_palette(data)
        if k in ks:
            curve.append((info.psnr, len(data)))
    rows = []
    for k in rdo_ks:
        t_plain, _ = best_time(lambda k=k: kmcodec.encode(img, palette=palettes[k]), repeat)
        for lam in lambdas:
            t_rdo, data = best_time(lambda k=k, lam=lam: kmcodec.encode(img, palette=palettes[k], rdo=lam), repeat)
            psnr = kmcodec.read_info(data).psnr
            at_psnr = equal_psnr_bytes(curve, psnr)
            rows.append(
                {
                    "image": path.name,
                    "k": k,
                    "lambda": lam,
                    "bytes": len(data),
                    "psnr": psnr,
                    "plain_bytes": plain[k][0],
                    "plain_psnr": plain[k][1],
                    "equal_psnr_ratio": None if at_psnr is None else len(data) / at_psnr,
                    "time_ratio": t_rdo / t_plain,
                }
            )
    return rows


def median(values: list[float]) -> float:
    return statistics.median(values) if values else math.nan


def report(rows: list[dict]) -> None:
    print(
        f"{'k':>4} {'lambda':>6} | {'dPSNR dB':>8} {'bytes/plain':>11} | "
        f"{'bytes at equal PSNR':>19} {'worst':>6} {'n':>5} | {'time/plain':>10}"
    )
    for k, lam in sorted({(r["k"], r["lambda"]) for r in rows}):
        group = [r for r in rows if r["k"] == k and r["lambda"] == lam]
        finite = [r for r in group if math.isfinite(r["psnr"]) and math.isfinite(r["plain_psnr"])]
        ratios = [r["equal_psnr_ratio"] for r in group if r["equal_psnr_ratio"] is not None]
        dpsnr = median([r["psnr"] - r["plain_psnr"] for r in finite])
        worst = max(ratios) if ratios else math.nan
        print(
            f"{k:>4} {lam:>6g} | {dpsnr:>+8.2f} {median([r['bytes'] / r['plain_bytes'] for r in group]):>11.3f} | "
            f"{median(ratios):>19.3f} {worst:>6.3f} {len(ratios):>2}/{len(group):<2} | "
            f"{median([r['time_ratio'] for r in group]):>10.2f}"
        )


def time_whole(path: Path, ks: list[int], lambdas: list[float], repeat: int) -> None:
    """Whole encodes of the file at *path*, plain and with each lambda: bytes, PSNR, seconds, ratios."""
    print(f"{path}: whole kmcodec.encode(path, k, rdo=0 or lambda), best of {repeat}")
    print(f"{'k':>4} {'lambda':>6} | {'bytes':>10} {'PSNR':>6} {'seconds':>8} | {'bytes/plain':>11} {'time/plain':>10}")
    for k in ks:
        t_plain, plain = best_time(lambda k=k: kmcodec.encode(str(path), k, rdo=0), repeat)
        print(f"{k:>4} {0:>6g} | {len(plain):>10,} {kmcodec.read_info(plain).psnr:>6.2f} {t_plain:>8.2f} |")
        for lam in lambdas:
            t, data = best_time(lambda k=k, lam=lam: kmcodec.encode(str(path), k, rdo=lam), repeat)
            print(
                f"{k:>4} {lam:>6g} | {len(data):>10,} {kmcodec.read_info(data).psnr:>6.2f} {t:>8.2f} | "
                f"{len(data) / len(plain):>11.3f} {t / t_plain:>10.2f}",
                flush=True,
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path, nargs="?", help="a folder of images (or one image)")
    parser.add_argument("--limit", type=int, default=None, help="at most this many images (by name)")
    parser.add_argument("--ks", type=int, nargs="+", default=DEFAULT_KS, help="palette sizes of the plain curve")
    parser.add_argument("--rdo-ks", type=int, nargs="+", default=DEFAULT_RDO_KS, help="palette sizes for RDO")
    parser.add_argument("--lambdas", type=float, nargs="+", default=DEFAULT_LAMBDAS, help="RDO lambdas")
    parser.add_argument("--repeat", type=int, default=1, help="timing: best of this many encodes")
    parser.add_argument("--json", type=Path, default=None, help="also write every point to this JSON file")
    parser.add_argument("--whole", type=Path, default=None, help="only time whole encodes of this image")
    args = parser.parse_args()
    if args.whole is not None:
        time_whole(args.whole, args.rdo_ks, args.lambdas, args.repeat)
        return
    if args.folder is None:
        parser.error("give a folder of images, or --whole FILE")
    rows = []
    paths = find_images(args.folder, args.limit)
    for i, path in enumerate(paths, 1):
        start = time.perf_counter()
        rows += run_image(path, args.ks, args.rdo_ks, args.lambdas, args.repeat)
        print(f"[{i}/{len(paths)}] {path.name} {time.perf_counter() - start:.1f} s", flush=True)
    print(f"\n{len(paths)} images from {args.folder}; plain curve k = {' '.join(map(str, args.ks))}")
    report(rows)
    if args.json is not None:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
