"""Image-quality metrics between two uint8 images: MSE, PSNR, CIEDE2000, SSIM and SSIMULACRA2.

Every function takes two arrays of one shape, (H, W) or (H, W, C) with C = 1
(L), 2 (LA), 3 (RGB) or 4 (RGBA), both uint8, and returns a float.  What each
does with the channels:

* :func:`mse` and :func:`psnr` average over *every* channel value, alpha
  included (the figure the encoder stores in its ``made`` chunk);
* :func:`ciede2000` compares colours only: alpha is ignored, and a grey image
  (L, LA) counts as the RGB image with R = G = B;
* :func:`ssim` is the mean over the colour channels of each channel's SSIM
  (as ``skimage.metrics.structural_similarity`` with ``channel_axis=-1``);
  alpha is ignored;
* :func:`ssimulacra2` is the perceptual metric of JPEG XL's tools, from the
  ``ssimulacra2`` package (an optional dependency); alpha is ignored.

The work runs in blocks of rows, so memory stays at a few tens of MiB on a
24-megapixel image.  Metrics only measure; nothing here decides the bytes of a
file, so float arithmetic order does not matter for determinism.

>>> import numpy as np
>>> a = np.zeros((16, 16, 3), np.uint8)
>>> b = a.copy(); b[0, 0] = (10, 0, 0)
>>> round(mse(a, b), 4), round(psnr(a, b), 2)
(0.1302, 56.98)
"""

from __future__ import annotations

import io
import math

import numpy as np
from PIL import Image

from .errors import KmcError, ParameterError


class MetricError(KmcError):
    """A metric cannot be computed here: the optional package it needs is not installed."""


#: Pixels per block of rows: float64 intermediates of a few blocks stay near 100 MiB.
BLOCK_PIXELS = 1 << 20

# ---------------------------------------------------------------------------
# Argument checks
# ---------------------------------------------------------------------------
CHANNELS = (1, 2, 3, 4)


def _check_pair(a: object, b: object) -> tuple[np.ndarray, np.ndarray]:
    """Both images as (H, W, C) uint8 views, after checking they can be compared."""
    for name, x in (("a", a), ("b", b)):
        if not isinstance(x, np.ndarray):
            msg = f"{name} must be a numpy array, not {type(x).__name__}"
            raise ParameterError(msg)
        if x.dtype != np.uint8:
            msg = f"{name} must be uint8, not {x.dtype}"
            raise ParameterError(msg)
        if x.ndim not in (2, 3) or (x.ndim == 3 and x.shape[2] not in CHANNELS):
            msg = f"{name} must have shape (H, W) or (H, W, C) with C in 1..4, not {x.shape}"
            raise ParameterError(msg)
    if a.shape != b.shape:
        msg = f"the images differ in shape: {a.shape} and {b.shape}"
        raise ParameterError(msg)
    if a.size == 0:
        msg = f"the images are empty: shape {a.shape}"
        raise ParameterError(msg)
    if a.ndim == 2:
        return a[:, :, None], b[:, :, None]
    return a, b


def _colour_channels(image: np.ndarray) -> np.ndarray:
    """The colour channels of an (H, W, C) image: alpha (channel 2 of LA, 4 of RGBA) dropped."""
    return image[:, :, :1] if image.shape[2] <= 2 else image[:, :, :3]


def _row_blocks(height: int, width: int, rows: int = 0) -> range:
    step = max(1, BLOCK_PIXELS // max(width, 1) - rows)
    return range(0, height, step)


# ---------------------------------------------------------------------------
# MSE and PSNR
# ---------------------------------------------------------------------------
def mse(a: np.ndarray, b: np.ndarray) -> float:
    """Mean squared error over every channel value of two uint8 images.

    Parameters
    ----------
    a, b : ndarray, shape (H, W) or (H, W, C), uint8
        The same shape; C is 1 to 4, and alpha counts like any channel.

    Returns
    -------
    float
        Exact (the squared differences are summed as integers), 0.0 when the
        images are equal.

    Examples
    --------
    >>> import numpy as np
    >>> mse(np.array([[0, 10]], np.uint8), np.array([[3, 10]], np.uint8))
    4.5
    """
    a, b = _check_pair(a, b)
    h, w, c = a.shape
    blocks = _row_blocks(h, w * c)
    total = 0
    for top in blocks:
        rows = slice(top, top + blocks.step)
        diff = a[rows].astype(np.int32) - b[rows]
        total += int(np.sum(diff * diff, dtype=np.int64))
    return total / a.size


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """Peak signal-to-noise ratio in dB, ``10 log10(255**2 / mse(a, b))``.

    Parameters
    ----------
    a, b : ndarray, shape (H, W) or (H, W, C), uint8

    Returns
    -------
    float
        ``math.inf`` when the images are equal.

    Examples
    --------
    >>> import numpy as np
    >>> a = np.full((2, 2), 100, np.uint8)
    >>> round(psnr(a, a + 1), 3), psnr(a, a)
    (48.131, inf)
    """
    error = mse(a, b)
    return math.inf if error == 0 else 10 * math.log10(255**2 / error)


# ---------------------------------------------------------------------------
# CIELAB and CIEDE2000
# ---------------------------------------------------------------------------
#: sRGB (linear, D65) to CIE XYZ, IEC 61966-2-1.
SRGB_TO_XYZ = np.array(
    [
        [0.4124564, 0.3575761, 0.1804375],
        [0.2126729, 0.7151522, 0.0721750],
        [0.0193339, 0.1191920, 0.9503041],
    ]
)
#: The D65 white point as the matrix maps it (its row sums), so white has a* = b* = 0 exactly.
WHITE = SRGB_TO_XYZ.sum(axis=1)


def _linear_lut() -> np.ndarray:
    """Linear-light value of each 8-bit sRGB code (the sRGB transfer function inverted)."""
    v = np.arange(256) / 255
    return np.where(v <= 0.04045, v / 12.92, ((v + 0.055) / 1.055) ** 2.4)


LINEAR = _linear_lut()


def _lab_f(t: np.ndarray) -> np.ndarray:
    delta = 6 / 29
    return np.where(t > delta**3, np.cbrt(t), t / (3 * delta**2) + 4 / 29)


def srgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """CIELAB (D65) of 8-bit sRGB colours.

    Parameters
    ----------
    rgb : ndarray, shape (..., 3), uint8

    Returns
    -------
    ndarray, shape (..., 3), float64
        L* in 0..100, a* and b* roughly -128..128.

    Examples
    --------
    >>> import numpy as np
    >>> srgb_to_lab(np.array([[255, 255, 255], [0, 0, 0]], np.uint8)).round(4) + 0.0
    array([[100.,   0.,   0.],
           [  0.,   0.,   0.]])
    >>> srgb_to_lab(np.array([255, 0, 0], np.uint8)).round(2)
    array([53.24, 80.09, 67.2 ])
    """
    linear = LINEAR[rgb]
    f = [
        _lab_f(sum(SRGB_TO_XYZ[i, j] * linear[..., j] for j in range(3)) / WHITE[i])  # fixed order, no BLAS
        for i in range(3)
    ]
    return np.stack([116 * f[1] - 16, 500 * (f[0] - f[1]), 200 * (f[1] - f[2])], axis=-1)


def delta_e_2000(lab1: np.ndarray, lab2: np.ndarray) -> np.ndarray:
    """CIEDE2000 colour difference of CIELAB colours, element by element (kL = kC = kH = 1).

    Implements the formula as Sharma, Wu and Dalal (2005) state it, equations
    (1) to (22), including their conventions for achromatic colours (hue 0,
    and the hue mean being the plain sum when a chroma is zero).

    Parameters
    ----------
    lab1, lab2 : array_like, shape (..., 3)
        L*, a*, b* along the last axis; broadcast against each other.

    Returns
    -------
    ndarray, shape (...), float64

    Examples
    --------
    The first pair of Sharma et al.'s test data:

    >>> round(float(delta_e_2000([50, 2.6772, -79.7751], [50, 0, -82.7485])), 4)
    2.0425
    """
    lab1 = np.asarray(lab1, dtype=np.float64)
    lab2 = np.asarray(lab2, dtype=np.float64)
    l1, a1, b1 = lab1[..., 0], lab1[..., 1], lab1[..., 2]
    l2, a2, b2 = lab2[..., 0], lab2[..., 1], lab2[..., 2]
    pow25_7 = 25.0**7

    # (2)-(7): a* stretched by G, then chroma and hue in degrees 0..360.
    c_bar7 = ((np.hypot(a1, b1) + np.hypot(a2, b2)) / 2) ** 7
    g = 0.5 * (1 - np.sqrt(c_bar7 / (c_bar7 + pow25_7)))
    a1p, a2p = (1 + g) * a1, (1 + g) * a2
    c1p, c2p = np.hypot(a1p, b1), np.hypot(a2p, b2)
    h1p = np.degrees(np.arctan2(b1, a1p)) % 360  # arctan2(0, 0) = 0, eq. (7)'s convention
    h2p = np.degrees(np.arctan2(b2, a2p)) % 360

    # (8)-(11): differences; the hue difference is 0 when either chroma is.
    chroma_product = c1p * c2p
    dh = h2p - h1p
    dh = np.where(dh > 180, dh - 360, np.where(dh < -180, dh + 360, dh))
    dh = np.where(chroma_product == 0, 0.0, dh)
    d_l = l2 - l1
    d_c = c2p - c1p
    d_h = 2 * np.sqrt(chroma_product) * np.sin(np.radians(dh) / 2)

    # (12)-(14): means; the hue mean wraps around 360 and is the sum when a chroma is 0.
    l_bar = (l1 + l2) / 2
    c_bar_p = (c1p + c2p) / 2
    h_sum = h1p + h2p
    h_bar = np.where(np.abs(h1p - h2p) <= 180, h_sum / 2, np.where(h_sum < 360, (h_sum + 360) / 2, (h_sum - 360) / 2))
    h_bar = np.where(chroma_product == 0, h_sum, h_bar)

    # (15)-(22): weights and the rotation term.
    t = (
        1
        - 0.17 * np.cos(np.radians(h_bar - 30))
        + 0.24 * np.cos(np.radians(2 * h_bar))
        + 0.32 * np.cos(np.radians(3 * h_bar + 6))
        - 0.20 * np.cos(np.radians(4 * h_bar - 63))
    )
    d_theta = 30 * np.exp(-(((h_bar - 275) / 25) ** 2))
    c_bar_p7 = c_bar_p**7
    r_c = 2 * np.sqrt(c_bar_p7 / (c_bar_p7 + pow25_7))
    l50 = (l_bar - 50) ** 2
    s_l = 1 + 0.015 * l50 / np.sqrt(20 + l50)
    s_c = 1 + 0.045 * c_bar_p
    s_h = 1 + 0.015 * c_bar_p * t
    r_t = -np.sin(np.radians(2 * d_theta)) * r_c
    tl, tc, th = d_l / s_l, d_c / s_c, d_h / s_h
    return np.sqrt(tl * tl + tc * tc + th * th + r_t * tc * th)


def ciede2000(a: np.ndarray, b: np.ndarray) -> float:
    """Mean CIEDE2000 colour difference over the pixels of two sRGB images.

    Pixels are taken as 8-bit sRGB (D65) and converted to CIELAB; a grey image
    (L or LA) counts as the RGB image with R = G = B; alpha is ignored.

    Parameters
    ----------
    a, b : ndarray, shape (H, W) or (H, W, C), uint8

    Returns
    -------
    float
        0.0 when the colour channels are equal.  About 1 is a just noticeable
        difference; 2-3 is visible side by side.

    Examples
    --------
    >>> import numpy as np
    >>> a = np.zeros((2, 2, 3), np.uint8); a[:] = (200, 30, 30)
    >>> b = a.copy(); b[0, 0] = (200, 30, 40)
    >>> round(ciede2000(a, b), 4), ciede2000(a, a)
    (0.6196, 0.0)
    """
    a, b = _check_pair(a, b)
    a, b = _colour_channels(a), _colour_channels(b)
    h, w, channels = a.shape
    blocks = _row_blocks(h, w)
    total = 0.0
    for top in blocks:
        rows = slice(top, top + blocks.step)
        pairs, counts = _distinct_pairs(a[rows].reshape(-1, channels), b[rows].reshape(-1, channels))
        if channels == 1:
            pairs = np.repeat(pairs, 3, axis=1)
        lab_a, lab_b = srgb_to_lab(pairs[:, :3]), srgb_to_lab(pairs[:, 3:])
        total += float(np.sum(delta_e_2000(lab_a, lab_b) * counts))
    return total / (h * w)


def _distinct_pairs(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct (colour in a, colour in b) pairs of two (N, C) pixel lists, and their counts.

    A quantized image pairs each input colour with few palette colours, so a
    photo has about ten times fewer distinct pairs than pixels.
    """
    channels = a.shape[1]
    key = np.zeros(len(a), dtype=np.uint64)
    for plane in (*a.T, *b.T):
        key <<= np.uint64(8)
        key |= plane
    keys, counts = np.unique(key, return_counts=True)
    pairs = np.empty((len(keys), 2 * channels), dtype=np.uint8)
    for i in range(2 * channels):
        pairs[:, i] = (keys >> np.uint64(8 * (2 * channels - 1 - i))) & np.uint64(0xFF)
    return pairs, counts


# ---------------------------------------------------------------------------
# SSIM
# ---------------------------------------------------------------------------
#: Wang et al. (2004): an 11 x 11 gaussian window of sigma 1.5, K1 = 0.01, K2 = 0.03.
SSIM_RADIUS = 5
SSIM_SIGMA = 1.5
SSIM_K1 = 0.01
SSIM_K2 = 0.03


def _gaussian_taps() -> np.ndarray:
    x = np.arange(-SSIM_RADIUS, SSIM_RADIUS + 1)
    g = np.exp(-0.5 * (x / SSIM_SIGMA) ** 2)
    return g / g.sum()


TAPS = _gaussian_taps()


def _filter_valid(x: np.ndarray) -> np.ndarray:
    """The separable gaussian over (rows, cols), only where the whole window fits.

    The taps are symmetric, so each pass adds the mirrored pairs of shifted
    planes first and multiplies once per pair, in place.
    """
    for axis in (0, 1):
        n = x.shape[axis] - 2 * SSIM_RADIUS

        def shifted(i: int, x: np.ndarray = x, axis: int = axis, n: int = n) -> np.ndarray:
            return x[i : i + n] if axis == 0 else x[:, i : i + n]

        out = shifted(SSIM_RADIUS) * TAPS[SSIM_RADIUS]
        pair = np.empty_like(out)
        for i in range(SSIM_RADIUS):
            np.add(shifted(i), shifted(2 * SSIM_RADIUS - i), out=pair)
            pair *= TAPS[i]
            out += pair
        x = out
    return x


def _ssim_sum(x: np.ndarray, y: np.ndarray) -> float:
    """Sum of the SSIM map of two float64 planes over the window positions that fit."""
    c1 = (SSIM_K1 * 255) ** 2
    c2 = (SSIM_K2 * 255) ** 2
    mx, my = _filter_valid(x), _filter_valid(y)
    mx2_my2 = mx * mx + my * my
    v_sum = _filter_valid(x * x + y * y) - mx2_my2  # only var(x) + var(y) enters the formula
    cxy = _filter_valid(x * y) - mx * my
    s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx2_my2 + c1) * (v_sum + c2))
    return float(s.sum())


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Mean structural similarity (Wang, Bovik, Sheikh and Simoncelli 2004).

    The local statistics come from an 11 x 11 gaussian window (sigma 1.5)
    with population (not sample) covariances, K1 = 0.01, K2 = 0.03 and a
    data range of 255.  The SSIM map is averaged over the positions where the
    whole window fits inside the image (5 pixels in from each edge), and over
    the colour channels (R, G and B separately; alpha ignored).  This is
    ``skimage.metrics.structural_similarity(a, b, gaussian_weights=True,
    sigma=1.5, use_sample_covariance=False, data_range=255,
    channel_axis=-1)``.

    Parameters
    ----------
    a, b : ndarray, shape (H, W) or (H, W, C), uint8
        H and W at least 11.

    Returns
    -------
    float
        1.0 for equal images; lower is worse (it can go below 0).

    Examples
    --------
    >>> import numpy as np
    >>> a = (np.arange(32 * 32) % 251).astype(np.uint8).reshape(32, 32)
    >>> ssim(a, a), round(ssim(a, a // 2), 4)
    (1.0, 0.6405)
    """
    a, b = _check_pair(a, b)
    a, b = _colour_channels(a), _colour_channels(b)
    h, w, channels = a.shape
    window = 2 * SSIM_RADIUS + 1
    if h < window or w < window:
        msg = f"ssim needs images of at least {window} x {window} pixels, not {w} x {h}"
        raise ParameterError(msg)
    overlap = window - 1
    blocks = _row_blocks(h - overlap, w, overlap)
    total = 0.0
    for c in range(channels):
        for top in blocks:
            rows = slice(top, min(top + blocks.step, h - overlap) + overlap)
            x = a[rows, :, c].astype(np.float64)
            y = b[rows, :, c].astype(np.float64)
            total += _ssim_sum(x, y)
    return total / (channels * (h - overlap) * (w - overlap))


# ---------------------------------------------------------------------------
# SSIMULACRA2
# ---------------------------------------------------------------------------
#: The smallest side SSIMULACRA2 measures: its first scale stops below 8 pixels (and then scores 100).
SSIMULACRA2_MIN_SIDE = 8
SSIMULACRA2_MISSING = "SSIMULACRA2 needs the ssimulacra2 package: pip install 'kmcodec[report]'"


def ssimulacra2_available() -> bool:
    """Whether :func:`ssimulacra2` can run here (the ``ssimulacra2`` package imports)."""
    try:
        import ssimulacra2  # noqa: F401
    except ImportError:
        return False
    return True


def _ppm(rgb: np.ndarray) -> io.BytesIO:
    """An (H, W, 3) uint8 image as an in-memory PPM file: the package reads files, and PPM is a copy."""
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb), mode="RGB").save(buf, format="PPM")
    buf.seek(0)
    return buf


def ssimulacra2(reference: np.ndarray, distorted: np.ndarray) -> float:
    """SSIMULACRA2 of *distorted* against *reference*, from the ``ssimulacra2`` package.

    SSIMULACRA2 (Cloudinary; JPEG XL's ``tools/ssimulacra2``) compares the
    images in the XYB colour space at six scales, from SSIM-like and edge
    (ringing, blur) terms, and was fitted to human ratings of compressed
    photos.  Higher is better: 100 for identical images, about 90 visually
    lossless, 70 high quality (artifacts hard to notice without the
    original), 50 medium, 30 low; strongly distorted images go below 0.
    Unlike the others here the order of the arguments matters.

    This wraps ``ssimulacra2.compute_ssimulacra2`` (the package on PyPI,
    with scipy; installed by the ``report``, ``bench`` and ``test`` extras)
    rather than carrying a copy, and imports it on first use.  A grey image
    (L, LA) counts as the RGB image with R = G = B; alpha is ignored, as by
    that function (and by :func:`ciede2000` and :func:`ssim`).  It costs
    about 2 s and 0.6 GB per megapixel.

    Parameters
    ----------
    reference, distorted : ndarray, shape (H, W) or (H, W, C), uint8
        The same shape, H and W at least 8.

    Returns
    -------
    float

    Raises
    ------
    MetricError
        The ``ssimulacra2`` package is not installed.
    ParameterError
        The images cannot be compared, or are smaller than 8 x 8.

    Examples
    --------
    >>> import numpy as np
    >>> y, x = np.mgrid[0:64, 0:64]
    >>> a = np.stack([x * 4, y * 4, (x + y) * 2], axis=-1).astype(np.uint8)
    >>> ssimulacra2(a, a)
    100.0
    >>> ssimulacra2(a, a // 32 * 32) < 50  # 8 levels a channel: banding
    True
    """
    a, b = _check_pair(reference, distorted)
    a, b = _colour_channels(a), _colour_channels(b)
    h, w, channels = a.shape
    if min(h, w) < SSIMULACRA2_MIN_SIDE:
        side = SSIMULACRA2_MIN_SIDE
        msg = f"ssimulacra2 needs images of at least {side} x {side} pixels, not {w} x {h}"
        raise ParameterError(msg)
    try:
        from ssimulacra2 import compute_ssimulacra2
    except ImportError:
        raise MetricError(SSIMULACRA2_MISSING) from None
    if channels == 1:
        a, b = np.repeat(a, 3, axis=2), np.repeat(b, 3, axis=2)
    return float(compute_ssimulacra2(_ppm(a), _ppm(b)))


__all__ = [
    "MetricError",
    "ciede2000",
    "delta_e_2000",
    "mse",
    "psnr",
    "srgb_to_lab",
    "ssim",
    "ssimulacra2",
    "ssimulacra2_available",
]
