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
import itertools
import math
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import numpy as np

T = TypeVar("T")

#: Points per thread below which a nearest-centre search runs in the calling thread.
PARALLEL_POINTS = 1 << 15
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
#: Lloyd iterations on each histogram level after the first.
LEVEL_ITERATIONS = 300
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
def _kernels():
    """The compiled kernels, imported (and numba with them) on first use."""
    from . import _quant_kernels

    return _quant_kernels


def _search_axis(centres: np.ndarray) -> np.ndarray:
    """A unit vector along which the centres spread most (any unit vector is correct; this one is fast).

    Power iteration on the centres' scatter matrix, summed elementwise (no BLAS).
    """
    channels = centres.shape[1]
    spread = centres - centres.mean(axis=0)
    scatter = np.array([[np.sum(spread[:, a] * spread[:, b]) for b in range(channels)] for a in range(channels)])
    axis = np.ones(channels) / math.sqrt(channels)
    for _ in range(20):
        nxt = (scatter * axis).sum(axis=1)
        norm = math.sqrt(float(np.sum(nxt * nxt)))
        if norm == 0.0:
            break
        axis = nxt / norm
    return axis


class _Search:
    """Centres prepared for the kernels' nearest-centre search: sorted by projection on an axis."""

    def __init__(self, centres: np.ndarray) -> None:
        self.centres = np.ascontiguousarray(centres, dtype=np.float64)
        self.axis = _search_axis(self.centres)
        proj = (self.centres * self.axis).sum(axis=1)
        self.order = np.argsort(proj, kind="stable").astype(np.int64)
        self.proj = proj[self.order]

    def half_gaps(self) -> np.ndarray:
        """Half the distance from each centre to its nearest other centre (inf for k = 1)."""
        k = len(self.centres)
        labels = np.full(k, -1, dtype=np.int32)
        upper, lower = np.full(k, np.inf), np.zeros(k)
        _kernels().assign_bounded(
            self.centres, self.centres, self.order, self.proj, self.axis, np.zeros(k), np.zeros(k),
            labels, upper, lower, 0, k,
        )  # fmt: skip
        return lower / 2


def _split(n: int, kernel: Callable[..., T], *args: object) -> list[T]:
    """[kernel(*args, start, stop)] over a split of range(n), a piece per thread (the kernels release the GIL).

    Callers write each point's result in place, so the split cannot change them.
    """
    workers = min(os.cpu_count() or 1, max(1, n // PARALLEL_POINTS))
    if workers <= 1:
        return [kernel(*args, 0, n)]
    bounds = np.linspace(0, n, workers + 1).astype(np.int64)
    with ThreadPoolExecutor(workers) as pool:
        jobs = [pool.submit(kernel, *args, int(a), int(b)) for a, b in itertools.pairwise(bounds)]
        return [job.result() for job in jobs]


def _nearest(points: np.ndarray, centres: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Nearest centre of each point and its squared distance (float64).

    *points* (n, C) of any real dtype, *centres* (k, C).  Exact: integer
    points and centres give exact integer distances.  Ties go to the lowest
    centre index.
    """
    kernels = _kernels()
    s = _Search(centres)
    n = len(points)
    labels = np.empty(n, dtype=np.int32)
    dist = np.empty(n, dtype=np.float64)
    _split(n, kernels.nearest, points, s.centres, s.order, s.proj, s.axis, labels, dist)
    return labels, dist


def _weighted_sum(values: np.ndarray, weights: np.ndarray) -> float:
    """sum(values * weights) in float64, in index order.

    Not np.dot: BLAS splits a dot product across threads, so its rounding
    (and with it the palette and the file's bytes) would depend on the core
    count.
    """
    return float(_kernels().weighted_sum(values, weights))


# ---------------------------------------------------------------------------
# k-means
# ---------------------------------------------------------------------------
def _kmeans_plusplus(points: np.ndarray, weights: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """Greedy k-means++ seeding over weighted points; returns centres (k, C) float64.

    Each step draws 2 + ln k candidates with probability proportional to
    weight x squared distance and keeps the one that lowers the potential most.
    """
    cum = np.cumsum(weights)
    first = min(int(np.searchsorted(cum, rng.random() * cum[-1], side="right")), len(points) - 1)
    draws = rng.random((k - 1, 2 + int(math.log(k))))
    centres = np.empty((k, points.shape[1]), dtype=np.float64)
    _kernels().plusplus(points, weights, first, draws, centres)
    return centres


def _update_centres(
    points: np.ndarray, weights: np.ndarray, labels: np.ndarray, cost: np.ndarray, centres: np.ndarray
) -> np.ndarray:
    """Weighted means of each cluster; an empty cluster moves to the point of highest *cost*."""
    k, channels = centres.shape
    sums = np.zeros((k, channels))
    mass = np.zeros(k)
    _kernels().accumulate(points, weights, labels, sums, mass)
    with np.errstate(invalid="ignore", divide="ignore"):
        new = sums / mass[:, None]
    empty = np.flatnonzero(mass == 0)
    if len(empty):
        far = np.argsort(-(cost * weights), kind="stable")[: len(empty)]
        new[empty[: len(far)]] = points[far]
        if len(far) < len(empty):  # fewer points than clusters: keep the old centres
            new[empty[len(far) :]] = centres[empty[len(far) :]]
    return new


def _lloyd(
    points: np.ndarray, weights: np.ndarray, centres: np.ndarray, max_iter: int, tol: float
) -> tuple[np.ndarray, int]:
    """Lloyd iterations until the labels stop changing or the centres move less than *tol*.

    Hamerly's bounds let most points skip the search once the centres
    settle; the result is that of plain Lloyd iterations.  Returns the
    centres and the iterations run.
    """
    kernels = _kernels()
    n, k = len(points), len(centres)
    labels = np.full(n, -1, dtype=np.int32)
    upper, lower = np.full(n, np.inf), np.zeros(n)
    shift = np.zeros(k)
    for iteration in range(1, max_iter + 1):
        s = _Search(centres)
        args = (points, s.centres, s.order, s.proj, s.axis, s.half_gaps(), shift, labels, upper, lower)
        changed = _split(n, kernels.assign_bounded, *args)
        if iteration > 1 and sum(changed) == 0:
            return centres, iteration
        new_centres = _update_centres(points, weights, labels, upper * upper, centres)
        shift = np.sqrt(np.sum((new_centres - centres) ** 2, axis=1))
        centres = new_centres
        if float(np.sum(shift * shift)) <= tol:
            return centres, iteration
    return centres, max_iter


def _error(points: np.ndarray, weights: np.ndarray, centres: np.ndarray) -> float:
    """Weighted squared error of the points against their nearest centres."""
    return _weighted_sum(_nearest(points, centres)[1], weights)


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
    """Fit k centres to weighted distinct colours; return (centres float64 (k, C), iterations).

    Input is already valid: colors (U, C) uint8 with U > k >= 1, counts (U,) > 0.
    """
    rng = np.random.default_rng(seed)
    points = colors  # uint8: the kernels read any dtype, and this saves a float copy
    weights = counts.astype(np.float64)
    mean = np.average(points, axis=0, weights=weights)
    variance = float(np.average(((points - mean) ** 2).sum(axis=1), weights=weights))
    tol = TOLERANCE * variance / points.shape[1]
    levels = []  # (points, weights, iteration cap), coarsest first
    if len(points) > COARSE_ABOVE:
        for bits in COARSE_BITS:
            coarse, mass = _coarse_points(colors, weights, bits)
            if CELLS_PER_CENTRE * k <= len(coarse) < len(points):
                levels.append((coarse, mass, LEVEL_ITERATIONS if levels else MAX_ITERATIONS))
    levels.append((points, weights, REFINE_ITERATIONS if levels else MAX_ITERATIONS))

    first_points, first_weights, cap = levels[0]
    best = None
    for _ in range(STARTS):
        start = _kmeans_plusplus(first_points, first_weights, k, rng)
        centres, iterations = _lloyd(first_points, first_weights, start, cap, tol)
        error = _error(first_points, first_weights, centres)
        if best is None or error < best[0]:
            best = error, centres, iterations
    _, centres, iterations = best
    for level_points, level_weights, cap in levels[1:]:
        centres, more = _lloyd(level_points, level_weights, centres, cap, tol)
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
    mapping, dist = _nearest(uniq, palette)
    mse = _weighted_sum(dist, counts) / (len(pixels) * channels)
    labels = mapping.astype(label_dtype)[inverse].reshape(h, w)
    return Quantized(palette, labels, n_unique, iterations, mse)
