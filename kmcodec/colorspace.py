"""Colour spaces the quantizer can cluster in: sRGB as stored, or Oklab.

``"srgb"`` clusters the stored 8-bit values as they are: the squared
distance is the error PSNR counts.  ``"oklab"`` clusters in Björn
Ottosson's Oklab, a perceptual space where Euclidean distance follows seen
colour difference far better (https://bottosson.github.io/posts/oklab/).
Either way the palette is stored as uint8 sRGB, so a file does not say
which space chose it and the decoder does not care.

In Oklab, k-means moves a centre to one of two averages of its colours
(:data:`AVERAGES`): the mean of their Oklab coordinates (true k-means in
Oklab, ``"oklab"``), or the mean in linear light converted to Oklab, as
FFmpeg's palettegen does (``"oklab-linear"``).  Each colour maps to the
palette entry nearest in Oklab.  ``"oklab-srgb"`` uses Oklab only to place
the start: the Oklab fit's palette is refined by sRGB Lloyd iterations to
convergence and colours map to the nearest entry in sRGB, so it reaches an
sRGB local optimum (PSNR as "srgb") whose centres keep more of Oklab's
spread into dark and saturated colours.

``"oklrab"`` is Oklab with its lightness L replaced by Ottosson's estimate
L_r (https://bottosson.github.io/posts/colorpicker/, "a new lightness
estimate for Oklab"): a toe that makes steps between dark greys smaller,
as CIELAB's L* does, so fewer entries go to shadows, where Oklab's plain
cube root spreads them wider than the eye (or SSIMULACRA2's XYB, whose
cube root has an offset) tells them apart.  L_r is 0 at black and 1 at
white, as L is; a and b are Oklab's.

Oklab assumes the samples are sRGB; with an ICC profile of another space
the distances are only approximately perceptual.

The other layouts:

- L and LA: Oklab's lightness of the grey, L = cbrt(linear(v)) (a grey has
  a = b = 0 and Oklab's matrices keep its L at the cube root of its linear
  value, to 1e-7).
- LA and RGBA: alpha is one more coordinate, alpha / 255, so full
  transparency is as far as black from white in L.  Fully transparent
  pixels never reach here: the quantizer keeps them an entry of their own.

Determinism: every conversion uses +, -, * and / only (IEEE operations,
rounded the same everywhere, and the square root of L_r's toe, which IEEE
754 rounds correctly too), never libm's pow or cbrt, whose last bits
differ between C libraries, and matrix products are written out as sums in
a fixed order (no BLAS).  Cube and fifth roots are Newton iterations from
a fixed start.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from .defaults import COLORSPACES as COLORSPACES
from .defaults import DEFAULT_COLORSPACE as DEFAULT_COLORSPACE
from .options import check_option

#: How k-means averages a cluster in Oklab: "oklab", the mean of the
#: colours' Oklab coordinates; "linear", their mean in linear light
#: converted to Oklab (FFmpeg palettegen).
AVERAGES = ("oklab", "linear")
DEFAULT_AVERAGE = "oklab"

# Oklab's matrices (Ottosson 2020): linear sRGB -> LMS, cube roots -> Lab, and back.
_RGB_TO_LMS = (
    (0.4122214708, 0.5363325363, 0.0514459929),
    (0.2119034982, 0.6806995451, 0.1073969566),
    (0.0883024619, 0.2817188376, 0.6299787005),
)
_LMS_TO_LAB = (
    (0.2104542553, 0.7936177850, -0.0040720468),
    (1.9779984951, -2.4285922050, 0.4505937099),
    (0.0259040371, 0.7827717662, -0.8086757660),
)
_LAB_TO_LMS = (
    (1.0, 0.3963377774, 0.2158037573),
    (1.0, -0.1055613458, -0.0638541728),
    (1.0, -0.0894841775, -1.2914855480),
)
_LMS_TO_RGB = (
    (4.0767416621, -3.3077115913, 0.2309699292),
    (-1.2684380046, 2.6097574011, -0.3413193965),
    (-0.0041960863, -0.7034186147, 1.7076147010),
)
#: Colours converted at a time by Space.points: with a million or more distinct colours, whole-array
#: temporaries cost about 100 MiB beside the 24 bytes a colour the points keep.
POINTS_BLOCK = 1 << 16
#: Newton steps of the cube root after the exponent-bit guess (within 10 %):
#: the error squares each step, so 6 reach the last bit.
_CBRT_STEPS = 6


#: The constants of L_r (Ottosson): k1, k2 and k3 = (1 + k1) / (1 + k2), so that L_r(1) = 1.
_TOE_K1 = 0.206
_TOE_K2 = 0.03
_TOE_K3 = (1.0 + _TOE_K1) / (1.0 + _TOE_K2)


def toe(lightness: np.ndarray) -> np.ndarray:
    """Ottosson's L_r of Oklab lightness L >= 0 (float64), elementwise: L_r(0) = 0, L_r(1) = 1, increasing."""
    t = _TOE_K3 * lightness - _TOE_K1
    return 0.5 * (t + np.sqrt(t * t + 4.0 * _TOE_K2 * _TOE_K3 * lightness))


def toe_inverse(lr: np.ndarray) -> np.ndarray:
    """Oklab lightness L of L_r >= 0 (float64), elementwise: the inverse of :func:`toe`."""
    return (lr * lr + _TOE_K1 * lr) / (_TOE_K3 * (lr + _TOE_K2))


def check_colorspace(colorspace: object) -> str | None:
    """*colorspace* if it is one of :data:`COLORSPACES` or None (``encode``'s default, resolved by
    :attr:`kmcodec.options.EncodeOptions.fit_colorspace`); :class:`~kmcodec.ParameterError` if not."""
    return check_option("colorspace", colorspace)


# ---------------------------------------------------------------------------
# Scalar and elementwise arithmetic, the same on every machine
# ---------------------------------------------------------------------------
def _fifth_root(a: float) -> float:
    """a ** (1 / 5) for 0 < a <= 1 by Newton's method from 1 (decreasing, so it stops when a step does not)."""
    y = 1.0
    while True:
        nxt = (4.0 * y + a / (y * y * y * y)) / 5.0
        if not nxt < y:
            return y
        y = nxt


def _decode(v: float) -> float:
    """The sRGB transfer function: encoded value in [0, 1] to linear light."""
    if v <= 0.04045:
        return v / 12.92
    x = (v + 0.055) / 1.055
    return x * x * _fifth_root(x * x)  # x ** 2.4


#: Linear light of each 8-bit sRGB value.
LINEAR = np.array([_decode(v / 255.0) for v in range(256)])
#: LINEAR_THRESHOLDS[v]: the linear light where encoding to 8 bits rounds up from v to v + 1.
LINEAR_THRESHOLDS = np.array([_decode((v + 0.5) / 255.0) for v in range(255)])


def cbrt(x: np.ndarray) -> np.ndarray:
    """Real cube root of x >= 0 (float64), elementwise, from IEEE arithmetic alone.

    The guess divides the exponent by 3 through the bits; each Newton step
    then squares the relative error.  Zero stays zero.
    """
    x = np.asarray(x, dtype=np.float64)
    positive = x > 0
    safe = np.where(positive, x, 1.0)
    bits = safe.view(np.uint64) // np.uint64(3) + np.uint64(682 << 52)
    y = bits.view(np.float64)
    for _ in range(_CBRT_STEPS):
        y = (2.0 * y + safe / (y * y)) / 3.0
    return np.where(positive, y, 0.0)


def _product(matrix: tuple[tuple[float, ...], ...], columns: list[np.ndarray]) -> list[np.ndarray]:
    """matrix x columns, each output a sum written out in column order (no BLAS)."""
    return [row[0] * columns[0] + row[1] * columns[1] + row[2] * columns[2] for row in matrix]


def linear_to_oklab(linear: list[np.ndarray]) -> list[np.ndarray]:
    """[L, a, b] of linear-light [r, g, b] (float64 arrays of one shape), each in 0 ..= 1."""
    lms = [cbrt(np.maximum(c, 0.0)) for c in _product(_RGB_TO_LMS, linear)]
    return _product(_LMS_TO_LAB, lms)


def oklab_to_linear(lab: list[np.ndarray]) -> list[np.ndarray]:
    """Linear-light [r, g, b] of [L, a, b], clipped to the gamut's 0 ..= 1 per channel."""
    lms = [c * c * c for c in _product(_LAB_TO_LMS, lab)]
    return [np.clip(c, 0.0, 1.0) for c in _product(_LMS_TO_RGB, lms)]


def linear_to_srgb8(linear: np.ndarray) -> np.ndarray:
    """The nearest 8-bit sRGB value of each linear light value (clipped to 0 ..= 1), as uint8."""
    return np.searchsorted(LINEAR_THRESHOLDS, linear, side="left").astype(np.uint8)


# ---------------------------------------------------------------------------
# The space k-means runs in
# ---------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Space:
    """Oklab coordinates for the quantizer of one layout (see the module docstring).

    Coordinates keep the layout's channels: L for L; L, alpha for LA; L, a,
    b for RGB; L, a, b, alpha for RGBA.  *average* is one of
    :data:`AVERAGES`.
    """

    channels: int
    has_alpha: bool
    average: str = DEFAULT_AVERAGE
    #: Finish with sRGB Lloyd iterations and map in sRGB (Oklab only places the start).
    refine_srgb: bool = False
    #: Lightness is Ottosson's L_r (:func:`toe`) instead of Oklab's L ("oklrab").
    toe: bool = False

    @property
    def colour_channels(self) -> int:
        return self.channels - self.has_alpha

    def points(self, colors: np.ndarray) -> np.ndarray:
        """Oklab coordinates (U, C) float64 of uint8 colours (U, C): what distances are measured in.

        Converted :data:`POINTS_BLOCK` colours at a time into the result, so that the conversion's
        temporaries (linear light, LMS, Newton steps) stay small beside it: the same values, elementwise.
        """
        out = np.empty(colors.shape, dtype=np.float64)
        for start in range(0, len(colors), POINTS_BLOCK):
            block = colors[start : start + POINTS_BLOCK]
            out[start : start + len(block)] = self.from_linear(self.linear(block))
        return out

    def linear(self, colors: np.ndarray) -> np.ndarray:
        """Linear light (U, C) float64 of uint8 colours (U, C); alpha scaled to 0 ..= 1."""
        out = np.empty(colors.shape, dtype=np.float64)
        for c in range(self.colour_channels):
            out[:, c] = LINEAR[colors[:, c]]
        if self.has_alpha:
            out[:, -1] = colors[:, -1] / 255.0
        return out

    def from_linear(self, linear: np.ndarray) -> np.ndarray:
        """Oklab coordinates of linear-light coordinates (n, C) float64."""
        out = np.empty(linear.shape, dtype=np.float64)
        if self.colour_channels == 1:
            out[:, 0] = cbrt(np.maximum(linear[:, 0], 0.0))
        else:
            for c, column in enumerate(linear_to_oklab([linear[:, c] for c in range(3)])):
                out[:, c] = column
        if self.toe:
            out[:, 0] = toe(np.maximum(out[:, 0], 0.0))
        if self.has_alpha:
            out[:, -1] = linear[:, -1]
        return out

    def averaged(self, colors: np.ndarray) -> np.ndarray | None:
        """What k-means averages for uint8 colours (U, C): None for their points themselves, else their linear light."""
        return None if self.average == "oklab" else self.linear(colors)

    def finish(self, means: np.ndarray) -> np.ndarray:
        """Centres (k, C) from the means of :meth:`averaged`'s values."""
        return means if self.average == "oklab" else self.from_linear(means)

    def to_linear(self, points: np.ndarray) -> np.ndarray:
        """Linear light of Oklab coordinates (n, C), clipped to 0 ..= 1."""
        out = np.empty(points.shape, dtype=np.float64)
        columns = [points[:, c] for c in range(self.colour_channels)]
        if self.toe:
            columns[0] = toe_inverse(np.maximum(columns[0], 0.0))
        if self.colour_channels == 1:
            lightness = columns[0]
            out[:, 0] = np.clip(lightness * lightness * lightness, 0.0, 1.0)
        else:
            for c, column in enumerate(oklab_to_linear(columns)):
                out[:, c] = column
        if self.has_alpha:
            out[:, -1] = np.clip(points[:, -1], 0.0, 1.0)
        return out

    def to_srgb8(self, points: np.ndarray) -> np.ndarray:
        """The uint8 colours (n, C) nearest, channel by channel, to Oklab coordinates (n, C)."""
        linear = self.to_linear(points)
        out = np.empty(points.shape, dtype=np.uint8)
        for c in range(self.colour_channels):
            out[:, c] = linear_to_srgb8(linear[:, c])
        if self.has_alpha:
            out[:, -1] = np.rint(linear[:, -1] * 255.0).astype(np.uint8)
        return out


def space_of(colorspace: str, channels: int, has_alpha: bool, average: str = DEFAULT_AVERAGE) -> Space | None:
    """The :class:`Space` of an already checked *colorspace*, or None for "srgb" (the stored values)."""
    if colorspace == "srgb":
        return None
    average = "linear" if colorspace == "oklab-linear" else average
    return Space(channels, has_alpha, average, refine_srgb=colorspace == "oklab-srgb", toe=colorspace == "oklrab")


def mapping_space(colorspace: str, channels: int, has_alpha: bool) -> Space | None:
    """Where pixels are mapped to their entries under an already checked *colorspace*: its
    :class:`Space`, or None for sRGB, which "oklab-srgb" maps in too (Oklab only places its start)."""
    space = space_of(colorspace, channels, has_alpha)
    return None if space is None or space.refine_srgb else space
