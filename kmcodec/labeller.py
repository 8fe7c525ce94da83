"""Labelling: a strip's pixels to palette entries, by one of three labellers with one interface.

Once the encoder has its palette (:mod:`.quantize`), a labeller turns each
strip of pixels into labels, ``label(block) -> (labels, squared error)``:

* :class:`Nearest`: each pixel its nearest entry, as the fit mapped its colour;
* :class:`Dithered`: Floyd-Steinberg error diffusion (:mod:`.dither`), which
  carries error from one strip into the next, so strips go in order;
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
from .rdo import OKLAB_LAMBDA_FACTOR, oklab_units, rdo_labels, squared_error


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


class Dithered(Labeller):
    """Floyd-Steinberg error diffusion over the palette at a *strength* in 0..1, in sRGB."""

    in_order = True

    def __init__(self, fit: Fit, strength: float, width: int, *, has_alpha: bool) -> None:
        self._ditherer = Ditherer(fit.palette, strength, width, has_alpha=has_alpha)

    def label(self, block: np.ndarray) -> tuple[np.ndarray, int]:
        before = self._ditherer.squared_error
        labels = self._ditherer(block)
        return labels, self._ditherer.squared_error - before


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
        self._units: tuple[np.ndarray, np.ndarray] | None = None
        if space is not None:
            distinct = oklab_units(counted.distinct, space).astype(np.uint32)
            packed = np.zeros(len(distinct), np.uint32)  # each colour's coordinates in one word, one lookup a pixel
            for c in range(distinct.shape[1]):
                packed |= distinct[:, c] << np.uint32(8 * c)
            self._units = (packed, oklab_units(fit.palette, space))

    def label(self, block: np.ndarray) -> tuple[np.ndarray, int]:
        nearest = self.counted.lookup(block, self.fit.mapping)
        lam, weight = self.lam, None
        if self._mean_weight is not None:
            weight, lam = weights(block), lam * self._mean_weight  # error x weight / mean weight, in whole numbers
        if self._units is None:
            return rdo_labels(block, nearest, self.fit.palette, lam, has_alpha=self.has_alpha, weight=weight)
        packed, palette_units = self._units
        words = self.counted.lookup(block, packed)
        units = np.empty(block.shape, np.uint8)
        for c in range(block.shape[2]):
            units[:, :, c] = (words >> np.uint32(8 * c)) & np.uint32(255)
        lam /= OKLAB_LAMBDA_FACTOR
        labels, _ = rdo_labels(units, nearest, palette_units, lam, has_alpha=self.has_alpha, weight=weight)
        return labels, squared_error(block, labels, self.fit.palette, has_alpha=self.has_alpha)


def labeller_for(options: EncodeOptions, counted: ColorCounts, fit: Fit, width: int) -> Labeller:
    """The labeller *options* ask for, over *fit*'s palette, for an image *width* pixels wide."""
    if options.dither and fit.mse > 0:  # an exact palette has no error to diffuse
        return Dithered(fit, options.dither, width, has_alpha=counted.has_alpha)
    if options.rdo:
        space = mapping_space(options.fit_colorspace, counted.channels, counted.has_alpha)
        return RateDistortion(counted, fit, options.rdo, has_alpha=counted.has_alpha, space=space)
    return Nearest(counted, fit)


__all__ = ["Dithered", "Labeller", "Nearest", "RateDistortion", "labeller_for"]
