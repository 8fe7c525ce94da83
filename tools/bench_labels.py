"""Label coding benchmark: the cm coder against PNG-8, WebP lossless and JPEG XL on the same palette image.

For every image and palette size k the image is quantized once, with
``kmcodec.quantize.quantize``; every coder then stores that same palette
image, and the sizes are compared:

ours
    ``kmcodec.cm.encode_labels`` per strip of about a million labels (the
    strip height kmcodec's container uses), plus 17 bytes of framing a strip
    (STRP chunk length, type, CRC, index and method) and the palette, k x 3
    bytes.  The container's fixed header (under 100 bytes) is not counted.
best PNG-8
    the smaller of Pillow's ``optimize=True`` palette PNG and that file
    after ``pyoxipng`` level 2 (k <= 256 only).
WebP lossless
    Pillow, ``lossless=True, method=6`` (libwebp finds the palette itself).
JPEG XL lossless
    ``imagecodecs.jpegxl_encode(..., lossless=True, effort=9)``; slow (several
    seconds a megapixel), ``--no-jxl`` leaves it out.

Speeds are Mpx/s of our encoder and decoder (all strips, one thread) next to
Pillow decoding the same image saved as a truecolor RGB PNG (Pillow's
default settings), best of ``--repeat`` runs.  ``--clock cpu`` (the default)
times with the thread's CPU time, which other processes on a busy machine
disturb less than the wall clock; ``--clock wall`` uses the wall clock.

A peer that cannot run (package missing, k too large) is reported as
skipped, with the reason.  The summary gives per k the medians over the
images of sizes, ratios ours / peer and speeds, and the worst ratio.

Usage::

    python tools/bench_labels.py                        # ../shared/corpus/photos, k = 16, 64, 256
    python tools/bench_labels.py FOLDER --k 16,64 --limit 10 --json out.json
    python tools/bench_labels.py ../shared/corpus/photos/wiki043.png --upscale 3 --k 16,256 --no-jxl  # 11.8 MP
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from benchlib import find_images
from PIL import Image

from kmcodec.cm import decode_labels, encode_labels
from kmcodec.quantize import quantize

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_FOLDER = ROOT.parent / "shared" / "corpus" / "photos"
#: Labels per strip, as kmcodec's container cuts them (kmcodec.codec.STRIP_LABELS).
STRIP_LABELS = 1 << 20
#: STRP chunk framing: length (4), type (4), CRC (4), then index (4) and method (1).
STRIP_OVERHEAD = 17
PNG8_LIMIT = 256


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


def measure_ours(labels: np.ndarray, k: int, repeat: int, clock: Callable[[], float]) -> dict:
    h, w = labels.shape
    rows = max(1, STRIP_LABELS // w)
    strips = [labels[top : top + rows] for top in range(0, h, rows)]
    enc_s, coded = _best_time(lambda: [encode_labels(s, k) for s in strips], repeat, clock)
    dec_s, decoded = _best_time(
        lambda: [decode_labels(c, *s.shape, k) for c, s in zip(coded, strips, strict=True)], repeat, clock
    )
    if not all(np.array_equal(d, s) for d, s in zip(decoded, strips, strict=True)):
        msg = "cm round trip failed"
        raise AssertionError(msg)
    label_bytes = sum(len(c) for c in coded)
    return {
        "label_bytes": label_bytes,
        "strips": len(strips),
        "bytes": label_bytes + STRIP_OVERHEAD * len(strips) + k * 3,
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


def bench_image(path: Path, ks: list[int], peer_list: list[Peer], args: argparse.Namespace) -> list[dict]:
    rgb = load_rgb(path, args.upscale)
    clock = time.thread_time if args.clock == "cpu" else time.perf_counter
    records = []
    for k in ks:
        q = quantize(rgb, k, has_alpha=False, seed=0)
        kk = len(q.palette)
        image = q.palette[q.labels]
        record = {"image": path.name, "pixels": int(q.labels.size), "k": k, "palette": kk}
        record["ours"] = measure_ours(q.labels, kk, args.repeat, clock)
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
        print(
            f"  {path.name} k={k}: ours {record['ours']['bytes']}, {sizes}; "
            f"dec {record['ours']['decode_mpx_s']:.1f} Mpx/s, PNG {record['png_decode_mpx_s']:.1f} Mpx/s",
            file=sys.stderr,
            flush=True,
        )
    return records


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


def summarize(records: list[dict], peer_list: list[Peer], ks: list[int]) -> list[dict]:
    rows = []
    for k in ks:
        at_k = [r for r in records if r["k"] == k]
        if not at_k:
            continue
        row = {
            "k": k,
            "images": len(at_k),
            "ours_bytes": statistics.median(r["ours"]["bytes"] for r in at_k),
            "encode_mpx_s": statistics.median(r["ours"]["encode_mpx_s"] for r in at_k),
            "decode_mpx_s": statistics.median(r["ours"]["decode_mpx_s"] for r in at_k),
            "png_decode_mpx_s": statistics.median(r["png_decode_mpx_s"] for r in at_k),
            "decode_time_vs_png": statistics.median(r["png_decode_mpx_s"] / r["ours"]["decode_mpx_s"] for r in at_k),
            "encode_time_vs_decode": statistics.median(
                r["ours"]["decode_mpx_s"] / r["ours"]["encode_mpx_s"] for r in at_k
            ),
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


def report(records: list[dict], summary: list[dict], peer_list: list[Peer], args: argparse.Namespace) -> str:
    ran = [p for p in peer_list if any("bytes" in r[p.name] for r in records)]
    per_image = _table(
        [
            "image",
            "k",
            "ours B",
            *(f"{p.title} B" for p in ran),
            *(f"/ {p.name}" for p in ran),
            "dec Mpx/s",
            "PNG Mpx/s",
        ],
        [
            [
                r["image"],
                str(r["k"]),
                str(r["ours"]["bytes"]),
                *(str(r[p.name].get("bytes", "skipped")) for p in ran),
                *(f"{x:.3f}" if (x := _ratio(r, p.name)) is not None else "" for p in ran),
                f"{r['ours']['decode_mpx_s']:.1f}",
                f"{r['png_decode_mpx_s']:.1f}",
            ]
            for r in records
        ],
    )
    header = ["k", "images", "ours B", *(f"{p.title} B" for p in ran)]
    header += [f"ours / {p.name} (worst)" for p in ran]
    header += ["enc Mpx/s", "dec Mpx/s", "Pillow PNG dec Mpx/s", "dec time / PNG", "enc time / dec"]
    medians = _table(
        header,
        [
            [
                str(row["k"]),
                str(row["images"]),
                f"{row['ours_bytes']:.0f}",
                *(f"{row[p.name]['bytes']:.0f}" if "bytes" in row[p.name] else "skipped" for p in ran),
                *(
                    f"{row[p.name]['ratio_median']:.3f} ({row[p.name]['ratio_worst']:.3f})"
                    if "ratio_median" in row[p.name]
                    else "skipped"
                    for p in ran
                ),
                f"{row['encode_mpx_s']:.1f}",
                f"{row['decode_mpx_s']:.1f}",
                f"{row['png_decode_mpx_s']:.1f}",
                f"{row['decode_time_vs_png']:.2f}",
                f"{row['encode_time_vs_decode']:.2f}",
            ]
            for row in summary
        ],
    )
    larger = [
        f"{r['image']} k={r['k']}: ours {r['ours']['bytes']} >= {p.title} {r[p.name]['bytes']}"
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
    parts = [
        f"Clock: {args.clock} time, best of {args.repeat}; upscale x{args.upscale}; sizes in bytes.",
        "## Medians over images",
        "Ratios are medians (and the worst) of per-image ratios; speeds are medians of per-image speeds.",
        medians,
        "## Images where ours is not smaller",
        "\n".join(f"- {line}" for line in larger) or "- none",
        "## Per image",
        per_image,
    ]
    if skipped:
        parts += ["## Skipped", "\n".join(f"- {line}" for line in skipped)]
    return "\n\n".join(parts)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", nargs="?", type=Path, default=DEFAULT_FOLDER, help="folder of images, or one image")
    parser.add_argument("--k", default="16,64,256", help="palette sizes, comma-separated (default 16,64,256)")
    parser.add_argument("--limit", type=int, default=None, help="use only the first N images (sorted by name)")
    parser.add_argument("--repeat", type=int, default=3, help="timing runs per measurement; the best counts")
    parser.add_argument("--clock", choices=("cpu", "wall"), default="cpu", help="thread CPU time or wall clock")
    parser.add_argument("--upscale", type=int, default=1, help="enlarge each image N times (LANCZOS) first")
    parser.add_argument("--no-jxl", dest="jxl", action="store_false", help="leave out JPEG XL (slow at effort 9)")
    parser.add_argument("--json", type=Path, help="also write every measurement to this JSON file")
    args = parser.parse_args(argv)
    try:
        args.ks = [int(x) for x in args.k.split(",") if x.strip()]
    except ValueError:
        parser.error(f"--k must be comma-separated integers, not {args.k!r}")
    if not args.ks or any(not 1 <= k <= 65536 for k in args.ks):
        parser.error("--k values must be from 1 to 65536")
    if args.repeat < 1 or args.upscale < 1:
        parser.error("--repeat and --upscale must be at least 1")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    peer_list = peers(args.jxl)
    warm = np.zeros((2, 2), np.uint8)  # load (or compile) the kernels outside the timings
    decode_labels(encode_labels(warm, 2), 2, 2, 2)
    records = []
    for path in find_images(args.folder, args.limit):
        records += bench_image(path, args.ks, peer_list, args)
    summary = summarize(records, peer_list, args.ks)
    print(report(records, summary, peer_list, args))
    if args.json:
        args.json.write_text(json.dumps({"records": records, "summary": summary}, indent=1))


if __name__ == "__main__":
    main()
