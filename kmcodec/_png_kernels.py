"""Compiled kernel of the streaming PNG reader (see :mod:`kmcodec.png`).

Importing this module imports numba; :mod:`kmcodec.png` does so lazily.
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def unfilter(filtered, previous, bpp, out):  # pragma: no cover - compiled
    """Undo PNG's per-row filters (PNG §9.2) of (h, 1 + n) rows into (h, n) raw bytes.

    *previous* (n,) is the raw row above the first (zeros for the image's
    top row).  Returns the index of the first row with an unknown filter
    type, or -1 when all are known.
    """
    h, n = out.shape
    for r in range(h):
        kind = filtered[r, 0]
        above = previous if r == 0 else out[r - 1]
        if kind == 0:
            for i in range(n):
                out[r, i] = filtered[r, 1 + i]
        elif kind == 1:
            for i in range(n):
                left = out[r, i - bpp] if i >= bpp else 0
                out[r, i] = (filtered[r, 1 + i] + left) & 0xFF
        elif kind == 2:
            line, row = filtered[r, 1:], out[r]  # one-dimensional views: this loop vectorises
            for i in range(n):
                row[i] = (line[i] + above[i]) & 0xFF
        elif kind == 3:
            for i in range(n):
                left = out[r, i - bpp] if i >= bpp else 0
                out[r, i] = (filtered[r, 1 + i] + ((left + above[i]) >> 1)) & 0xFF
        elif kind == 4:
            for i in range(n):
                # Signed (numba keeps int(uint8) unsigned, and a difference of those wraps).
                a = np.int64(out[r, i - bpp]) if i >= bpp else 0
                b = np.int64(above[i])
                c = np.int64(above[i - bpp]) if i >= bpp else 0
                # The Paeth predictor (§9.4): of a, b, c the nearest to p = a + b - c, ties to a
                # then b; p - a = b - c, p - b = a - c, p - c = a + b - 2c.  Two tests, not the
                # spec's three, and no p: about twice as fast on photos.
                near, distance = a, abs(b - c)
                if abs(a - c) < distance:
                    near, distance = b, abs(a - c)
                if abs(a + b - 2 * c) < distance:
                    near = c
                out[r, i] = (filtered[r, 1 + i] + near) & 0xFF
        else:
            return r
    return -1
