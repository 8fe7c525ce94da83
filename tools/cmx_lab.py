"""Label coding lab, round 2 (issue 17): what an integer mixer and an APM stage save, and cost to decode.

Each image is quantized as ``tools/bench_labels.py`` does (``kmcodec.quantize``,
seed 0) and cut into strips of about a million labels, as kmcodec.encode
cuts it.  ``tools/cmx_lab.c`` (compiled here with the system C compiler, ``-O2
-Wall -Wextra``, into ``build/cmx_lab/``) codes every strip with method cm and
with a variant of it in the same range coder, decodes both (best of
``--repeat``, thread CPU time, alternating) and checks the variant's decode.
Variants (see the C file for their exact arithmetic):

null
    the lab's walk with cm's probabilities: the same bytes as cm, so its time
    is the lab's own overhead over the real decoder.
apm, apm-interp
    cm's mean of two counters, then an APM (32 buckets, one load; or 33
    interpolated on the stretched mean), half and half.
mix, mix+pairs
    a logistic mixer of the two counters (and a counter hashed on label
    pairs, in a table of 2^--pair-bits counters), then the interpolated APM.
mix-noapm, mix+pairs-noapm
    the same without the APM.

Reported per class and k: the median (and worst) of variant bytes / cm bytes
and of variant decode time / cm decode time, per image (all its strips).

Usage::

    python tools/make_imageset.py && python tools/cmx_lab.py /tmp/kmc-imageset --photos 8
    python tools/cmx_lab.py ../shared/corpus/photos/wiki001.png --k 16 --variants null,mix+pairs
"""

from __future__ import annotations

import argparse
import ctypes
import os
import statistics
import subprocess
import sys
from pathlib import Path

import numpy as np
from benchlib import find_classes
from PIL import Image

from kmcodec.labels import STRIP_LABELS
from kmcodec.quantize import quantize

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "tools" / "cmx_lab.c"
LIBRARY = ROOT / "build" / "cmx_lab" / "cmx_lab.so"

NULL, APM, APM_INTERP, MIX, PAIRS, NO_APM = 0, 1, 2, 4, 8, 16
VARIANTS = {
    "null": NULL,
    "apm": APM,
    "apm-interp": APM_INTERP,
    "mix": MIX,
    "mix+pairs": MIX | PAIRS,
    "mix-noapm": MIX | NO_APM,
    "mix+pairs-noapm": MIX | PAIRS | NO_APM,
}


def build() -> ctypes.CDLL:
    """Compile cmx_lab.c (when it or the kernels are newer than the library) and load it."""
    csrc = ROOT / "kmcodec" / "csrc"
    deps = [SOURCE, csrc / "cm_model.h", csrc / "cm.c"]
    if not LIBRARY.exists() or LIBRARY.stat().st_mtime < max(p.stat().st_mtime for p in deps):
        LIBRARY.parent.mkdir(parents=True, exist_ok=True)
        cc = os.environ.get("CC", "cc")
        flags = ["-std=c11", "-O2", "-Wall", "-Wextra", "-fPIC", "-shared", "-D_POSIX_C_SOURCE=199309L"]
        subprocess.run([cc, *flags, f"-I{csrc}", str(SOURCE), "-o", str(LIBRARY)], check=True)
    lib = ctypes.CDLL(str(LIBRARY))
    lib.lab_run.restype = ctypes.c_int
    lib.lab_run.argtypes = [ctypes.c_void_p, *(ctypes.c_int64,) * 3, *(ctypes.c_int,) * 5, ctypes.c_void_p]
    return lib


def strips(labels: np.ndarray) -> list[np.ndarray]:
    """The padded uint16 strips kmcodec.encode would cut *labels* into (about STRIP_LABELS each)."""
    h, w = labels.shape
    rows = max(1, STRIP_LABELS // w)
    out = []
    for top in range(0, h, rows):
        part = labels[top : top + rows]
        padded = np.zeros((part.shape[0] + 2, w + 3), np.uint16)
        padded[2:, 2 : w + 2] = part
        out.append(padded)
    return out


def run(lib: ctypes.CDLL, labels: np.ndarray, k: int, mode: int, args: argparse.Namespace) -> tuple[float, float]:
    """(variant bytes / cm bytes, variant decode time / cm decode time) over all strips of one image."""
    totals = np.zeros(4)
    for padded in strips(labels):
        result = np.zeros(6)
        h, w = padded.shape[0] - 2, padded.shape[1] - 3
        status = lib.lab_run(
            padded.ctypes.data, h, w, k, mode, args.lr, args.rate, args.pair_bits, args.repeat, result.ctypes.data
        )
        if status != 0 or result[4] != 1:
            sys.exit(f"cmx_lab: status {status}, exact decode {result[4]}")
        totals += result[:4]
    return totals[1] / totals[0], totals[3] / totals[2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path, help="image set (photos/ and graphics/ classes), a folder or an image")
    parser.add_argument("--k", default="16,64,256", help="palette sizes (default 16,64,256)")
    parser.add_argument("--photos", type=int, default=None, help="use only the first N images of class photos")
    parser.add_argument("--variants", default=",".join(VARIANTS), help=f"of {', '.join(VARIANTS)}")
    parser.add_argument("--lr", type=int, default=16, help="mixer learning rate (default 16)")
    parser.add_argument("--rate", type=int, default=6, help="APM rate shift (default 6)")
    parser.add_argument("--pair-bits", type=int, default=18, help="slots (log2) of the pair table (default 18)")
    parser.add_argument("--repeat", type=int, default=3, help="decodes timed per strip, best kept (default 3)")
    args = parser.parse_args()
    variants = args.variants.split(",")
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        parser.error(f"unknown variants {unknown}")
    ks = [int(k) for k in args.k.split(",")]
    lib = build()
    classes: dict[str, list[Path]] = {}
    for name, path in find_classes(args.folder, None):
        classes.setdefault(name, []).append(path)
    print(f"{'class':9} {'k':>4} {'variant':11} {'bytes/cm median (worst)':>24} {'decode/cm median (worst)':>25}")
    for name, paths in classes.items():
        if name == "photos" and args.photos:
            paths = paths[: args.photos]
        images = [np.asarray(Image.open(p).convert("RGB")) for p in paths]
        for k in ks:
            quantized = [quantize(img, k, has_alpha=False, seed=0) for img in images]
            for variant in variants:
                pairs = [run(lib, q.labels, len(q.palette), VARIANTS[variant], args) for q in quantized]
                size = [p[0] for p in pairs]
                time = [p[1] for p in pairs]
                print(
                    f"{name:9} {k:4} {variant:11} {statistics.median(size):14.4f} ({max(size):.4f})"
                    f" {statistics.median(time):15.2f} ({max(time):.2f})",
                    flush=True,
                )


if __name__ == "__main__":
    main()
