"""Rate-distortion-optimised labels: trade a little error for a smaller label map.

Plain labelling gives each pixel its nearest palette entry.  Where a flat
area's pixels sit between two entries, the nearest one flickers from pixel
to pixel, and each flicker costs the label coder bits.  With a weight
*lambda* > 0, each pixel instead takes the entry that minimises

    squared error (summed over channels, in 8-bit units) + lambda x bits

among its nearest entry and the labels of its coded neighbours (W, N, NW,
NE): entropy-constrained vector quantization, greedily in raster order.
The bits are those the cm coder (``spec/kmc-method-cm.md``) would spend on
the label with the counters it has learnt so far in the strip, counters the
labeller then updates with the label chosen, as the coder will, plus
LOOKAHEAD_BITS for each later neighbour (right, below) the label breaks a
run with.  Other
coding methods see a map with fewer, longer runs, which helps them too, but
the estimate is cm's.

The palette is not changed, and the file is an ordinary .kmc file.  Strips
are labelled independently (the coder's model restarts with each strip), so
the result does not depend on threads.  A fully transparent pixel keeps the
transparent entry, and an opaque one never moves to it.

One bit is worth *lambda* units of squared error: with 3 channels, lambda =
30 trades one bit for a squared error of 10 per channel on one pixel.  The
error is measured where the fit mapped the pixels: in sRGB, or, for a fit
in Oklab, in Oklab coordinates of 8-bit units (:func:`oklab_units`), one
unit of which counts as OKLAB_LAMBDA_FACTOR of sRGB's (OKLRAB_LAMBDA_FACTOR
with L_r; :func:`lambda_factor`), so that the kernel and a given *lambda*
serve every space (the labeller, :mod:`kmcodec.labeller`, converts).  Where the palette was fitted to masking weights
(:mod:`kmcodec.masking`), a pixel's error counts its weight over the
image's mean weight: labels move where texture hides the error, and stay
in smooth areas where it shows.  The kernel is C, in
:mod:`kmcodec._kernels` (``kmcodec/csrc/rdo.c``); it prices and updates with the cm coder's
own model, ``kmcodec/csrc/cm_model.h``, which the coder's kernels include too, so the two
cannot drift apart.

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> grey = (100 + 4 * rng.standard_normal((16, 16))).clip(0, 255).astype(np.uint8)[:, :, None]
>>> palette = np.array([[96], [104]], np.uint8)
>>> nearest = (grey[:, :, 0] >= 100).astype(np.uint8)
>>> labels, error = rdo_labels(grey, nearest, palette, 200.0, has_alpha=False)
>>> int((labels != labels[0, 0]).sum()) < int((nearest != nearest[0, 0]).sum())
True
"""

from __future__ import annotations

import numpy as np

from . import _kernels
from .colorspace import Space

#: Fractional bits of the fixed-point log2 the cost table is built from.
LOG_FRAC = 24
#: Bits a label is charged for each of the next pixel in its row and the one
#: below whose nearest entry differs from it: the greedy choice sees only the
#: pixel's own bits, but its label is also its later neighbours' context
#: (2 measured best; docs/benchmarks.md).
LOOKAHEAD_BITS = 2.0


def _log2_fixed(x: int) -> int:
    """log2(x) for an integer x >= 1 in fixed point with LOG_FRAC fractional bits, rounded down.

    Integer arithmetic only (repeated squaring of the mantissa), so the
    table and every label chosen from it are the same on every machine.
    """
    whole = x.bit_length() - 1
    result = whole << LOG_FRAC
    scale = 64
    y = x << (scale - whole)  # x / 2**whole in [1, 2), with *scale* fractional bits
    for i in range(LOG_FRAC):
        y = (y * y) >> scale
        if y >> (scale + 1):
            y >>= 1
            result |= 1 << (LOG_FRAC - 1 - i)
    return result


def _cost_table() -> np.ndarray:
    """cost[P] = -log2(P / 4096): the bits of a binary decision of 12-bit probability P (cost[0] unused)."""
    cost = np.zeros(4096, dtype=np.float64)
    for p in range(1, 4096):
        cost[p] = ((12 << LOG_FRAC) - _log2_fixed(p)) / (1 << LOG_FRAC)
    return cost


_COST: np.ndarray | None = None


def _cost() -> np.ndarray:
    """The cost table, built once."""
    global _COST
    if _COST is None:
        _COST = _cost_table()
    return _COST


#: Oklab coordinates in the labeller's 8-bit units: L (0 ..= 1) times OKLAB_SCALE, a and b
#: (within about -0.24 ..= 0.28 for sRGB colours) plus OKLAB_OFFSET, times the same scale, so
#: that squared differences stay Oklab's own distance, in units of (1/255)^2.
OKLAB_SCALE = 255.0
OKLAB_OFFSET = 0.5
#: What one unit of squared error in those Oklab units counts as in sRGB's, for *lambda*: the
#: ratio of sRGB to Oklab squared error of the same labels, measured on six corpus photos at
#: k = 16, 64 and 256 (2.5 ..= 6.7, median 4.5).  So ``rdo=20`` trades about as much error
#: for a bit whichever space the pixels were mapped in.
OKLAB_LAMBDA_FACTOR = 4.5
#: The same for Oklab with L_r ("oklrab", :func:`kmcodec.colorspace.toe`), whose lightness steps
#: are wider than Oklab's from the mid-tones up (slope up to 1.2), so that its unit is priced
#: lower: rdo=5 there trades as rdo=6.5 does in Oklab's units, the lambda of the 25-photo curves
#: that keeps every photo within 3 SSIMULACRA2 points of pngquant --nofs (8 did not; docs/benchmarks.md,
#: "Oklab with L_r as the default").
OKLRAB_LAMBDA_FACTOR = OKLAB_LAMBDA_FACTOR * 5.0 / 6.5


def lambda_factor(space: Space) -> float:
    """What one squared unit of :func:`oklab_units` in *space* counts as in sRGB's, for *lambda*."""
    return OKLRAB_LAMBDA_FACTOR if space.toe else OKLAB_LAMBDA_FACTOR


def oklab_units(colors: np.ndarray, space: Space) -> np.ndarray:
    """Colours (n, C) uint8 as Oklab coordinates in 8-bit units (n, C) uint8; alpha kept as it is.

    What the labeller measures squared error in when the palette was fitted
    in Oklab: L, a and b each rounded to 1/255 (a and b shifted by
    OKLAB_OFFSET), so that the kernel of :func:`rdo_labels` measures Oklab
    distance with the same integer arithmetic as sRGB error.  The
    conversion is :meth:`Space.points <kmcodec.colorspace.Space.points>`,
    the fit's own; rounding is numpy's, to the nearest even on a tie, so
    the result is the same on every machine.
    """
    points = space.points(colors)
    out = np.empty(colors.shape, dtype=np.uint8)
    for c in range(space.colour_channels):
        offset = 0.0 if c == 0 else OKLAB_OFFSET
        out[:, c] = np.clip(np.rint((points[:, c] + offset) * OKLAB_SCALE), 0, 255)
    if space.has_alpha:
        out[:, -1] = colors[:, -1]
    return out


#: Pixels :func:`squared_error` takes at a time: its int32 temporaries stay at a few hundred KiB
#: (a whole strip's, four of 12 bytes a pixel, added 96 MiB to a 12 MP encode's peak in two threads).
ERROR_PIXELS = 1 << 16


def squared_error(block: np.ndarray, labels: np.ndarray, palette: np.ndarray, *, has_alpha: bool) -> int:
    """Sum over a strip's pixels of the squared differences, all channels, between each pixel (a fully
    transparent one as zeros) and its entry: what :func:`rdo_labels` returns for sRGB."""
    channels = block.shape[-1]
    pixels, labels = block.reshape(-1, channels), labels.reshape(-1)
    entries = palette.astype(np.int32)
    total = 0
    for start in range(0, len(labels), ERROR_PIXELS):
        part = pixels[start : start + ERROR_PIXELS].astype(np.int32)
        if has_alpha:
            part[part[:, -1] == 0] = 0
        diff = entries[labels[start : start + ERROR_PIXELS]]
        diff -= part
        diff *= diff
        total += int(np.sum(diff, dtype=np.int64))
    return total


def rdo_labels(
    block: np.ndarray,
    nearest: np.ndarray,
    palette: np.ndarray,
    lam: float,
    *,
    has_alpha: bool,
    weight: np.ndarray | None = None,
) -> tuple[np.ndarray, int]:
    """Labels of one strip chosen for squared error + *lam* x estimated bits, and their summed squared error.

    Parameters
    ----------
    block : ndarray, shape (h, w, C), uint8
        The strip's pixels.
    nearest : ndarray, shape (h, w), uint8 or uint16
        Each pixel's nearest palette entry (a fully transparent pixel's
        being the transparent entry, as :class:`~kmcodec.quantize.ColorCounts`
        maps it).
    palette : ndarray, shape (k, C), uint8
    lam : float
        Weight of one bit in squared-error units, >= 0 (already checked).
    has_alpha : bool
        The last channel is alpha.
    weight : ndarray, shape (h, w), uint8, optional
        How many times each pixel's squared error counts in its choice (the
        masking weights of :mod:`kmcodec.masking`); None: once.  The error
        returned is the plain one either way.

    Returns
    -------
    labels : ndarray like *nearest*
    squared_error : int
        Sum over the pixels of the squared differences, all channels, between
        each pixel (a transparent one as zeros) and its entry.
    """
    nearest = np.ascontiguousarray(nearest)
    out = np.empty_like(nearest)
    alpha = block.shape[2] - 1 if has_alpha else -1
    block = np.ascontiguousarray(block)
    palette = np.ascontiguousarray(palette)
    weight = None if weight is None else np.ascontiguousarray(weight)
    error = _kernels.rdo_labels(block, palette, nearest, float(lam), alpha, _cost(), LOOKAHEAD_BITS, out, weight)
    return out, int(error)


def model_bits(labels: np.ndarray, colors: int) -> float:
    """The bits the labeller prices the label map *labels* at, with the cm model it shares with the coder.

    The labeller includes the coder's model (``cm_model.h``) but walks it its
    own way, pricing choices before it moves the counters; this is how tests
    check that walk against the coder (its estimate against the length of
    :func:`kmcodec.cm.encode_labels`, and exactly against the ideal code
    length of the plain-Python model in tests/cm_reference.py).
    The kernel runs at lambda 0 on an image made of *colors* distinct
    palette colours, each pixel exactly its label's, so it keeps every
    label; it returns the sum of -log2 p over the decisions the coder would
    code for them.

    Parameters
    ----------
    labels : ndarray, shape (h, w), uint8 or uint16
        Every label below *colors* (not checked: this is for tests).
    colors : int, 2 ..= 65536
    """
    ids = np.arange(colors)
    palette = np.stack([ids & 255, ids >> 8, np.zeros_like(ids)], axis=1).astype(np.uint8)  # distinct entries
    labels = np.ascontiguousarray(labels)
    out = np.empty_like(labels)
    _, bits = _kernels.rdo_bits(palette[labels], palette, labels, 0.0, -1, _cost(), 0.0, out)
    return float(bits)


__all__ = ["rdo_labels"]
