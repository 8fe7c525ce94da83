"""Where the eye sees a palette's error: a weight per pixel, high in smooth areas and low in busy ones.

Texture hides quantization error (visual masking); a sky or a skin tone
shows every band.  ``encode()`` (by default; ``masking=False`` turns it
off) fits the palette to colour counts weighted by :func:`weights`, so
k-means spends its entries where errors show; the labels are still each pixel's nearest entry, and the MSE
reported is the plain one.  Measured on the corpus photos: SSIMULACRA2 up
at equal k, PSNR down by a few tenths of a dB (docs/benchmarks.md).

The weight is integer arithmetic on the image alone, so it is the same on
every platform and for every way the image is read (whole, or a strip at a
time with :func:`block_weights`):

- luma ``Y = R + 2G + B`` (L images: 4 L);
- activity ``A`` = ``|4Y - up - down - left - right|`` summed over the 5 x 5
  pixels around, Y's edge rows and columns repeated outwards (HALO of them);
- weight = ``1 + SPAN * SCALE // (SCALE + A)``: from 1 (busy) to 1 + SPAN (flat).
"""

from __future__ import annotations

import collections
from collections.abc import Iterable, Iterator

import numpy as np

from . import _kernels

#: How much more a flat pixel weighs than the busiest, less one: 9 to 1 (and 9 x 2**28
#: pixels, the default pixel limit, still fits a count's 32 bits).
SPAN = 8
#: The activity at which a pixel's extra weight halves: a mean absolute Laplacian of 2
#: on 0-255 luma (Y is 4 luma, 25 pixels are summed: 2 x 4 x 25).  Measured on six photos
#: at k = 16 ... 256 against 1 and 4 (docs/benchmarks.md).
SCALE = 200
#: Rows of context a row's weight needs on each side: 1 for the Laplacian, 2 for the box.
HALO = 3


def _weights_of(padded: np.ndarray) -> np.ndarray:
    """Weights (rows, W) uint8 of pixels (rows + 2 HALO, W, C) uint8: HALO rows of context either side."""
    out = np.empty((padded.shape[0] - 2 * HALO, padded.shape[1]), np.uint8)
    _kernels.masking_weights(np.ascontiguousarray(padded), SPAN, SCALE, out)
    return out


def weights(image: np.ndarray) -> np.ndarray:
    """The weight of each pixel of an (H, W, C) uint8 image: (H, W) uint8, 1 ..= 1 + SPAN."""
    return _weights_of(np.pad(image, ((HALO, HALO), (0, 0), (0, 0)), mode="edge"))


def block_weights(blocks: Iterable[np.ndarray]) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Each row block (rows, W, C) of an image, top to bottom, with its weights (rows, W), as :func:`weights` gives.

    A block is yielded once the HALO rows below it have been read (or the
    image has ended), so the blocks in waiting are held, plus HALO rows of
    context either side.
    """
    pending: collections.deque[np.ndarray] = collections.deque()
    rows: np.ndarray | None = None  # pixel rows from HALO rows above the first block in waiting

    def ready(final: bool) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        nonlocal rows
        while pending and (final or len(rows) - HALO - len(pending[0]) >= HALO):
            block = pending.popleft()
            end = HALO + len(block)
            yield block, _weights_of(rows[: end + HALO])
            rows = rows[end - HALO :]

    for block in blocks:
        top = np.repeat(block[:1], HALO, axis=0) if rows is None else rows
        rows = np.concatenate([top, block])
        pending.append(block)
        yield from ready(final=False)
    if rows is not None:
        rows = np.concatenate([rows, np.repeat(rows[-1:], HALO, axis=0)])
        yield from ready(final=True)
