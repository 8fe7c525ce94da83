"""What a .kmc file saves against PNG, and at what quality: the figures behind ``kmc compare``.

For one image and each palette size k, :func:`compare_image` encodes the
image's pixels as .kmc and reports its bytes beside the input file's, a
truecolor PNG's and a PNG-8's of the same palette image (both written by
Pillow with ``optimize=True``), with PSNR, mean CIEDE2000, SSIMULACRA2 (a
perceptual score, when the optional ``ssimulacra2`` package is installed) and
the encode and decode times.  Every coder gets the pixels only (no ICC profile, EXIF or XMP),
so the byte counts compare pixel coding; the input file's bytes are as on disk.
Quality is measured against the input with fully transparent pixels zeroed
(:func:`visible`): their colour cannot be seen and .kmc does not keep it.

The PNG-8 holds exactly the decoded image (the .kmc palette and labels), so
its quality equals the .kmc file's: the two byte counts compare label coding.
It exists for palettes of at most 256 colours.

>>> import numpy as np
>>> from kmcodec.compare import compare_image
>>> y, x = np.mgrid[0:24, 0:32]
>>> img = np.stack([x * 8, y * 10, (x + y) * 4], axis=-1).astype(np.uint8)
>>> result = compare_image(img, [4, 16])
>>> [(row.k, row.colors) for row in result.rows]
[(4, 4), (16, 16)]
>>> result.rows[0].psnr < result.rows[1].psnr
True
"""

from __future__ import annotations

import dataclasses
import io
import math
import os
import time
from collections.abc import Iterable

import numpy as np
from PIL import Image

from .codec import decode, encode, read_info
from .defaults import DEFAULT_EFFORT, DEFAULT_KS
from .errors import ParameterError
from .inputs import ImageInput, load_source

#: The most colours a PNG-8 (palette PNG) holds.
PNG8_MAX_COLORS = 256
MODES = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}


@dataclasses.dataclass(frozen=True)
class Row:
    """The figures of one image at one palette size k.

    ``kmc`` and ``png8`` are the files themselves (for the report); ``to_dict``
    leaves them out.
    """

    k: int
    colors: int
    kmc_bytes: int
    png8_bytes: int | None  # None past 256 colours
    psnr: float  # math.inf when lossless
    ciede2000: float
    ssimulacra2: float | None  # None without the ssimulacra2 package, or below 8 x 8 pixels
    encode_seconds: float
    decode_seconds: float
    kmc: bytes = dataclasses.field(repr=False)
    png8: bytes | None = dataclasses.field(repr=False)

    def to_dict(self, input_bytes: int, png_bytes: int) -> dict:
        """The row as JSON-ready numbers, with its ratios to the input file and the PNGs.

        PSNR is ``None`` (with ``lossless`` true) when the image came back exact;
        SSIMULACRA2 is ``None`` when it was not measured (:func:`ssimulacra2_note`).
        """
        lossless = math.isinf(self.psnr)
        return {
            "k": self.k,
            "colors": self.colors,
            "kmc_bytes": self.kmc_bytes,
            "png8_bytes": self.png8_bytes,
            "kmc_to_input": self.kmc_bytes / input_bytes,
            "kmc_to_png": self.kmc_bytes / png_bytes,
            "kmc_to_png8": None if self.png8_bytes is None else self.kmc_bytes / self.png8_bytes,
            "psnr": None if lossless else self.psnr,
            "lossless": lossless,
            "ciede2000": self.ciede2000,
            "ssimulacra2": self.ssimulacra2,
            "encode_seconds": self.encode_seconds,
            "decode_seconds": self.decode_seconds,
        }


@dataclasses.dataclass(frozen=True)
class ImageComparison:
    """One image against .kmc at every k: its size, the reference byte counts and one :class:`Row` per k."""

    name: str
    width: int
    height: int
    mode: str
    input_bytes: int
    png_bytes: int
    rows: list[Row]
    png: bytes = dataclasses.field(repr=False)  # the truecolor PNG, also the report's original
    pixels: np.ndarray = dataclasses.field(repr=False)  # (H, W, C) uint8, as the encoder saw them
    #: Why SSIMULACRA2 was not measured (:func:`ssimulacra2_note`, or not asked for), None where it was.
    ssimulacra2_note: str | None = None

    def to_dict(self) -> dict:
        """The comparison as JSON-ready data (see ``kmc compare --json``)."""
        return {
            "image": self.name,
            "width": self.width,
            "height": self.height,
            "mode": self.mode,
            "input_bytes": self.input_bytes,
            "png_bytes": self.png_bytes,
            "rows": [row.to_dict(self.input_bytes, self.png_bytes) for row in self.rows],
        }


def parse_ks(text: str) -> list[int]:
    """Palette sizes from comma-separated integers, sorted, duplicates dropped.

    Examples
    --------
    >>> parse_ks("256,16, 64,16")
    [16, 64, 256]
    """
    try:
        ks = sorted({int(part) for part in text.split(",")})
    except ValueError:
        msg = f"{text!r}: palette sizes must be integers joined by commas, such as 16,64,256"
        raise ParameterError(msg) from None
    if not ks or ks[0] < 1 or ks[-1] > 65536:
        msg = f"{text!r}: palette sizes must be 1 to 65536"
        raise ParameterError(msg)
    return ks


def png_bytes(image: Image.Image) -> bytes:
    """*image* as a PNG written by Pillow with ``optimize=True``.

    Examples
    --------
    >>> from PIL import Image
    >>> png_bytes(Image.new("L", (4, 4)))[:8]
    b'\\x89PNG\\r\\n\\x1a\\n'
    """
    buf = io.BytesIO()
    image.save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def pillow_image(pixels: np.ndarray) -> Image.Image:
    """An (H, W, C) uint8 array as a Pillow image of mode L, LA, RGB or RGBA (C = 1 to 4).

    Examples
    --------
    >>> import numpy as np
    >>> pillow_image(np.zeros((2, 3, 2), np.uint8)).mode
    'LA'
    """
    mode = MODES[pixels.shape[2]]
    return Image.fromarray(pixels[:, :, 0] if mode == "L" else pixels, mode=mode)


def palette_image(pixels: np.ndarray, palette: np.ndarray) -> Image.Image:
    """The decoded *pixels* as a Pillow P image of *palette* (at most 256 entries).

    Parameters
    ----------
    pixels : ndarray, shape (H, W, C), uint8
        Every pixel one of the palette's colours.
    palette : ndarray, shape (K, C), uint8
        C = 1 (L), 2 (LA), 3 (RGB) or 4 (RGBA); alpha becomes the PNG's tRNS.

    Examples
    --------
    >>> import numpy as np
    >>> palette = np.array([[0, 0, 0], [255, 128, 0]], np.uint8)
    >>> pixels = palette[np.array([[0, 1, 1]])]
    >>> image = palette_image(pixels, palette)
    >>> image.mode, np.asarray(image).tolist()
    ('P', [[0, 1, 1]])
    """
    channels = palette.shape[1]
    weights = 256 ** np.arange(channels, dtype=np.int64)
    keys = _keys(palette, weights)
    order = np.argsort(keys, kind="stable")
    found = np.searchsorted(keys[order], _keys(pixels.reshape(-1, channels), weights))
    labels = order[found].astype(np.uint8).reshape(pixels.shape[:2])
    grey = channels <= 2
    rgb = np.repeat(palette[:, :1], 3, axis=1) if grey else palette[:, :3]
    alpha = palette[:, -1:] if channels in (2, 4) else None
    entries = rgb if alpha is None else np.concatenate([rgb, alpha], axis=1)
    image = Image.fromarray(labels, mode="P")
    image.putpalette(entries.tobytes(), rawmode="RGB" if alpha is None else "RGBA")
    return image


def visible(pixels: np.ndarray) -> np.ndarray:
    """*pixels* with every fully transparent pixel zeroed, as the codec stores them.

    The colour under alpha 0 cannot be seen, and .kmc keeps none (see
    :func:`kmcodec.encode`), so the quality figures compare against this.

    Examples
    --------
    >>> import numpy as np
    >>> visible(np.array([[[9, 0], [9, 1]]], np.uint8)).tolist()
    [[[0, 0], [9, 1]]]
    """
    if pixels.shape[2] not in (2, 4):
        return pixels
    return np.where(pixels[:, :, -1:] == 0, np.uint8(0), pixels)


def _keys(colors: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Each colour row as one integer (summed channel by channel: no BLAS)."""
    keys = np.zeros(len(colors), dtype=np.int64)
    for channel, weight in enumerate(weights):
        keys += colors[:, channel].astype(np.int64) * weight
    return keys


#: :attr:`ImageComparison.ssimulacra2_note` where the caller turned SSIMULACRA2 off.
NOT_ASKED = "not asked for (--no-ssimulacra2)"


def ssimulacra2_note(width: int, height: int) -> str | None:
    """Why SSIMULACRA2 is not measured on an image of this size here, or None when it is.

    Examples
    --------
    >>> ssimulacra2_note(7, 100)
    'SSIMULACRA2 needs at least 8 x 8 pixels'
    """
    from .metrics import SSIMULACRA2_MIN_SIDE, SSIMULACRA2_MISSING, ssimulacra2_available

    if min(width, height) < SSIMULACRA2_MIN_SIDE:
        return f"SSIMULACRA2 needs at least {SSIMULACRA2_MIN_SIDE} x {SSIMULACRA2_MIN_SIDE} pixels"
    return None if ssimulacra2_available() else SSIMULACRA2_MISSING


def compare_image(
    image: ImageInput,
    ks: Iterable[int] = DEFAULT_KS,
    *,
    seed: int = 0,
    method: str = "auto",
    effort: int = DEFAULT_EFFORT,
    colorspace: str | None = None,
    masking: bool | None = None,
    rdo: float | None = None,
    name: str | None = None,
    perceptual: bool = True,
) -> ImageComparison:
    """Encode *image* at each palette size in *ks* and measure the results.

    Parameters
    ----------
    image : path, binary file, PIL.Image.Image or ndarray
        Anything :func:`kmcodec.encode` takes.  The input's byte count is the
        file's for a path, else that of its truecolor PNG.
    ks : iterable of int
        Palette sizes, each 1 to 65536.
    seed, method, effort, colorspace, masking, rdo
        As for :func:`kmcodec.encode`.
    name : str, optional
        The image's name in the results (default: the path, or "image").
    perceptual : bool
        Measure SSIMULACRA2 (where it can be): the slowest of the metrics,
        about a second a megapixel and k.

    Returns
    -------
    ImageComparison

    Examples
    --------
    >>> import numpy as np
    >>> img = np.zeros((8, 8, 3), np.uint8); img[:, 4:] = (255, 0, 0)
    >>> row = compare_image(img, [2]).rows[0]
    >>> row.colors, row.psnr, row.ciede2000, row.png8_bytes < 100
    (2, inf, 0.0, True)
    """
    from .metrics import ciede2000, psnr, ssimulacra2  # a separate module of its own, imported on use

    with load_source(image) as source:
        pixels = source.array()
    height, width, channels = pixels.shape
    truecolor = png_bytes(pillow_image(pixels))
    if isinstance(image, (str, os.PathLike)):
        input_bytes = os.path.getsize(image)
        name = name or os.fsdecode(image)
    else:
        input_bytes = len(truecolor)
        name = name or "image"
    reference = visible(pixels)
    note = ssimulacra2_note(width, height) if perceptual else NOT_ASKED
    options = {
        "seed": seed,
        "method": method,
        "effort": effort,
        "colorspace": colorspace,
        "masking": masking,
        "rdo": rdo,
    }
    rows = []
    for k in ks:
        start = time.perf_counter()
        data = encode(pixels, k, **options)
        encoded = time.perf_counter()
        decoded = decode(data)
        decode_seconds = time.perf_counter() - encoded
        palette = np.asarray(read_info(data).palette, dtype=np.uint8).reshape(-1, channels)
        png8 = png_bytes(palette_image(decoded, palette)) if len(palette) <= PNG8_MAX_COLORS else None
        rows.append(
            Row(
                k=k,
                colors=len(palette),
                kmc_bytes=len(data),
                png8_bytes=None if png8 is None else len(png8),
                psnr=psnr(reference, decoded),
                ciede2000=ciede2000(reference, decoded),
                ssimulacra2=ssimulacra2(reference, decoded) if note is None else None,
                encode_seconds=encoded - start,
                decode_seconds=decode_seconds,
                kmc=data,
                png8=png8,
            )
        )
    return ImageComparison(
        name=name,
        width=width,
        height=height,
        mode=MODES[channels],
        input_bytes=input_bytes,
        png_bytes=len(truecolor),
        rows=rows,
        png=truecolor,
        pixels=pixels,
        ssimulacra2_note=note,
    )


def format_table(result: ImageComparison) -> str:
    """The comparison as the text table ``kmc compare`` prints.

    Examples
    --------
    >>> import numpy as np
    >>> img = np.zeros((8, 8, 3), np.uint8); img[:, 4:] = (255, 0, 0)
    >>> print(format_table(compare_image(img, [2], name="halves")).splitlines()[0])  # doctest: +ELLIPSIS
    halves: 8 x 8 RGB, ... bytes; truecolor PNG ... bytes
    """
    lines = [
        f"{result.name}: {result.width} x {result.height} {result.mode}, {result.input_bytes:,} bytes; "
        f"truecolor PNG {result.png_bytes:,} bytes",
        f"  {'k':>5} {'colours':>7} {'.kmc bytes':>11} {'x input':>8} {'x PNG':>7} {'PNG-8 bytes':>12} "
        f"{'x PNG-8':>8} {'PSNR dB':>8} {'dE2000':>7} {'SSIMU2':>7} {'enc s':>7} {'dec s':>7}",
    ]
    for row in result.rows:
        png8 = "-" if row.png8_bytes is None else f"{row.png8_bytes:,}"
        vs_png8 = "-" if row.png8_bytes is None else f"{row.kmc_bytes / row.png8_bytes:.3f}"
        quality = "lossless" if math.isinf(row.psnr) else f"{row.psnr:.2f}"
        perceptual = "-" if row.ssimulacra2 is None else f"{row.ssimulacra2:.2f}"
        lines.append(
            f"  {row.k:>5} {row.colors:>7} {row.kmc_bytes:>11,} {row.kmc_bytes / result.input_bytes:>8.3f} "
            f"{row.kmc_bytes / result.png_bytes:>7.3f} {png8:>12} {vs_png8:>8} {quality:>8} "
            f"{row.ciede2000:>7.3f} {perceptual:>7} {row.encode_seconds:>7.3f} {row.decode_seconds:>7.3f}"
        )
    if result.ssimulacra2_note:
        lines.append(f"  SSIMU2 not measured: {result.ssimulacra2_note}")
    return "\n".join(lines)
