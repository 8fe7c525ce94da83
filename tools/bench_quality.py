"""Quality benchmark: kmcodec's palette against plain k-means and common palette quantizers.

For every image and palette size k, each method turns the same RGB pixels into
a palette image, and the PSNR of that image against the input is measured here,
from the pixels, the same way for all.  The methods, run one after the other in
this process:

kmcodec
    ``kmcodec.encode`` then ``kmcodec.decode``; the time covers both, so it
    includes label coding that the other in-process methods do not do.
k-means (full)
    scikit-learn ``KMeans`` on *all* pixels: k-means++ init, ``n_init=1``,
    ``max_iter=300``, default ``tol``, ``random_state=0``.  This is the
    reference kmcodec should stay within 0.2 dB of.  Its centres are rounded
    to uint8 and every pixel keeps its k-means label.  It is slow (20-120 s
    per 1-1.3 MP photo at k=256 on two cores, 70 s median over the corpus):
    ``--ref-max-k`` skips it above a given k.
k-means (1k sample)
    scikit-learn's colour-quantization recipe: ``KMeans`` fitted on 1,000
    pixels drawn with ``sklearn.utils.shuffle(random_state=0)``, then
    ``predict`` on all pixels.
Pillow median cut
    ``Image.quantize(method=MEDIANCUT, dither=NONE)``.
libimagequant
    the ``imagequant`` package, ``dithering_level=0``, other settings default.
pngquant
    ``pngquant --nofs`` on a temporary PNG of the input; the time is the whole
    command (process start, PNG decode and encode included).

Times are wall-clock seconds from the RGB array in memory to the quantized RGB
image (pngquant: the command alone).  scikit-learn runs its OpenMP threads on
every core; the others use one.  Pillow, libimagequant and pngquant stop at
256 colours.  A method that cannot run (not installed, or k out of its range)
is reported as skipped, with the reason.

The summary gives, per k and method, medians over the images of PSNR and time,
and the median and worst of the paired differences kmcodec minus method (dB)
and of the time ratios kmcodec / method.

Usage::

    python tools/bench_quality.py                          # ../shared/corpus/photos, k = 16, 64, 256
    python tools/bench_quality.py FOLDER --k 16,64 --limit 8 --json out.json
    python tools/bench_quality.py --ref-max-k 64           # full-data k-means at k <= 64 only
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path

import numpy as np
from benchlib import find_images
from PIL import Image

import kmcodec

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_FOLDER = ROOT.parent / "shared" / "corpus" / "photos"
#: Pixels the scikit-learn colour-quantization example fits on.
SAMPLE_PIXELS = 1000
#: Pillow, libimagequant and pngquant make 8-bit palettes.
PALETTE_LIMIT = 256
#: kmcodec may fall at most this far below full-data k-means.
REF_MARGIN_DB = 0.2
OURS = "kmcodec"
REFERENCE = "kmeans_full"


class Skip(Exception):
    """A method cannot run on this machine or for this k; the message says why."""


@dataclasses.dataclass
class Case:
    """One image at one k, as every method sees it."""

    rgb: np.ndarray  # (H, W, 3) uint8
    png_path: Path  # the same pixels as a PNG file, for command-line tools
    k: int
    seed: int
    ref_max_k: int | None


@dataclasses.dataclass
class Method:
    name: str
    title: str
    #: Returns (quantized RGB image (H, W, 3) uint8, seconds, extra facts for the JSON).
    run: Callable[[Case], tuple[np.ndarray, float, dict]]
    #: Why the method cannot run at all here, or None.
    missing: str | None = None


# ---------------------------------------------------------------------------
# The methods
# ---------------------------------------------------------------------------
def _run_kmcodec(case: Case) -> tuple[np.ndarray, float, dict]:
    start = time.perf_counter()
    data = kmcodec.encode(case.rgb, colors=case.k, seed=case.seed)
    out = kmcodec.decode(data)
    seconds = time.perf_counter() - start
    info = kmcodec.read_info(data)
    return out, seconds, {"iterations": info.iterations, "bytes": len(data), "info_psnr": _finite(info.psnr)}


def _from_centres(centres: np.ndarray, labels: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    palette = np.clip(np.rint(centres), 0, 255).astype(np.uint8)
    return palette[labels].reshape(shape)


def _run_kmeans_full(case: Case) -> tuple[np.ndarray, float, dict]:
    from sklearn.cluster import KMeans

    if case.ref_max_k is not None and case.k > case.ref_max_k:
        msg = f"k > --ref-max-k {case.ref_max_k}"
        raise Skip(msg)
    start = time.perf_counter()
    pixels = case.rgb.reshape(-1, 3).astype(np.float64)
    km = KMeans(n_clusters=case.k, init="k-means++", n_init=1, max_iter=300, random_state=0).fit(pixels)
    out = _from_centres(km.cluster_centers_, km.labels_, case.rgb.shape)
    return out, time.perf_counter() - start, {"iterations": int(km.n_iter_)}


def _run_kmeans_sample(case: Case) -> tuple[np.ndarray, float, dict]:
    from sklearn.cluster import KMeans
    from sklearn.utils import shuffle

    n_samples = min(SAMPLE_PIXELS, case.rgb.shape[0] * case.rgb.shape[1])
    if case.k > n_samples:
        msg = f"k > the {n_samples} sampled pixels"
        raise Skip(msg)
    start = time.perf_counter()
    pixels = case.rgb.reshape(-1, 3).astype(np.float64)
    sample = shuffle(pixels, random_state=0, n_samples=n_samples)
    km = KMeans(n_clusters=case.k, n_init=1, random_state=0).fit(sample)
    out = _from_centres(km.cluster_centers_, km.predict(pixels), case.rgb.shape)
    return out, time.perf_counter() - start, {"iterations": int(km.n_iter_)}


def _check_palette_limit(k: int) -> None:
    if k > PALETTE_LIMIT:
        msg = f"k > {PALETTE_LIMIT}"
        raise Skip(msg)


def _run_pillow(case: Case) -> tuple[np.ndarray, float, dict]:
    _check_palette_limit(case.k)
    start = time.perf_counter()
    quantized = Image.fromarray(case.rgb).quantize(case.k, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    out = np.asarray(quantized.convert("RGB"))
    return out, time.perf_counter() - start, {}


def _run_imagequant(case: Case) -> tuple[np.ndarray, float, dict]:
    import imagequant

    _check_palette_limit(case.k)
    h, w, _ = case.rgb.shape
    start = time.perf_counter()
    rgba = np.dstack([case.rgb, np.full((h, w), 255, np.uint8)])
    indices, palette = imagequant.quantize_raw_rgba_bytes(rgba.tobytes(), w, h, dithering_level=0.0, max_colors=case.k)
    rgb_palette = np.asarray(palette, np.uint8).reshape(-1, 4)[:, :3]
    out = rgb_palette[np.frombuffer(indices, np.uint8)].reshape(h, w, 3)
    return out, time.perf_counter() - start, {}


def _run_pngquant(case: Case) -> tuple[np.ndarray, float, dict]:
    _check_palette_limit(case.k)
    out_path = case.png_path.with_name("pngquant-out.png")
    command = [shutil.which("pngquant") or "pngquant", "--nofs", "--force", "--output", str(out_path)]
    start = time.perf_counter()
    subprocess.run([*command, str(case.k), "--", str(case.png_path)], check=True, capture_output=True)
    seconds = time.perf_counter() - start
    with Image.open(out_path) as quantized:
        out = np.asarray(quantized.convert("RGB"))
    return out, seconds, {}


def _missing_module(name: str, package: str) -> str | None:
    try:
        __import__(name)
    except ImportError:
        return f"{package} not installed"
    return None


def methods() -> list[Method]:
    """Every method, with why it cannot run here when it cannot."""
    sklearn = _missing_module("sklearn", "scikit-learn")
    pngquant = None if shutil.which("pngquant") else "pngquant not on PATH"
    return [
        Method(OURS, "kmcodec", _run_kmcodec),
        Method(REFERENCE, "k-means (full)", _run_kmeans_full, sklearn),
        Method("kmeans_sample", "k-means (1k sample)", _run_kmeans_sample, sklearn),
        Method("pillow_mediancut", "Pillow median cut", _run_pillow),
        Method("imagequant", "libimagequant", _run_imagequant, _missing_module("imagequant", "imagequant")),
        Method("pngquant", "pngquant --nofs", _run_pngquant, pngquant),
    ]


# ---------------------------------------------------------------------------
# Measuring
# ---------------------------------------------------------------------------
def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB between two uint8 arrays of one shape (inf when equal)."""
    diff = a.astype(np.int32) - b.astype(np.int32)
    mse = float(np.mean(diff * diff))
    return math.inf if mse == 0 else 10 * math.log10(255**2 / mse)


def _finite(x: float | None) -> float | None:
    return x if x is not None and math.isfinite(x) else None


def _jsonable(value: object) -> object:
    """*value* with inf PSNRs (lossless results) as null, which JSON can hold."""
    if isinstance(value, dict):
        return {key: _jsonable(v) for key, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    return _finite(value) if isinstance(value, float) else value


def _delta(ours: float, theirs: float) -> float:
    """ours - theirs, 0 when both are inf (both lossless)."""
    return 0.0 if ours == theirs else ours - theirs


def load_rgb(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def bench_image(path: Path, ks: list[int], peers: list[Method], args: argparse.Namespace) -> list[dict]:
    """Run every method at every k on one image; one record per k."""
    rgb = load_rgb(path)
    records = []
    with tempfile.TemporaryDirectory(prefix="bench_quality-") as tmp:
        png_path = Path(tmp) / "input.png"
        Image.fromarray(rgb).save(png_path, compress_level=1)
        for k in ks:
            case = Case(rgb, png_path, k, args.seed, args.ref_max_k)
            results = {}
            for method in peers:
                if method.missing:
                    results[method.name] = {"skipped": method.missing}
                    continue
                try:
                    out, seconds, extra = method.run(case)
                except Skip as exc:
                    results[method.name] = {"skipped": str(exc)}
                    continue
                results[method.name] = {"psnr": psnr(out, rgb), "seconds": seconds, **extra}
                print(
                    f"  {path.name} k={k} {method.name}: {results[method.name]['psnr']:.2f} dB, {seconds:.2f} s",
                    file=sys.stderr,
                    flush=True,
                )
            records.append({"image": path.name, "pixels": rgb.shape[0] * rgb.shape[1], "k": k, "methods": results})
    return records


def summarize(records: list[dict], peers: list[Method], ks: list[int]) -> list[dict]:
    """Per k and method: medians over images, and paired kmcodec-minus-method statistics."""
    rows = []
    for k in ks:
        at_k = [r["methods"] for r in records if r["k"] == k]
        for method in peers:
            ran = [m for m in at_k if "psnr" in m[method.name]]
            row = {"k": k, "method": method.name, "images": len(ran)}
            if not ran:
                reasons = sorted({m[method.name]["skipped"] for m in at_k})
                rows.append({**row, "skipped": "; ".join(reasons)})
                continue
            row["psnr_median"] = statistics.median(m[method.name]["psnr"] for m in ran)
            row["seconds_median"] = statistics.median(m[method.name]["seconds"] for m in ran)
            paired = [m for m in ran if "psnr" in m[OURS]]
            if method.name != OURS and paired:
                delta = [_delta(m[OURS]["psnr"], m[method.name]["psnr"]) for m in paired]
                ratio = [m[OURS]["seconds"] / m[method.name]["seconds"] for m in paired]
                row.update(
                    delta_db_median=statistics.median(delta),
                    delta_db_worst=min(delta),
                    time_ratio_median=statistics.median(ratio),
                )
            rows.append(row)
    return rows


def shortfalls(records: list[dict]) -> list[str]:
    """Where kmcodec is more than REF_MARGIN_DB below full k-means, or below pngquant."""
    lines = []
    for r in records:
        m = r["methods"]
        if "psnr" not in m[OURS]:
            continue
        ours = m[OURS]["psnr"]
        ref = m[REFERENCE].get("psnr")
        if ref is not None and ours < ref - REF_MARGIN_DB:
            lines.append(f"{r['image']} k={r['k']}: kmcodec {ours:.2f} dB, {ours - ref:+.2f} dB vs full k-means")
        pq = m["pngquant"].get("psnr")
        if pq is not None and ours < pq:
            lines.append(f"{r['image']} k={r['k']}: kmcodec {ours:.2f} dB, {ours - pq:+.2f} dB vs pngquant")
    return lines


# ---------------------------------------------------------------------------
# Reporting
# ---------------------------------------------------------------------------
def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _cell(result: dict) -> str:
    if "skipped" in result:
        return "skipped"
    return f"{result['psnr']:.2f} ({result['seconds']:.2f} s)"


def _num(row: dict, key: str, fmt: str) -> str:
    return format(row[key], fmt) if key in row else ""


def report(records: list[dict], summary: list[dict], peers: list[Method], flagged: list[str]) -> str:
    titles = {m.name: m.title for m in peers}
    per_image = _table(
        ["image", "k", *(f"{m.title} dB (s)" for m in peers)],
        [[r["image"], str(r["k"]), *(_cell(r["methods"][m.name]) for m in peers)] for r in records],
    )
    medians = _table(
        ["k", "method", "images", "PSNR dB", "time s", "kmcodec − it, dB", "worst, dB", "time kmcodec/it"],
        [
            [
                str(row["k"]),
                titles[row["method"]],
                str(row["images"]),
                *(
                    [f"skipped: {row['skipped']}", "", "", "", ""]
                    if "skipped" in row
                    else [
                        _num(row, "psnr_median", ".2f"),
                        _num(row, "seconds_median", ".2f"),
                        _num(row, "delta_db_median", "+.2f"),
                        _num(row, "delta_db_worst", "+.2f"),
                        _num(row, "time_ratio_median", ".2f"),
                    ]
                ),
            ]
            for row in summary
        ],
    )
    skipped = sorted(
        {
            f"{titles[name]} at k={r['k']}: {res['skipped']}"
            for r in records
            for name, res in r["methods"].items()
            if "skipped" in res
        }
    )
    parts = [
        "## Per image: PSNR dB (wall time)",
        per_image,
        "## Medians over images",
        "Differences and ratios are medians (and the worst case) of per-image pairs, not differences of medians.",
        medians,
        f"## kmcodec more than {REF_MARGIN_DB} dB below full k-means, or below pngquant",
        "\n".join(f"- {line}" for line in flagged) or "- none",
    ]
    if skipped:
        parts += ["## Skipped", "\n".join(f"- {line}" for line in skipped)]
    return "\n\n".join(parts)


def environment() -> dict:
    versions = {"python": platform.python_version(), "numpy": np.__version__, "kmcodec": kmcodec.__version__}
    for module, key in [("PIL", "pillow"), ("sklearn", "scikit-learn")]:
        try:
            versions[key] = __import__(module).__version__
        except ImportError:
            versions[key] = None
    try:
        versions["imagequant"] = metadata.version("imagequant")
    except metadata.PackageNotFoundError:
        versions["imagequant"] = None
    exe = shutil.which("pngquant")
    if exe:
        versions["pngquant"] = subprocess.run([exe, "--version"], capture_output=True, text=True).stdout.strip()
    return {"versions": versions, "cpus": os.cpu_count(), "machine": platform.machine()}


# ---------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------
def _k_list(text: str) -> list[int]:
    try:
        ks = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        ks = []
    if not ks or any(k < 1 for k in ks):
        msg = f"expected comma-separated positive integers, not {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return ks


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        msg = f"must be positive, not {value}"
        raise argparse.ArgumentTypeError(msg)
    return value


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "folder", nargs="?", type=Path, default=DEFAULT_FOLDER, help=f"folder of images (default: {DEFAULT_FOLDER})"
    )
    parser.add_argument("--k", type=_k_list, default=[16, 64, 256], help="palette sizes, comma-separated")
    parser.add_argument("--limit", type=_positive, help="use only the first N images (sorted by name)")
    parser.add_argument("--seed", type=int, default=0, help="kmcodec's seed (scikit-learn always uses 0)")
    parser.add_argument(
        "--ref-max-k",
        type=_positive,
        help="skip the slow full-data k-means reference above this k (default: run it at every k)",
    )
    parser.add_argument("--json", type=Path, help="also write every measurement to this JSON file")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    paths = find_images(args.folder, args.limit)
    peers = methods()
    records = []
    for i, path in enumerate(paths, 1):
        print(f"[{i}/{len(paths)}] {path.name}", file=sys.stderr, flush=True)
        records += bench_image(path, args.k, peers, args)
    summary = summarize(records, peers, args.k)
    flagged = shortfalls(records)
    print(report(records, summary, peers, flagged))
    if args.json:
        doc = {
            "command": [Path(sys.argv[0]).name, *sys.argv[1:]],
            "folder": str(args.folder),
            "environment": environment(),
            "records": records,
            "summary": summary,
            "shortfalls": flagged,
        }
        args.json.write_text(json.dumps(_jsonable(doc), indent=1) + "\n")


if __name__ == "__main__":
    main()
