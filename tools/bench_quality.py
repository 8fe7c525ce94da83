"""Quality benchmark: kmcodec's palette against plain k-means and common palette quantizers.

For every image and palette size k, each method turns the same RGB pixels into
a palette image.  The same code then measures every result against the input
(:mod:`kmcodec.metrics`): PSNR, mean CIEDE2000, SSIM (gaussian, per channel),
and the bytes it takes to store:

``.kmc bytes``
    kmcodec's own file for kmcodec; for a peer, ``kmcodec.encode`` of its
    palette image (at most k colours, so kmcodec stores exactly that palette
    and those labels): the same label coder on their labels, a fair label
    comparison.
``PNG-8 bytes``
    the smallest of: the tool's own PNG (pngquant), Pillow's PNG of the
    palette image with ``optimize=True``, and oxipng (level 2) of that,
    unless ``--no-oxipng``.  Only for results of at most 256 colours.

The methods, run one after the other in this process:

kmcodec
    ``kmcodec.encode`` then ``kmcodec.decode``; the time covers both, so it
    includes label coding that the other in-process methods do not do.
kmcodec oklab, kmcodec oklab-linear, kmcodec oklab-srgb
    the same with ``colorspace="oklab"`` and ``"oklab-linear"`` (k-means and the
    mapping in Oklab, clusters averaged in Oklab or in linear light) and
    ``"oklab-srgb"`` (fitted in Oklab, refined and mapped in sRGB).
kmcodec dithered
    the same with ``dither=1.0`` (``--dither`` sets the strength), in sRGB
    like the rows above; ``--curves`` measures ``kmc encode --dither``'s
    default (Oklab + masking, Oklab error).
k-means (full)
    scikit-learn ``KMeans`` on *all* pixels: k-means++ init, ``n_init=1``,
    ``max_iter=300``, default ``tol``, ``random_state=0``; centres rounded to
    uint8, every pixel keeps its k-means label.  The reference kmcodec should
    stay within 0.2 dB of.  Slow (20-120 s per 1-1.3 MP photo at k=256 on
    two cores): ``--ref-max-k`` skips it above a given k.
k-means (1k sample)
    scikit-learn's colour-quantization recipe: ``KMeans`` fitted on 1,000
    pixels drawn with ``sklearn.utils.shuffle(random_state=0)``, then
    ``predict`` on all pixels.
Pillow median cut, Pillow fast octree, Pillow libimagequant
    ``Image.quantize(method=..., dither=NONE)``; the last needs a Pillow
    built with libimagequant.
libimagequant
    the ``imagequant`` package, ``dithering_level=0``, other settings default.
pngquant --nofs, pngquant (dithered)
    the ``pngquant`` command on a temporary PNG of the input, without and with
    its default Floyd-Steinberg dithering; the time is the whole command
    (process start, PNG decode and encode included).

Times are wall-clock seconds from the RGB array in memory to the quantized RGB
image (pngquant: the command alone).  scikit-learn runs its OpenMP threads on
every core; the others use one.  Pillow, libimagequant and pngquant stop at
256 colours.  A method that cannot run (not installed, or k out of its range)
is reported as skipped, with the reason.

The summary gives, per k and method, medians over the images; then paired
comparisons, per image and then summarised by the median and the worst image:
kmcodec (each colour space) against each undithered method, kmcodec dithered against pngquant
dithered and against kmcodec.  Differences are "ours minus theirs" (PSNR and
SSIM: higher is better; CIEDE2000: lower is better) and ratios "ours / theirs".

Usage::

    python tools/bench_quality.py                          # ../shared/corpus/photos, k = 16, 64, 256
    python tools/bench_quality.py FOLDER --k 16,64 --limit 8 --json out.json
    python tools/bench_quality.py --ref-max-k 64           # full-data k-means at k <= 64 only
    python tools/bench_quality.py --methods kmcodec,pngquant,imagequant
    python tools/bench_quality.py --merge part1.json part2.json   # one report of runs on disjoint images

Rate-quality curves (``--curves``, issue 18; :mod:`quality_curves` says what
they hold): SSIMULACRA2 and PSNR against bytes over k = 16 ... 256 for kmc,
plain and dithered, and pngquant, dithered and ``--nofs``, each optimised by
oxipng and each also as WebP lossless, with BD-rates between the curves::

    python tools/bench_quality.py --curves --jobs 2 --json curves.json
    python tools/bench_quality.py --curves --merge curves-a.json curves-b.json
"""

from __future__ import annotations

import argparse
import dataclasses
import io
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
import quality_curves
from benchlib import find_images
from PIL import Image, features

import kmcodec
from kmcodec import metrics

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_FOLDER = ROOT.parent / "shared" / "corpus" / "photos"
#: Pixels the scikit-learn colour-quantization example fits on.
SAMPLE_PIXELS = 1000
#: Pillow, libimagequant, pngquant and PNG-8 stop at 8-bit palettes.
PALETTE_LIMIT = 256
#: kmcodec may fall at most this far below full-data k-means.
REF_MARGIN_DB = 0.2
#: Issue 4's acceptance: median PSNR at least this far above pngquant --nofs ...
TARGET_MEDIAN_DB = 0.25
#: ... and no image more than this far below it.
TARGET_WORST_DB = -0.1
OXIPNG_LEVEL = 2
OURS = "kmcodec"
OURS_DITHERED = "kmcodec_dither"
#: kmcodec's undithered rows: method name -> colour space.
OUR_SPACES = {
    OURS: "srgb",
    "kmcodec_oklab": "oklab",
    "kmcodec_oklab_linear": "oklab-linear",
    "kmcodec_oklab_srgb": "oklab-srgb",
}
REFERENCE = "kmeans_full"
PNGQUANT = "pngquant"


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
    dither: float


@dataclasses.dataclass
class Method:
    name: str
    title: str
    #: Returns (quantized RGB image (H, W, 3) uint8, seconds, extra facts for the JSON).
    #: An extra "kmc" holds kmcodec's own file, "png" a tool's own PNG-8 file.
    run: Callable[[Case], tuple[np.ndarray, float, dict]]
    #: Why the method cannot run at all here, or None.
    missing: str | None = None
    dithered: bool = False


# ---------------------------------------------------------------------------
# The methods
# ---------------------------------------------------------------------------
def _kmcodec(case: Case, dither: float, colorspace: str = "srgb") -> tuple[np.ndarray, float, dict]:
    start = time.perf_counter()
    data = kmcodec.encode(case.rgb, colors=case.k, seed=case.seed, dither=dither, colorspace=colorspace)
    out = kmcodec.decode(data)
    seconds = time.perf_counter() - start
    info = kmcodec.read_info(data)
    return out, seconds, {"iterations": info.iterations, "kmc": data, "info_psnr": _finite(info.psnr)}


def _in_space(colorspace: str) -> Callable[[Case], tuple[np.ndarray, float, dict]]:
    def run(case: Case) -> tuple[np.ndarray, float, dict]:
        return _kmcodec(case, 0.0, colorspace)

    return run


def _run_kmcodec_dither(case: Case) -> tuple[np.ndarray, float, dict]:
    return _kmcodec(case, case.dither)


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


def _pillow(method: Image.Quantize) -> Callable[[Case], tuple[np.ndarray, float, dict]]:
    def run(case: Case) -> tuple[np.ndarray, float, dict]:
        _check_palette_limit(case.k)
        start = time.perf_counter()
        quantized = Image.fromarray(case.rgb).quantize(case.k, method=method, dither=Image.Dither.NONE)
        out = np.asarray(quantized.convert("RGB"))
        return out, time.perf_counter() - start, {}

    return run


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


def _pngquant(dither: bool) -> Callable[[Case], tuple[np.ndarray, float, dict]]:
    def run(case: Case) -> tuple[np.ndarray, float, dict]:
        _check_palette_limit(case.k)
        out_path = case.png_path.with_name("pngquant-out.png")
        command = [shutil.which("pngquant") or "pngquant", *([] if dither else ["--nofs"])]
        command += ["--force", "--output", str(out_path), str(case.k), "--", str(case.png_path)]
        start = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True)
        seconds = time.perf_counter() - start
        with Image.open(out_path) as quantized:
            out = np.asarray(quantized.convert("RGB"))
        return out, seconds, {"png": out_path.read_bytes()}

    return run


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
    pillow_liq = None if features.check_feature("libimagequant") else "Pillow built without libimagequant"
    return [
        *(
            Method(name, "kmcodec" if space == "srgb" else f"kmcodec {space}", _in_space(space))
            for name, space in OUR_SPACES.items()
        ),
        Method(OURS_DITHERED, "kmcodec dithered", _run_kmcodec_dither, dithered=True),
        Method(REFERENCE, "k-means (full)", _run_kmeans_full, sklearn),
        Method("kmeans_sample", "k-means (1k sample)", _run_kmeans_sample, sklearn),
        Method("pillow_mediancut", "Pillow median cut", _pillow(Image.Quantize.MEDIANCUT)),
        Method("pillow_fastoctree", "Pillow fast octree", _pillow(Image.Quantize.FASTOCTREE)),
        Method("pillow_libimagequant", "Pillow libimagequant", _pillow(Image.Quantize.LIBIMAGEQUANT), pillow_liq),
        Method("imagequant", "libimagequant", _run_imagequant, _missing_module("imagequant", "imagequant")),
        Method(PNGQUANT, "pngquant --nofs", _pngquant(dither=False), pngquant),
        Method("pngquant_dither", "pngquant (dithered)", _pngquant(dither=True), pngquant, dithered=True),
    ]


#: The paired comparisons the summary makes: (ours, theirs).
def pairs(peers: list[Method]) -> list[tuple[str, str]]:
    names = {m.name for m in peers}
    out = [(ours, m.name) for ours in OUR_SPACES for m in peers if m.name not in OUR_SPACES and not m.dithered]
    out += [(ours, OURS) for ours in OUR_SPACES if ours != OURS]
    out += [(OURS_DITHERED, m.name) for m in peers if m.dithered and m.name != OURS_DITHERED]
    out.append((OURS_DITHERED, OURS))
    return [(a, b) for a, b in out if a in names and b in names]


# ---------------------------------------------------------------------------
# Measuring
# ---------------------------------------------------------------------------
def _finite(x: float | None) -> float | None:
    return x if x is not None and math.isfinite(x) else None


def _jsonable(value: object) -> object:
    """*value* with inf PSNRs (lossless results) as null, which JSON can hold."""
    if isinstance(value, dict):
        return {key: _jsonable(v) for key, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return _finite(value) if isinstance(value, float) else value


def palette_image(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(palette (n, 3) uint8, labels (H, W) int) of an RGB image's distinct colours."""
    keys = (rgb[..., 0].astype(np.uint32) << 16) | (rgb[..., 1].astype(np.uint32) << 8) | rgb[..., 2]
    uniq, labels = np.unique(keys.ravel(), return_inverse=True)
    palette = np.stack([(uniq >> 16) & 255, (uniq >> 8) & 255, uniq & 255], axis=1).astype(np.uint8)
    return palette, labels.reshape(rgb.shape[:2])


def png8_bytes(rgb: np.ndarray, own: bytes | None, oxipng: bool) -> int | None:
    """The smallest PNG-8 of a palette image (None above 256 colours); see the module docstring."""
    palette, labels = palette_image(rgb)
    if len(palette) > PALETTE_LIMIT:
        return None
    image = Image.fromarray(labels.astype(np.uint8), mode="P")
    image.putpalette(palette.ravel().tolist())
    buf = io.BytesIO()
    image.save(buf, format="PNG", optimize=True)
    candidates = [buf.getvalue(), *([own] if own else [])]
    best = min(candidates, key=len)
    if oxipng:
        import oxipng as oxi

        best = min(best, oxi.optimize_from_memory(best, level=OXIPNG_LEVEL), key=len)
    return len(best)


def measure(rgb: np.ndarray, out: np.ndarray, extra: dict, k: int, oxipng: bool) -> dict:
    """Every figure of one result: quality, its colours, and its bytes as .kmc and as PNG-8."""
    kmc = extra.pop("kmc", None)
    if kmc is None:  # a peer: kmcodec stores its <= k colours exactly
        kmc = kmcodec.encode(out, colors=k)
        assert (kmcodec.decode(kmc) == out).all()
    return {
        "psnr": metrics.psnr(rgb, out),
        "ciede2000": metrics.ciede2000(rgb, out),
        "ssim": metrics.ssim(rgb, out),
        "colors": len(palette_image(out)[0]),
        "kmc_bytes": len(kmc),
        "png8_bytes": png8_bytes(out, extra.pop("png", None), oxipng),
    }


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
            case = Case(rgb, png_path, k, args.seed, args.ref_max_k, args.dither)
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
                r = {**measure(rgb, out, extra, k, not args.no_oxipng), "seconds": seconds, **extra}
                results[method.name] = r
                print(
                    f"  {path.name} k={k} {method.name}: {r['psnr']:.2f} dB, dE {r['ciede2000']:.3f}, "
                    f"SSIM {r['ssim']:.4f}, {r['kmc_bytes']:,} B .kmc, {r['png8_bytes'] or 0:,} B PNG-8, "
                    f"{seconds:.2f} s",
                    file=sys.stderr,
                    flush=True,
                )
            records.append({"image": path.name, "pixels": rgb.shape[0] * rgb.shape[1], "k": k, "methods": results})
    return records


# ---------------------------------------------------------------------------
# Summaries
# ---------------------------------------------------------------------------
def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def summarize(records: list[dict], peers: list[Method], ks: list[int]) -> list[dict]:
    """Per k and method: medians over the images it ran on."""
    rows = []
    for k in ks:
        at_k = [r["methods"] for r in records if r["k"] == k]
        for method in peers:
            ran = [m[method.name] for m in at_k if "psnr" in m[method.name]]
            row = {"k": k, "method": method.name, "images": len(ran)}
            if not ran:
                reasons = sorted({m[method.name]["skipped"] for m in at_k})
                rows.append({**row, "skipped": "; ".join(reasons)})
                continue
            for key in ("psnr", "ciede2000", "ssim", "kmc_bytes", "png8_bytes", "seconds"):
                row[key] = _median([r[key] for r in ran if r.get(key) is not None])
            rows.append(row)
    return rows


def _delta(ours: float, theirs: float) -> float:
    """ours - theirs, 0 when both are inf (both lossless)."""
    return 0.0 if ours == theirs else ours - theirs


def compare(records: list[dict], peers: list[Method], ks: list[int]) -> list[dict]:
    """Paired statistics, per k, of each (ours, theirs) in :func:`pairs`: median and worst image."""
    rows = []
    for k in ks:
        for ours, theirs in pairs(peers):
            both = [r for r in records if r["k"] == k and "psnr" in r["methods"][ours]]
            both = [r for r in both if "psnr" in r["methods"][theirs]]
            row = {"k": k, "ours": ours, "theirs": theirs, "images": len(both)}
            if not both:
                rows.append(row)
                continue

            trios = [(r["methods"][ours], r["methods"][theirs], r["image"]) for r in both]
            d_psnr = [(_delta(a["psnr"], b["psnr"]), image) for a, b, image in trios]
            d_de = [(a["ciede2000"] - b["ciede2000"], image) for a, b, image in trios]
            d_ssim = [(a["ssim"] - b["ssim"], image) for a, b, image in trios]
            kmc_ratio = [a["kmc_bytes"] / b["kmc_bytes"] for a, b, _ in trios]
            png_ratio = [a["kmc_bytes"] / b["png8_bytes"] for a, b, _ in trios if b.get("png8_bytes")]
            time_ratio = [a["seconds"] / b["seconds"] for a, b, _ in trios]
            row.update(
                psnr_delta_median=_median([d for d, _ in d_psnr]),
                psnr_delta_worst=min(d_psnr),
                ciede2000_delta_median=_median([d for d, _ in d_de]),
                ciede2000_delta_worst=max(d_de),
                ssim_delta_median=_median([d for d, _ in d_ssim]),
                ssim_delta_worst=min(d_ssim),
                kmc_bytes_ratio_median=_median(kmc_ratio),
                png8_bytes_ratio_median=_median(png_ratio),
                time_ratio_median=_median(time_ratio),
            )
            rows.append(row)
    return rows


def shortfalls(records: list[dict]) -> list[str]:
    """Where kmcodec is more than REF_MARGIN_DB below full k-means, or below pngquant --nofs."""
    lines = []
    for r in records:
        m = r["methods"]
        if "psnr" not in m.get(OURS, {}):
            continue
        ours = m[OURS]["psnr"]
        ref = m.get(REFERENCE, {}).get("psnr")
        if ref is not None and ours < ref - REF_MARGIN_DB:
            lines.append(f"{r['image']} k={r['k']}: kmcodec {ours:.2f} dB, {ours - ref:+.2f} dB vs full k-means")
        pq = m.get(PNGQUANT, {}).get("psnr")
        if pq is not None and ours < pq:
            lines.append(f"{r['image']} k={r['k']}: kmcodec {ours:.2f} dB, {ours - pq:+.2f} dB vs pngquant --nofs")
    return lines


def acceptance(comparisons: list[dict], summary: list[dict]) -> list[str]:
    """Issue 4's quality targets against pngquant --nofs, per k: met or missed, with the numbers."""
    lines = []
    medians = {(row["k"], row["method"]): row for row in summary}
    for row in comparisons:
        if row["ours"] not in OUR_SPACES or row["theirs"] != PNGQUANT or not row["images"]:
            continue
        k, ours = row["k"], row["ours"]
        median, (worst, image) = row["psnr_delta_median"], row["psnr_delta_worst"]
        de_ours, de_pq = medians[(k, ours)]["ciede2000"], medians[(k, PNGQUANT)]["ciede2000"]
        checks = [
            (median >= TARGET_MEDIAN_DB, f"median PSNR {median:+.2f} dB (target >= {TARGET_MEDIAN_DB:+.2f})"),
            (worst >= TARGET_WORST_DB, f"worst {worst:+.2f} dB on {image} (target >= {TARGET_WORST_DB:+.2f})"),
            (de_ours <= de_pq, f"median CIEDE2000 {de_ours:.3f} vs {de_pq:.3f}"),
        ]
        for ok, text in checks:
            lines.append(f"k={k} {ours}: {'met' if ok else 'MISSED'}: {text}")
    return lines


# ---------------------------------------------------------------------------
# Reporting
# ---------------------------------------------------------------------------
def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _num(value: float | None, fmt: str) -> str:
    return "" if value is None else format(value, fmt)


def _worst(pair: tuple[float, str] | None, fmt: str) -> str:
    return "" if pair is None else f"{pair[0]:{fmt}} ({Path(pair[1]).stem})"


def report(
    records: list[dict],
    summary: list[dict],
    comparisons: list[dict],
    peers: list[Method],
    flagged: list[str],
    accepted: list[str],
) -> str:
    titles = {m.name: m.title for m in peers}
    per_image = _table(
        ["image", "k", *(f"{m.title}" for m in peers)],
        [
            [
                r["image"],
                str(r["k"]),
                *(
                    "skipped" if "skipped" in res else f"{res['psnr']:.2f} / {res['ciede2000']:.2f}"
                    for res in (r["methods"][m.name] for m in peers)
                ),
            ]
            for r in records
        ],
    )
    medians = _table(
        ["k", "method", "images", "PSNR dB", "CIEDE2000", "SSIM", ".kmc bytes", "PNG-8 bytes", "time s"],
        [
            [str(row["k"]), titles[row["method"]], str(row["images"])]
            + (
                [f"skipped: {row['skipped']}", "", "", "", "", ""]
                if "skipped" in row
                else [
                    _num(row["psnr"], ".2f"),
                    _num(row["ciede2000"], ".3f"),
                    _num(row["ssim"], ".4f"),
                    _num(row["kmc_bytes"], ",.0f"),
                    _num(row["png8_bytes"], ",.0f"),
                    _num(row["seconds"], ".2f"),
                ]
            )
            for row in summary
        ],
    )
    paired = _table(
        [
            "k",
            "ours vs theirs",
            "images",
            "ΔPSNR dB",
            "worst ΔPSNR",
            "ΔCIEDE2000",
            "worst ΔCIEDE2000",
            "ΔSSIM",
            "bytes .kmc/.kmc",
            "bytes .kmc/PNG-8",
            "time",
        ],
        [
            [str(row["k"]), f"{titles[row['ours']]} vs {titles[row['theirs']]}", str(row["images"])]
            + (
                [
                    _num(row["psnr_delta_median"], "+.2f"),
                    _worst(row["psnr_delta_worst"], "+.2f"),
                    _num(row["ciede2000_delta_median"], "+.3f"),
                    _worst(row["ciede2000_delta_worst"], "+.3f"),
                    _num(row["ssim_delta_median"], "+.4f"),
                    _num(row["kmc_bytes_ratio_median"], ".3f"),
                    _num(row["png8_bytes_ratio_median"], ".3f"),
                    _num(row["time_ratio_median"], ".2f"),
                ]
                if row["images"]
                else [""] * 8
            )
            for row in comparisons
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
        "## Per image: PSNR dB / mean CIEDE2000",
        per_image,
        "## Medians over images",
        medians,
        "## Paired comparisons",
        "Medians over images of per-image differences (ours − theirs) and ratios (ours / theirs), and the "
        "worst image (lowest ΔPSNR, highest ΔCIEDE2000).  Bytes: ours as .kmc against theirs as .kmc "
        "(kmcodec's coder on their labels) and as their best PNG-8.",
        paired,
        "## Issue 4 targets against pngquant --nofs",
        "\n".join(f"- {line}" for line in accepted) or "- not measured",
        f"## kmcodec more than {REF_MARGIN_DB} dB below full k-means, or below pngquant --nofs",
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
    for package in ("imagequant", "pyoxipng", "ssimulacra2", "scipy"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    exe = shutil.which("pngquant")
    if exe:
        versions["pngquant"] = subprocess.run([exe, "--version"], capture_output=True, text=True).stdout.strip()
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {"versions": versions, "cpus": os.cpu_count(), "machine": platform.machine(), "load_average": load}


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


def _strength(text: str) -> float:
    value = float(text)
    if not 0 <= value <= 1:
        msg = f"must be from 0 to 1, not {value}"
        raise argparse.ArgumentTypeError(msg)
    return value


def _method_list(text: str) -> list[str]:
    names = [m.name for m in methods()]
    chosen = [part.strip() for part in text.split(",") if part.strip()]
    unknown = [name for name in chosen if name not in names]
    if not chosen or unknown:
        msg = f"unknown method(s) {', '.join(unknown)}; choose from {', '.join(names)}"
        raise argparse.ArgumentTypeError(msg)
    return chosen


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "folder", nargs="?", type=Path, default=DEFAULT_FOLDER, help=f"folder of images (default: {DEFAULT_FOLDER})"
    )
    parser.add_argument(
        "--k", type=_k_list, help="palette sizes, comma-separated (default 16,64,256; with --curves 16,24,...,256)"
    )
    parser.add_argument("--limit", type=_positive, help="use only the first N images (sorted by name)")
    parser.add_argument("--seed", type=int, default=0, help="kmcodec's seed (scikit-learn always uses 0)")
    parser.add_argument(
        "--ref-max-k",
        type=_positive,
        help="skip the slow full-data k-means reference above this k (default: run it at every k)",
    )
    parser.add_argument("--methods", type=_method_list, help="run only these methods (comma-separated names)")
    parser.add_argument("--dither", type=_strength, default=1.0, help="strength of 'kmcodec dithered' (default 1)")
    parser.add_argument("--no-oxipng", action="store_true", help="PNG-8 bytes without trying oxipng (faster)")
    parser.add_argument("--json", type=Path, help="also write every measurement to this JSON file")
    parser.add_argument(
        "--curves",
        action="store_true",
        help="rate-quality curves and BD-rates of kmc and pngquant (SSIMULACRA2, PSNR) instead of the method table",
    )
    parser.add_argument(
        "--jobs", type=_positive, default=1, help="with --curves: images measured in parallel processes (default 1)"
    )
    parser.add_argument(
        "--merge",
        type=Path,
        nargs="+",
        metavar="JSON",
        help="run nothing: report the records of these --json files together (runs on disjoint images)",
    )
    return parser.parse_args(argv)


def load_records(paths: list[Path]) -> list[dict]:
    """The records of earlier --json files, with lossless PSNRs (null in JSON) back to inf."""
    records = []
    for path in paths:
        for record in json.loads(path.read_text())["records"]:
            for result in record["methods"].values():
                if "psnr" in result and result["psnr"] is None:
                    result["psnr"] = math.inf
            records.append(record)
    return records


def curves_main(args: argparse.Namespace) -> None:
    """``--curves``: run or merge the rate-quality curves, print the report, write the JSON (after every image)."""

    def write(records: list[dict], summary: dict | None = None) -> None:
        if not args.json:
            return
        doc = {
            "command": [Path(sys.argv[0]).name, *sys.argv[1:]],
            "folder": None if args.merge else str(args.folder),
            "environment": environment(),
            "records": records,
            **({"summary": summary, "targets": quality_curves.targets(summary)} if summary else {}),
        }
        args.json.write_text(json.dumps(_jsonable(doc), indent=1) + "\n")

    if args.merge:
        records = [r for path in args.merge for r in json.loads(path.read_text())["records"]]
    else:
        paths = find_images(args.folder, args.limit)
        ks = args.k or quality_curves.DEFAULT_KS
        records = quality_curves.run(paths, ks, args.seed, not args.no_oxipng, args.jobs, on_image=write)
    summary = quality_curves.summarize(records)
    print(quality_curves.report(summary, records))
    write(records, summary)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if not args.no_oxipng and _missing_module("oxipng", "pyoxipng"):
        args.no_oxipng = True
        print("pyoxipng not installed: PNG-8 bytes without oxipng", file=sys.stderr)
    if args.curves:
        curves_main(args)
        return
    args.k = args.k or [16, 64, 256]
    if args.merge:
        records = load_records(args.merge)
        names = {name for r in records for name in r["methods"]}
        peers = [m for m in methods() if m.name in names]
        args.k = sorted({r["k"] for r in records})
    else:
        paths = find_images(args.folder, args.limit)
        peers = [m for m in methods() if args.methods is None or m.name in args.methods]
        records = []
        for i, path in enumerate(paths, 1):
            print(f"[{i}/{len(paths)}] {path.name}", file=sys.stderr, flush=True)
            records += bench_image(path, args.k, peers, args)
    summary = summarize(records, peers, args.k)
    comparisons = compare(records, peers, args.k)
    flagged = shortfalls(records)
    accepted = acceptance(comparisons, summary)
    print(report(records, summary, comparisons, peers, flagged, accepted))
    if args.json:
        doc = {
            "command": [Path(sys.argv[0]).name, *sys.argv[1:]],
            "folder": None if args.merge else str(args.folder),
            "environment": environment(),
            "records": records,
            "summary": summary,
            "comparisons": comparisons,
            "acceptance": accepted,
            "shortfalls": flagged,
        }
        args.json.write_text(json.dumps(_jsonable(doc), indent=1) + "\n")


if __name__ == "__main__":
    main()
