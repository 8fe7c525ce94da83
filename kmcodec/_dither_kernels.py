"""Compiled kernel of the Floyd-Steinberg ditherer (see :mod:`kmcodec.dither`).

Importing this module imports numba; :mod:`kmcodec.dither` does so lazily,
and numba's on-disk cache makes only the first run compile.  The caller has
validated everything (shapes, dtypes, a palette of 1 to 65536 entries, a
strength in 0..256); the kernel does not check again.

All arithmetic is on integers: the diffused error is kept in fixed point with
``FRAC`` fractional bits, so the labels are the same on every machine.
"""

from __future__ import annotations

import numpy as np
from numba import njit

#: Fractional bits of the fixed-point error (one level = 2**FRAC).
FRAC = 20
HALF = 1 << (FRAC - 1)
TOP = 255 << FRAC


@njit(cache=True)
def _nearest(target, palette, order, keys):
    """Index of the palette entry nearest *target* (squared distance), ties to the lowest index.

    *order* lists the palette by its first channel (*keys*, ascending); the
    search walks out from *target*'s place in that order and stops on a side
    once the first channel alone is farther than the best distance so far.
    Equal distances are still visited, so the lowest index wins ties.
    """
    k, channels = palette.shape
    t0 = target[0]
    # First entry whose first channel is >= t0 (binary search).
    lo, hi = 0, k
    while lo < hi:
        mid = (lo + hi) >> 1
        if keys[mid] < t0:
            lo = mid + 1
        else:
            hi = mid
    best = -1
    best_d = 1 << 62
    up, down = lo, lo - 1
    while up < k or down >= 0:
        for side in range(2):
            pos = up if side == 0 else down
            if pos < 0 or pos >= k:
                continue
            d0 = keys[pos] - t0
            if d0 * d0 > best_d:
                if side == 0:
                    up = k
                else:
                    down = -1
                continue
            i = order[pos]
            d = 0
            for c in range(channels):
                diff = target[c] - np.int64(palette[i, c])
                d += diff * diff
            if d < best_d or (d == best_d and i < best):
                best_d = d
                best = i
            if side == 0:
                up += 1
            else:
                down -= 1
    return best


@njit(cache=True)
def nearest_other(palette, order):
    """Squared distance from each palette entry to the nearest *different* entry (-1 if none)."""
    k, channels = palette.shape
    keys = np.empty(k, dtype=np.int64)
    for j in range(k):
        keys[j] = palette[order[j], 0]
    out = np.full(k, -1, dtype=np.int64)
    for pos in range(k):
        i = order[pos]
        best = np.int64(-1)
        for direction in (1, -1):
            other = pos + direction
            while 0 <= other < k:
                d0 = keys[other] - keys[pos]
                if best >= 0 and d0 * d0 > best:
                    break
                j = order[other]
                d = np.int64(0)
                for c in range(channels):
                    diff = np.int64(palette[i, c]) - np.int64(palette[j, c])
                    d += diff * diff
                if d > 0 and (best < 0 or d < best):
                    best = d
                other += direction
        out[i] = best
    return out


@njit(cache=True)
def dither_kernel(image, palette, order, strength, limit, alpha_channel, labels, carry, first_row):
    """Floyd-Steinberg error diffusion with a serpentine scan, into *labels*.

    image (H, W, C) uint8; palette (k, C) uint8; order (k,) int64, the palette
    sorted by its first channel; strength 0..256 (256 diffuses the whole
    error); limit the most error, in fixed point, a pixel takes from its
    neighbours per channel; alpha_channel the index of alpha or -1: pixels
    with alpha 0 take the entry nearest to all zeros (the encoder's transparent entry) and
    neither take nor give error.
    labels (H, W) uint8 or uint16 is written.  carry (W + 2, C) int64 holds
    the error arriving at the block's first row (column x at x + 1) and is
    left holding the error for the row after the block; first_row is the
    block's row number in the image (even rows run left to right).  Returns
    the sum over all pixels and channels of the squared difference between
    the pixel (a transparent one as all zeros) and its palette entry.
    """
    h, w, channels = image.shape
    keys = np.empty(len(order), dtype=np.int64)
    for j in range(len(order)):
        keys[j] = palette[order[j], 0]
    # Error arriving at the current and the next row, with a pixel of margin each side.
    here = carry.copy()
    below = np.zeros((w + 2, channels), dtype=np.int64)
    target = np.empty(channels, dtype=np.int64)
    exact = np.empty(channels, dtype=np.int64)
    err = np.empty(channels, dtype=np.int64)
    sse = np.int64(0)
    for y in range(h):
        forward = (first_row + y) % 2 == 0
        step = 1 if forward else -1
        for n in range(w):
            x = n if forward else w - 1 - n
            e = x + 1  # column in the error rows
            if alpha_channel >= 0 and image[y, x, alpha_channel] == 0:
                target[:] = 0
                i = _nearest(target, palette, order, keys)
                labels[y, x] = i
                for c in range(channels):
                    sse += np.int64(palette[i, c]) ** 2
                continue
            for c in range(channels):
                carried = min(max(here[e, c], -limit), limit)
                wanted = (np.int64(image[y, x, c]) << FRAC) + carried
                wanted = min(max(wanted, 0), TOP)
                exact[c] = wanted
                target[c] = (wanted + HALF) >> FRAC
            i = _nearest(target, palette, order, keys)
            labels[y, x] = i
            for c in range(channels):
                diff = np.int64(image[y, x, c]) - np.int64(palette[i, c])
                sse += diff * diff
                err[c] = ((exact[c] - (np.int64(palette[i, c]) << FRAC)) * strength) >> 8
                here[e + step, c] += (err[c] * 7) >> 4
                below[e - step, c] += (err[c] * 3) >> 4
                below[e, c] += (err[c] * 5) >> 4
                below[e + step, c] += err[c] >> 4
        here, below = below, here
        below[:] = 0
    carry[:] = here
    return sse
