#!/usr/bin/env python3
"""Peak resident memory of kmcodec's encoder and decoder on 12 and 100 megapixel images, beside pngquant.

    python tools/bench_memory.py                      # 12 MP and 100 MP, from the first corpus photo
    python tools/bench_memory.py --sizes 12 --photo some.png

Every case runs in a fresh child process, and its peak resident set is
the child's own ``ru_maxrss`` as ``os.wait4`` reports it (the kernel's
high-water mark, so page-cache effects and other processes do not count).
The cases:

* ``fixed``: ``import kmcodec``, and the numba kernels loaded and run by an
  encode and a decode of a 1 x 2 image: what any use costs before the image;
* ``kmc encode``: the command line, PNG in, .kmc out;
* ``kmc decode -> .png``: the command line, streamed strip by strip;
* ``kmcodec.decode``: the whole image as an array (``kmcodec.load``);
* ``pngquant --nofs``: the same PNG to a 64-colour PNG, without dithering.

Each row prints the peak beside the raw image size (W x H x 3 bytes) and
(peak - fixed) / raw: the memory the image itself costs, in raw images
(for pngquant, which has no Python to load, peak / raw).

The test images are made deterministically: a photo (default: the first in
``../shared/corpus/photos``) scaled to a 2000-pixel-wide tile and tiled with
mirrored copies, saved as PNG (zlib level 1) in a temporary folder that is
removed at the end.  The 100 MP case takes minutes; the machine's other load
changes times, not peaks.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_PHOTOS = ROOT.parent / "shared" / "corpus" / "photos"
sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchlib import find_images  # noqa: E402

#: Megapixels -> (width, height).
SIZES = {12: (4000, 3000), 100: (10000, 10000)}
MIB = 2**20

#: Two colours: a one-colour image codes no labels and would not load the kernels.
FIXED = """
import io, sys
import numpy as np, kmcodec
image = np.zeros((1, 2, 3), np.uint8)
image[0, 1] = 255
data = kmcodec.encode(image, 2, method="cm")
kmcodec.decode(data)
kmcodec.decode_to_png(data, io.BytesIO())
assert "numba" in sys.modules
"""

MAKE_IMAGE = """
import sys
import numpy as np
from PIL import Image
photo, width, height, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
with Image.open(photo) as im:
    im = im.convert("RGB")
    tile = np.asarray(im.resize((2000, round(2000 * im.height / im.width)), Image.Resampling.BICUBIC))
block = np.concatenate([np.concatenate([tile, tile[:, ::-1]], 1), np.concatenate([tile[::-1], tile[::-1, ::-1]], 1)])
reps = (-(-height // block.shape[0]), -(-width // block.shape[1]), 1)
Image.fromarray(np.tile(block, reps)[:height, :width]).save(out, compress_level=1)
"""


def run_child(argv: list[str], env: dict[str, str]) -> tuple[float, int]:
    """Run *argv*; return (seconds, peak resident set in bytes).  Fails loudly if the child does."""
    start = time.perf_counter()
    process = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - start
    process.returncode = os.waitstatus_to_exitcode(status)
    stderr = process.stderr.read().decode(errors="replace")
    process.stderr.close()
    if process.returncode != 0:
        msg = f"{' '.join(argv)} failed ({process.returncode}): {stderr.strip()}"
        raise SystemExit(msg)
    return seconds, usage.ru_maxrss * 1024  # KiB on Linux


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--photo", type=Path, default=DEFAULT_PHOTOS, help="photo (or folder: its first image)")
    parser.add_argument("--sizes", default="12,100", help="megapixels to run, of 12 and 100 (default 12,100)")
    parser.add_argument("-k", "--colors", type=int, default=64, help="palette size (default 64)")
    parser.add_argument("--tmp", type=Path, default=None, help="folder for the temporary files (default: system)")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    if not set(sizes) <= set(SIZES):
        parser.error(f"--sizes takes {', '.join(map(str, SIZES))}")
    photo = find_images(args.photo, 1)[0]
    pngquant = shutil.which("pngquant")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    py = sys.executable
    k = str(args.colors)

    run_child([py, "-c", FIXED], env)  # compiles or loads the numba cache once
    _, fixed = run_child([py, "-c", FIXED], env)
    print(f"photo {photo.name}, k = {k}; peaks are each child's ru_maxrss")
    print(f"{'case':<24} {'image':>17} {'seconds':>8} {'peak MiB':>9} {'raw MiB':>8} {'(peak-fixed)/raw':>17}")
    print(f"{'fixed (import + kernels)':<24} {'2 x 1':>17} {'':>8} {fixed / MIB:>9.0f}")
    with tempfile.TemporaryDirectory(prefix="kmc-bench-memory-", dir=args.tmp) as tmp:
        for mp in sizes:
            width, height = SIZES[mp]
            raw = width * height * 3
            src, kmc, out = (os.path.join(tmp, f"{mp}mp{ext}") for ext in (".png", ".kmc", "-decoded.png"))
            run_child([py, "-c", MAKE_IMAGE, str(photo), str(width), str(height), src], env)
            cases = [
                ("kmc encode", [py, "-m", "kmcodec", "encode", src, kmc, "-k", k, "-f", "-q"], fixed),
                ("kmc decode -> .png", [py, "-m", "kmcodec", "decode", kmc, out, "-f", "-q"], fixed),
                ("kmcodec.decode", [py, "-c", f"import kmcodec; kmcodec.load({kmc!r})"], fixed),
            ]
            if pngquant:
                cases.append(("pngquant --nofs", [pngquant, "--nofs", "-f", "-o", out, k, src], 0))
            for name, command, base in cases:
                seconds, peak = run_child(command, env)
                image = f"{width} x {height}"
                ratio = (peak - base) / raw
                print(f"{name:<24} {image:>17} {seconds:>8.1f} {peak / MIB:>9.0f} {raw / MIB:>8.0f} {ratio:>17.2f}")
                sys.stdout.flush()
            for path in (src, kmc, out):
                if os.path.exists(path):
                    os.unlink(path)
    if not pngquant:
        print("pngquant not found: its rows are missing")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
