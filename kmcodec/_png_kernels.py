"""Compiled kernel of the streaming PNG reader (see :mod:`kmcodec.png`).

Importing this module imports numba; :mod:`kmcodec.png` does so lazily.
"""

from __future__ import annotations

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
            for i in range(n):
                out[r, i] = (filtered[r, 1 + i] + above[i]) & 0xFF
        elif kind == 3:
            for i in range(n):
                left = out[r, i - bpp] if i >= bpp else 0
                out[r, i] = (filtered[r, 1 + i] + ((left + above[i]) >> 1)) & 0xFF
        elif kind == 4:
            for i in range(n):
                a = int(out[r, i - bpp]) if i >= bpp else 0
                b = int(above[i])
                c = int(above[i - bpp]) if i >= bpp else 0
                p = a + b - c
                pa = abs(p - a)
                pb = abs(p - b)
                pc = abs(p - c)
                if pa <= pb and pa <= pc:
                    pred = a
                elif pb <= pc:
                    pred = b
                else:
                    pred = c
                out[r, i] = (filtered[r, 1 + i] + pred) & 0xFF
        else:
            return r
    return -1
