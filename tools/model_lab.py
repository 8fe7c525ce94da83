"""Label coding lab (issue 17): which changes to the cm model pay, measured as ideal code lengths.

Each image is quantized as ``tools/bench_labels.py`` does (``kmcodec.quantize``,
seed 0) and cut into strips of about a million labels, as kmcodec.encode
cuts it.  ``tools/model_lab.c`` (compiled here with the system C compiler,
``-O2 -Wall -Wextra``, into ``build/model_lab/``) walks each strip with
today's model, ``kmcodec/csrc/cm_model.h``, and sums -log2 p of every
decision: the ideal code length.  Variants:

cm, cmm
    today's methods (baseline: per strip the smaller, as the encoder picks);
    their ideal length is checked against the real coder's output.
luma, chain, adjacency, random
    the palette reordered before coding (encoder only, no format change):
    by luma, a greedy nearest-neighbour chain through RGB from the darkest
    entry, a greedy chain by how often two labels are neighbours (from the
    most frequent), or at random (a control); the model unchanged.  The
    index order is kmcodec.quantize's: sorted by colour, red first.
mix, mix+apm
    a logistic mixer of the model's counters instead of their mean (and an
    APM / SSE stage after it).
+2d
    a 2-D match model as one more mixer input.
limit15, limit127, limit255, +limit255
    every counter's count limit moved from 30 (the floor on its rate):
    a parameter, free at decode time.
rank, rank-w, +rank
    an escaped label coded as its rank among the palette entries by distance
    from G (the entry nearest to the gradient) or from W, skipping the
    refused neighbours (Elias gamma of rank + 1, each bit modelled).
+esc2
    two more escape inputs, counter rows keyed on the pairs (W, N) and (N, NE),
    and a candidate input keyed on (rank, W, N, candidate, = WW, = NN).
mix+best, mix+all
    the mixer with every input that pays (2-D, geometry, pairs); mix+all adds
    the 2-D decision.
2d-dec, +dec
    the 2-D match model as a decision of its own ("label = P2" when three or
    four neighbours agree under its offset), mean of two counters: the form
    that needs no mixer.
+geo
    palette-geometry contexts (colour distances between neighbours' entries,
    and an escape row keyed on the entry nearest to the gradient W + N - NW).

Every variant but the baselines is run on cm and on cmm and keeps per strip
the smaller, as an encoder would.  Ratios are variant / baseline per image;
the tables give per class and k their median and worst (largest), first of
the variant alone, then as a new method beside cm and cmm (per strip the
smaller of the two, as the encoder's search would pick).

Usage::

    python tools/model_lab.py /tmp/kmc-imageset --photos 8 --json /tmp/model_lab.json
    python tools/model_lab.py /tmp/kmc-imageset/graphics/text.png --k 16 --variants cm,cmm,mix+apm
    python tools/model_lab.py /tmp/kmc-imageset --load /tmp/model_lab.json --project bench_labels.json

The results and the commands behind them: docs/label-coding-research.md.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from benchlib import find_classes, projected_ratios
from PIL import Image

from kmcodec import cm
from kmcodec.labels import STRIP_LABELS
from kmcodec.quantize import quantize

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "tools" / "model_lab.c"
LIBRARY = ROOT / "build" / "model_lab" / "model_lab.so"

MIX, TWO_D, GEO, APM_OFF, TWO_D_DEC, ESC2, STRICT, RANK, RANK_W = 1, 2, 4, 8, 16, 32, 64, 128, 256


def limit(n: int) -> int:
    """The flags that set every counter's count limit to *n* (today's: 30)."""
    return n << 16


#: name -> (palette order, model flags); "cm" / "cmm" run one method, the rest the better of both per strip.
VARIANTS = {
    "cm": ("index", None),
    "cmm": ("index", None),
    "luma": ("luma", 0),
    "chain": ("chain", 0),
    "adjacency": ("adjacency", 0),
    "random": ("random", 0),
    "2d-dec": ("index", TWO_D_DEC),
    "2d-dec-strict": ("index", TWO_D_DEC | STRICT),
    "rank": ("index", RANK),
    "rank-w": ("index", RANK | RANK_W),
    "limit127": ("index", limit(127)),
    "limit255": ("index", limit(255)),
    "limit15": ("index", limit(15)),
    "mix": ("index", MIX | APM_OFF),
    "mix+apm": ("index", MIX),
    "mix+apm+2d": ("index", MIX | TWO_D),
    "mix+apm+geo": ("index", MIX | GEO),
    "mix+apm+2d+geo": ("index", MIX | TWO_D | GEO),
    "mix+apm+esc2": ("index", MIX | ESC2),
    "mix+apm+2d+geo+dec": ("index", MIX | TWO_D | GEO | TWO_D_DEC),
    "mix+best": ("index", MIX | TWO_D | GEO | ESC2),
    "mix+all": ("index", MIX | TWO_D | GEO | TWO_D_DEC | ESC2),
    "mix+2d+geo+rank": ("index", MIX | TWO_D | GEO | RANK),
    "mix+all+limit255": ("index", MIX | TWO_D | GEO | TWO_D_DEC | ESC2 | limit(255)),
    "all+chain": ("chain", MIX | TWO_D | GEO),
}


def build() -> ctypes.CDLL:
    """Compile model_lab.c (when it or the model is newer than the library) and load it."""
    deps = [SOURCE, ROOT / "kmcodec" / "csrc" / "cm_model.h"]
    if not LIBRARY.exists() or LIBRARY.stat().st_mtime < max(p.stat().st_mtime for p in deps):
        LIBRARY.parent.mkdir(parents=True, exist_ok=True)
        cc = os.environ.get("CC", "cc")
        flags = ["-std=c11", "-O2", "-Wall", "-Wextra", "-ffp-contract=off", "-fPIC", "-shared"]
        cmd = [cc, *flags, f"-I{ROOT / 'kmcodec' / 'csrc'}", str(SOURCE), "-o", str(LIBRARY), "-lm"]
        subprocess.run(cmd, check=True)
    lib = ctypes.CDLL(str(LIBRARY))
    lib.lab_bits.restype = ctypes.c_double
    lib.lab_bits.argtypes = [
        ctypes.c_void_p,
        ctypes.c_int64,
        ctypes.c_int64,
        ctypes.c_int64,
        ctypes.c_int,
        ctypes.c_uint,
        ctypes.c_void_p,
        ctypes.c_void_p,
        ctypes.c_void_p,
        ctypes.c_float,
        ctypes.POINTER(ctypes.c_double),
        ctypes.POINTER(ctypes.c_double),
    ]
    return lib


# ---------------------------------------------------------------------------
# Palette orders (encoder only: the format stores the palette in any order)
# ---------------------------------------------------------------------------
def luma(palette: np.ndarray) -> np.ndarray:
    return palette[:, :3].astype(np.float64) @ np.array([0.299, 0.587, 0.114])


def order(palette: np.ndarray, name: str, labels: np.ndarray) -> np.ndarray:
    """The permutation: new index i holds old entry perm[i]."""
    k = len(palette)
    if name == "index":
        return np.arange(k)
    y = luma(palette)
    if name == "luma":
        return np.argsort(y, kind="stable")
    if name == "chain":  # greedy nearest neighbour in RGB from the darkest entry
        rgb = palette[:, :3].astype(np.int64)
        d = ((rgb[:, None, :] - rgb[None, :, :]) ** 2).sum(axis=2)
        seen = np.zeros(k, bool)
        perm = [int(np.argmin(y))]
        seen[perm[0]] = True
        for _ in range(k - 1):
            row = np.where(seen, np.iinfo(np.int64).max, d[perm[-1]])
            perm.append(int(np.argmin(row)))
            seen[perm[-1]] = True
        return np.array(perm)
    if name == "adjacency":  # greedy chain by how often two labels are left / upper neighbours
        pairs = np.concatenate(
            [
                (labels[:, 1:].astype(np.int64) * k + labels[:, :-1]).ravel(),
                (labels[1:, :].astype(np.int64) * k + labels[:-1, :]).ravel(),
            ]
        )
        adj = np.bincount(pairs, minlength=k * k).reshape(k, k)
        adj = adj + adj.T
        np.fill_diagonal(adj, -1)
        seen = np.zeros(k, bool)
        perm = [int(np.argmax(np.bincount(labels.ravel(), minlength=k)))]
        seen[perm[0]] = True
        for _ in range(k - 1):
            row = np.where(seen, -2, adj[perm[-1]])
            perm.append(int(np.argmax(row)))
            seen[perm[-1]] = True
        return np.array(perm)
    if name == "random":  # a control: what an order that knows nothing costs
        return np.random.default_rng(0).permutation(k)
    msg = f"unknown order {name}"
    raise ValueError(msg)


def neighbour_lists(palette: np.ndarray) -> np.ndarray:
    """(k, k) uint16: row e is the palette by RGB distance from entry e (e first, ties by index)."""
    pal = palette[:, :3].astype(np.int64)
    d = ((pal[:, None, :] - pal[None, :, :]) ** 2).sum(axis=2)
    return np.argsort(d, axis=1, kind="stable").astype(np.uint16)


def gradient_lut(palette: np.ndarray) -> np.ndarray:
    """(32^3,) uint16: the palette entry nearest (RGB, squared) to the centre of each 8-step colour cell."""
    c = np.arange(32) * 8 + 4
    grid = np.stack(np.meshgrid(c, c, c, indexing="ij"), axis=-1).reshape(-1, 3)
    pal = palette[:, :3].astype(np.int64)
    out = np.empty(len(grid), np.uint16)
    for i in range(0, len(grid), 4096):
        d = ((grid[i : i + 4096, None, :] - pal[None, :, :]) ** 2).sum(axis=2)
        out[i : i + 4096] = d.argmin(axis=1)
    return out


# ---------------------------------------------------------------------------
# Measuring
# ---------------------------------------------------------------------------
def padded(strip: np.ndarray) -> np.ndarray:
    h, w = strip.shape
    out = np.zeros((h + 2, w + 3), np.uint16)
    out[2:, 2 : w + 2] = strip
    return out


PARTS = ("match", "flat", "candidates", "escape")
#: The baselines' ideal length must be this close to the real coder's output, or the walk is not cm's.
CHECK_TOLERANCE = 0.01


def strip_bits(
    lib: ctypes.CDLL,
    strip: np.ndarray,
    k: int,
    match: bool,
    flags: int,
    tables: tuple[np.ndarray, np.ndarray, np.ndarray],
    lr: float,
) -> tuple[float, float, list[float]]:
    """(ideal bits, CPU ns, bits by decision kind (PARTS)) of one strip."""
    h, w = strip.shape
    L = padded(strip)
    ns = ctypes.c_double()
    parts = (ctypes.c_double * 4)()
    pal, lut, nbr = tables
    bits = lib.lab_bits(
        L.ctypes.data,
        h,
        w,
        k,
        int(match),
        flags,
        pal.ctypes.data,
        lut.ctypes.data,
        nbr.ctypes.data,
        lr,
        ctypes.byref(ns),
        parts,
    )
    if bits < 0:
        raise MemoryError
    return bits, ns.value, list(parts)


def measure(lib: ctypes.CDLL, labels: np.ndarray, palette: np.ndarray, variants: list[str], args) -> dict:
    """Bytes (ideal), ns/label and bits by kind of every variant; "chosen": per strip the smaller of it and the base."""
    h, w = labels.shape
    k = len(palette)
    rows = max(1, STRIP_LABELS // w)
    tops = range(0, h, rows)
    out: dict = {}
    cache: dict = {}
    per_strip: dict[str, list[float]] = {}
    for name in variants:
        order_name, flags = VARIANTS[name]
        if order_name not in cache:
            perm = order(palette, order_name, labels)
            inv = np.empty(k, np.int64)
            inv[perm] = np.arange(k)
            pal = np.ascontiguousarray(palette[perm][:, :3], dtype=np.uint8)
            relabelled = inv[labels].astype(np.uint16)
            cache[order_name] = (relabelled, (pal, gradient_lut(pal), neighbour_lists(pal)))
        lab_labels, tables = cache[order_name]
        methods = [name == "cmm"] if flags is None else [False, True]
        ns, strips, parts = 0.0, [], [0.0] * 4
        for top in tops:
            best = None
            for match in methods:
                bits, t, kinds = strip_bits(lib, lab_labels[top : top + rows], k, match, flags or 0, tables, args.lr)
                ns += t
                if best is None or bits < best[0]:
                    best = (bits, kinds)
            strips.append(best[0])
            parts = [a + b for a, b in zip(parts, best[1], strict=True)]
        per_strip[name] = strips
        out[name] = {"bytes": sum(strips) / 8, "ns_label": ns / labels.size / len(methods), "parts": parts}
    base = [min(a, b) for a, b in zip(per_strip["cm"], per_strip["cmm"], strict=True)]
    out["base"] = {"bytes": sum(base) / 8}
    for name in variants:
        out[name]["chosen"] = sum(min(a, b) for a, b in zip(per_strip[name], base, strict=True)) / 8
    for match, name in ((False, "cm"), (True, "cmm")):  # the real coder: the check, and its decode time
        real, dec_ns = 0, 0.0
        for top in tops:
            strip = labels[top : top + rows]
            data = cm.encode_labels(strip, k, match=match)
            real += len(data)
            start = time.thread_time_ns()
            cm.decode_labels(data, len(strip), w, k, match=match)
            dec_ns += time.thread_time_ns() - start
        out[name]["real_bytes"] = real
        out[name]["real_decode_ns_label"] = dec_ns / labels.size
        if real and abs(out[name]["bytes"] / real - 1) > CHECK_TOLERANCE:
            msg = f"{name}: ideal {out[name]['bytes']:.0f} B against real {real} B: the harness has left the model"
            raise AssertionError(msg)
    return out


def _ratio_table(records: list[dict], shown: list[str], key: str) -> list[str]:
    lines = ["| class | k | n | " + " | ".join(shown) + " |", "|---|---|---|" + "---|" * len(shown)]
    for cls, k in sorted({(r["class"], r["k"]) for r in records}):
        rs = [r for r in records if r["class"] == cls and r["k"] == k]
        cells = []
        for v in shown:
            ratios = [r["sizes"][v][key] / r["sizes"]["base"]["bytes"] for r in rs]
            cells.append(f"{statistics.median(ratios):.3f} ({max(ratios):.3f})")
        lines.append(f"| {cls} | {k} | {len(rs)} | " + " | ".join(cells) + " |")
    return lines


def summarize(records: list[dict], variants: list[str]) -> str:
    shown = [v for v in variants if v not in ("cm", "cmm")]
    lines = ["Ideal size / base (the smaller of cm and cmm per strip), median (worst):", ""]
    lines += _ratio_table(records, shown, "bytes")
    lines += ["", "The same as a new method beside cm and cmm (per strip the smaller of it and the base):", ""]
    lines += _ratio_table(records, shown, "chosen")
    lines += ["", "ideal / real bytes (cm, cmm), median (furthest from 1):"]
    for name in ("cm", "cmm"):
        ratios = [r["sizes"][name]["bytes"] / r["sizes"][name]["real_bytes"] for r in records]
        worst = max(ratios, key=lambda x: abs(x - 1))
        lines.append(f"  {name}: {statistics.median(ratios):.4f} ({worst:.4f})")
    keys = sorted({(r["class"], r["k"]) for r in records})
    lines += ["", "Where the bits go (cm, share of its ideal bits; medians):"]
    for cls, k in keys:
        rs = [r for r in records if r["class"] == cls and r["k"] == k]
        shares = [
            statistics.median(r["sizes"]["cm"]["parts"][i] / (8 * r["sizes"]["cm"]["bytes"]) for r in rs)
            for i in range(len(PARTS))
        ]
        lines.append(f"  {cls} k={k}: " + ", ".join(f"{p} {x:.2f}" for p, x in zip(PARTS, shares, strict=True)))
    lines += ["", "ns/label (harness, one method; median over images) and the real cm decoder's:"]
    for cls, k in keys:
        rs = [r for r in records if r["class"] == cls and r["k"] == k]
        cells = [f"{v} {statistics.median(r['sizes'][v]['ns_label'] for r in rs):.0f}" for v in variants]
        real = statistics.median(r["sizes"]["cm"]["real_decode_ns_label"] for r in rs)
        lines.append(f"  {cls} k={k}: " + ", ".join(cells) + f"; real cm decode {real:.0f}")
    return "\n".join(lines)


def project(records: list[dict], variants: list[str], bench: dict) -> str:
    """What each variant would make of bench_labels.py's ratios ours / peer, per class and k: median (worst).

    Each image's "ours" there (labels, strip framing and palette) loses the
    bytes the variant saves on the labels, as a method the encoder may pick
    per strip (the "chosen" size); the peers' sizes stay.
    """

    def saved(record: dict, variant: str) -> float:
        return 0.0 if variant == "today" else record["sizes"]["base"]["bytes"] - record["sizes"][variant]["chosen"]

    shown = ["today", *[v for v in variants if v not in ("cm", "cmm")]]
    return projected_ratios(records, bench, shown, saved)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", type=Path, help="image set (class subfolders) or one image")
    parser.add_argument("--k", default="16,64,256", help="palette sizes, comma-separated")
    parser.add_argument("--photos", type=int, default=8, help="images of class photos to use (first N by name)")
    parser.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated, of: " + ", ".join(VARIANTS))
    parser.add_argument("--lr", type=float, default=0.02, help="the mixer's learning rate")
    parser.add_argument("--json", type=Path, help="write every measurement here")
    parser.add_argument("--project", type=Path, help="a bench_labels.py --json output: project its ratios ours / peer")
    parser.add_argument("--load", type=Path, help="summarize a --json output of an earlier run instead of running")
    args = parser.parse_args(argv)
    ks = [int(x) for x in args.k.split(",")]
    variants = args.variants.split(",")
    for v in variants:
        if v not in VARIANTS:
            parser.error(f"unknown variant {v}")
    if "cm" not in variants or "cmm" not in variants:
        variants = ["cm", "cmm", *[v for v in variants if v not in ("cm", "cmm")]]
    if args.load:
        records = json.loads(args.load.read_text())
        variants = [v for v in records[0]["sizes"] if v != "base"]
        print(summarize(records, variants))
        if args.project:
            print(project(records, variants, json.loads(args.project.read_text())))
        return
    lib = build()
    pairs = find_classes(args.folder, None)
    counts: dict[str, int] = {}
    records = []
    for cls, path in pairs:
        counts[cls] = counts.get(cls, 0) + 1
        if cls == "photos" and counts[cls] > args.photos:
            continue
        with Image.open(path) as im:
            rgb = np.asarray(im.convert("RGB"))
        for k in ks:
            q = quantize(rgb, k, has_alpha=False, seed=0)
            sizes = measure(lib, q.labels, q.palette, variants, args)
            records.append({"class": cls, "image": path.name, "k": k, "palette": len(q.palette), "sizes": sizes})
            base = sizes["base"]["bytes"]
            cells = " ".join(f"{v} {sizes[v]['bytes'] / base:.3f}" for v in variants)
            print(f"{cls}/{path.name} k={k}: base {base:.0f} B; {cells}", file=sys.stderr, flush=True)
    print(summarize(records, variants))
    if args.project:
        print(project(records, variants, json.loads(args.project.read_text())))
    if args.json:
        args.json.write_text(json.dumps(records, indent=1))


if __name__ == "__main__":
    main()
