"""Shared palettes by eye: ``kmc encode --shared-palette`` against each frame's own palette.

A shared palette is fitted to a set of images together (animation frames,
sprite sheets, a catalogue) and every image is then coded with it.  This
benchmark makes such a set from each photo, FRAMES crops of 3/4 its size
panning from the top left to the bottom right (a camera pan), and codes
the frames at each k three ways:

``per-file``
    each frame alone with ``kmc encode``'s defaults (its own palette): the
    quality a shared palette gives up for sharing.
``shared (eye)``
    ``kmc encode --shared-palette``'s fit: Oklab, masking, each frame
    mapped in Oklab with ``kmc encode``'s labels (``batch`` makes the
    options, as the command line does).
``shared (srgb)``
    the PSNR-first shared fit, ``--shared-palette --colorspace srgb``
    (the default before 2026-12-07).

For each, the mean SSIMULACRA2 and PSNR over the frames and the total
bytes, per photo; then medians over the photos.

Example (25 photos, k = 16, 64, 256: about 15 minutes on 2 cores)::

    python tools/bench_shared.py ../shared/corpus/photos --jobs 2 --json shared.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from benchlib import find_images
from PIL import Image

import kmcodec
from kmcodec import batch, metrics, threads
from kmcodec.options import EncodeOptions

FRAMES = 6
KS = (16, 64, 256)
WAYS = ("per-file", "shared (eye)", "shared (srgb)")


def frames_of(rgb: np.ndarray, count: int = FRAMES) -> list[np.ndarray]:
    """*count* crops of 3/4 the size of *rgb*, panning from its top left corner to its bottom right."""
    height, width = rgb.shape[:2]
    h, w = height * 3 // 4, width * 3 // 4
    steps = max(1, count - 1)
    return [
        np.ascontiguousarray(rgb[(height - h) * i // steps :][:h, (width - w) * i // steps :][:, :w])
        for i in range(count)
    ]


def _options(way: str, k: int, paths: list[Path]) -> EncodeOptions | None:
    if way == "per-file":
        return None
    colorspace = "srgb" if way == "shared (srgb)" else None
    return batch._with_shared_palette(EncodeOptions(colors=k, colorspace=colorspace), [str(p) for p in paths], None)


def photo_scores(path: Path, ks: tuple[int, ...] = KS, count: int = FRAMES) -> dict:
    """One photo's frames coded every way at every k: mean SSIMULACRA2, mean PSNR, total bytes."""
    with Image.open(path) as image:
        frames = frames_of(np.asarray(image.convert("RGB")), count)
    scores: dict = {"image": path.name, "k": {}}
    with tempfile.TemporaryDirectory(prefix="bench_shared-") as tmp:
        paths = [Path(tmp) / f"frame{i}.png" for i in range(len(frames))]
        for frame, frame_path in zip(frames, paths, strict=True):
            Image.fromarray(frame).save(frame_path, compress_level=1)
        for k in ks:
            for way in WAYS:
                options = _options(way, k, paths)
                ssim2, psnr, size = [], [], 0
                for frame_path, frame in zip(paths, frames, strict=True):
                    chosen = options if options is not None else EncodeOptions(colors=k)
                    data = kmcodec.encode_with(frame_path, chosen)
                    out = kmcodec.decode(data)
                    ssim2.append(metrics.ssimulacra2(frame, out))
                    psnr.append(metrics.psnr(frame, out))
                    size += len(data)
                scores["k"].setdefault(str(k), {})[way] = {
                    "ssimulacra2": statistics.mean(ssim2),
                    "psnr": statistics.mean(psnr),
                    "bytes": size,
                }
    return scores


def report(records: list[dict]) -> str:
    lines = [
        "| k | way | SSIMULACRA2 | PSNR (dB) | bytes / per-file | SSIMULACRA2 - per-file (worst photo) |",
        "|---|---|---|---|---|---|",
    ]
    for k in records[0]["k"]:
        for way in WAYS:
            rows = [(r["image"], r["k"][k][way], r["k"][k]["per-file"]) for r in records]
            gap = {name: row["ssimulacra2"] - own["ssimulacra2"] for name, row, own in rows}
            worst = min(gap, key=gap.get)
            lines.append(
                f"| {k} | {way} | {statistics.median(row['ssimulacra2'] for _, row, _ in rows):.2f} "
                f"| {statistics.median(row['psnr'] for _, row, _ in rows):.2f} "
                f"| {statistics.median(row['bytes'] / own['bytes'] for _, row, own in rows):.3f} "
                f"| {statistics.median(gap.values()):+.2f} ({gap[worst]:+.2f} {worst}) |"
            )
    return "\n".join(lines) + f"\n\nMedians over {len(records)} photos, {FRAMES} frames each.\n"


def _one(path: Path) -> dict:
    with threads.limited(1):  # the jobs fill the cores
        return photo_scores(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path, help="a folder of photos (PNG, JPEG, ...)")
    parser.add_argument("--limit", type=int, help="only the first N photos")
    parser.add_argument("--jobs", type=int, default=1, help="photos measured at once (default 1)")
    parser.add_argument("--json", type=Path, help="write every score here")
    args = parser.parse_args(argv)
    records = []
    with ProcessPoolExecutor(args.jobs) as pool:
        for record in pool.map(_one, find_images(args.folder, args.limit)):
            records.append(record)
            print(f"  {record['image']}: done", file=sys.stderr, flush=True)
    print(report(records))
    if args.json:
        args.json.write_text(json.dumps(records))
    return 0


if __name__ == "__main__":
    sys.exit(main())
