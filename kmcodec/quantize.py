"""Colour quantization: choose k palette colours by weighted k-means and map pixels to them.

The cost grows with the number of *distinct* colours, not pixels: pixels are
first reduced to their distinct colours with counts, k-means runs over those
(weighted by count), and every pixel takes the label of its colour.  Photos
with many distinct colours are fitted coarse-to-fine: first on the mean
colours of a reduced-precision histogram, then refined on the exact colours.

Distances are summed per channel in a fixed order (no BLAS), so the result is
the same on every machine; the final mapping to the rounded uint8 palette is
exact integer arithmetic with ties going to the lowest index.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

#: Distance-matrix elements per block (float32: 16 MiB), bounding peak memory.
BLOCK_ELEMENTS = 1 << 22
#: Above this many distinct colours, fit on reduced-precision histograms first.
COARSE_ABOVE = 1 << 15
#: Bits per channel of those histograms, coarsest first: each level starts
#: from the centres of the one before (coarse-to-fine beat a single 6-bit
#: level in both PSNR and time on the development photos).
COARSE_BITS = (5, 6, 7)
#: A level is used only with at least this many cells per centre: cells
#: about as large as the clusters cost up to 0.28 dB (wiki009, k = 256).
CELLS_PER_CENTRE = 8
#: k-means++ starts on the first level; the one with the lowest error is kept
#: (one start left k = 16 up to 0.2 dB below full-data k-means).
STARTS = 3
#: RGB pixels from which a dense 2**24-bin histogram (192 MiB) finds distinct colours
#: faster than sorting; below it, sorting is faster and needs no such memory.
DENSE_RGB_PIXELS = 1 << 22
#: Lloyd iterations on the exact colours after the coarse fit.
REFINE_ITERATIONS = 3
MAX_ITERATIONS = 300
#: Convergence tolerance on centre movement, relative to the data's variance (as scikit-learn).
TOLERANCE = 1e-4


@dataclasses.dataclass
class Quantized:
    """Result of :func:`quantize`.

    Attributes
    ----------
    palette : ndarray, shape (k, C), uint8
    labels : ndarray, shape (H, W), uint8 if k <= 256 else uint16
    unique_colors : int
        Distinct colours in the input (after transparent pixels collapse).
    iterations : int
        Lloyd iterations run; 0 when the palette is exactly the input's colours.
    mse : float
        Mean squared error per channel between the input and its quantized image.
    """

    palette: np.ndarray
    labels: np.ndarray
    unique_colors: int
    iterations: int
    mse: float


# ---------------------------------------------------------------------------
# Distinct colours
# ---------------------------------------------------------------------------
def _keys(pixels: np.ndarray) -> np.ndarray:
    """Pack (N, C) uint8 pixels into uint32 keys, first channel most significant."""
    keys = np.zeros(len(pixels), dtype=np.uint32)
    for c in range(pixels.shape[1]):
        keys <<= 8
        keys |= pixels[:, c]
    return keys


def _unkeys(keys: np.ndarray, channels: int) -> np.ndarray:
    out = np.empty((len(keys), channels), dtype=np.uint8)
    for c in range(channels):
        out[:, c] = (keys >> (8 * (channels - 1 - c))) & 0xFF
    return out


def distinct_colors(pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distinct colours of (N, C) uint8 pixels.

    Returns
    -------
    colors : ndarray, shape (U, C), uint8, sorted by key
    counts : ndarray, shape (U,), int64
    inverse : ndarray, shape (N,), int32 index into colors for each pixel
    """
    channels = pixels.shape[1]
    keys = _keys(pixels)
    if channels <= 2 or (channels == 3 and len(keys) >= DENSE_RGB_PIXELS):
        # A dense histogram is O(N) and beats sorting for up to 2**24 keys.
        hist = np.bincount(keys, minlength=1 << (8 * channels))
        uniq = np.flatnonzero(hist)
        lut = np.zeros(len(hist), dtype=np.int32)
        lut[uniq] = np.arange(len(uniq), dtype=np.int32)
        return _unkeys(uniq.astype(np.uint32), channels), hist[uniq], lut[keys]
    uniq, inverse, counts = np.unique(keys, return_inverse=True, return_counts=True)
    return _unkeys(uniq, channels), counts, inverse.astype(np.int32)


# ---------------------------------------------------------------------------
# Nearest centre
# ---------------------------------------------------------------------------
def _nearest(points: np.ndarray, centres: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Nearest centre of each point and its squared distance, in blocks.

    Both arrays are (n, C) of one dtype (float32, or int32 for exact search).
    Ties go to the lowest centre index.
    """
    n = len(points)
    k = len(centres)
    labels = np.empty(n, dtype=np.int32)
    dist = np.empty(n, dtype=points.dtype)
    step = max(1, BLOCK_ELEMENTS // max(k, 1))
    for start in range(0, n, step):
        block = points[start : start + step]
        d = np.zeros((len(block), k), dtype=points.dtype)
        for c in range(points.shape[1]):
            diff = block[:, c, None] - centres[None, :, c]
            d += diff * diff
        idx = np.argmin(d, axis=1)
        labels[start : start + step] = idx
        dist[start : start + step] = d[np.arange(len(block)), idx]
    return labels, dist


def _weighted_sum(values: np.ndarray, weights: np.ndarray) -> float:
    """sum(values * weights) in float64, summed by numpy in a fixed order.

    Not np.dot: BLAS splits a dot product across threads, so its rounding
    (and with it the palette and the file's bytes) would depend on the core
    count, and the threads cost more than they save at these sizes.
    """
    return float(np.sum(values.astype(np.float64) * weights))


def _sq_dist_to(points: np.ndarray, centre: np.ndarray) -> np.ndarray:
    diff = points - centre
    return np.einsum("ij,ij->i", diff, diff)


# ---------------------------------------------------------------------------
# k-means
# ---------------------------------------------------------------------------
def _kmeans_plusplus(points: np.ndarray, weights: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """Greedy k-means++ seeding over weighted points (points float32 (n, C), weights float64 (n,)).

    Each step draws 2 + ln k candidates with probability proportional to
    weight x squared distance and keeps the one that lowers the potential most.
    """
    n = len(points)
    trials = 2 + int(math.log(k))
    centres = np.empty((k, points.shape[1]), dtype=points.dtype)
    first = rng.choice(n, p=weights / weights.sum())
    centres[0] = points[first]
    closest = _sq_dist_to(points, centres[0]).astype(np.float64)
    potential = _weighted_sum(closest, weights)
    for i in range(1, k):
        if potential <= 0.0:
            # Every point already coincides with a centre: the rest duplicate one.
            centres[i:] = centres[0]
            break
        cum = np.cumsum(weights * closest)
        draws = rng.random(trials) * cum[-1]
        candidates = np.minimum(np.searchsorted(cum, draws), n - 1)
        best_potential = None
        for cand in candidates:
            d = np.minimum(closest, _sq_dist_to(points, points[cand]).astype(np.float64))
            pot = _weighted_sum(d, weights)
            if best_potential is None or pot < best_potential:
                best_potential, best_cand, best_d = pot, cand, d
        centres[i] = points[best_cand]
        closest, potential = best_d, best_potential
    return centres


def _update_centres(
    points: np.ndarray, weights: np.ndarray, labels: np.ndarray, dist: np.ndarray, centres: np.ndarray
) -> np.ndarray:
    """Weighted means of each cluster; an empty cluster moves to the worst-served point."""
    k = len(centres)
    mass = np.bincount(labels, weights=weights, minlength=k)
    new = np.empty_like(centres)
    for c in range(points.shape[1]):
        sums = np.bincount(labels, weights=weights * points[:, c], minlength=k)
        with np.errstate(invalid="ignore", divide="ignore"):
            new[:, c] = sums / mass
    empty = np.flatnonzero(mass == 0)
    if len(empty):
        cost = dist.astype(np.float64) * weights
        far = np.argsort(-cost, kind="stable")[: len(empty)]
        new[empty[: len(far)]] = points[far]
        if len(far) < len(empty):  # fewer points than clusters: keep the old centres
            new[empty[len(far) :]] = centres[empty[len(far) :]]
    return new


def _lloyd(
    points: np.ndarray,
    weights: np.ndarray,
    centres: np.ndarray,
    max_iter: int,
    tol: float,
) -> tuple[np.ndarray, int, float]:
    """Lloyd iterations until the labels stop changing or the centres move less than *tol*.

    Returns the centres, the iterations run and the weighted squared error of
    the last assignment.
    """
    labels = None
    for iteration in range(1, max_iter + 1):
        new_labels, dist = _nearest(points, centres)
        error = _weighted_sum(dist, weights)
        if labels is not None and np.array_equal(labels, new_labels):
            return centres, iteration, error
        labels = new_labels
        new_centres = _update_centres(points, weights, labels, dist, centres)
        shift = float(np.sum((new_centres - centres) ** 2))
        centres = new_centres
        if shift <= tol:
            return centres, iteration, error
    return centres, max_iter, error


def _coarse_points(colors: np.ndarray, counts: np.ndarray, bits: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean colour and pixel count of each cell of a *bits*-per-channel histogram."""
    cells = _keys(colors >> (8 - bits))
    uniq, inverse = np.unique(cells, return_inverse=True)
    mass = np.bincount(inverse, weights=counts, minlength=len(uniq))
    means = np.empty((len(uniq), colors.shape[1]), dtype=np.float32)
    for c in range(colors.shape[1]):
        means[:, c] = np.bincount(inverse, weights=counts * colors[:, c], minlength=len(uniq)) / mass
    return means, mass


def kmeans(colors: np.ndarray, counts: np.ndarray, k: int, seed: int) -> tuple[np.ndarray, int]:
    """Fit k centres to weighted distinct colours; return (centres float32 (k, C), iterations).

    Input is already valid: colors (U, C) uint8 with U > k >= 1, counts (U,) > 0.
    """
    rng = np.random.default_rng(seed)
    points = colors.astype(np.float32)
    weights = counts.astype(np.float64)
    mean = np.average(points, axis=0, weights=weights)
    variance = float(np.average(((points - mean) ** 2).sum(axis=1), weights=weights))
    tol = TOLERANCE * variance / points.shape[1]
    levels = []  # (points, weights, iteration cap), coarsest first
    if len(points) > COARSE_ABOVE:
        for bits in COARSE_BITS:
            coarse, mass = _coarse_points(colors, weights, bits)
            if CELLS_PER_CENTRE * k <= len(coarse) < len(points):
                levels.append((coarse, mass, MAX_ITERATIONS))
    levels.append((points, weights, REFINE_ITERATIONS if levels else MAX_ITERATIONS))

    first_points, first_weights, cap = levels[0]
    best = None
    for _ in range(STARTS):
        start = _kmeans_plusplus(first_points, first_weights, k, rng)
        fitted = _lloyd(first_points, first_weights, start, cap, tol)
        if best is None or fitted[2] < best[2]:
            best = fitted
    centres, iterations, _ = best
    for level_points, level_weights, cap in levels[1:]:
        centres, more, _ = _lloyd(level_points, level_weights, centres, cap, tol)
        iterations += more
    return centres, iterations


# ---------------------------------------------------------------------------
# The whole step
# ---------------------------------------------------------------------------
def quantize(image: np.ndarray, colors: int, *, has_alpha: bool, seed: int = 0) -> Quantized:
    """Choose a palette of at most *colors* entries for *image* and label every pixel.

    Parameters
    ----------
    image : ndarray, shape (H, W, C), uint8
        Already validated; C is 1-4 and the last channel is alpha when *has_alpha*.
    colors : int
        Palette size k, 1 ..= 65536.
    has_alpha : bool
        Fully transparent pixels then collapse to one colour (all channels 0),
        which keeps an exact palette entry of its own when k >= 2.
    seed : int
        Seed of the only random generator used.
    """
    h, w, channels = image.shape
    pixels = image.reshape(-1, channels)
    if has_alpha:
        transparent = pixels[:, -1] == 0
        if transparent.any():
            pixels = pixels.copy()
            pixels[transparent] = 0
    uniq, counts, inverse = distinct_colors(pixels)
    n_unique = len(uniq)
    label_dtype = np.uint8 if colors <= 256 else np.uint16
    if n_unique <= colors:
        labels = inverse.astype(label_dtype).reshape(h, w)
        return Quantized(uniq, labels, n_unique, 0, 0.0)

    # Keep an exact (0, ..., 0) entry for fully transparent pixels.
    reserve = has_alpha and colors >= 2 and not uniq[0].any()
    fit_colors, fit_counts = (uniq[1:], counts[1:]) if reserve else (uniq, counts)
    centres, iterations = kmeans(fit_colors, fit_counts, colors - reserve, seed)
    palette = np.clip(np.rint(centres), 0, 255).astype(np.uint8)
    if reserve:
        palette = np.concatenate([np.zeros((1, channels), np.uint8), palette])
    palette = np.unique(palette, axis=0)  # duplicates waste entries; sorted for determinism
    mapping, dist = _nearest(uniq.astype(np.int32), palette.astype(np.int32))
    mse = _weighted_sum(dist, counts) / (len(pixels) * channels)
    labels = mapping.astype(label_dtype)[inverse].reshape(h, w)
    return Quantized(palette, labels, n_unique, iterations, mse)
