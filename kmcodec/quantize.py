"""Colour quantization: choose k palette colours by weighted k-means and map pixels to them.

The cost grows with the number of *distinct* colours, not pixels: pixels are
first reduced to their distinct colours with counts, k-means runs over those
(weighted by count), and every pixel takes the label of its colour.  Photos
with many distinct colours are fitted coarse-to-fine: first on the mean
colours of a reduced-precision histogram, then refined on the exact colours.

Distances are summed per channel in a fixed order (no BLAS), so the result is
the same on every machine; the final mapping to the rounded uint8 palette is
exact integer arithmetic with ties going to the lowest index.

The loops over points and colours are C kernels (``kmcodec/csrc/quant.c``,
``quant_*`` in :mod:`kmcodec._kernels`; ``quant.h`` explains the exact
nearest-centre search).  They read points as uint8, float32 or float64 and
weights as uint32 or float64, in double precision, and release the GIL, so
:func:`_split` runs them over ranges of points in threads.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import os
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import numpy as np

from . import _kernels, threads
from .colorspace import DEFAULT_COLORSPACE, Space, mapping_space, space_of

T = TypeVar("T")

#: Up to this many centres, the search keeps a table of each centre's nearest
#: others by distance.
TABLE_CENTRES = 1024
#: How many nearest others the table lists per centre: a walk from a good
#: guess stops within the first few, and one that would not is searched along
#: the axis, so sorting all k every Lloyd iteration is not needed.
TABLE_COLUMNS = 64
#: Points per thread below which a nearest-centre search runs in the calling thread.
PARALLEL_POINTS = 1 << 15
#: Rows of the search table per thread: the table is made every Lloyd
#: iteration, and a row is microseconds of work.
PARALLEL_ROWS = 64
#: Above this many distinct colours, fit on reduced-precision histograms first.
COARSE_ABOVE = 1 << 15
#: Bits per channel of those histograms, coarsest first: each level starts
#: from the centres of the one before (coarse-to-fine beat a single level in
#: both PSNR and time).
COARSE_BITS = (5, 6, 7)
#: A level is used only with at least this many cells per centre: cells
#: about as large as the clusters left the fit short of full-data k-means.
CELLS_PER_CENTRE = 8
#: k-means++ starts on the first level; the one with the lowest error is kept
#: (one start left small k well below full-data k-means).
STARTS = 3
#: Colour keys of up to this many bits are counted in a bitmap of all keys
#: (2 MiB at 24 bits); wider ones (RGBA) by sorting.
BITMAP_KEY_BITS = 24
#: From this many pixels, colours of up to 24 bits are counted in one pass
#: over the image, in 16-bit tallies of every key (32 MiB for RGB) instead
#: of marking a bitmap in a first pass and counting in a second: one PNG
#: decode fewer, for a table that is cheap beside an image this large.
TALLY_PIXELS = 1 << 20
#: Images of fewer pixels are counted by sorting their colours' keys, as images of more than
#: BITMAP_KEY_BITS bits a colour are: setting up and ranking a bitmap of every key (2 MiB for RGB)
#: costs about 5 ms, which sorting 2**15 keys does not (the same colours and counts either way).
SORT_PIXELS = 1 << 15
#: The largest count or weight the k-means kernels read (uint32).  Both are summed in uint64 and,
#: where a colour's sum passes this (a shared palette's set of frames can: 477 million pixels of one
#: colour at the largest masking weight, 4.3 billion unweighted), all are scaled down alike.
WEIGHT_MAX = 2**32 - 1
#: Lloyd iterations at most on the exact colours after the coarse fit: 10
#: instead of 3 lowered the error for a few % of encode time; more gained
#: little for much slower encodes (docs/benchmarks.md).
REFINE_ITERATIONS = 10
MAX_ITERATIONS = 300
#: Lloyd iterations at most on each reduced-precision level, since the next
#: level refines: running each to convergence cost work and gained no PSNR.
LEVEL_ITERATIONS = 40
#: Convergence tolerance on centre movement, relative to the data's variance (as scikit-learn).
TOLERANCE = 1e-4


@dataclasses.dataclass
class Fit:
    """A palette chosen for counted colours (:func:`fit_palette`).

    Attributes
    ----------
    palette : ndarray, shape (k, C), uint8, sorted
    mapping : ndarray, shape (U,), uint8 if k <= 256 else uint16
        The palette entry of each distinct colour (nearest, ties to the lowest index).
    unique_colors : int
        Distinct colours in the input (after transparent pixels collapse).
    iterations : int
        Lloyd iterations run; 0 when the palette is exactly the input's colours.
    mse : float
        Mean squared error per channel between the input and its quantized image.
    """

    palette: np.ndarray
    mapping: np.ndarray
    unique_colors: int
    iterations: int
    mse: float


@dataclasses.dataclass
class Quantized:
    """Result of :func:`quantize`: a :class:`Fit`'s fields, with labels (H, W) in place of the mapping."""

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


def _scaled(total: np.ndarray) -> np.ndarray:
    """Per-colour sums (uint64) as the uint32 the kernels read: where one passes WEIGHT_MAX, all are divided
    by the same whole number, rounding up (no colour weighs 0)."""
    largest = int(total.max(initial=0))
    if largest > WEIGHT_MAX:
        divisor = np.uint64(-(-largest // WEIGHT_MAX))
        total = (total + divisor - np.uint64(1)) // divisor
    return total.astype(np.uint32)


class ColorCounts:
    """The distinct colours of an image with their pixel counts, and each pixel's colour index.

    Built by :meth:`of` from the image's row blocks, so the whole image is
    never held as keys or indices: colours of up to 24 bits (L, LA, RGB)
    are marked in a bitmap of all keys (2 MiB for RGB) with a rank per
    64-bit word, so a pixel's index is a popcount away; wider ones (RGBA)
    are kept as sorted keys and found by binary search.  Fully transparent
    pixels (alpha 0, when *has_alpha*) count as colour (0, ..., 0).

    Attributes
    ----------
    distinct : ndarray, shape (U, C), uint8, sorted by key (first channel most significant)
    counts : ndarray, shape (U,), uint32
        Pixels of each colour; all divided alike where one passes WEIGHT_MAX (:func:`_scaled`), which only
        a set of images (a shared palette's) can reach.
    pixels : int
        The sum of *counts*.
    """

    def __init__(self, channels: int, has_alpha: bool) -> None:
        self.channels = channels
        self.has_alpha = has_alpha
        self.pixels = 0
        self._bitmap = self._ranks = self._keys = None
        #: With masking (:meth:`of`), the weights the palette is fitted to, else None (the counts).
        self.weights: np.ndarray | None = None

    @classmethod
    def of(
        cls,
        blocks: Callable[[], Iterable[np.ndarray]],
        channels: int,
        has_alpha: bool,
        pixels: int | None = None,
        *,
        masking: bool = False,
        weighed: Callable[[], Iterable[tuple[np.ndarray, np.ndarray]]] | None = None,
    ) -> ColorCounts:
        """Count the colours of row blocks (rows, W, C) uint8; *blocks* may be called up to three times.

        Given the number of *pixels* the blocks hold, an image of at least
        TALLY_PIXELS is counted in one pass over the blocks instead of two
        (for a PNG file, one decode fewer).  With *masking*, one more pass
        sums each colour's :func:`kmcodec.masking.weights` into
        :attr:`weights`, which the palette is fitted to, the blocks being
        one image's.  Blocks of several images give *weighed* instead: the
        same blocks, each with its weights (``block_weights`` of each image
        alone, so that no image's edge rows see another's).
        """
        self = cls(channels, has_alpha)
        if 8 * channels <= BITMAP_KEY_BITS and (pixels is None or pixels >= SORT_PIXELS):
            self._bitmap = np.zeros(max(1, (1 << (8 * channels)) >> 6), dtype=np.uint64)
            if pixels is not None and pixels >= TALLY_PIXELS:
                keys = self._tally(blocks, pixels)
            else:
                for block in blocks():
                    _kernels.quant_mark(_flat(block), has_alpha, 8, self._bitmap)
                keys = self._rank()
                self.counts = self._summed((block, None) for block in blocks())
        else:
            keys, counts = np.zeros(0, dtype=np.uint32), np.zeros(0, dtype=np.float64)  # float64: exact to 2**53
            for block in blocks():
                block_keys, block_counts = np.unique(self._block_keys(block), return_counts=True)
                keys, at = np.unique(np.concatenate([keys, block_keys]), return_inverse=True)
                counts = np.bincount(at, weights=np.concatenate([counts, block_counts]), minlength=len(keys))
            self.counts = _scaled(counts.astype(np.uint64))
            self._keys = keys
        self.pixels = int(self.counts.sum())
        self.distinct = _unkeys(keys, channels)
        if weighed is not None:
            self.weights = self._summed(weighed())
        elif masking:
            from .masking import block_weights

            self.weights = self._summed(block_weights(blocks()))
        return self

    def _summed(self, pairs: Iterable[tuple[np.ndarray, np.ndarray | None]]) -> np.ndarray:
        """Each colour's pixels' weights summed (1 a pixel where the weights are None), from (block, weights)
        pairs, as uint32 (:func:`_scaled`).

        Summed in uint32 runs that cannot pass WEIGHT_MAX, the runs in uint64.
        """
        total = np.zeros(len(self.counts), dtype=np.uint64)
        run = np.zeros(len(self.counts), dtype=np.uint32)
        # Pixels of weight <= 255 (uint8) that a run may hold: more than a row of the widest image (2**24 - 1).
        room = limit = WEIGHT_MAX // 255
        for block, weights in pairs:
            step = max(1, limit // max(1, block.shape[1]))
            for top in range(0, len(block), step):
                part = block[top : top + step]
                part_weights = None if weights is None else weights[top : top + step].ravel()
                if part.shape[0] * part.shape[1] > room:
                    total += run
                    run[:] = 0
                    room = limit
                room -= part.shape[0] * part.shape[1]
                if self._bitmap is None:
                    at = np.searchsorted(self._keys, self._block_keys(part))
                    run += np.bincount(at, part_weights, len(run)).astype(np.uint32)
                else:
                    flat, ranks = _flat(part), self._ranks
                    _kernels.quant_count(flat, self.has_alpha, 8, self._bitmap, ranks, run, part_weights)
        total += run
        return _scaled(total)

    def _rank(self) -> np.ndarray:
        """Ranks for the marked bitmap, zero counts of its size; returns the keys."""
        self._ranks = np.empty(len(self._bitmap), dtype=np.int64)
        unique = _kernels.quant_rank(self._bitmap, self._ranks)
        self.counts = np.zeros(unique, dtype=np.uint32)  # the format allows < 2**32 pixels
        keys = np.empty(unique, dtype=np.uint32)
        _kernels.quant_keys_of(self._bitmap, keys)
        return keys

    def _tally(self, blocks: Callable[[], Iterable[np.ndarray]], pixels: int) -> np.ndarray:
        """Count in one pass over the blocks, in 16-bit tallies of every key (32 MiB for RGB)."""
        tallies = np.zeros(64 * len(self._bitmap), dtype=np.uint16)
        wraps = np.empty(pixels // 65536, dtype=np.uint32)
        wrapped = seen = 0
        for block in blocks():
            flat = _flat(block)
            seen += flat.shape[0]
            if seen > pixels:  # the kernel would write past the end of *wraps*
                msg = f"the blocks hold more than the {pixels} pixels declared"
                raise ValueError(msg)
            wrapped = _kernels.quant_tally(flat, self.has_alpha, 8, tallies, wraps, wrapped)
        wraps = wraps[:wrapped]
        _kernels.quant_mark_tallied(tallies, wraps, self._bitmap)
        keys = self._rank()
        _kernels.quant_gather_tallies(tallies, wraps, keys, self._bitmap, self._ranks, self.counts)
        return keys

    def _block_keys(self, block: np.ndarray) -> np.ndarray:
        pixels = _flat(block)
        keys = _keys(pixels)
        if self.has_alpha:
            keys[pixels[:, -1] == 0] = 0
        return keys

    def lookup(self, block: np.ndarray, mapping: np.ndarray) -> np.ndarray:
        """mapping[index of each pixel's colour] for a row block (rows, W, C); shape (rows, W)."""
        rows, width = block.shape[:2]
        if self._bitmap is None:
            return mapping[np.searchsorted(self._keys, self._block_keys(block))].reshape(rows, width)
        out = np.empty(rows * width, dtype=mapping.dtype)
        _kernels.quant_lookup(_flat(block), self.has_alpha, 8, self._bitmap, self._ranks, mapping, out)
        return out.reshape(rows, width)


def _flat(block: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(block).reshape(-1, block.shape[-1])


# ---------------------------------------------------------------------------
# Nearest centre
# ---------------------------------------------------------------------------
def _search_axis(centres: np.ndarray) -> np.ndarray:
    """A unit vector along which the centres spread most: the search is fastest along it.

    Any unit vector gives the same labels (it only orders the search, and
    ties go to the lowest index), so its rounding may differ between
    platforms: the principal axis of the centres' scatter matrix, from
    LAPACK (a few microseconds; the power iteration in numpy it replaced
    was most of the quantizer's time on small images).
    """
    spread = centres - centres.mean(axis=0)
    return np.linalg.eigh(spread.T @ spread)[1][:, -1].copy()


class _Search:
    """Centres prepared for the kernels' nearest-centre search (described in ``kmcodec/csrc/quant.h``).

    ``args`` are the kernels' centre arguments: the centres (float64), their
    order along the search axis, their projections and the axis, and, for
    k <= TABLE_CENTRES, each centre's TABLE_COLUMNS nearest others by
    distance with the distances.
    """

    def __init__(self, centres: np.ndarray) -> None:
        centres = np.ascontiguousarray(centres, dtype=np.float64)
        k = len(centres)
        axis = _search_axis(centres)
        proj = (centres * axis).sum(axis=1)
        order = np.argsort(proj, kind="stable").astype(np.int64)
        if k <= TABLE_CENTRES:
            table = np.empty((k, min(k, TABLE_COLUMNS)), dtype=np.int32)
            table_dist = np.empty(table.shape)
            _split(k, _kernels.quant_centre_table, centres, table, table_dist, grain=PARALLEL_ROWS)
            # Column 0 is the centre itself (or an equal one); column 1 its nearest other.
            self.half_gap = table_dist[:, 1] / 2 if k > 1 else np.full(1, np.inf)
        else:
            table, table_dist = np.zeros((0, 0), np.int32), np.zeros((0, 0))
            labels = np.full(k, -1, dtype=np.int32)
            upper, lower = np.full(k, np.inf), np.zeros(k)
            args = (centres, order, proj[order], axis, table, table_dist)
            _kernels.quant_assign_bounded(centres, *args, np.zeros(k), np.zeros(k), labels, upper, lower, 0, k)
            self.half_gap = lower / 2
        self.args = (centres, order, proj[order], axis, table, table_dist)


_POOL: ThreadPoolExecutor | None = None


def _pool() -> ThreadPoolExecutor:
    """One thread per CPU, kept for the process: starting threads per call cost 10 % of a k-means."""
    global _POOL
    if _POOL is None:
        _POOL = ThreadPoolExecutor(os.cpu_count() or 1, thread_name_prefix="kmcodec-quantize")
    return _POOL


def _forget_pool() -> None:
    """In a forked child: the parent's pool threads do not exist there, and its idle count would
    send work to them (a fit that waits forever), so the child starts a pool of its own."""
    global _POOL
    _POOL = None


if hasattr(os, "register_at_fork"):  # not on Windows, which cannot fork
    os.register_at_fork(after_in_child=_forget_pool)


def _split(n: int, kernel: Callable[..., T], *args: object, grain: int | None = None) -> list[T]:
    """[kernel(*args, start, stop)] over a split of range(n), a piece of at least *grain* (PARALLEL_POINTS) per thread.

    The kernels release the GIL.  Callers write each item's result in
    place, so the split cannot change them.
    """
    pieces = n // (grain or PARALLEL_POINTS)
    workers = min(threads.count(), pieces) if pieces > 1 else 1  # too few for threads: no need to count CPUs
    if workers <= 1:
        return [kernel(*args, 0, n)]
    bounds = np.linspace(0, n, workers + 1).astype(np.int64)
    jobs = [_pool().submit(kernel, *args, int(a), int(b)) for a, b in itertools.pairwise(bounds)]
    return [threads.result(job) for job in jobs]


def _nearest(points: np.ndarray, centres: np.ndarray, guess: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Nearest centre of each point and its squared distance (float64).

    *points* (n, C) uint8, float32 or float64, *centres* (k, C); *guess* (n,) int32,
    a likely centre per point or -1, only makes the search faster.  Exact:
    integer points and centres give exact integer distances.  Ties go to the
    lowest centre index.
    """
    n = len(points)
    labels = np.full(n, -1, dtype=np.int32) if guess is None else guess.astype(np.int32)
    dist = np.empty(n, dtype=np.float64)
    _split(n, _kernels.quant_nearest, points, *_Search(centres).args, labels, dist)
    return labels, dist


def _weighted_sum(values: np.ndarray, weights: np.ndarray) -> float:
    """sum(values * weights) in float64, in index order.

    Not np.dot: BLAS splits a dot product across threads, so its rounding
    (and with it the palette and the file's bytes) would depend on the core
    count.
    """
    return float(_kernels.quant_weighted_sum(values, weights))


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
    _kernels.quant_plusplus(points, weights, first, draws, centres)
    return centres


def _update_centres(
    points: np.ndarray,
    weights: np.ndarray,
    labels: np.ndarray,
    distance: np.ndarray,
    centres: np.ndarray,
    space: Space | None = None,
    values: np.ndarray | None = None,
) -> np.ndarray:
    """Weighted means of each cluster; an empty cluster moves to the point of highest weight x distance**2.

    With *values* (n, C), each centre is ``space.finish`` of the mean of its points' values instead.
    """
    k, channels = centres.shape
    sums = np.zeros((k, channels))
    mass = np.zeros(k)
    _kernels.quant_accumulate(points if values is None else values, weights, labels, sums, mass)
    with np.errstate(invalid="ignore", divide="ignore"):
        new = sums / mass[:, None]
    empty = np.flatnonzero(mass == 0)
    if values is not None:
        full = np.flatnonzero(mass > 0)
        new[full] = space.finish(new[full])
    if len(empty):
        far = np.argsort(-(distance * distance * weights), kind="stable")[: len(empty)]
        new[empty[: len(far)]] = points[far]
        if len(far) < len(empty):  # fewer points than clusters: keep the old centres
            new[empty[len(far) :]] = centres[empty[len(far) :]]
    return new


def _lloyd(
    points: np.ndarray,
    weights: np.ndarray,
    centres: np.ndarray,
    guess: np.ndarray,
    max_iter: int,
    tol: float,
    space: Space | None = None,
    values: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, int]:
    """Lloyd iterations until the labels stop changing or the centres move less than *tol*.

    *guess* (n,) int32 is a likely first label per point, or -1.  Hamerly's
    bounds let most points skip the search once the centres settle; the
    result is that of plain Lloyd iterations.  Returns the centres, the
    labels of the last assignment and the iterations run.
    """
    n, k = len(points), len(centres)
    labels = guess.astype(np.int32)
    upper, lower = np.full(n, np.inf), np.zeros(n)
    shift = np.zeros(k)
    for iteration in range(1, max_iter + 1):
        search = _Search(centres)
        args = (points, *search.args, search.half_gap, shift, labels, upper, lower)
        changed = sum(_split(n, _kernels.quant_assign_bounded, *args))
        if iteration > 1 and changed == 0:
            return centres, labels, iteration
        new_centres = _update_centres(points, weights, labels, upper, centres, space, values)
        shift = np.sqrt(np.sum((new_centres - centres) ** 2, axis=1))
        centres = new_centres
        if float(np.sum(shift * shift)) <= tol:
            return centres, labels, iteration
    return centres, labels, max_iter


def _coarse_level(
    distinct: np.ndarray, weights: np.ndarray, bits: int, means_of: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The cells of a *bits*-per-channel histogram of weighted colours, in key order.

    Returns each cell's mean colour (float32; with *means_of* (U, C), the
    mean of those values instead, float64) and weight, the first colour
    index in each cell, and the cell of each colour (int32).  The cells are
    found with the same bitmap and ranks as the distinct colours, so no
    sort and no int64 temporaries of the colours' size are needed.
    """
    channels = distinct.shape[1]
    cells = distinct >> (8 - bits)
    bitmap = np.zeros(max(1, (1 << (bits * channels)) >> 6), dtype=np.uint64)
    _kernels.quant_mark(cells, False, bits, bitmap)
    ranks = np.empty(len(bitmap), dtype=np.int64)
    n = _kernels.quant_rank(bitmap, ranks)
    inverse = np.empty(len(distinct), dtype=np.int32)
    _kernels.quant_lookup(cells, False, bits, bitmap, ranks, np.arange(n, dtype=np.int32), inverse)
    member = np.full(n, -1, dtype=np.int64)
    _kernels.quant_first_members(inverse, member)
    sums, mass = np.zeros((n, channels)), np.zeros(n)
    _kernels.quant_accumulate(distinct if means_of is None else means_of, weights, inverse, sums, mass)
    sums /= mass[:, None]
    return sums.astype(np.float32) if means_of is None else sums, mass, member, inverse


def kmeans(
    distinct: np.ndarray,
    counts: np.ndarray,
    k: int,
    seed: int,
    space: Space | None = None,
    points: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, int]:
    """Fit k centres to weighted distinct colours.

    Input is already valid: distinct (U, C) uint8 with U > k >= 1, counts (U,) > 0.
    With a *space* (:mod:`.colorspace`), k-means runs on ``space.points(distinct)``
    (*points*, where the caller has them already) and averages as the space says;
    the histogram levels still bin the uint8 colours.

    Returns
    -------
    centres : ndarray, shape (k, C), float64 (in *space*'s coordinates)
    labels : ndarray, shape (U,), int32
        Each colour's centre in the last assignment (before the last update).
    iterations : int
    """
    rng = np.random.default_rng(seed)
    weights = counts  # uint32 counts: the kernels read them as they are
    total = float(weights.sum())
    coords = distinct if space is None else space.points(distinct) if points is None else points
    values = None if space is None else space.averaged(distinct)
    variance = 0.0
    for c in range(distinct.shape[1]):  # a channel at a time: no (U, C) float temporaries
        channel = coords[:, c].astype(np.float64)
        mean = _weighted_sum(channel, weights) / total
        channel -= mean
        variance += _weighted_sum(channel * channel, weights) / total
    tol = TOLERANCE * variance / distinct.shape[1]
    centres = labels = None
    iterations = 0
    for bits in (*(COARSE_BITS if len(distinct) > COARSE_ABOVE else ()), 8):
        if bits < 8 and bits * distinct.shape[1] > BITMAP_KEY_BITS:
            continue  # RGBA: the 7-bit level's bitmap would take 32 MiB
        points = mass = member = inverse = None  # the last level's, before the next is made
        level_values = None
        if bits < 8:
            means_of = None if space is None else coords if values is None else values
            points, mass, member, inverse = _coarse_level(distinct, weights, bits, means_of)
            if not CELLS_PER_CENTRE * k <= len(points) < len(distinct):
                continue
            if values is not None:  # cells of mean values: their points are the space's view of those
                level_values, points = points, space.finish(points)
            cap = LEVEL_ITERATIONS
        else:
            # The exact colours; uint8, which the kernels read as they are.
            points, mass, member, inverse, level_values = coords, weights, None, None, values
            cap = MAX_ITERATIONS if centres is None else REFINE_ITERATIONS
        if centres is None:
            centres, level_labels, more = _best_start(points, mass, k, rng, cap, tol, space, level_values)
        else:
            guess = labels if member is None else labels[member]
            centres, level_labels, more = _lloyd(points, mass, centres, guess, cap, tol, space, level_values)
        iterations += more
        labels = level_labels if inverse is None else level_labels[inverse]
    return centres, labels, iterations


def _best_start(
    points: np.ndarray,
    weights: np.ndarray,
    k: int,
    rng: np.random.Generator,
    cap: int,
    tol: float,
    space: Space | None = None,
    values: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, int]:
    """Lloyd from STARTS k-means++ seedings; the fit with the lowest error wins (the first of equals)."""
    best = None
    for _ in range(STARTS):
        start = _kmeans_plusplus(points, weights, k, rng)
        fitted = _lloyd(points, weights, start, np.full(len(points), -1, np.int32), cap, tol, space, values)
        error = _weighted_sum(_nearest(points, fitted[0], fitted[1])[1], weights)
        if best is None or error < best[0]:
            best = error, fitted
    return best[1]


# ---------------------------------------------------------------------------
# The whole step
# ---------------------------------------------------------------------------
def fit_palette(counted: ColorCounts, colors: int, *, seed: int = 0, colorspace: str = DEFAULT_COLORSPACE) -> Fit:
    """Choose a palette of at most *colors* entries for counted colours.

    *colors* is 1 ..= 65536.  With at most *colors* distinct colours the
    palette is exactly those.  With an alpha channel, fully transparent
    pixels (counted as all zeros) keep an exact entry of their own when
    *colors* >= 2.  *colorspace* (checked) is where k-means runs and
    colours find their nearest entry (:mod:`.colorspace`); the palette is
    uint8 sRGB and the MSE that of the sRGB values either way.  With
    masking weights (:attr:`ColorCounts.weights`), k-means fits those; the
    MSE is still the plain one.
    """
    uniq, counts = counted.distinct, counted.counts
    label_dtype = np.uint8 if colors <= 256 else np.uint16
    if len(uniq) <= colors:
        return Fit(uniq, np.arange(len(uniq), dtype=label_dtype), len(uniq), 0, 0.0)
    reserve = counted.has_alpha and colors >= 2 and not uniq[0].any()
    weights = counts if counted.weights is None else counted.weights
    fit_colors, fit_counts = (uniq[1:], weights[1:]) if reserve else (uniq, weights)
    space = space_of(colorspace, counted.channels, counted.has_alpha)
    # the colours' coordinates in the space, converted once for k-means and the mapping after it
    points = None if space is None else space.points(uniq)
    fit_points = None if points is None else points[1:] if reserve else points
    centres, fit_labels, iterations = kmeans(fit_colors, fit_counts, colors - reserve, seed, space, fit_points)
    if space is not None and space.refine_srgb:
        centres, fit_labels, more = refine_srgb(fit_colors, fit_counts, space.to_srgb8(centres), fit_labels)
        iterations, space = iterations + more, None
    palette = np.clip(np.rint(centres), 0, 255).astype(np.uint8) if space is None else space.to_srgb8(centres)
    if reserve:
        palette = np.concatenate([np.zeros((1, counted.channels), np.uint8), palette])
        fit_labels = np.concatenate([np.zeros(1, np.int32), fit_labels + 1])
    # Duplicates waste entries; sorted for determinism.
    palette, entry = np.unique(palette, axis=0, return_inverse=True)
    mapping, dist = _map(uniq, palette, space, guess=entry.reshape(-1)[fit_labels], points=points)
    mse = _weighted_sum(dist, counts) / (counted.pixels * counted.channels)
    return Fit(palette, mapping.astype(label_dtype), len(uniq), iterations, mse)


def refine_srgb(
    distinct: np.ndarray, counts: np.ndarray, palette: np.ndarray, labels: np.ndarray
) -> tuple[np.ndarray, np.ndarray, int]:
    """Lloyd iterations in sRGB to convergence from a palette (k, C) uint8 fitted elsewhere (labels a guess).

    Returns centres (k, C) float64, labels (U,) int32 and the iterations run.
    """
    total = float(counts.sum())
    variance = 0.0
    for c in range(distinct.shape[1]):
        channel = distinct[:, c].astype(np.float64)
        channel -= _weighted_sum(channel, counts) / total
        variance += _weighted_sum(channel * channel, counts) / total
    tol = TOLERANCE * variance / distinct.shape[1]
    return _lloyd(distinct, counts, palette.astype(np.float64), labels.astype(np.int32), MAX_ITERATIONS, tol)


def _map(
    distinct: np.ndarray,
    palette: np.ndarray,
    space: Space | None,
    guess: np.ndarray | None = None,
    points: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Each colour's nearest palette entry in *space* (ties to the lowest index) and its squared sRGB error.

    *points*: ``space.points(distinct)``, where the caller has them already.
    """
    if space is None:
        return _nearest(distinct, palette, guess)
    coords = space.points(distinct) if points is None else points
    mapping, _ = _nearest(coords, space.points(palette), guess)
    dist = np.zeros(len(distinct))
    for c in range(distinct.shape[1]):
        diff = distinct[:, c].astype(np.float64) - palette[mapping, c]
        dist += diff * diff
    return mapping, dist


def apply_palette(counted: ColorCounts, palette: np.ndarray, *, colorspace: str = DEFAULT_COLORSPACE) -> Fit:
    """Map counted colours to a given palette (k, C) uint8, kept as it is (order and all entries).

    Each colour takes its nearest entry in *colorspace* (sRGB for "oklab-srgb"),
    ties to the lowest index; no k-means runs.
    """
    space = mapping_space(colorspace, counted.channels, counted.has_alpha)
    mapping, dist = _map(counted.distinct, palette, space)
    mse = _weighted_sum(dist, counted.counts) / (counted.pixels * counted.channels)
    label_dtype = np.uint8 if len(palette) <= 256 else np.uint16
    return Fit(palette, mapping.astype(label_dtype), len(counted.distinct), 0, mse)


def quantize(
    image: np.ndarray, colors: int, *, has_alpha: bool, seed: int = 0, colorspace: str = DEFAULT_COLORSPACE
) -> Quantized:
    """Choose a palette of at most *colors* entries for *image* and label every pixel.

    The one-call form of :class:`ColorCounts`, :func:`fit_palette` and
    :meth:`ColorCounts.lookup`, for an image held in memory.

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
    colorspace : {"srgb", "oklab"}
        Where k-means runs (see :mod:`.colorspace`); already checked.
    """
    counted = ColorCounts.of(lambda: [image], image.shape[2], has_alpha, image.shape[0] * image.shape[1])
    fit = fit_palette(counted, colors, seed=seed, colorspace=colorspace)
    labels = counted.lookup(image, fit.mapping)
    return Quantized(fit.palette, labels, fit.unique_colors, fit.iterations, fit.mse)


# ---------------------------------------------------------------------------
# Quality targets
# ---------------------------------------------------------------------------
#: fit_to_psnr keeps an input of at most this many distinct colours (and at
#: most max_colors) exact without a search, as pngquant keeps such images: a
#: graphic's colours are worth more than the bytes a smaller palette saves.
#: Above it, the exact palette is only the search's upper end, or a photo of
#: 40,000 colours would come out with 40,000 at any target.
EXACT_COLORS = 256
#: The quality search's first k above 1, and the most it multiplies k by in
#: one step upwards: starting at 1 and doubling, the small fits of the
#: climb cost as much as the narrowing near the answer.
FIRST_GUESS = 16
GROWTH = 4


def psnr_mse(psnr: float) -> float:
    """The mean squared error per channel that a PSNR in dB allows (peak 255)."""
    return 255.0**2 / 10.0 ** (psnr / 10.0)


def fit_to_psnr(
    counted: ColorCounts, target: float, max_colors: int, *, seed: int = 0, colorspace: str = DEFAULT_COLORSPACE
) -> Fit:
    """The fit of the smallest palette size that reaches *target* dB PSNR, up to *max_colors*.

    Each candidate k is fitted exactly as ``fit_palette(counted, k,
    seed=seed, colorspace=colorspace)`` would fit it, so encoding at the k found gives the same
    palette; fits are cached, so no k is fitted twice.  An input with at
    most ``min(max_colors, EXACT_COLORS)`` distinct colours is returned
    exact (infinite PSNR) without a search; with more, its U distinct
    colours are exact at k = U, so the search goes up to min(max_colors, U).

    MSE falls about as a power of k, so the search works on the line
    through two fits in (log k, log MSE).  It fits k = 1 and FIRST_GUESS,
    then climbs, each step to where the line through the last two misses
    meets the target (times 1.25 to GROWTH, doubling if the line does not
    fall), until a fit
    reaches the target (or *max_colors* is reached); then it narrows the
    bracket between the last miss and the first hit: each step tries the k
    where the line through the two ends meets the target, or the middle
    after three steps in a row that did not halve the bracket, so it needs
    at most about four times the fits of bisection and two or three on
    photos.  k-means finds a local optimum, so PSNR is not
    strictly monotone in k; what the search guarantees is that the returned
    fit reaches the target and the fit at k - 1 does not (a smaller k that
    happens to reach it may exist elsewhere).  If even *max_colors* misses,
    that fit, the best allowed, is returned.  The result depends only on
    the input, *target*, *max_colors* and *seed*.

    Parameters
    ----------
    counted : ColorCounts
    target : float
        PSNR in dB; already valid (positive, or inf).
    max_colors : int
        Largest palette size allowed, 1 ..= 65536.
    seed, colorspace
        As for :func:`fit_palette`.
    """
    unique = len(counted.distinct)
    if unique <= min(max_colors, EXACT_COLORS):
        return fit_palette(counted, max_colors, seed=seed, colorspace=colorspace)
    max_colors = min(max_colors, unique)
    allowed = psnr_mse(target)
    fits: dict[int, Fit] = {}

    def fit(k: int) -> Fit:
        if k not in fits:
            fits[k] = fit_palette(counted, k, seed=seed, colorspace=colorspace)
        return fits[k]

    def reaches(k: int) -> bool:
        return fit(k).mse <= allowed

    if reaches(1):
        return fit(1)
    # Up from k = 1 along the line through the last two misses in (log k,
    # log MSE), at least doubling and at most GROWTH x per step.
    before, miss, hit = 1, 1, min(FIRST_GUESS, max_colors)
    while not reaches(hit):
        if hit == max_colors:
            return fit(hit)
        before, miss = miss, hit
        k = _interpolate(before, fit(before).mse, miss, fit(miss).mse, allowed)
        hit = min(max(math.ceil(1.25 * miss), min(k or 2 * miss, GROWTH * miss)), max_colors)
    slow = 0  # steps in a row that did not halve the bracket
    while hit - miss > 1:
        width = hit - miss
        k = _interpolate(miss, fit(miss).mse, hit, fit(hit).mse, allowed) if slow < 3 and miss else None
        k = (miss + hit) // 2 if k is None else min(max(k, miss + 1), hit - 1)
        if reaches(k):
            hit = k
        else:
            miss = k
        slow = 0 if 2 * (hit - miss) <= width else slow + 1
    return fit(hit)


def _interpolate(k0: int, mse0: float, k1: int, mse1: float, target: float) -> int | None:
    """The k, rounded up, where log MSE reaches log *target* on the line through (log k0, log mse0), (log k1, log mse1).

    None when the line does not fall (k-means is not monotone) or an MSE is 0.
    """
    if not (mse0 > mse1 > 0 and target > 0):
        return None
    slope = (math.log(mse1) - math.log(mse0)) / (math.log(k1) - math.log(k0))
    return math.ceil(math.exp(math.log(k0) + (math.log(target) - math.log(mse0)) / slope))
