"""Rate-quality curves for ``tools/bench_quality.py --curves``: kmcodec against pngquant, by eye and by PSNR.

For each image and each palette size k (default 16, 24, 32, 48, 64, 96, 128,
192, 256), every curve gets one point: its bytes, SSIMULACRA2
(:func:`kmcodec.metrics.ssimulacra2`, higher is better) and PSNR, both against
the input.  The curves:

``kmc``
    ``kmcodec.encode(rgb, k)`` with the defaults of ``kmc encode -k K``
    (fitted in Oklab, masking on, RDO labels at lambda 5 from k = 48 up, since
    2026-12-06); the bytes of the .kmc file.
``kmc_dither``
    the same with ``dither=1.0`` (``kmc encode --dither``: the same fit, Oklab error diffused;
    sRGB without masking before 2026-12-06).
``kmc_srgb``
    ``kmc`` with ``colorspace="srgb"`` (``kmc encode --colorspace srgb``):
    the PSNR-first palette, the default before 2026-12-05.
``kmc_nearest``
    ``kmc`` with ``rdo=0`` (``kmc encode --rdo 0``): every pixel its nearest
    entry at every k, the default before 2026-12-06 (until then the curve
    ``kmc_rdo``, ``rdo=5`` at every k, stood here).
``kmc_srgb_masking``
    ``kmc_srgb`` with ``masking=True`` (``--colorspace srgb --masking``): the
    default of 2026-12-05, fitted in sRGB where the error shows.
``pngquant``, ``pngquant_nofs``
    ``pngquant K`` (its default Floyd-Steinberg dithering) and
    ``pngquant --nofs K`` on a PNG of the input; the bytes of its PNG after
    oxipng level 2 (pyoxipng, the smaller of the two), as a user would ship it.
``pngquant_webp``, ``pngquant_nofs_webp``
    the same pixels stored as WebP lossless (Pillow ``lossless=True,
    method=6``, the project's usual setting; libwebp finds the palette
    itself): the same quality, other bytes.

Then, per image, the Bjøntegaard rate difference (BD-rate) of each pair in
:data:`BD_PAIRS`, on SSIMULACRA2 and on PSNR (:func:`bd_rate`), and per k the
paired differences at equal k; the report gives medians over the images and
the worst image, and checks issue 18's targets (:data:`TARGETS`).

Every point is computed in one process per image (``--jobs`` runs images in
parallel), so ratios come from one run on one machine.
"""

from __future__ import annotations

import io
import math
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image, features

import kmcodec
from kmcodec import metrics

DEFAULT_KS = [16, 24, 32, 48, 64, 96, 128, 192, 256]
#: pngquant and PNG-8 stop at 8-bit palettes.
PALETTE_LIMIT = 256
OXIPNG_LEVEL = 2
WEBP_METHOD = 6

#: (name, title); the WebP curves take their quality from the curve their name starts with.
CURVES = {
    "kmc": "kmc",
    "kmc_dither": "kmc --dither",
    "kmc_srgb": "kmc --colorspace srgb",
    "kmc_srgb_masking": "kmc --colorspace srgb --masking",
    "kmc_nearest": "kmc --rdo 0",
    "pngquant": "pngquant + oxipng",
    "pngquant_nofs": "pngquant --nofs + oxipng",
    "pngquant_webp": "pngquant as WebP lossless",
    "pngquant_nofs_webp": "pngquant --nofs as WebP lossless",
}
#: The BD-rates reported: (ours, theirs).
BD_PAIRS = [
    ("kmc", "pngquant"),
    ("kmc", "pngquant_webp"),
    ("kmc", "pngquant_nofs"),
    ("kmc_dither", "pngquant"),
    ("kmc_dither", "pngquant_webp"),
    ("kmc", "kmc_dither"),
    ("kmc", "kmc_srgb"),
    ("kmc", "kmc_srgb_masking"),
    ("kmc_srgb_masking", "kmc_srgb"),
    ("kmc_srgb", "pngquant"),
    ("kmc_srgb", "pngquant_webp"),
    ("kmc_srgb_masking", "pngquant"),
    ("kmc", "kmc_nearest"),
    ("kmc_nearest", "pngquant"),
]
#: The equal-k comparisons: (ours, theirs).
EQUAL_K_PAIRS = [
    ("kmc_dither", "pngquant"),
    ("kmc", "pngquant_nofs"),
    ("kmc_srgb", "pngquant_nofs"),
    ("kmc_srgb_masking", "pngquant_nofs"),
    ("kmc", "kmc_nearest"),
]
#: Issue 18's numbers to reach (medians over the images).
TARGET_DITHER_DELTA = 1.0  # kmc --dither - pngquant, SSIMULACRA2, at each of TARGET_KS
TARGET_DITHER_BYTES = 0.85  # kmc --dither bytes / pngquant + oxipng bytes
TARGET_KS = (16, 64, 256)
TARGET_PLAIN_WORST = -3.0  # kmc - pngquant --nofs, SSIMULACRA2, the worst image at any k (median >= 0)
TARGET_BD = {("kmc", "pngquant"): -40.0, ("kmc", "pngquant_webp"): -35.0}  # percent, SSIMULACRA2


# ---------------------------------------------------------------------------
# The points of one image
# ---------------------------------------------------------------------------
def _quality(rgb: np.ndarray, out: np.ndarray) -> dict:
    psnr = metrics.psnr(rgb, out)
    return {
        "ssimulacra2": metrics.ssimulacra2(rgb, out),
        "psnr": None if math.isinf(psnr) else psnr,
        "colors": len(
            np.unique((out[..., 0].astype(np.uint32) << 16) | (out[..., 1].astype(np.uint32) << 8) | out[..., 2])
        ),
    }


def _kmc(
    rgb: np.ndarray,
    k: int,
    seed: int,
    dither: float,
    masking: bool | None = None,
    colorspace: str | None = None,
    rdo: float | None = None,
) -> dict:
    start = time.perf_counter()
    data = kmcodec.encode(rgb, colors=k, seed=seed, dither=dither, masking=masking, colorspace=colorspace, rdo=rdo)
    seconds = time.perf_counter() - start
    return {"bytes": len(data), "seconds": seconds, **_quality(rgb, kmcodec.decode(data))}


def _pngquant(rgb: np.ndarray, png_path: Path, k: int, dither: bool, oxipng: bool, webp: bool) -> tuple[dict, dict]:
    """The PNG point (pngquant's file, oxipng'd) and the WebP lossless point of the same pixels."""
    out_path = png_path.with_name("pngquant-out.png")
    command = [shutil.which("pngquant") or "pngquant", *([] if dither else ["--nofs"])]
    command += ["--force", "--output", str(out_path), str(k), "--", str(png_path)]
    start = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True)
    seconds = time.perf_counter() - start
    png = out_path.read_bytes()
    if oxipng:
        import oxipng as oxi

        png = min(png, oxi.optimize_from_memory(png, level=OXIPNG_LEVEL), key=len)
    with Image.open(io.BytesIO(png)) as image:
        out = np.asarray(image.convert("RGB"))
    point = {"bytes": len(png), "seconds": seconds, **_quality(rgb, out)}
    if not webp:
        return point, {"skipped": "Pillow built without WebP"}
    buf = io.BytesIO()
    Image.fromarray(out).save(buf, format="WEBP", lossless=True, method=WEBP_METHOD)
    return point, {**point, "bytes": len(buf.getvalue()), "seconds": None}


def curve_points(path: Path, ks: list[int], seed: int = 0, oxipng: bool = True) -> list[dict]:
    """Every curve's point at every k on one image: one record per k."""
    with Image.open(path) as image:
        rgb = np.asarray(image.convert("RGB"))
    pngquant = shutil.which("pngquant") is not None
    webp = features.check("webp")
    records = []
    with tempfile.TemporaryDirectory(prefix="quality_curves-") as tmp:
        png_path = Path(tmp) / "input.png"
        Image.fromarray(rgb).save(png_path, compress_level=1)
        for k in ks:
            points = {
                "kmc": _kmc(rgb, k, seed, 0.0),
                "kmc_dither": _kmc(rgb, k, seed, 1.0),
                "kmc_srgb": _kmc(rgb, k, seed, 0.0, colorspace="srgb"),
                "kmc_srgb_masking": _kmc(rgb, k, seed, 0.0, masking=True, colorspace="srgb"),
                "kmc_nearest": _kmc(rgb, k, seed, 0.0, rdo=0.0),
            }
            for name, dither in (("pngquant", True), ("pngquant_nofs", False)):
                if not pngquant or k > PALETTE_LIMIT:
                    reason = "pngquant not on PATH" if not pngquant else f"k > {PALETTE_LIMIT}"
                    points[name] = points[f"{name}_webp"] = {"skipped": reason}
                    continue
                points[name], points[f"{name}_webp"] = _pngquant(rgb, png_path, k, dither, oxipng, webp)
            records.append({"image": path.name, "pixels": rgb.shape[0] * rgb.shape[1], "k": k, "curves": points})
            print(f"  {path.name} k={k}: {_progress(points)}", file=sys.stderr, flush=True)
    return records


def _progress(points: dict) -> str:
    return ", ".join(
        f"{name} {p['ssimulacra2']:.1f} at {p['bytes'] / 1000:.1f} kB" for name, p in points.items() if "bytes" in p
    )


def run(paths: list[Path], ks: list[int], seed: int, oxipng: bool, jobs: int, on_image=None) -> list[dict]:
    """The records of every image, in the order of *paths*; *on_image(records so far)* after each image."""
    records: dict[int, list[dict]] = {}

    def done() -> list[dict]:
        return [r for i in sorted(records) for r in records[i]]

    if jobs == 1:
        for i, path in enumerate(paths):
            print(f"[{i + 1}/{len(paths)}] {path.name}", file=sys.stderr, flush=True)
            records[i] = curve_points(path, ks, seed, oxipng)
            if on_image:
                on_image(done())
        return done()
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        futures = {pool.submit(curve_points, path, ks, seed, oxipng): i for i, path in enumerate(paths)}
        for future in futures:  # in submission order; each worker runs one image at a time
            records[futures[future]] = future.result()
            if on_image:
                on_image(done())
    return done()


# ---------------------------------------------------------------------------
# BD-rate
# ---------------------------------------------------------------------------
def _frontier(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """The (bytes, quality) points no other point beats on both, by rising quality.

    A rate-quality curve is the best quality each rate buys: a point that
    another matches or beats with fewer bytes is dropped, so what remains
    rises strictly in both.
    """
    best: list[tuple[float, float]] = []
    for rate, quality in sorted(points):
        if not best or quality > best[-1][1]:
            while best and best[-1][0] == rate:
                best.pop()
            best.append((rate, quality))
    return best


def bd_rate(ours: list[tuple[float, float]], theirs: list[tuple[float, float]]) -> float | None:
    """Bjøntegaard rate difference of *ours* against *theirs*, in percent.

    Each curve is a list of (bytes, quality) points.  Over the quality range
    both curves cover, the mean difference of log bytes at equal quality,
    as a ratio: -30 means ours needs 30 % fewer bytes for the same quality.
    Log bytes are interpolated against quality by monotone piecewise cubic
    (PCHIP) interpolation through each curve's frontier (:func:`_frontier`),
    the piecewise variant that later JCT-VC and JVET practice uses instead
    of Bjøntegaard's single cubic fit (which fits nine points over a wide
    quality range poorly).  None when the curves share no quality range or
    either has fewer than two frontier points.

    Examples
    --------
    >>> ours = [(50, 30.0), (100, 50.0), (200, 70.0)]
    >>> round(bd_rate(ours, [(2 * r, q) for r, q in ours]), 6)
    -50.0
    >>> bd_rate(ours, [(10, 1.0), (20, 2.0)]) is None
    True
    """
    from scipy.interpolate import PchipInterpolator  # scipy comes with ssimulacra2

    a, b = _frontier(ours), _frontier(theirs)
    if len(a) < 2 or len(b) < 2:
        return None
    low, high = max(a[0][1], b[0][1]), min(a[-1][1], b[-1][1])
    if high <= low:
        return None
    integrals = []
    for curve in (a, b):
        quality = np.array([q for _, q in curve])
        log_rate = np.log(np.array([r for r, _ in curve], dtype=np.float64))
        integrals.append(PchipInterpolator(quality, log_rate).integrate(low, high))
    return float(np.expm1((integrals[0] - integrals[1]) / (high - low)) * 100)


def _curve(records: list[dict], name: str, metric: str) -> list[tuple[float, float]]:
    return [
        (r["curves"][name]["bytes"], r["curves"][name][metric])
        for r in records
        if "bytes" in r["curves"].get(name, {}) and r["curves"][name][metric] is not None
    ]


# ---------------------------------------------------------------------------
# Summaries
# ---------------------------------------------------------------------------
def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def _by_image(records: list[dict]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for r in records:
        out.setdefault(r["image"], []).append(r)
    return out


def summarize(records: list[dict]) -> dict:
    """Medians per k and curve, paired differences at equal k, and BD-rates per image with their median."""
    ks = sorted({r["k"] for r in records})
    medians = []
    for k in ks:
        at_k = [r["curves"] for r in records if r["k"] == k]
        for name in CURVES:
            ran = [c[name] for c in at_k if "bytes" in c.get(name, {})]  # records of older runs lack new curves
            row = {"k": k, "curve": name, "images": len(ran)}
            for key in ("bytes", "ssimulacra2", "psnr"):
                row[key] = _median([p[key] for p in ran if p[key] is not None])
            medians.append(row)
    equal_k = []
    for k in ks:
        for ours, theirs in EQUAL_K_PAIRS:
            both = [
                r
                for r in records
                if r["k"] == k and "bytes" in r["curves"].get(ours, {}) and "bytes" in r["curves"].get(theirs, {})
            ]
            if not both:
                continue
            pairs = [(r["curves"][ours], r["curves"][theirs], r["image"]) for r in both]
            d_s2 = [(a["ssimulacra2"] - b["ssimulacra2"], image) for a, b, image in pairs]
            d_psnr = [(a["psnr"] - b["psnr"], image) for a, b, image in pairs if a["psnr"] and b["psnr"]]
            equal_k.append(
                {
                    "k": k,
                    "ours": ours,
                    "theirs": theirs,
                    "images": len(pairs),
                    "ssimulacra2_delta_median": _median([d for d, _ in d_s2]),
                    "ssimulacra2_delta_worst": min(d_s2),
                    "psnr_delta_median": _median([d for d, _ in d_psnr]),
                    "psnr_delta_worst": min(d_psnr) if d_psnr else None,
                    "bytes_ratio_median": _median([a["bytes"] / b["bytes"] for a, b, _ in pairs]),
                }
            )
    bd = []
    for ours, theirs in BD_PAIRS:
        for metric in ("ssimulacra2", "psnr"):
            per_image = {}
            for image, rows in _by_image(records).items():
                value = bd_rate(_curve(rows, ours, metric), _curve(rows, theirs, metric))
                if value is not None:
                    per_image[image] = value
            values = list(per_image.values())
            worst = max(per_image.items(), key=lambda item: item[1]) if per_image else None
            bd.append(
                {
                    "ours": ours,
                    "theirs": theirs,
                    "metric": metric,
                    "images": len(values),
                    "median": _median(values),
                    "mean": statistics.fmean(values) if values else None,
                    "worst": None if worst is None else [worst[1], worst[0]],
                    "per_image": per_image,
                }
            )
    return {"ks": ks, "medians": medians, "equal_k": equal_k, "bd_rate": bd}


def targets(summary: dict) -> list[str]:
    """Issue 18's numbers: met or MISSED, with the measured value."""
    lines = []
    rows = {(r["k"], r["ours"], r["theirs"]): r for r in summary["equal_k"]}
    for k in TARGET_KS:
        row = rows.get((k, "kmc_dither", "pngquant"))
        if row:
            delta, ratio = row["ssimulacra2_delta_median"], row["bytes_ratio_median"]
            ok = delta >= TARGET_DITHER_DELTA and ratio <= TARGET_DITHER_BYTES
            lines.append(
                f"{'met' if ok else 'MISSED'}: k={k} kmc --dither - pngquant: SSIMULACRA2 {delta:+.1f} "
                f"(target >= {TARGET_DITHER_DELTA:+.1f}) at {ratio:.2f} x its bytes (target <= {TARGET_DITHER_BYTES})"
            )
    # Undithered: the default by eye, and the PSNR-first fit (--colorspace srgb) keeping its PSNR lead.
    plain = [r for r in summary["equal_k"] if r["ours"] == "kmc" and r["theirs"] == "pngquant_nofs"]
    for row in plain:
        delta, (worst, image) = row["ssimulacra2_delta_median"], row["ssimulacra2_delta_worst"]
        first = rows.get((row["k"], "kmc_srgb", "pngquant_nofs"))
        psnr_lead = None if first is None else first["psnr_delta_median"]
        ok = delta >= 0 and worst >= TARGET_PLAIN_WORST and (psnr_lead or 0) > 0
        lead = "not measured" if psnr_lead is None else f"{psnr_lead:+.2f} dB"
        lines.append(
            f"{'met' if ok else 'MISSED'}: k={row['k']} kmc - pngquant --nofs: SSIMULACRA2 {delta:+.1f} (target >= 0), "
            f"worst {worst:+.1f} on {Path(image).stem} (target >= {TARGET_PLAIN_WORST:+.1f}); "
            f"PSNR of kmc --colorspace srgb {lead} (target > 0)"
        )
    for row in summary["bd_rate"]:
        target = TARGET_BD.get((row["ours"], row["theirs"]))
        if target is None or row["metric"] != "ssimulacra2" or row["median"] is None:
            continue
        ok = row["median"] <= target
        lines.append(
            f"{'met' if ok else 'MISSED'}: BD-rate {CURVES[row['ours']]} vs {CURVES[row['theirs']]} on SSIMULACRA2: "
            f"{row['median']:+.1f} % (target <= {target:+.0f} %)"
        )
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


def report(summary: dict, records: list[dict]) -> str:
    medians = {(r["k"], r["curve"]): r for r in summary["medians"]}
    images = len(_by_image(records))

    def cell(k: int, name: str, metric: str, fmt: str) -> str:
        row = medians.get((k, name))
        if not row or not row["images"]:
            return "skipped"
        return f"{_num(row[metric], fmt)} at {row['bytes'] / 1000:.1f} kB"

    quality_tables = []
    for metric, title, fmt in (("ssimulacra2", "SSIMULACRA2", ".1f"), ("psnr", "PSNR dB", ".2f")):
        quality_tables += [
            f"## {title} at bytes: medians over {images} images",
            _table(
                ["k", *(CURVES[name] for name in CURVES)],
                [
                    [
                        str(k),
                        *(
                            cell(k, name, metric, fmt)
                            if not name.endswith("_webp")
                            else _num((medians.get((k, name)) or {}).get("bytes"), ",.0f") + " B"
                            for name in CURVES
                        ),
                    ]
                    for k in summary["ks"]
                ],
            ),
        ]
    equal_k = _table(
        ["k", "ours vs theirs", "images", "ΔSSIMULACRA2", "worst", "ΔPSNR dB", "worst ΔPSNR", "bytes ours/theirs"],
        [
            [
                str(r["k"]),
                f"{CURVES[r['ours']]} vs {CURVES[r['theirs']]}",
                str(r["images"]),
                _num(r["ssimulacra2_delta_median"], "+.1f"),
                f"{r['ssimulacra2_delta_worst'][0]:+.1f} ({Path(r['ssimulacra2_delta_worst'][1]).stem})",
                _num(r["psnr_delta_median"], "+.2f"),
                ""
                if r["psnr_delta_worst"] is None
                else f"{r['psnr_delta_worst'][0]:+.2f} ({Path(r['psnr_delta_worst'][1]).stem})",
                _num(r["bytes_ratio_median"], ".3f"),
            ]
            for r in summary["equal_k"]
        ],
    )
    bd = _table(
        ["ours vs theirs", "quality", "images", "BD-rate median", "mean", "worst (image)"],
        [
            [
                f"{CURVES[r['ours']]} vs {CURVES[r['theirs']]}",
                "SSIMULACRA2" if r["metric"] == "ssimulacra2" else "PSNR",
                str(r["images"]),
                _num(r["median"], "+.1f") + (" %" if r["median"] is not None else ""),
                _num(r["mean"], "+.1f") + (" %" if r["mean"] is not None else ""),
                "" if r["worst"] is None else f"{r['worst'][0]:+.1f} % ({Path(r['worst'][1]).stem})",
            ]
            for r in summary["bd_rate"]
        ],
    )
    per_image_pairs = [r for r in summary["bd_rate"] if r["metric"] == "ssimulacra2"]
    per_image = _table(
        ["image", *(f"{CURVES[r['ours']]} vs {CURVES[r['theirs']]}" for r in per_image_pairs)],
        [
            [Path(image).stem, *(_num(r["per_image"].get(image), "+.1f") for r in per_image_pairs)]
            for image in _by_image(records)
        ],
    )
    return "\n\n".join(
        [
            *quality_tables,
            "## Equal k: medians over images of ours − theirs, and the worst image",
            equal_k,
            "## BD-rate: bytes at equal quality, ours against theirs (negative: ours smaller)",
            bd,
            "## BD-rate on SSIMULACRA2 per image (%)",
            per_image,
            "## Issue 18 targets",
            "\n".join(f"- {line}" for line in targets(summary)) or "- not measured",
        ]
    )
