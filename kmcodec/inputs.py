"""Encoder input: turn whatever the caller passed into an (H, W, C) uint8 array.

Accepted: a ``PIL.Image.Image``, a path, a binary file object, or a uint8
numpy array of shape (H, W), (H, W, 1), (H, W, 2), (H, W, 3) or (H, W, 4).
Pillow modes map to the nearest layout the format has (§4); EXIF orientation
is applied; the ICC profile, EXIF and XMP are carried along.
"""

from __future__ import annotations

import dataclasses
import math
import os
import struct
import warnings
from typing import IO

import numpy as np
from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError

from . import format as fmt
from .errors import ImageTooLargeError, InputImageError, ParameterError
from .format import Layout
from .limits import check_pixels, pixel_limit

ImageInput = Image.Image | str | os.PathLike | IO[bytes] | np.ndarray

_MODE_LAYOUT = {
    "1": Layout.L,
    "L": Layout.L,
    "LA": Layout.LA,
    "La": Layout.LA,
    "RGB": Layout.RGB,
    "RGBX": Layout.RGB,
    "CMYK": Layout.RGB,
    "YCbCr": Layout.RGB,
    "HSV": Layout.RGB,
    "RGBA": Layout.RGBA,
    "RGBa": Layout.RGBA,
    "PA": Layout.RGBA,
}
_LAYOUT_MODE = {Layout.L: "L", Layout.LA: "LA", Layout.RGB: "RGB", Layout.RGBA: "RGBA"}
#: What Pillow's format plugins raise on malformed data besides OSError and
#: SyntaxError: Image.open itself takes IndexError, TypeError and struct.error
#: to mean "not this format"; KeyError and NotImplementedError come from
#: unknown codes in TIFF and DDS headers.
_PLUGIN_ERRORS = (IndexError, TypeError, KeyError, struct.error, NotImplementedError)


@dataclasses.dataclass
class SourceImage:
    """A validated encoder input: pixels (H, W, C) uint8 plus metadata to carry."""

    pixels: np.ndarray
    layout: Layout
    icc_profile: bytes | None = None
    exif: bytes | None = None
    xmp: bytes | None = None


def layout_mode(layout: Layout) -> str:
    """The Pillow mode that holds *layout*."""
    return _LAYOUT_MODE[layout]


def load_source(image: ImageInput) -> SourceImage:
    """Validate and normalise an encoder input (the only public entry of this module)."""
    if isinstance(image, np.ndarray):
        return _from_array(image)
    if isinstance(image, Image.Image):
        return _from_pil(image, name="image")
    if isinstance(image, (str, os.PathLike)) or hasattr(image, "read"):
        name = os.fsdecode(image) if isinstance(image, (str, os.PathLike)) else str(getattr(image, "name", "input"))
        try:
            with warnings.catch_warnings():
                # Pillow warns past MAX_IMAGE_PIXELS and raises past twice that (handled
                # below); the warning on stderr would break the CLI's one-line contract.
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                with Image.open(image) as opened:
                    # Image.open read the header only: refuse before the pixels are decoded.
                    check_pixels(*opened.size, pixel_limit(), what=f"image {name!r}")
                    opened.load()
                    return _from_pil(opened, name=name)
        except FileNotFoundError:
            msg = f"cannot read image {name!r}: no such file"
            raise InputImageError(msg) from None
        except IsADirectoryError:
            msg = f"cannot read image {name!r}: it is a directory"
            raise InputImageError(msg) from None
        except PermissionError:
            msg = f"cannot read image {name!r}: permission denied"
            raise InputImageError(msg) from None
        except Image.DecompressionBombError as exc:
            msg = f"cannot read image {name!r}: {exc}"
            raise ImageTooLargeError(msg) from None
        except UnidentifiedImageError:
            msg = f"cannot read image {name!r}: not an image format Pillow recognises"
            raise InputImageError(msg) from None
        except (OSError, SyntaxError, ValueError, EOFError) as exc:
            if isinstance(exc, (InputImageError, ImageTooLargeError)):
                raise
            msg = f"cannot read image {name!r}: {exc}"
            raise InputImageError(msg) from None
        except _PLUGIN_ERRORS as exc:
            msg = f"cannot read image {name!r}: damaged or unsupported data ({type(exc).__name__}: {exc})"
            raise InputImageError(msg) from None
    msg = f"image must be a PIL image, a path, a file object or a numpy array, not {type(image).__name__}"
    raise ParameterError(msg)


def _check_size(width: int, height: int) -> None:
    if width < 1 or height < 1:
        msg = f"image is empty ({width} x {height})"
        raise InputImageError(msg)
    if width > fmt.MAX_DIMENSION or height > fmt.MAX_DIMENSION or width * height > fmt.MAX_PIXELS:
        msg = f"image of {width} x {height} exceeds the format's limits (see spec §8)"
        raise ImageTooLargeError(msg)


def _from_array(array: np.ndarray) -> SourceImage:
    if array.dtype != np.uint8:
        msg = f"image array must have dtype uint8, not {array.dtype}"
        raise ParameterError(msg)
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3 or not 1 <= array.shape[2] <= 4:
        msg = f"image array must have shape (H, W) or (H, W, C) with C in 1..4, not {array.shape}"
        raise ParameterError(msg)
    _check_size(array.shape[1], array.shape[0])
    return SourceImage(np.ascontiguousarray(array), Layout(array.shape[2]))


def _from_pil(image: Image.Image, *, name: str) -> SourceImage:
    _check_size(*image.size)
    if image.tell() != 0:
        # Animations: the first frame is encoded (documented in the README).  Not
        # n_frames: counting frames parses all of them, and a damaged later frame
        # would fail an image whose first frame is sound.
        image.seek(0)
    if image.getexif().get(ExifTags.Base.Orientation, 1) != 1:
        image = ImageOps.exif_transpose(image)  # a copy, made only when there is something to turn
    mode = image.mode
    if mode == "P":
        layout = Layout.RGBA if ("transparency" in image.info or image.palette.mode == "RGBA") else Layout.RGB
    elif mode in _MODE_LAYOUT:
        layout = _MODE_LAYOUT[mode]
    elif mode.startswith("I;16") or mode in ("I", "F"):
        return _with_metadata(image, SourceImage(_scale_to_8bit(image, name), Layout.L))
    else:
        layout = _convert_fallback(mode, name)
    target = _LAYOUT_MODE[layout]
    width, height = image.size
    pixels = np.empty((height, width, layout.channels), dtype=np.uint8)
    for top, bottom in _row_blocks(width, height):
        block = image.crop((0, top, width, bottom))
        try:
            converted = block if mode == target else block.convert(target)
        except (ValueError, OSError) as exc:
            msg = f"cannot convert image {name!r} from mode {mode} to {target}: {exc}"
            raise InputImageError(msg) from None
        pixels[top:bottom] = np.asarray(converted, dtype=np.uint8).reshape(bottom - top, width, layout.channels)
    return _with_metadata(image, SourceImage(pixels, layout))


#: Pixels converted at a time: the whole image is never held twice beside its
#: converted copy (a 75-megapixel PA TIFF went from 1.6 GB to 0.7 GB).
CONVERT_BLOCK_PIXELS = 1 << 20


def _row_blocks(width: int, height: int) -> list[tuple[int, int]]:
    """(top, bottom) row ranges of about :data:`CONVERT_BLOCK_PIXELS` pixels covering the image."""
    step = max(1, CONVERT_BLOCK_PIXELS // width)
    return [(top, min(top + step, height)) for top in range(0, height, step)]


def _convert_fallback(mode: str, name: str) -> Layout:
    bands = Image.getmodebands(mode) if mode in Image.MODES else 0
    if bands == 1:
        return Layout.L
    if bands >= 3:
        return Layout.RGBA if "A" in mode else Layout.RGB
    msg = f"cannot encode image {name!r}: Pillow mode {mode} has no kmc layout"
    raise InputImageError(msg)


def _scale_to_8bit(image: Image.Image, name: str) -> np.ndarray:
    """16-bit, 32-bit integer and float greyscale to 8 bits.

    Integers within 0..255 are kept, within 0..65535 scaled by 255/65535;
    floats within 0..1 scaled by 255, within 0..255 kept.  Anything else
    (negative values, NaN, larger ranges) is refused rather than guessed.
    """
    width, height = image.size
    blocks = _row_blocks(width, height)

    def block_values(top: int, bottom: int) -> np.ndarray:
        values = np.asarray(image.crop((0, top, width, bottom)))
        return values if values.dtype.kind == "f" else values.astype(np.int64)

    floats = image.mode == "F"
    lo, hi = math.inf, -math.inf
    for top, bottom in blocks:
        values = block_values(top, bottom)
        if floats and not np.all(np.isfinite(values)):
            msg = f"cannot encode image {name!r}: float pixels include NaN or infinity"
            raise InputImageError(msg)
        lo, hi = min(lo, values.min().item()), max(hi, values.max().item())
    scale = (255.0 if hi <= 1.0 else 1.0) if floats else (1.0 if hi <= 255 else 255.0 / 65535.0)
    if lo < 0 or hi * scale > 255.5:
        msg = f"cannot encode image {name!r}: mode {image.mode} values span {lo}..{hi}, outside an 8- or 16-bit range"
        raise InputImageError(msg)
    pixels = np.empty((height, width, 1), dtype=np.uint8)
    for top, bottom in blocks:
        pixels[top:bottom, :, 0] = np.rint(block_values(top, bottom) * scale)
    return pixels


def pillow_info(icc_profile: bytes | None, exif: bytes | None, xmp: bytes | None) -> dict[str, bytes]:
    """The mirror of :func:`_with_metadata`: a file's metadata as Pillow ``info`` entries."""
    info = {}
    if icc_profile:
        info["icc_profile"] = icc_profile
    if exif:
        info["exif"] = b"Exif\x00\x00" + exif  # Pillow's (JPEG) form carries the prefix
    if xmp:
        info["xmp"] = xmp
    return info


def _with_metadata(image: Image.Image, source: SourceImage) -> SourceImage:
    info = image.info
    icc = info.get("icc_profile")
    source.icc_profile = bytes(icc) if icc else None
    exif = info.get("exif")
    if exif:
        exif = bytes(exif)
        source.exif = exif[6:] if exif.startswith(b"Exif\x00\x00") else exif
    xmp = info.get("xmp") or info.get("XML:com.adobe.xmp")
    if xmp:
        source.xmp = xmp.encode("utf-8") if isinstance(xmp, str) else bytes(xmp)
    return source
