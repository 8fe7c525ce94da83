"""Labelling: a strip's pixels to palette entries, by one of three labellers with one interface.

Once the encoder has its palette (:mod:`.quantize`), a labeller turns each
strip of pixels into labels, ``label(block) -> (labels, squared error)``:

* :class:`Nearest`: each pixel its nearest entry, as the fit mapped its colour;
* :class:`Dithered`: Floyd-Steinberg error diffusion (:mod:`.dither`) where the
  fit mapped the pixels, which carries error from one strip into the next, so
  strips go in order;
* :class:`RateDistortion`: the entry of least squared error + lambda x bits
  (:mod:`.rdo`).

:func:`labeller_for` picks the one the encoder's options ask for.  Arguments
are valid already (the options and the fit were checked upstream).
"""

from __future__ import annotations

import abc
from typing import ClassVar

import numpy as np

from .colorspace import Space, mapping_space
from .dither import Ditherer
from .masking import weights
from .options import EncodeOptions
from .quantize import ColorCounts, Fit
from .rdo import lambda_factor, oklab_units, rdo_labels, squared_error


class Labeller(abc.ABC):
    """Labels an image strip by strip, for one palette."""

    #: Whether strips must be labelled top to bottom, one after another (the labeller carries state).
    in_order: ClassVar[bool] = False

    @abc.abstractmethod
    def label(self, block: np.ndarray) -> tuple[np.ndarray, int | None]:
        """Labels of a strip and their squared error.

        Parameters
        ----------
        block : ndarray, shape (rows, W, C), uint8
            The strip's pixels.

        Returns
        -------
        labels : ndarray, shape (rows, W), uint8 for up to 256 entries, else uint16
        squared_error : int or None
            Sum over the strip's pixels of the squared differences, all
            channels, between each pixel (a transparent one as zeros) and
            its entry; None where it is the fit's own (:attr:`Fit.mse
            <kmcodec.quantize.Fit>` says it for the whole image without a
            pass over the pixels).
        """


class Nearest(Labeller):
    """Each pixel takes the entry the fit mapped its colour to: the nearest, ties to the lowest index."""

    def __init__(self, counted: ColorCounts, fit: Fit) -> None:
        self.counted, self.mapping = counted, fit.mapping

    def label(self, block: np.ndarray) -> tuple[np.ndarray, None]:
        return self.counted.lookup(block, self.mapping), None


class Units:
    """A fit's colours as Oklab coordinates in 8-bit units (:func:`~kmcodec.rdo.oklab_units`), pixel by pixel.

    Each distinct colour of *counted* is converted once, its coordinates
    packed in one word, so a strip's pixels take theirs by one lookup
    (:meth:`block`); *palette* holds the entries' own.
    """

    def __init__(self, counted: ColorCounts, palette: np.ndarray, space: Space) -> None:
        self.counted = counted
        distinct = oklab_units(counted.distinct, space).astype(np.uint32)
        self._packed = np.zeros(len(distinct), np.uint32)
        for c in range(distinct.shape[1]):
            self._packed |= distinct[:, c] << np.uint32(8 * c)
        self.palette = oklab_units(palette, space)

    def block(self, block: np.ndarray) -> np.ndarray:
        """The (rows, W, C) uint8 units of a strip's pixels."""
        words = self.counted.lookup(block, self._packed)
        units = np.empty(block.shape, np.uint8)
        for c in range(block.shape[2]):
            units[:, :, c] = (words >> np.uint32(8 * c)) & np.uint32(255)
        return units


class Dithered(Labeller):
    """Floyd-Steinberg error diffusion over the palette at a *strength* in 0..1, where the fit mapped the pixels.

    In sRGB, or, where the fit mapped them in Oklab (*space*), in Oklab
    coordinates of 8-bit units (:class:`Units`): a pixel takes the entry
    nearest in Oklab to its colour plus the error passed to it, and passes
    on its Oklab error.  On the 25 corpus photos that raised SSIMULACRA2 by
    3.7-4.6 points at equal k (k = 16, 64, 256) over diffusing in sRGB, for
    at most 3 % more bytes (docs/benchmarks.md).
    """

    in_order = True

    def __init__(self, counted: ColorCounts, fit: Fit, strength: float, width: int, *, space: Space | None) -> None:
        self.fit, self.has_alpha = fit, counted.has_alpha
        self._units = None if space is None else Units(counted, fit.palette, space)
        palette = fit.palette if self._units is None else self._units.palette
        self._ditherer = Ditherer(palette, strength, width, has_alpha=counted.has_alpha)

    def label(self, block: np.ndarray) -> tuple[np.ndarray, int]:
        if self._units is None:
            before = self._ditherer.squared_error
            labels = self._ditherer(block)
            return labels, self._ditherer.squared_error - before
        labels = self._ditherer(self._units.block(block))
        return labels, squared_error(block, labels, self.fit.palette, has_alpha=self.has_alpha)


class RateDistortion(Labeller):
    """Each pixel takes the entry, among its nearest and its coded neighbours' labels, of least error + *lam* x bits.

    The error is measured where the pixels were mapped: in sRGB, or, where
    the fit mapped them in Oklab (*space*, :func:`~kmcodec.colorspace.mapping_space`),
    in Oklab coordinates of 8-bit units (:func:`~kmcodec.rdo.oklab_units`).  Otherwise a tiny *lam* would
    already trade the Oklab mapping for sRGB's nearest: at any *lam*, 3.5
    SSIMULACRA2 points below the plain default (docs/benchmarks.md).
    Where the palette was fitted to masking weights (*counted* has them),
    a pixel's error counts its weight over the image's mean weight: the
    labels move in texture, where error hides, and stay in smooth areas.
    A strip's weights are those of :func:`kmcodec.masking.weights` on the
    strip alone (its first and last rows see their own strip's edge
    repeated, not the next strip's rows), so strips stay independent.
    """

    def __init__(self, counted: ColorCounts, fit: Fit, lam: float, *, has_alpha: bool, space: Space | None) -> None:
        self.counted, self.fit, self.lam, self.has_alpha = counted, fit, lam, has_alpha
        self._mean_weight = None
        if counted.weights is not None and counted.pixels:
            self._mean_weight = float(np.sum(counted.weights, dtype=np.int64)) / counted.pixels
        self._units = None if space is None else Units(counted, fit.palette, space)
        self._factor = 1.0 if space is None else lambda_factor(space)

    def label(self, block: np.ndarray) -> tuple[np.ndarray, int]:
        nearest = self.counted.lookup(block, self.fit.mapping)
        lam, weight = self.lam, None
        if self._mean_weight is not None:
            weight, lam = weights(block), lam * self._mean_weight  # error x weight / mean weight, in whole numbers
        if self._units is None:
            return rdo_labels(block, nearest, self.fit.palette, lam, has_alpha=self.has_alpha, weight=weight)
        lam /= self._factor
        units = self._units.block(block)
        labels, _ = rdo_labels(units, nearest, self._units.palette, lam, has_alpha=self.has_alpha, weight=weight)
        return labels, squared_error(block, labels, self.fit.palette, has_alpha=self.has_alpha)


def labeller_for(options: EncodeOptions, counted: ColorCounts, fit: Fit, width: int) -> Labeller:
    """The labeller *options* ask for, over *fit*'s palette, for an image *width* pixels wide."""
    space = mapping_space(options.fit_colorspace, counted.channels, counted.has_alpha)
    if options.dither and fit.mse > 0:  # an exact palette has no error to diffuse
        return Dithered(counted, fit, options.dither, width, space=space)
    lam = options.rdo_for(len(fit.palette), exact=fit.mse == 0)
    if lam:
        return RateDistortion(counted, fit, lam, has_alpha=counted.has_alpha, space=space)
    return Nearest(counted, fit)


__all__ = ["Dithered", "Labeller", "Nearest", "RateDistortion", "Units", "labeller_for"]
