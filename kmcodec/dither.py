"""Dithering: map an image to a given palette with Floyd-Steinberg error diffusion.

Each pixel takes the palette entry nearest to it plus the error its
neighbours have passed on (squared distance over all channels, exact integer
arithmetic, ties to the lowest index, as :mod:`kmcodec.quantize` maps
pixels), and passes its own error on: 7/16 to the next pixel in the row,
3/16, 5/16 and 1/16 to the three below.  The error a pixel takes is clamped
per channel to 1.5 times the median distance between palette neighbours, so
it cannot pile up into speckles where the palette cannot reach a colour.  Rows alternate direction
(serpentine), which avoids the diagonal drift of a one-way scan.
*strength* scales the error passed on: 0 is plain nearest-colour mapping, 1
passes on 218/256 (0.85) of it (:data:`CARRY_AT_FULL`).  Error that decays as
it travels cannot pile up into worms and speckles, and small errors stay
where they are: on the 25 corpus photos, passing 0.85 of the error instead
of all of it raised SSIMULACRA2 by 3.5 points at k = 16 and 0.6 at k = 64
(the same at 256) for 3-4 % fewer bytes (docs/benchmarks.md); pngquant
passes 15/16.  The price is a pull of flat dithered tones toward the
nearest entries (grey 30 between black and white dithers to 17 on average,
29 with all of the error).

A dither map (:func:`dither_weights`, as pngquant keeps one) then scales the
error each pixel takes: all of it in smooth areas and gradients, where
dither hides banding, less at edges and in texture, where it only adds noise
and bytes (and none past two palette spacings of activity).  Against plain
Floyd-Steinberg it measured 2-5 % fewer bytes and a higher SSIMULACRA2 at
equal k on the median photo (docs/benchmarks.md).

The values diffused are whatever the caller gives: the encoder
(:class:`kmcodec.labeller.Dithered`) gives the pixels' and entries' Oklab
coordinates in 8-bit units where its fit maps pixels in Oklab (the
default), so error is measured and carried in a perceptual space, and sRGB
values otherwise.

The kernels are C (``kmcodec/csrc/dither.c``, in :mod:`kmcodec._kernels`).
The error is carried in fixed point, so the same input gives the same labels
on every machine.

>>> import numpy as np
>>> grey = np.full((4, 8), 64, np.uint8)            # a quarter of the way to white
>>> palette = np.array([[0], [255]], np.uint8)
>>> dither(grey, palette, 0.0)                      # plain mapping: all black
array([[0, 0, 0, 0, 0, 0, 0, 0],
       [0, 0, 0, 0, 0, 0, 0, 0],
       [0, 0, 0, 0, 0, 0, 0, 0],
       [0, 0, 0, 0, 0, 0, 0, 0]], dtype=uint8)
>>> dither(grey, palette)                           # 7 of 32 white, near a quarter
array([[0, 0, 0, 0, 0, 0, 0, 0],
       [0, 0, 1, 0, 1, 0, 1, 0],
       [0, 1, 0, 0, 0, 0, 0, 0],
       [0, 0, 0, 1, 0, 0, 1, 0]], dtype=uint8)
"""

from __future__ import annotations

import math

import numpy as np

from . import _kernels
from .errors import ParameterError
from .format import MAX_COLORS
from .options import check_option

#: Fractional bits of the fixed-point error the kernel carries (one level = 2**FRAC).
FRAC = _kernels.DITHER_FRAC
#: The share of its error a pixel passes on at strength 1, in the kernel's 256ths (0.85; the best
#: SSIMULACRA2 on the corpus photos between 0.75 and 1, docs/benchmarks.md).  Strength s passes
#: round(s * CARRY_AT_FULL) 256ths.
CARRY_AT_FULL = 218
#: The error a pixel takes is clamped to this times the median distance from a
#: palette entry to its nearest neighbour (as a fraction: 3 / 2), so error the
#: palette cannot reach does not pile up into speckles; the clamp follows the
#: palette so that two-colour palettes still dither (docs/benchmarks.md).
CARRY_SPACINGS = (3, 2)
#: The dither map (issue 18): a pixel takes all the error passed to it where the image is smooth,
#: and less where its second differences (edges, texture, noise) pass MAP_FULL palette spacings
#: (as a fraction), none past MAP_NONE: there dither cannot hide banding, only add noise and bytes.
#: False gives plain Floyd-Steinberg, the --dither of before (for measurements).
DITHER_MAP = True
MAP_FULL = (1, 2)
MAP_NONE = (2, 1)


def check_strength(strength: object, name: str = "dither") -> float:
    """*strength* as a float after checking it is a real number in 0..1 (the ``dither`` option's rule)."""
    return check_option("dither", strength, spelled=name)


def dither(image: np.ndarray, palette: np.ndarray, strength: float = 1.0, *, has_alpha: bool = False) -> np.ndarray:
    """Labels of *image* mapped to *palette* with serpentine Floyd-Steinberg dithering.

    Parameters
    ----------
    image : ndarray, shape (H, W, C) or (H, W), uint8
    palette : ndarray, shape (k, C), uint8
        1 to 65536 entries with the image's channels.
    strength : float
        0 to 1: the share of each pixel's error passed on to its neighbours.
        0 gives exactly the nearest entry of every pixel.
    has_alpha : bool
        The last channel is alpha: a fully transparent pixel counts as all
        zeros (as :func:`~kmcodec.quantize.quantize` makes it, keeping an
        exact entry for it) and neither takes nor passes on error.

    Returns
    -------
    ndarray, shape (H, W), uint8 if k <= 256 else uint16
        The same input always gives the same labels.
    """
    strength = check_strength(strength, "strength")
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim not in (2, 3):
        msg = "image must be a uint8 array of shape (H, W) or (H, W, C)"
        raise ParameterError(msg)
    if image.ndim == 2:
        image = image[:, :, None]
    channels = image.shape[2]
    if (
        not isinstance(palette, np.ndarray)
        or palette.dtype != np.uint8
        or palette.ndim != 2
        or palette.shape[1] != channels
        or not 1 <= len(palette) <= MAX_COLORS
    ):
        msg = f"palette must be a uint8 array of shape (k, {channels}) with 1 <= k <= {MAX_COLORS}"
        raise ParameterError(msg)
    return _run(image, palette, strength, has_alpha)[0]


def _run(image: np.ndarray, palette: np.ndarray, strength: float, has_alpha: bool) -> tuple[np.ndarray, int]:
    """Labels of a valid (H, W, C) image, and the summed squared error of the dithered image."""
    ditherer = Ditherer(palette, strength, image.shape[1], has_alpha=has_alpha)
    return ditherer(image), ditherer.squared_error


class Ditherer:
    """Dithers an image a block of rows at a time, top to bottom, carrying the error across blocks.

    Calling it on consecutive blocks gives the labels :func:`dither` gives the
    whole image, so an encoder can label strip by strip.  Arguments are
    already valid: *palette* (k, C) uint8, *strength* in 0..1, blocks
    (rows, width, C) uint8 with the palette's channels.

    Attributes
    ----------
    squared_error : int
        Sum over the pixels so far of the squared differences, all channels,
        between each pixel (a transparent one as zeros) and its entry.
    """

    def __init__(self, palette: np.ndarray, strength: float, width: int, *, has_alpha: bool) -> None:
        self.palette = np.ascontiguousarray(palette)
        order = np.argsort(self.palette[:, 0], kind="stable").astype(np.int64)
        self._steps = round(strength * CARRY_AT_FULL)
        self._nearest_sq = nearest_other(self.palette, order)
        self._limit = _carry_limit(self._nearest_sq, FRAC)
        channels = self.palette.shape[1]
        self._alpha = channels - 1 if has_alpha else -1
        self._carry = np.zeros((width + 2, channels), dtype=np.int64)
        self._row = 0
        self.squared_error = 0
        d = np.sort(self._nearest_sq[self._nearest_sq > 0]) if DITHER_MAP else np.zeros(0)
        self._spacing = math.isqrt(int(d[(len(d) - 1) // 2])) if len(d) else None
        self._history = np.zeros((0, width, channels - (1 if has_alpha else 0)), dtype=np.int16)

    def __call__(self, block: np.ndarray) -> np.ndarray:
        """Labels (rows, width) of the next *block*, uint8 if k <= 256 else uint16."""
        labels = np.empty(block.shape[:2], dtype=np.uint8 if len(self.palette) <= 256 else np.uint16)
        weights = None
        if self._spacing is not None and labels.size:
            colour = block[:, :, : self._history.shape[2]].astype(np.int16)
            weights = dither_weights(colour, self._history, self._spacing)
            self._history = np.concatenate([self._history, colour])[-2:]
        if labels.size:
            self.squared_error += int(
                _kernels.dither_block(
                    np.ascontiguousarray(block),
                    self.palette,
                    self._steps,
                    self._limit,
                    self._alpha,
                    labels,
                    self._carry,
                    self._row,
                    weights,
                )
            )
        self._row += block.shape[0]
        return labels


def dither_weights(block: np.ndarray, history: np.ndarray, spacing: int) -> np.ndarray:
    """The dither map of a block of rows: how much of the error arriving at each pixel it takes, in 255ths.

    *block* (rows, W, C) int16 holds the colour channels, *history* (0 to 2,
    W, C) int16 the rows above it.  A pixel's activity is the largest
    absolute second difference over its channels, along the row (its left
    and right neighbours) and up the column (the two pixels above: causal, so
    blocks give the map of the whole image).  Smooth areas and gradients, where
    banding shows, score near 0 and take all the error; edges and texture, where
    dither only adds noise and bytes, take less, none past MAP_NONE palette
    spacings.  A pixel next to one taking less takes as little (one to each side),
    so dither stops short of an edge.  Integers only: the same on every machine.
    """
    ext = np.concatenate([history, block])
    top = len(history)
    left = np.concatenate([ext[:, :1], ext[:, :-1]], axis=1)
    right = np.concatenate([ext[:, 1:], ext[:, -1:]], axis=1)
    activity = np.abs(left + right - 2 * ext)[top:].max(axis=2)
    if len(ext) > 1:
        up = np.concatenate([ext[:1], ext[:-1]])
        up2 = np.concatenate([up[:1], up[:-1]])
        activity = np.maximum(activity, np.abs(up2 + ext - 2 * up)[top:].max(axis=2))
    full = spacing * MAP_FULL[0] // MAP_FULL[1]
    none = max(spacing * MAP_NONE[0] // MAP_NONE[1], full + 1)
    weights = np.clip((none - activity.astype(np.int32)) * 255 // (none - full), 0, 255)
    eroded = weights.copy()
    eroded[:, 1:] = np.minimum(eroded[:, 1:], weights[:, :-1])
    eroded[:, :-1] = np.minimum(eroded[:, :-1], weights[:, 1:])
    return np.ascontiguousarray(eroded, dtype=np.uint8)


def nearest_other(palette: np.ndarray, order: np.ndarray) -> np.ndarray:
    """Squared distance from each entry of *palette* (k, C) uint8 to the nearest entry of a different colour.

    -1 for an entry without one; *order* (k,) int64 lists the entries sorted by their first channel.
    """
    out = np.empty(len(palette), dtype=np.int64)
    _kernels.dither_nearest_other(palette, order, out)
    return out


def _carry_limit(nearest_sq: np.ndarray, frac: int) -> int:
    """CARRY_SPACINGS x the median neighbour distance, in fixed point with *frac* bits; exact integers.

    *nearest_sq* holds each entry's squared distance to its nearest different
    entry (-1 without one); a palette of one colour gets no limit.
    """
    d = np.sort(nearest_sq[nearest_sq > 0])
    if not len(d):
        return 1 << 62
    median_sq = int(d[(len(d) - 1) // 2])  # the lower median: an input value, no float
    num, den = CARRY_SPACINGS
    return math.isqrt(median_sq << (2 * frac)) * num // den


__all__ = ["Ditherer", "check_strength", "dither"]
