"""Encoder input: turn whatever the caller passed into an (H, W, C) uint8 array.

Accepted: a ``PIL.Image.Image``, a path, a binary file object, or a uint8
numpy array of shape (H, W), (H, W, 1), (H, W, 2), (H, W, 3) or (H, W, 4).
Pillow modes map to the nearest layout the format has (§4); EXIF orientation
is applied; the ICC profile, EXIF and XMP are carried along.
"""

from __future__ import annotations

import dataclasses
import io
import os
import struct
import warnings
from collections.abc import Callable, Iterator
from typing import IO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from . import format as fmt
from .errors import ImageTooLargeError, InputImageError, ParameterError
from .format import Layout
from .limits import DEFAULT, MaxPixels, check_pixels, pixel_limit
from .png import PngReader

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
#: The EXIF tag of the image's orientation.
ORIENTATION = 0x0112
_LAYOUT_MODE = {Layout.L: "L", Layout.LA: "LA", Layout.RGB: "RGB", Layout.RGBA: "RGBA"}
#: What Pillow's format plugins raise on malformed data besides OSError and
#: SyntaxError: Image.open itself takes IndexError, TypeError and struct.error
#: to mean "not this format"; KeyError and NotImplementedError come from
#: unknown codes in TIFF and DDS headers.
_PLUGIN_ERRORS = (IndexError, TypeError, KeyError, struct.error, NotImplementedError)


@dataclasses.dataclass
class SourceImage:
    """A validated encoder input: pixels (H, W, C) uint8 plus metadata to carry.

    The pixels are an array; a Pillow image of mode L, LA, RGB or RGBA,
    read a block of rows at a time; or, for 8-bit greyscale and truecolour
    PNG files, a :class:`~kmcodec.png.PngReader` that inflates the file a
    block at a time on each pass.  Either way the encoder never holds a
    second copy of the whole image.  :meth:`close` releases a file this
    module opened.
    """

    pixels: np.ndarray | Image.Image | PngReader
    layout: Layout
    icc_profile: bytes | None = None
    exif: bytes | None = None
    xmp: bytes | None = None
    closer: Callable[[], None] | None = None

    @property
    def shape(self) -> tuple[int, int, int]:
        """(H, W, C)."""
        if isinstance(self.pixels, np.ndarray):
            return self.pixels.shape
        if isinstance(self.pixels, PngReader):
            return self.pixels.height, self.pixels.width, self.pixels.channels
        width, height = self.pixels.size
        return height, width, self.layout.channels

    def blocks(self, rows: int) -> Iterator[np.ndarray]:
        """The image top to bottom in (rows, W, C) uint8 blocks, the last possibly shorter."""
        if isinstance(self.pixels, PngReader):
            yield from self.pixels.blocks(rows)
            return
        for top in range(0, self.shape[0], rows):
            yield self._rows(top, top + rows)

    def _rows(self, top: int, stop: int) -> np.ndarray:
        if isinstance(self.pixels, np.ndarray):
            return self.pixels[top:stop]
        stop = min(stop, self.pixels.height)  # crop() would pad with zeros
        block = np.asarray(self.pixels.crop((0, top, self.pixels.width, stop)))
        return block[:, :, None] if block.ndim == 2 else block

    def array(self) -> np.ndarray:
        """The whole image as one (H, W, C) array."""
        return np.concatenate(list(self.blocks(self.shape[0])))

    def close(self) -> None:
        if isinstance(self.pixels, PngReader):
            self.pixels.close()  # no pass reads the file after this
        if self.closer is not None:
            self.closer()
            self.closer = None

    def __enter__(self) -> SourceImage:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def layout_mode(layout: Layout) -> str:
    """The Pillow mode that holds *layout*."""
    return _LAYOUT_MODE[layout]


def load_source(image: ImageInput, max_pixels: MaxPixels = DEFAULT) -> SourceImage:
    """Validate and normalise an encoder input (the only public entry of this module).

    An image file over *max_pixels* (:func:`~kmcodec.limits.pixel_limit`) is refused before its pixels are read.
    """
    limit = pixel_limit(max_pixels)
    if isinstance(image, np.ndarray):
        return _from_array(image)
    if isinstance(image, Image.Image):
        return _from_pil(image, name="image")
    if isinstance(image, io.TextIOBase):
        msg = "image is a text stream; pass a binary file (opened with 'rb')"
        raise ParameterError(msg)
    if isinstance(image, (str, os.PathLike)) or hasattr(image, "read"):
        name = os.fsdecode(image) if isinstance(image, (str, os.PathLike)) else str(getattr(image, "name", "input"))
        try:
            streamed = _png_source(image, name, limit)
            if streamed is not None:
                return streamed
            with warnings.catch_warnings():
                # Pillow warns past MAX_IMAGE_PIXELS and raises past twice that (handled
                # below); the warning on stderr would break the CLI's one-line contract.
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                opened = Image.open(image)
                source = None
                try:
                    # Image.open read the header only: refuse before the pixels are decoded.
                    check_pixels(*opened.size, limit, what=f"image {name!r}")
                    opened.load()
                    source = _from_pil(opened, name=name)
                    return source
                finally:
                    _release(opened, source)
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


def _png_source(image: str | os.PathLike | IO[bytes], name: str, limit: int | None) -> SourceImage | None:
    """A streamed source for an 8-bit greyscale or truecolour PNG, else None (with a file object rewound)."""
    if isinstance(image, (str, os.PathLike)):
        fp, owned = open(image, "rb"), True  # noqa: SIM115 - the source closes it
    elif hasattr(image, "seekable") and image.seekable():
        fp, owned = image, False
    else:
        return None
    start = fp.tell()
    try:
        reader = PngReader.open(fp, name)
        if reader is not None:
            _check_size(reader.width, reader.height)
            check_pixels(reader.width, reader.height, limit, what=f"image {name!r}")
    except BaseException:
        if owned:
            fp.close()
        raise
    if reader is None:
        if owned:
            fp.close()
        else:
            fp.seek(start)
        return None
    layout = Layout(reader.channels)
    return SourceImage(reader, layout, reader.icc_profile, reader.exif, reader.xmp, fp.close if owned else None)


def _release(opened: Image.Image, source: SourceImage | None) -> None:
    """Close an image this module opened, unless *source* reads its pixels.

    Pillow closes the file after loading most single-frame images; where it
    keeps it open (other frames, some TIFFs), the first frame is copied and
    the file closed.
    """
    if source is not None and source.pixels is opened:
        if getattr(opened, "fp", None) is None and not getattr(opened, "is_animated", False):
            return
        source.pixels = opened.copy()
    opened.close()


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
    if image.getexif().get(ORIENTATION, 1) not in (1, None):
        image = ImageOps.exif_transpose(image)  # a copy (only then: it copies even when upright)
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
    try:
        converted = image if mode == target else image.convert(target)
    except (ValueError, OSError) as exc:
        msg = f"cannot convert image {name!r} from mode {mode} to {target}: {exc}"
        raise InputImageError(msg) from None
    return _with_metadata(image, SourceImage(converted, layout))


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
    values = np.asarray(image)
    if values.dtype.kind == "f":
        if not np.all(np.isfinite(values)):
            msg = f"cannot encode image {name!r}: float pixels include NaN or infinity"
            raise InputImageError(msg)
        lo, hi = float(values.min()), float(values.max())
        scale = 255.0 if hi <= 1.0 else 1.0
    else:
        values = values.astype(np.int64)
        lo, hi = int(values.min()), int(values.max())
        scale = 1.0 if hi <= 255 else 255.0 / 65535.0
    if lo < 0 or hi * scale > 255.5:
        msg = f"cannot encode image {name!r}: mode {image.mode} values span {lo}..{hi}, outside an 8- or 16-bit range"
        raise InputImageError(msg)
    return np.rint(values * scale).astype(np.uint8)[:, :, None]


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
