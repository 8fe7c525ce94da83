#!/usr/bin/env python3
"""Peak resident memory and time of kmcodec's encoder and decoder on 12 to 100 megapixel images, beside pngquant.

    python tools/bench_memory.py                      # 12 MP and 100 MP, from the first corpus photo
    python tools/bench_memory.py --sizes 12 --photo some.png
    python tools/bench_memory.py --sizes 12,24 -k 16,256 --cases encode --repeat 3   # encode speed vs pngquant

Every case runs in a fresh child process, and its peak resident set is
the child's own ``ru_maxrss`` as ``os.wait4`` reports it (the kernel's
high-water mark, so page-cache effects and other processes do not count).
The cases:

* ``fixed``: ``import kmcodec``, and every compiled kernel run by
  encodes and decodes of a 1 x 2 image and of 192 x 192 noise: what any use
  costs before the image (the issue's "1 x 1 image" would load no kernel);
* ``kmc encode``: the command line, PNG in, .kmc out;
* ``kmc decode -> .png``: the command line, streamed strip by strip;
* ``kmcodec.decode``: the whole image as an array (``kmcodec.load``);
* ``pngquant --nofs``: the same PNG to a 64-colour PNG, without dithering.

Each row prints the peak beside the raw image size (W x H x 3 bytes) and
(peak - fixed) / raw: the memory the image itself costs, in raw images
(for pngquant, which has no Python to load, peak / raw).  With
``--repeat N`` each command runs N times, interleaved with the others, and
the row shows the fastest run (peaks barely vary); a last column gives
``kmc encode`` time / ``pngquant`` time for the same image and k, both
whole commands (PNG in, file out).

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
SIZES = {12: (4000, 3000), 24: (6000, 4000), 100: (10000, 10000)}
CASES = ("encode", "decode", "pngquant")
MIB = 2**20

#: Every compiled kernel loaded, on images too small to matter: a 1 x 2 image
#: loads the label coder (a one-colour image codes no labels), and 192 x 192
#: noise (36,864 colours, 110 KiB) the quantizer's kernels for every level.
FIXED = """
import io
import numpy as np, kmcodec
image = np.zeros((1, 2, 3), np.uint8)
image[0, 1] = 255
data = kmcodec.encode(image, 2, method="cm")
kmcodec.decode(data)
kmcodec.decode_to_png(data, io.BytesIO())
noise = np.random.default_rng(0).integers(0, 256, (192, 192, 3), dtype=np.uint8)
kmcodec.decode(kmcodec.encode(noise, 16))
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
    parser.add_argument("--sizes", default="12,100", help="megapixels to run, of 12, 24 and 100 (default 12,100)")
    parser.add_argument("-k", "--colors", default="64", help="palette sizes, comma-separated (default 64)")
    parser.add_argument("--cases", default=",".join(CASES), help=f"of {', '.join(CASES)} (default all)")
    parser.add_argument("--repeat", type=int, default=1, help="runs per command; the fastest is shown (default 1)")
    parser.add_argument("--tmp", type=Path, default=None, help="folder for the temporary files (default: system)")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    if not set(sizes) <= set(SIZES):
        parser.error(f"--sizes takes {', '.join(map(str, SIZES))}")
    wanted = set(args.cases.split(","))
    if not wanted <= set(CASES):
        parser.error(f"--cases takes {', '.join(CASES)}")
    photo = find_images(args.photo, 1)[0]
    pngquant = shutil.which("pngquant")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    py = sys.executable
    run_child([py, "-c", FIXED], env)  # warms the page cache and writes the byte-code caches
    _, fixed = run_child([py, "-c", FIXED], env)
    print(f"photo {photo.name}; peaks are each child's ru_maxrss; seconds the fastest of {args.repeat}")
    print(
        f"{'case':<24} {'k':>5} {'image':>13} {'seconds':>8} {'peak MiB':>9} {'raw MiB':>8} "
        f"{'(peak-fixed)/raw':>17} {'kmc/pngquant':>13}"
    )
    print(f"{'fixed (import + kernels)':<24} {'':>5} {'2 x 1':>13} {'':>8} {fixed / MIB:>9.0f}")
    with tempfile.TemporaryDirectory(prefix="kmc-bench-memory-", dir=args.tmp) as tmp:
        for mp in sizes:
            width, height = SIZES[mp]
            raw = width * height * 3
            src = os.path.join(tmp, f"{mp}mp.png")
            run_child([py, "-c", MAKE_IMAGE, str(photo), str(width), str(height), src], env)
            for k in args.colors.split(","):
                kmc, out = (os.path.join(tmp, f"{mp}mp-{k}{ext}") for ext in (".kmc", "-decoded.png"))
                cases = []
                if "encode" in wanted or "decode" in wanted:
                    cases.append(("kmc encode", [py, "-m", "kmcodec", "encode", src, kmc, "-k", k, "-f", "-q"], fixed))
                if "decode" in wanted:
                    cases.append(("kmc decode -> .png", [py, "-m", "kmcodec", "decode", kmc, out, "-f", "-q"], fixed))
                    cases.append(("kmcodec.decode", [py, "-c", f"import kmcodec; kmcodec.load({kmc!r})"], fixed))
                if pngquant and "pngquant" in wanted:
                    cases.append(("pngquant --nofs", [pngquant, "--nofs", "-f", "-o", out, k, src], 0))
                best = {name: (float("inf"), 0) for name, _, _ in cases}
                for _ in range(args.repeat):
                    for name, command, _ in cases:
                        seconds, peak = run_child(command, env)
                        best[name] = min(best[name][0], seconds), max(best[name][1], peak)
                for name, _, base in cases:
                    seconds, peak = best[name]
                    ratio = ""
                    if name == "kmc encode" and "pngquant --nofs" in best:
                        ratio = f"{seconds / best['pngquant --nofs'][0]:.2f}"
                    print(
                        f"{name:<24} {k:>5} {f'{width} x {height}':>13} {seconds:>8.1f} {peak / MIB:>9.0f} "
                        f"{raw / MIB:>8.0f} {(peak - base) / raw:>17.2f} {ratio:>13}"
                    )
                    sys.stdout.flush()
                for path in (kmc, out):
                    if os.path.exists(path):
                        os.unlink(path)
            os.unlink(src)
    if not pngquant:
        print("pngquant not found: its rows are missing")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
