"""Label coding benchmark: kmcodec's label coders against PNG-8, WebP lossless and JPEG XL on the same palette image.

For every image and palette size k the image is quantized once, with
``kmcodec.quantize.quantize``; every coder then stores that same palette
image, and the sizes are compared:

ours
    each strip of about a million labels (the strip height kmcodec's
    container uses) coded as ``kmcodec.encode`` codes it: with ``--method
    auto`` (the default) the smallest of the methods ``--effort`` names
    (at the default effort 2: stored and cm, and cmm, cm2d, cmx, deflate
    and LZMA where kmcodec's probes say they may win), or with the one ``--method``
    names; plus 17 bytes of
    framing a strip (STRP chunk length, type, CRC, index and method) and the
    palette, k x 3 bytes.  The container's fixed header (under 100 bytes) is
    not counted.
best PNG-8
    the smaller of Pillow's ``optimize=True`` palette PNG and that file
    after ``pyoxipng`` level 2 (k <= 256 only).
WebP lossless
    Pillow, ``lossless=True, method=6`` (libwebp finds the palette itself).
JPEG XL lossless
    ``imagecodecs.jpegxl_encode(..., lossless=True, effort=9)``; slow (several
    seconds a megapixel), ``--no-jxl`` leaves it out.

Speeds are Mpx/s of our decoder (all strips to pixels, one thread), of the
encoder coding each strip with the method it chose ("enc") and of the whole
``auto`` search ("search"), next to Pillow decoding the same image saved as a
truecolor RGB PNG (Pillow's default settings), best of ``--repeat`` runs.
``--clock cpu`` (the default) times with the thread's CPU time, which other
processes on a busy machine disturb less than the wall clock; ``--clock
wall`` uses the wall clock.

Images are grouped in classes: each subfolder of FOLDER that holds images is
one (``tools/make_imageset.py`` makes ``photos/`` and ``graphics/``), else
FOLDER is the only class.  The summary gives per class and k the medians
over the images of sizes, ratios ours / peer and speeds, the worst ratio,
and lists every image where ours is not smaller than a peer; for a class
named ``graphics`` it says whether ours is smaller than both the best PNG-8
and WebP lossless on every image.

``--whole-decode PHOTO`` (default: the first of class ``photos``, else the first image) also
times the whole decoder: the photo enlarged with LANCZOS to about
``--whole-mpx`` megapixels (12 by default) is encoded by ``kmcodec.encode``
at each ``--whole-k`` (16, 64 and 256), and ``kmcodec.decode`` (parsing,
CRCs, label decoding in its strip threads, palette lookup) is timed against
Pillow decoding the same decoded image stored as truecolor PNG: both run
once a round, in alternating order, for ``--whole-repeat`` rounds (9) in one
process.  It reports the wall-clock ratio as the median of the per-round
ratios (with quartiles) and as best / best, and the ratio of process CPU
times (all threads: the work, or the wall ratio on one core), each with the
load average, since on a shared machine the wall clock of a two-thread
decoder depends on how many cores are free.  The label coders are then timed
alone on the file's strips (one thread, thread CPU time, median of rounds):
encode and decode of cm, cmm, cm2d and cmx, and the whole ``auto`` search at
``--effort`` against decoding what it chose, checked against the limit
encode <= 2 x decode.

A peer that cannot run (package missing, k too large) is reported as
skipped, with the reason.

Usage::

    python tools/make_imageset.py && python tools/bench_labels.py /tmp/kmc-imageset --json out.json
    python tools/bench_labels.py                        # ../shared/corpus/photos, k = 16, 64, 256
    python tools/bench_labels.py FOLDER --k 16,64 --limit 10 --method cm --no-whole-decode
    python tools/bench_labels.py ../shared/corpus/photos/wiki043.png --upscale 3 --k 16,256 --no-jxl  # 11.8 MP
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import io
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from benchlib import encoder_strips, find_classes
from PIL import Image

import kmcodec
from kmcodec.format import Method
from kmcodec.labels import (  # StripCoder: the choice kmcodec.encode makes
    EFFORT_METHODS,
    StripCoder,
    decode_strip,
    decode_strip_into,
    encode_strip,
)
from kmcodec.options import EncodeOptions
from kmcodec.quantize import quantize

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_FOLDER = ROOT.parent / "shared" / "corpus" / "photos"
#: STRP chunk framing: length (4), type (4), CRC (4), then index (4) and method (1).
STRIP_OVERHEAD = 17
PNG8_LIMIT = 256
#: The class whose images must all beat both PNG-8 and WebP lossless (issue 3's acceptance).
GRAPHICS = "graphics"
#: Issue 3: kmcodec.decode of a 12 MP file takes at most this times Pillow's truecolor PNG decode.
DECODE_LIMITS = {16: 1.0, 256: 1.3}
#: Issue 3: encoding the labels takes at most this times their decoding.
LABEL_ENCODE_LIMIT = 2.0


class Skip(Exception):
    """A peer cannot run here or for this k; the message says why."""


@dataclasses.dataclass
class Peer:
    name: str
    title: str
    #: (palette image as RGB (H, W, 3) uint8, labels, palette) -> bytes of the file
    run: Callable[[np.ndarray, np.ndarray, np.ndarray], int]
    missing: str | None = None


# ---------------------------------------------------------------------------
# Peers
# ---------------------------------------------------------------------------
def _png8(rgb: np.ndarray, labels: np.ndarray, palette: np.ndarray) -> int:
    if len(palette) > PNG8_LIMIT:
        msg = f"k > {PNG8_LIMIT}"
        raise Skip(msg)
    image = Image.fromarray(labels.astype(np.uint8), "P")
    image.putpalette(palette.reshape(-1).tolist())
    buf = io.BytesIO()
    image.save(buf, "PNG", optimize=True)
    png = buf.getvalue()
    try:
        import oxipng
    except ImportError:
        return len(png)
    return min(len(png), len(oxipng.optimize_from_memory(png, level=2)))


def _webp(rgb: np.ndarray, labels: np.ndarray, palette: np.ndarray) -> int:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "WEBP", lossless=True, method=6)
    return len(buf.getvalue())


def _jxl(rgb: np.ndarray, labels: np.ndarray, palette: np.ndarray) -> int:
    import imagecodecs

    return len(imagecodecs.jpegxl_encode(rgb, lossless=True, effort=9))


def _missing_webp() -> str | None:
    from PIL import features

    return None if features.check("webp") else "Pillow built without WebP"


def _missing_jxl() -> str | None:
    try:
        import imagecodecs
    except ImportError:
        return "imagecodecs not installed"
    return None if imagecodecs.JPEGXL.available else "imagecodecs built without JPEG XL"


def peers(jxl: bool) -> list[Peer]:
    try:
        import oxipng  # noqa: F401

        png_title = "best PNG-8"
    except ImportError:
        png_title = "PNG-8 (Pillow only: pyoxipng not installed)"
    out = [Peer("png8", png_title, _png8), Peer("webp", "WebP lossless", _webp, _missing_webp())]
    out.append(Peer("jxl", "JPEG XL lossless e9", _jxl, _missing_jxl() if jxl else "left out (--no-jxl)"))
    return out


# ---------------------------------------------------------------------------
# Measuring
# ---------------------------------------------------------------------------
def _best_time(fn: Callable[[], object], repeat: int, clock: Callable[[], float]) -> tuple[float, object]:
    best, result = float("inf"), None
    for _ in range(repeat):
        start = clock()
        result = fn()
        best = min(best, clock() - start)
    return best, result


def measure_ours(labels: np.ndarray, palette: np.ndarray, args: argparse.Namespace, clock: Callable[[], float]) -> dict:
    """Code the labels strip by strip as kmcodec.encode would; decoding writes pixels, as kmcodec.decode does."""
    h, w = labels.shape
    k = len(palette)
    strips = encoder_strips(labels)
    rows = len(strips[0])
    search_s, coded = _best_time(
        lambda: list(map(StripCoder.of(k, args.method, args.effort), strips)), args.repeat, clock
    )
    enc_s, _ = _best_time(
        lambda: [encode_strip(s, k, m) for s, (m, _) in zip(strips, coded, strict=True)], args.repeat, clock
    )
    pixels = np.empty((h, w, palette.shape[1]), np.uint8)
    dec_s, _ = _best_time(
        lambda: [
            decode_strip_into(memoryview(c), m, len(s), w, k, palette, pixels[i * rows : i * rows + len(s)])
            for i, ((m, c), s) in enumerate(zip(coded, strips, strict=True))
        ],
        args.repeat,
        clock,
    )
    if not np.array_equal(pixels, palette[labels]):
        msg = "round trip failed"
        raise AssertionError(msg)
    label_bytes = sum(len(c) for _, c in coded)
    return {
        "label_bytes": label_bytes,
        "strips": len(strips),
        "methods": [Method(m).name.lower() for m, _ in coded],
        "bytes": label_bytes + STRIP_OVERHEAD * len(strips) + k * 3,
        "search_mpx_s": labels.size / search_s / 1e6,
        "encode_mpx_s": labels.size / enc_s / 1e6,
        "decode_mpx_s": labels.size / dec_s / 1e6,
    }


def measure_png_decode(rgb: np.ndarray, repeat: int, clock: Callable[[], float]) -> float:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "PNG")
    data = buf.getvalue()

    def load() -> None:
        with Image.open(io.BytesIO(data)) as im:
            im.load()

    seconds, _ = _best_time(load, repeat, clock)
    return rgb.shape[0] * rgb.shape[1] / seconds / 1e6


def load_rgb(path: Path, upscale: int) -> np.ndarray:
    with Image.open(path) as im:
        im = im.convert("RGB")
        if upscale > 1:
            im = im.resize((im.width * upscale, im.height * upscale), Image.Resampling.LANCZOS)
        return np.asarray(im)


def bench_image(cls: str, path: Path, ks: list[int], peer_list: list[Peer], args: argparse.Namespace) -> list[dict]:
    rgb = load_rgb(path, args.upscale)
    clock = time.thread_time if args.clock == "cpu" else time.perf_counter
    records = []
    for k in ks:
        q = quantize(rgb, k, has_alpha=False, seed=0)
        kk = len(q.palette)
        image = q.palette[q.labels]
        record = {"class": cls, "image": path.name, "pixels": int(q.labels.size), "k": k, "palette": kk}
        record["ours"] = measure_ours(q.labels, q.palette, args, clock)
        record["png_decode_mpx_s"] = measure_png_decode(image, args.repeat, clock)
        for peer in peer_list:
            if peer.missing:
                record[peer.name] = {"skipped": peer.missing}
                continue
            try:
                record[peer.name] = {"bytes": peer.run(image, q.labels, q.palette)}
            except Skip as exc:
                record[peer.name] = {"skipped": str(exc)}
        records.append(record)
        sizes = ", ".join(f"{p.name} {record[p.name].get('bytes', '-')}" for p in peer_list)
        used = ",".join(sorted(set(record["ours"]["methods"])))
        print(
            f"  {cls}/{path.name} k={k}: ours {record['ours']['bytes']} ({used}), {sizes}; "
            f"dec {record['ours']['decode_mpx_s']:.1f} Mpx/s, PNG {record['png_decode_mpx_s']:.1f} Mpx/s",
            file=sys.stderr,
            flush=True,
        )
    return records


# ---------------------------------------------------------------------------
# The whole decoder on a big image
# ---------------------------------------------------------------------------
#: The label methods whose encode and decode times the whole-decode run reports one by one.
TIMED_METHODS = (Method.CM, Method.CMM, Method.CM2D, Method.CMX)


def paired_runs(fns: dict[str, Callable[[], object]], pairs: int) -> dict[str, dict[str, list[float]]]:
    """Run every function of *fns* once per round, *pairs* rounds, in an order that alternates.

    Returns per name the wall-clock seconds (``perf_counter``) and the CPU
    seconds of the whole process (``process_time``: every thread's) of each
    run, in round order, so that run i of two names were taken side by side.
    Alternating the order each round spreads a busy spell of the machine, or
    a cache warmed by the previous run, over all of them.
    """
    times = {name: {"wall": [], "cpu": []} for name in fns}
    names = list(fns)
    for i in range(pairs):
        for name in names if i % 2 == 0 else names[::-1]:
            wall, cpu = time.perf_counter(), time.process_time()
            fns[name]()
            times[name]["cpu"].append(time.process_time() - cpu)
            times[name]["wall"].append(time.perf_counter() - wall)
    return times


def ratio_stats(ours: list[float], theirs: list[float]) -> dict[str, float]:
    """Ratios of paired timings: of the best runs, the median of the per-round ratios, and its spread.

    ``best`` is min(ours) / min(theirs), the usual best-of-N; ``median`` the
    median over rounds of ours[i] / theirs[i], which a single lucky run cannot
    move; ``q1`` and ``q3`` are the quartiles of those per-round ratios.
    """
    per_round = sorted(a / b for a, b in zip(ours, theirs, strict=True))
    q1, _, q3 = statistics.quantiles(per_round, n=4, method="inclusive") if len(per_round) > 1 else per_round * 3
    return {"best": min(ours) / min(theirs), "median": statistics.median(per_round), "q1": q1, "q3": q3}


def label_times(strips: list[np.ndarray], colors: int, args: argparse.Namespace) -> dict[str, dict]:
    """Thread CPU seconds (median and best of ``--whole-repeat``) to code *strips* and to decode them again.

    One entry per method of TIMED_METHODS, and ``search``: the whole ``auto``
    search at ``--effort`` (what kmcodec.encode spends on labels), against
    decoding what it chose.  One thread, strip after strip, encode and decode
    taken in turn, so the figures do not depend on how many cores are free.
    """
    coders: dict[str, Callable[[np.ndarray], tuple[Method, bytes]]] = {
        m.name.lower(): functools.partial(_encode_as, method=m, colors=colors) for m in TIMED_METHODS
    }
    coders["search"] = StripCoder.of(colors, args.method, args.effort)
    out = {}
    for name, code in coders.items():
        coded = [code(s) for s in strips]
        enc, dec = [], []
        for _ in range(args.whole_repeat):
            enc.append(_timed(functools.partial(_encode_all, code, strips)))
            dec.append(_timed(functools.partial(_decode_all, coded, strips, colors)))
        out[name] = {
            "encode_s": statistics.median(enc),
            "decode_s": statistics.median(dec),
            "encode_best_s": min(enc),
            "decode_best_s": min(dec),
            "encode_vs_decode": statistics.median(enc) / statistics.median(dec),
            "bytes": sum(len(c) for _, c in coded),
            "methods": sorted({Method(m).name.lower() for m, _ in coded}),
        }
    return out


def _encode_as(labels: np.ndarray, method: Method, colors: int) -> tuple[Method, bytes]:
    return method, encode_strip(labels, colors, method)


def _encode_all(code: Callable[[np.ndarray], object], strips: list[np.ndarray]) -> None:
    for s in strips:
        code(s)


def _decode_all(coded: list[tuple[Method, bytes]], strips: list[np.ndarray], colors: int) -> None:
    for (m, c), s in zip(coded, strips, strict=True):
        decode_strip(memoryview(c), m, *s.shape, colors)


def _timed(fn: Callable[[], object]) -> float:
    start = time.thread_time()
    fn()
    return time.thread_time() - start


def whole_decode(path: Path, ks: list[int], args: argparse.Namespace) -> list[dict]:
    """kmcodec.decode against Pillow's truecolor PNG decode of the same image, about args.whole_mpx MP."""
    with Image.open(path) as im:
        im = im.convert("RGB")
        scale = (args.whole_mpx * 1e6 / (im.width * im.height)) ** 0.5
        big = np.asarray(im.resize((round(im.width * scale), round(im.height * scale)), Image.Resampling.LANCZOS))
    h, w, _ = big.shape
    rows = []
    for k in ks:
        data = kmcodec.encode(big, k, method=args.method, effort=args.effort)
        info = kmcodec.read_info(data)
        with kmcodec.open_strips(data) as reader:
            strips = [labels for _, labels in reader.labels()]
        pixels = kmcodec.decode(data)
        buf = io.BytesIO()
        Image.fromarray(pixels).save(buf, "PNG")
        png = buf.getvalue()

        def pillow(png: bytes = png) -> None:
            with Image.open(io.BytesIO(png)) as im:
                im.load()

        load_before = os.getloadavg()[0]
        runs = paired_runs({"kmc": lambda data=data: kmcodec.decode(data), "png": pillow}, args.whole_repeat)
        row = {
            "image": path.name,
            "width": w,
            "height": h,
            "k": k,
            "strip_methods": sorted(set(info.strip_methods)),
            "strips": info.strips,
            "kmc_bytes": len(data),
            "png_bytes": len(png),
            "runs": runs,
            "wall": ratio_stats(runs["kmc"]["wall"], runs["png"]["wall"]),
            "cpu": ratio_stats(runs["kmc"]["cpu"], runs["png"]["cpu"]),
            "kmc_decode_s": statistics.median(runs["kmc"]["wall"]),
            "png_decode_s": statistics.median(runs["png"]["wall"]),
            "threads_used": statistics.median(
                c / x for c, x in zip(runs["kmc"]["cpu"], runs["kmc"]["wall"], strict=True)
            ),
            "load": [load_before, os.getloadavg()[0]],
            "limit": DECODE_LIMITS.get(k),
            "labels": label_times(strips, info.colors, args),
        }
        rows.append(row)
        print(
            f"  whole decode {w} x {h} k={k}: kmcodec.decode / Pillow PNG wall {row['wall']['median']:.2f} "
            f"(best {row['wall']['best']:.2f}), CPU {row['cpu']['median']:.2f}; load {load_before:.1f}",
            file=sys.stderr,
            flush=True,
        )
    return rows


# ---------------------------------------------------------------------------
# Reporting
# ---------------------------------------------------------------------------
def _ratio(record: dict, peer: str) -> float | None:
    theirs = record[peer].get("bytes")
    return record["ours"]["bytes"] / theirs if theirs else None


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---:" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _classes(records: list[dict]) -> list[str]:
    return list(dict.fromkeys(r["class"] for r in records))


def summarize(records: list[dict], peer_list: list[Peer], ks: list[int]) -> list[dict]:
    rows = []
    for cls in _classes(records):
        for k in ks:
            at_k = [r for r in records if r["k"] == k and r["class"] == cls]
            if not at_k:
                continue
            ours = [r["ours"] for r in at_k]
            row = {
                "class": cls,
                "k": k,
                "images": len(at_k),
                "ours_bytes": statistics.median(o["bytes"] for o in ours),
                "methods": sorted({m for o in ours for m in o["methods"]}),
                "search_mpx_s": statistics.median(o["search_mpx_s"] for o in ours),
                "encode_mpx_s": statistics.median(o["encode_mpx_s"] for o in ours),
                "decode_mpx_s": statistics.median(o["decode_mpx_s"] for o in ours),
                "png_decode_mpx_s": statistics.median(r["png_decode_mpx_s"] for r in at_k),
                "decode_time_vs_png": statistics.median(
                    r["png_decode_mpx_s"] / r["ours"]["decode_mpx_s"] for r in at_k
                ),
                "encode_time_vs_decode": statistics.median(o["decode_mpx_s"] / o["encode_mpx_s"] for o in ours),
                "search_time_vs_decode": statistics.median(o["decode_mpx_s"] / o["search_mpx_s"] for o in ours),
            }
            for peer in peer_list:
                ratios = [x for x in (_ratio(r, peer.name) for r in at_k) if x is not None]
                if not ratios:
                    reasons = sorted({r[peer.name]["skipped"] for r in at_k})
                    row[peer.name] = {"skipped": "; ".join(reasons)}
                    continue
                row[peer.name] = {
                    "bytes": statistics.median(r[peer.name]["bytes"] for r in at_k if "bytes" in r[peer.name]),
                    "ratio_median": statistics.median(ratios),
                    "ratio_worst": max(ratios),
                    "ours_larger": sum(x >= 1 for x in ratios),
                }
            rows.append(row)
    return rows


def graphics_verdict(records: list[dict]) -> dict | None:
    """Is ours smaller than both the best PNG-8 and WebP lossless on every graphic at every k?"""
    graphics = [r for r in records if r["class"] == GRAPHICS]
    if not graphics:
        return None
    failures, unchecked = [], []
    for r in graphics:
        for peer in ("png8", "webp"):
            if "bytes" not in r[peer]:
                unchecked.append(f"{r['image']} k={r['k']}: {peer} skipped ({r[peer]['skipped']})")
            elif r["ours"]["bytes"] >= r[peer]["bytes"]:
                failures.append(f"{r['image']} k={r['k']}: ours {r['ours']['bytes']} >= {peer} {r[peer]['bytes']}")
    return {"images": len({r["image"] for r in graphics}), "failures": failures, "unchecked": unchecked}


def report(
    records: list[dict], summary: list[dict], peer_list: list[Peer], whole: list[dict], args: argparse.Namespace
) -> str:
    ran = [p for p in peer_list if any("bytes" in r[p.name] for r in records)]
    per_image = _table(
        [
            "class",
            "image",
            "k",
            "ours B",
            "methods",
            *(f"{p.title} B" for p in ran),
            *(f"/ {p.name}" for p in ran),
            "dec Mpx/s",
            "PNG Mpx/s",
        ],
        [
            [
                r["class"],
                r["image"],
                str(r["k"]),
                str(r["ours"]["bytes"]),
                ",".join(sorted(set(r["ours"]["methods"]))),
                *(str(r[p.name].get("bytes", "skipped")) for p in ran),
                *(f"{x:.3f}" if (x := _ratio(r, p.name)) is not None else "" for p in ran),
                f"{r['ours']['decode_mpx_s']:.1f}",
                f"{r['png_decode_mpx_s']:.1f}",
            ]
            for r in records
        ],
    )
    header = ["class", "k", "images", "ours B", "methods", *(f"{p.title} B" for p in ran)]
    header += [f"ours / {p.name} (worst)" for p in ran]
    header += ["dec Mpx/s", "Pillow PNG dec Mpx/s", "dec time / PNG", "enc time / dec", "search time / dec"]
    medians = _table(
        header,
        [
            [
                row["class"],
                str(row["k"]),
                str(row["images"]),
                f"{row['ours_bytes']:.0f}",
                ",".join(row["methods"]),
                *(f"{row[p.name]['bytes']:.0f}" if "bytes" in row[p.name] else "skipped" for p in ran),
                *(
                    f"{row[p.name]['ratio_median']:.3f} ({row[p.name]['ratio_worst']:.3f})"
                    if "ratio_median" in row[p.name]
                    else "skipped"
                    for p in ran
                ),
                f"{row['decode_mpx_s']:.1f}",
                f"{row['png_decode_mpx_s']:.1f}",
                f"{row['decode_time_vs_png']:.2f}",
                f"{row['encode_time_vs_decode']:.2f}",
                f"{row['search_time_vs_decode']:.2f}",
            ]
            for row in summary
        ],
    )
    larger = [
        f"{r['class']}/{r['image']} k={r['k']}: ours {r['ours']['bytes']} >= {p.title} {r[p.name]['bytes']}"
        for r in records
        for p in ran
        if (x := _ratio(r, p.name)) is not None and x >= 1
    ]
    skipped = sorted(
        {
            f"{p.title} at k={r['k']}: {r[p.name]['skipped']}"
            for r in records
            for p in peer_list
            if "skipped" in r[p.name]
        }
    )
    method = f"auto at effort {args.effort}" if args.method == "auto" else args.method
    parts = [
        f"Ours: {method}. Clock: {args.clock} time, best of {args.repeat}; upscale x{args.upscale}; sizes in bytes.",
        "## Medians over images, per class",
        "Ratios are medians (and the worst) of per-image ratios; speeds are medians of per-image speeds; "
        "enc is coding each strip with its chosen method, search is the whole auto search.",
        medians,
    ]
    verdict = graphics_verdict(records)
    if verdict is not None:
        ok = not verdict["failures"] and not verdict["unchecked"]
        parts += [
            f"## Graphics: ours smaller than both best PNG-8 and WebP lossless on every image: {'yes' if ok else 'NO'}",
            f"{verdict['images']} images x {len(args.ks)} k.",
            "\n".join(f"- {line}" for line in verdict["failures"] + verdict["unchecked"]) or "- no failures",
        ]
    if whole:
        parts += whole_report(whole, args)
    parts += [
        "## Images where ours is not smaller",
        "\n".join(f"- {line}" for line in larger) or "- none",
        "## Per image",
        per_image,
    ]
    if skipped:
        parts += ["## Skipped", "\n".join(f"- {line}" for line in skipped)]
    return "\n\n".join(parts)


def _verdict(value: float, limit: float | None) -> str:
    if limit is None:
        return "-"
    return f"{'yes' if value <= limit else 'NO'} (<= {limit:g})"


def whole_report(whole: list[dict], args: argparse.Namespace) -> list[str]:
    """The whole-decode and label-coder timing sections of the report."""
    decode = _table(
        [
            "image",
            "size",
            "k",
            "methods",
            ".kmc B",
            "PNG B",
            "kmcodec.decode s",
            "Pillow PNG s",
            "wall kmc / PNG: median (q1-q3)",
            "best / best",
            "CPU kmc / PNG: median (best)",
            "kmc threads busy",
            "load",
            "median wall within limit",
        ],
        [
            [
                w["image"],
                f"{w['width']} x {w['height']}",
                str(w["k"]),
                ",".join(w["strip_methods"]),
                str(w["kmc_bytes"]),
                str(w["png_bytes"]),
                f"{w['kmc_decode_s']:.3f}",
                f"{w['png_decode_s']:.3f}",
                f"{w['wall']['median']:.2f} ({w['wall']['q1']:.2f}-{w['wall']['q3']:.2f})",
                f"{w['wall']['best']:.2f}",
                f"{w['cpu']['median']:.2f} ({w['cpu']['best']:.2f})",
                f"{w['threads_used']:.2f}",
                f"{w['load'][0]:.1f}-{w['load'][1]:.1f}",
                _verdict(w["wall"]["median"], w["limit"]),
            ]
            for w in whole
        ],
    )
    label_rows = []
    for w in whole:
        for name, t in w["labels"].items():
            title = f"auto, effort {args.effort}" if name == "search" else name
            if name == "search" and args.method != "auto":
                title = args.method
            label_rows.append(
                [
                    str(w["k"]),
                    title,
                    ",".join(t["methods"]),
                    str(t["bytes"]),
                    f"{t['encode_s']:.3f}",
                    f"{t['decode_s']:.3f}",
                    f"{t['encode_vs_decode']:.2f}",
                    _verdict(t["encode_vs_decode"], LABEL_ENCODE_LIMIT) if name == "search" else "-",
                ]
            )
    labels = _table(
        ["k", "coder", "methods used", "label B", "encode s", "decode s", "encode / decode", "within limit"],
        label_rows,
    )
    return [
        "## Whole decode of a big image against Pillow's truecolor PNG decode",
        f"{args.whole_repeat} rounds in one process, kmcodec.decode (parse, CRCs, labels in strip threads, "
        "palette) and Pillow's PNG decode run side by side in each, in alternating order. "
        "Wall: median over rounds of the per-round ratio (quartiles in brackets), and best / best. "
        "CPU: process CPU time, all threads, so kmcodec's two strip threads both count: the ratio of the "
        "work done, which is what the wall ratio would be with one core; it is also less disturbed by "
        "other processes than the wall clock. 'kmc threads busy' is kmcodec's CPU / wall time (2 at best "
        "on two free cores). 'load' is the 1-minute load average before and after.",
        decode,
        "## Label coders on the same image (one thread, thread CPU time, median of rounds)",
        f"Strip by strip as in the file; 'auto, effort {args.effort}' is the search kmcodec.encode makes, "
        "against decoding what it chose; the limit is encode <= 2 x decode.",
        labels,
    ]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", nargs="?", type=Path, default=DEFAULT_FOLDER, help="folder of images, or one image")
    parser.add_argument("--k", default="16,64,256", help="palette sizes, comma-separated (default 16,64,256)")
    parser.add_argument("--limit", type=int, default=None, help="use only the first N images of each class")
    parser.add_argument("--method", default="auto", help="kmcodec label coding method(s), as kmcodec.encode takes")
    parser.add_argument("--effort", type=int, default=2, choices=sorted(EFFORT_METHODS), help="effort of auto")
    parser.add_argument("--repeat", type=int, default=3, help="timing runs per measurement; the best counts")
    parser.add_argument("--clock", choices=("cpu", "wall"), default="cpu", help="thread CPU time or wall clock")
    parser.add_argument("--upscale", type=int, default=1, help="enlarge each image N times (LANCZOS) first")
    parser.add_argument("--no-jxl", dest="jxl", action="store_false", help="leave out JPEG XL (slow at effort 9)")
    parser.add_argument("--whole-decode", type=Path, help="photo for the whole-decode timing (default: the first)")
    parser.add_argument("--no-whole-decode", dest="whole", action="store_false", help="leave the whole decode out")
    parser.add_argument("--whole-mpx", type=float, default=12.0, help="megapixels of the whole-decode image")
    parser.add_argument("--whole-k", default="16,64,256", help="palette sizes of the whole-decode timing")
    parser.add_argument("--whole-repeat", type=int, default=9, help="rounds of the whole-decode timing (median)")
    parser.add_argument("--json", type=Path, help="also write every measurement to this JSON file")
    args = parser.parse_args(argv)
    try:
        args.ks = [int(x) for x in args.k.split(",") if x.strip()]
        args.whole_ks = [int(x) for x in args.whole_k.split(",") if x.strip()]
    except ValueError:
        parser.error(f"--k and --whole-k must be comma-separated integers, not {args.k!r} / {args.whole_k!r}")
    if not args.ks or any(not 1 <= k <= 65536 for k in args.ks + args.whole_ks):
        parser.error("--k values must be from 1 to 65536")
    if args.repeat < 1 or args.upscale < 1 or args.whole_repeat < 1:
        parser.error("--repeat, --whole-repeat and --upscale must be at least 1")
    try:
        EncodeOptions(method=args.method, effort=args.effort)
    except kmcodec.KmcError as exc:
        parser.error(str(exc))
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    peer_list = peers(args.jxl)
    warm = np.zeros((2, 2), np.uint8)  # load (or compile) the kernels outside the timings
    for method in TIMED_METHODS:
        decode_strip(memoryview(encode_strip(warm, 2, method)), method, 2, 2, 2)
    images = find_classes(args.folder, args.limit)
    records = []
    for cls, path in images:
        records += bench_image(cls, path, args.ks, peer_list, args)
    photo = args.whole_decode or next((p for c, p in images if c == "photos"), images[0][1])
    whole = whole_decode(photo, args.whole_ks, args) if args.whole else []
    summary = summarize(records, peer_list, args.ks)
    print(report(records, summary, peer_list, whole, args))
    if args.json:
        args.json.write_text(json.dumps({"records": records, "summary": summary, "whole_decode": whole}, indent=1))


if __name__ == "__main__":
    main()
