"""Label coding lab, round 2 (issue 17): what an integer mixer and an APM stage save, and cost to decode.

Each image is quantized as ``tools/bench_labels.py`` does (``kmcodec.quantize``,
seed 0) and cut into strips of about a million labels, as kmcodec.encode
cuts it.  ``tools/cmx_lab.c`` (compiled here with the system C compiler, ``-O2
-Wall -Wextra``, into ``build/cmx_lab/``) codes every strip with a base
method (cm, or cm2d for the variants named ``2d-...``) and with a variant of
it in the same range coder, decodes both (best of ``--repeat``, thread CPU
time, alternating) and checks the variant's decode.  Variants (see the C
file for their exact arithmetic):

null
    the lab's walk with cm's probabilities: the same bytes as cm (checked), so
    its time is the lab's own overhead over the real decoder.
apm, apm-interp
    cm's mean of two counters, then an APM (32 buckets, one load; or 33
    interpolated on the stretched mean), half and half.
mix, mix+pairs
    a logistic mixer of the two counters (and a counter hashed on label
    pairs, in a table of 2^--pair-bits counters), then the interpolated APM.
mix-noapm, mix+pairs-noapm
    the same without the APM.
2d-null
    method cm2d's walk (§10) with its own probabilities: cm2d's bytes (checked).
2d-mix, 2d-mix+pairs
    cm2d's walk with the mixer (no APM) over every decision's two counters
    (and the pair counter; the 2-D decision's keyed on P, W, N, NE, score).
+pp, +pd
    one more input keyed on the 2-D prediction P: a counter hashed on P and
    the neighbours (a second 2^--pair-bits table), or one from a small direct
    table (P = the candidate, where P's path goes in the escape tree, score, run).
+wide
    one more input in the second table: a counter hashed on a wider
    neighbourhood (W, N, NW, NE, WW, NN, NWW, NNE); +wider adds NNW and NEE.
    2d-mix+wide...: the wide input without the narrow pair input.
+conf
    the mixer's weight set also by how often the wide counter was updated.
-flat, -flat-2d, -esc
    the flat decision (and the 2-D decision; the escape bits) coded as cm2d
    codes them: no mixer.

Reported per class and k: the median (and worst) of variant bytes / base
bytes and of variant decode time / base decode time, per image (all its
strips); with ``null`` run first, "new/cm" is a cm2d-based variant as a
new method beside cm (each strip the smaller), and with ``2d-null`` run
first, "decode/2d-null" its decode time over the lab's own cm2d walk (the
ratio of the two runs' decode / cm2d, each timed against cm2d in turn).
``--json`` keeps every strip's numbers; ``--project`` then takes a
``tools/bench_labels.py --json`` run and projects its ratios ours / peer with
each variant as a new method beside today's.

Usage::

    python tools/make_imageset.py && python tools/cmx_lab.py /tmp/kmc-imageset --photos 8
    python tools/cmx_lab.py ../shared/corpus/photos/wiki001.png --k 16 --variants null,mix+pairs
    python tools/cmx_lab.py /tmp/kmc-imageset --variants 2d-null,2d-mix+pairs --json runs.json \
        --project bench.json
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import numpy as np
from benchlib import encoder_strips, find_classes, projected_ratios
from PIL import Image

from kmcodec.format import Method
from kmcodec.labels import encode_strip
from kmcodec.quantize import quantize

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "tools" / "cmx_lab.c"
LIBRARY = ROOT / "build" / "cmx_lab" / "cmx_lab.so"

NULL, APM, APM_INTERP, MIX, PAIRS, NO_APM = 0, 1, 2, 4, 8, 16
CM2D, PPAIR, PDIRECT, FLAT_DIRECT, TWOD_DIRECT, WIDE, WIDER, CONF, ESC_DIRECT = (
    32,
    64,
    128,
    256,
    512,
    1024,
    2048,
    4096,
    8192,
)
CM2D_MIX = CM2D | MIX | NO_APM
VARIANTS = {
    "null": NULL,
    "apm": APM,
    "apm-interp": APM_INTERP,
    "mix": MIX,
    "mix+pairs": MIX | PAIRS,
    "mix-noapm": MIX | NO_APM,
    "mix+pairs-noapm": MIX | PAIRS | NO_APM,
    "2d-null": CM2D,
    "2d-mix": CM2D_MIX,
    "2d-mix+pairs": CM2D_MIX | PAIRS,
    "2d-mix+pairs+pp": CM2D_MIX | PAIRS | PPAIR,
    "2d-mix+pairs+pd": CM2D_MIX | PAIRS | PDIRECT,
    "2d-mix+pairs+pp+pd": CM2D_MIX | PAIRS | PPAIR | PDIRECT,
    "2d-mix+pairs-flat": CM2D_MIX | PAIRS | FLAT_DIRECT,
    "2d-mix+pairs-flat-2d": CM2D_MIX | PAIRS | FLAT_DIRECT | TWOD_DIRECT,
    "2d-mix+pairs+pd-flat": CM2D_MIX | PAIRS | PDIRECT | FLAT_DIRECT,
    "2d-mix+pairs+wide": CM2D_MIX | PAIRS | WIDE,
    "2d-mix+pairs+wide+pd": CM2D_MIX | PAIRS | WIDE | PDIRECT,
    "2d-mix+pairs+wide+pd-flat": CM2D_MIX | PAIRS | WIDE | PDIRECT | FLAT_DIRECT,
    "2d-mix+pairs+wider+pd": CM2D_MIX | PAIRS | WIDE | WIDER | PDIRECT,
    "2d-mix+wide": CM2D_MIX | WIDE,
    "2d-mix+wide+pd": CM2D_MIX | WIDE | PDIRECT,
    "2d-mix+wide+pd-flat": CM2D_MIX | WIDE | PDIRECT | FLAT_DIRECT,
    "2d-mix+pairs+wide+pd-flat+conf": CM2D_MIX | PAIRS | WIDE | PDIRECT | FLAT_DIRECT | CONF,
    "2d-mix+pairs+wide+pd-flat-esc": CM2D_MIX | PAIRS | WIDE | PDIRECT | FLAT_DIRECT | ESC_DIRECT,
    "2d-mix+wide+pd-flat+conf": CM2D_MIX | WIDE | PDIRECT | FLAT_DIRECT | CONF,
}


#: The variants a build with ``few=True`` has (the tests'): the two nulls and method cmx's model.
FEW = ("null", "2d-null", "2d-mix+wide+pd-flat")


def build(few: bool = False) -> ctypes.CDLL:
    """Compile cmx_lab.c (when it or the kernels are newer than the library) and load it.

    With *few*, only the variants of FEW (``-DLAB_FEW``, at ``-O0``): each
    variant is a specialised kernel, and all of them take 45-70 s to compile.
    """
    csrc = ROOT / "kmcodec" / "csrc"
    deps = [SOURCE, csrc / "cm_model.h", csrc / "cm.c"]
    library = LIBRARY.with_stem("cmx_lab_few") if few else LIBRARY
    if not library.exists() or library.stat().st_mtime < max(p.stat().st_mtime for p in deps):
        library.parent.mkdir(parents=True, exist_ok=True)
        cc = os.environ.get("CC", "cc")
        flags = ["-std=c11", "-Wall", "-Wextra", "-fPIC", "-shared", "-D_POSIX_C_SOURCE=199309L"]
        flags += ["-O0", "-DLAB_FEW"] if few else ["-O2"]  # the tests' build: 5 s, not 10, for a few small strips
        subprocess.run([cc, *flags, f"-I{csrc}", str(SOURCE), "-o", str(library)], check=True)
    lib = ctypes.CDLL(str(library))
    lib.lab_run.restype = ctypes.c_int
    lib.lab_run.argtypes = [ctypes.c_void_p, *(ctypes.c_int64,) * 3, *(ctypes.c_int,) * 5, ctypes.c_void_p]
    return lib


def strips(labels: np.ndarray) -> list[np.ndarray]:
    """The padded uint16 strips kmcodec.encode would cut *labels* into (about STRIP_LABELS each)."""
    w = labels.shape[1]
    out = []
    for part in encoder_strips(labels):
        padded = np.zeros((part.shape[0] + 2, w + 3), np.uint16)
        padded[2:, 2 : w + 2] = part
        out.append(padded)
    return out


def run(lib: ctypes.CDLL, labels: np.ndarray, k: int, variant: str, args: argparse.Namespace) -> list[list[float]]:
    """[base bytes, variant bytes, base decode s, variant decode s] of every strip of one image."""
    rows = []
    for padded in strips(labels):
        result = np.zeros(6)
        h, w = padded.shape[0] - 2, padded.shape[1] - 3
        status = lib.lab_run(
            padded.ctypes.data,
            h,
            w,
            k,
            VARIANTS[variant],
            args.lr,
            args.rate,
            args.pair_bits,
            args.repeat,
            result.ctypes.data,
        )
        if status != 0 or result[4] != 1:
            sys.exit(f"cmx_lab: {variant}: status {status}, exact decode {result[4]}")
        if variant.endswith("null") and result[5] != 1:
            sys.exit(f"cmx_lab: {variant} did not write its base method's bytes")
        rows.append([float(x) for x in result[:4]])
    return rows


def beside_cm(cm: list[list[float]], variant: list[list[float]]) -> float:
    """Bytes / cm's of a new method beside cm: each strip the smaller of the two (the null run's base is cm)."""
    return sum(min(c[0], v[1]) for c, v in zip(cm, variant, strict=True)) / sum(c[0] for c in cm)


def today_strip_bytes(labels: np.ndarray, k: int, methods: list[str]) -> list[int]:
    """The bytes of each strip of *labels* with the method bench_labels.py recorded for it."""
    parts = [p[2:, 2:-1] for p in strips(labels)]
    return [len(encode_strip(part, k, Method[m.upper()])) for part, m in zip(parts, methods, strict=True)]


def project(records: list[dict], bench: dict, variants: list[str]) -> str:
    """bench_labels.py's ratios ours / peer with each variant as a new method beside today's.

    Each strip keeps the smaller of today's coding (the method bench_labels.py
    recorded) and the variant's bytes; each image's "ours" (labels, strip
    framing and palette) loses what that saves.  Peers' sizes stay.
    """

    def saved(record: dict, variant: str) -> float:
        if variant == "today":
            return 0
        return sum(max(0, t - s[1]) for t, s in zip(record["today"], record["strips"][variant], strict=True))

    return projected_ratios(records, bench, ["today", *variants], saved)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path, help="image set (photos/ and graphics/ classes), a folder or an image")
    parser.add_argument("--k", default="16,64,256", help="palette sizes (default 16,64,256)")
    parser.add_argument("--photos", type=int, default=None, help="use only the first N images of class photos")
    parser.add_argument("--classes", default=None, help="use only these classes, comma-separated (default all)")
    parser.add_argument("--variants", default=",".join(VARIANTS), help=f"of {', '.join(VARIANTS)}")
    parser.add_argument("--lr", type=int, default=16, help="mixer learning rate (default 16)")
    parser.add_argument("--rate", type=int, default=6, help="APM rate shift (default 6)")
    parser.add_argument("--pair-bits", type=int, default=18, help="slots (log2) of the pair table (default 18)")
    parser.add_argument("--repeat", type=int, default=3, help="decodes timed per strip, best kept (default 3)")
    parser.add_argument("--json", type=Path, help="also write every strip's numbers to this JSON file")
    parser.add_argument("--project", type=Path, help="a bench_labels.py --json run: project its ratios ours / peer")
    args = parser.parse_args()
    variants = args.variants.split(",")
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        parser.error(f"unknown variants {unknown}")
    ks = [int(k) for k in args.k.split(",")]
    bench = json.loads(args.project.read_text()) if args.project else None
    lib = build()
    classes: dict[str, list[Path]] = {}
    for name, path in find_classes(args.folder, None):
        if args.classes is None or name in args.classes.split(","):
            classes.setdefault(name, []).append(path)
    records = []
    print(
        f"{'class':9} {'k':>4} {'variant':30} {'bytes/base median (worst)':>26} {'decode/base median (worst)':>27}"
        f" {'new/cm (worst)':>17} {'decode/2d-null (worst)':>23}"
    )
    for name, paths in classes.items():
        if name == "photos" and args.photos:
            paths = paths[: args.photos]
        images = [np.asarray(Image.open(p).convert("RGB")) for p in paths]
        for k in ks:
            quantized = [quantize(img, k, has_alpha=False, seed=0) for img in images]
            at_k = [{"class": name, "image": p.name, "k": k, "strips": {}} for p in paths]
            for variant in variants:
                for record, q in zip(at_k, quantized, strict=True):
                    record["strips"][variant] = run(lib, q.labels, len(q.palette), variant, args)
                totals = [np.sum(r["strips"][variant], axis=0) for r in at_k]
                size = [t[1] / t[0] for t in totals]
                time = [t[3] / t[2] for t in totals]
                line = (
                    f"{name:9} {k:4} {variant:30} {statistics.median(size):16.4f} ({max(size):.4f})"
                    f" {statistics.median(time):17.2f} ({max(time):.2f})"
                )
                if variant.startswith("2d-") and "null" in at_k[0]["strips"]:
                    new = [beside_cm(r["strips"]["null"], r["strips"][variant]) for r in at_k]
                    line += f" {statistics.median(new):9.4f} ({max(new):.4f})"
                if variant.startswith("2d-") and "2d-null" in at_k[0]["strips"]:
                    null = [np.sum(r["strips"]["2d-null"], axis=0) for r in at_k]
                    lab = [t[3] / t[2] / (u[3] / u[2]) for t, u in zip(totals, null, strict=True)]
                    line += f" {statistics.median(lab):15.2f} ({max(lab):.2f})"
                print(line, flush=True)
            if bench:
                chosen = {(r["class"], r["image"], r["k"]): r["ours"]["methods"] for r in bench["records"]}
                for record, q in zip(at_k, quantized, strict=True):
                    methods = chosen.get((name, record["image"], k))
                    if methods:
                        record["today"] = today_strip_bytes(q.labels, len(q.palette), methods)
            records += at_k
    if args.json:
        args.json.write_text(json.dumps({"args": {a: str(v) for a, v in vars(args).items()}, "records": records}))
    if bench:
        print(project([r for r in records if "today" in r], bench, variants))


if __name__ == "__main__":
    main()
