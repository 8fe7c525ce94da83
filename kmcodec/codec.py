"""The public API: encode and decode side by side.

Data flows one way: image in -> :mod:`.inputs` -> :mod:`.quantize` ->
:mod:`.labels` -> :mod:`.container` -> bytes out, and back the other way.
Each public function validates its arguments once; the helpers trust them.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import numpy as np
from PIL import Image

from . import format as fmt
from .container import Container, Header, Made, Strip, build_container, parse_container
from .errors import KmcError, ParameterError, is_integer
from .fileio import read_bytes, write_atomic
from .format import Method
from .inputs import ImageInput, layout_mode, load_source, pillow_info
from .labels import METHOD_NAMES, decode_strip_into, encode_strip, encode_strip_best
from .quantize import quantize

BytesLike = bytes | bytearray | memoryview

T = TypeVar("T")
R = TypeVar("R")

#: Labels per strip the encoder aims for: big enough for deflate and LZMA to
#: find their repeats, small enough to keep one strip's work in cache-sized memory.
STRIP_LABELS = 1 << 20
DEFAULT_COLORS = 64


@dataclasses.dataclass(frozen=True)
class KmcInfo:
    """Facts about a .kmc file, read without decoding its pixels."""

    version: str
    width: int
    height: int
    mode: str  # L, LA, RGB or RGBA
    colors: int
    bits_per_label: int
    method: str  # stored, deflate, lzma, or mixed
    rows_per_strip: int
    strips: int
    strip_methods: list[str]
    chunks: list[dict]
    file_bytes: int
    palette: list[tuple[int, ...]]
    icc_profile: bool
    exif: bool
    xmp: bool
    seed: int | None = None
    requested_colors: int | None = None
    unique_colors: int | None = None
    iterations: int | None = None
    mse: float | None = None

    @property
    def bits_per_pixel(self) -> float:
        """File bits per image pixel, everything included."""
        return self.file_bytes * 8 / (self.width * self.height)

    @property
    def raw_bytes(self) -> int:
        """Bytes of the uncompressed image at 8 bits per channel."""
        return self.width * self.height * len(self.mode)

    @property
    def psnr(self) -> float | None:
        """PSNR in dB of the quantized image against the encoder's input (inf if exact)."""
        if self.mse is None:
            return None
        return math.inf if self.mse == 0 else 10 * math.log10(255**2 / self.mse)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["bits_per_pixel"] = self.bits_per_pixel
        d["raw_bytes"] = self.raw_bytes
        d["psnr"] = self.psnr if self.psnr is None or math.isfinite(self.psnr) else None
        d["palette"] = [list(p) for p in self.palette]
        return d


# ---------------------------------------------------------------------------
# Encoding
# ---------------------------------------------------------------------------
#: The methods ``method="auto"`` tries at each effort: cm wins on almost every
#: strip of a photo, cmm (cm with a match model) on graphics and screenshots,
#: whose repeats (text, widgets) it finds; deflate and LZMA rarely win, and
#: LZMA is by far the slowest to try, so effort 2 tries it only on strips
#: where deflate beat both.
EFFORT_METHODS = {
    1: (Method.STORED, Method.CM),
    2: (Method.STORED, Method.DEFLATE, Method.CM, Method.CMM),
    3: (Method.STORED, Method.DEFLATE, Method.LZMA, Method.CM, Method.CMM),
}
DEFAULT_EFFORT = 2


def _check_encode_args(
    colors: object, seed: object, method: object, effort: object, rows_per_strip: object
) -> tuple[Method, ...]:
    if not is_integer(colors) or not 1 <= colors <= fmt.MAX_COLORS:
        msg = f"colors must be an integer in 1..{fmt.MAX_COLORS}, not {colors!r}"
        raise ParameterError(msg)
    if not is_integer(seed) or not 0 <= seed < 2**64:
        msg = f"seed must be an integer in 0..2**64 - 1, not {seed!r}"
        raise ParameterError(msg)
    if rows_per_strip is not None and (not is_integer(rows_per_strip) or rows_per_strip < 1):
        msg = f"rows_per_strip must be a positive integer or None, not {rows_per_strip!r}"
        raise ParameterError(msg)
    if effort not in EFFORT_METHODS or isinstance(effort, bool):
        msg = f"effort must be one of {', '.join(map(str, EFFORT_METHODS))}, not {effort!r}"
        raise ParameterError(msg)
    if method == "auto":
        return EFFORT_METHODS[effort]
    names = method.split(",") if isinstance(method, str) else [None]
    if all(name in METHOD_NAMES for name in names):
        return tuple(sorted({METHOD_NAMES[name] for name in names}))
    msg = f"method must be auto, or one or more of {', '.join(METHOD_NAMES)} joined by commas; not {method!r}"
    raise ParameterError(msg)


def _code_strip(
    labels: np.ndarray, colors: int, methods: tuple[Method, ...], lzma_after_deflate: bool
) -> tuple[Method, bytes]:
    """The smallest coding of one strip among *methods* (and LZMA, if asked, where deflate won)."""
    method, data = encode_strip_best(labels, colors, methods)
    if lzma_after_deflate and method == Method.DEFLATE:
        lz = encode_strip(labels, colors, Method.LZMA)
        if len(lz) < len(data):
            return Method.LZMA, lz
    return method, data


def _in_threads(fn: Callable[[T], R], items: Iterable[T]) -> list[R]:
    """[fn(item) for item in items], strips in parallel threads (the cm kernels release the GIL).

    Results keep the order of *items*, so the output does not depend on the
    thread count; the first failing item's exception is raised.
    """
    items = list(items)
    workers = min(len(items), os.cpu_count() or 1)
    if workers <= 1:
        return [fn(item) for item in items]
    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(fn, items))


def _strip_height(width: int, height: int, rows_per_strip: int | None) -> int:
    if rows_per_strip is None:
        rows_per_strip = max(1, STRIP_LABELS // width)
    limit = max(1, fmt.MAX_STRIP_BYTES // fmt.row_bytes(width, 16))
    return min(rows_per_strip, height, limit)


def encode(
    image: ImageInput,
    colors: int = DEFAULT_COLORS,
    *,
    seed: int = 0,
    method: str = "auto",
    effort: int = DEFAULT_EFFORT,
    rows_per_strip: int | None = None,
    metadata: bool = True,
) -> bytes:
    """Encode an image as .kmc bytes with a palette of at most *colors* entries.

    Parameters
    ----------
    image : PIL.Image.Image, path, binary file or ndarray
        Arrays are uint8 of shape (H, W), (H, W, C) with C = 1 (L), 2 (LA),
        3 (RGB) or 4 (RGBA).  Pillow images of any common mode are converted
        to the nearest of those layouts; EXIF orientation is applied.
    colors : int
        Palette size k, 1 to 65536.  An image with at most k distinct colours
        keeps exactly those and round-trips bit-exact, except that fully
        transparent pixels of LA and RGBA images all decode as zeros.
    seed : int
        Seed of the k-means++ generator; the same input, options and seed
        give byte-identical output.
    method : str
        Label coding: "stored", "deflate", "lzma", "cm" (context-modelled
        range coding, the smallest on photos) or "cmm" (cm with a match
        model, the smallest on graphics and screenshots); several joined by
        commas ("deflate,cm") to keep the smallest of them per strip; "auto"
        for the set *effort* names.
    effort : {1, 2, 3}
        What "auto" tries per strip: 1 stored and cm; 2 (default) adds
        deflate and cmm, and LZMA where deflate beat the others; 3 always
        adds LZMA.
    rows_per_strip : int, optional
        Rows per independently coded strip (default: about a million labels).
    metadata : bool
        Carry the input's ICC profile, EXIF and XMP into the file.

    Returns
    -------
    bytes

    Examples
    --------
    >>> import numpy as np, kmcodec
    >>> img = np.zeros((4, 6, 3), np.uint8); img[:, 3:] = (255, 0, 0)
    >>> data = kmcodec.encode(img, colors=16)
    >>> bool((kmcodec.decode(data) == img).all())
    True
    """
    methods = _check_encode_args(colors, seed, method, effort, rows_per_strip)
    lzma_after_deflate = method == "auto" and effort == 2
    source = load_source(image)
    height, width, _ = source.pixels.shape
    q = quantize(source.pixels, int(colors), has_alpha=source.layout.has_alpha, seed=int(seed))
    k = len(q.palette)
    rps = _strip_height(width, height, rows_per_strip)
    strips = _in_threads(
        lambda top: _code_strip(q.labels[top : top + rps], k, methods, lzma_after_deflate),
        range(0, height, rps),
    )
    used = {m for m, _ in strips}
    header = Header(
        width=width,
        height=height,
        colors=k,
        rows_per_strip=rps,
        layout=source.layout,
        method=int(used.pop()) if len(used) == 1 else fmt.METHOD_MIXED,
    )
    made = Made(int(seed), int(colors), min(q.unique_colors, 2**32 - 1), q.iterations, q.mse)
    return build_container(
        header,
        q.palette.tobytes(),
        [(int(m), data) for m, data in strips],
        icc_profile=source.icc_profile if metadata else None,
        exif=source.exif if metadata else None,
        xmp=source.xmp if metadata else None,
        made=made,
    )


# ---------------------------------------------------------------------------
# Decoding
# ---------------------------------------------------------------------------
def _check_data(data: object) -> BytesLike:
    if isinstance(data, (str, os.PathLike)):
        msg = "decode() takes the file's bytes; use kmcodec.load() for a path"
        raise ParameterError(msg)
    if not isinstance(data, (bytes, bytearray, memoryview)):
        msg = f"data must be bytes-like, not {type(data).__name__}"
        raise ParameterError(msg)
    if isinstance(data, memoryview) and not data.c_contiguous:
        return data.tobytes()  # the parser reads a flat byte view
    return data


def _parse(data: object, max_pixels: int | None) -> Container:
    if max_pixels is not None and (not is_integer(max_pixels) or max_pixels < 1):
        msg = f"max_pixels must be a positive integer or None, not {max_pixels!r}"
        raise ParameterError(msg)
    return parse_container(_check_data(data), max_pixels=max_pixels)


def _decode_container(c: Container) -> np.ndarray:
    h = c.header
    channels = h.layout.channels
    palette = np.frombuffer(c.palette, dtype=np.uint8).reshape(h.colors, channels)
    out = np.empty((h.height, h.width, channels), dtype=np.uint8)

    def decode_one(strip: Strip) -> None:
        top = strip.index * h.rows_per_strip
        rows = h.strip_rows(strip.index)
        decode_strip_into(strip.data, Method(strip.method), rows, h.width, h.colors, palette, out[top : top + rows])

    _in_threads(decode_one, c.strips)
    return out


def decode(data: BytesLike, *, max_pixels: int | None = fmt.DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode .kmc bytes to an (H, W, C) uint8 array (C = 1, 2, 3 or 4 for L, LA, RGB, RGBA).

    Raises a :class:`~kmcodec.KmcError` subclass for any invalid input;
    :class:`~kmcodec.ImageTooLargeError` above *max_pixels* (default
    ``2**28``; ``None`` leaves only the format's own limit).
    """
    return _decode_container(_parse(data, max_pixels))


def decode_image(data: BytesLike, *, max_pixels: int | None = fmt.DEFAULT_MAX_PIXELS) -> Image.Image:
    """Decode .kmc bytes to a PIL image of mode L, LA, RGB or RGBA, with its metadata in ``info``."""
    c = _parse(data, max_pixels)
    pixels = _decode_container(c)
    mode = layout_mode(c.header.layout)
    image = Image.fromarray(pixels[:, :, 0] if mode == "L" else pixels, mode=mode)
    image.info.update(pillow_info(c.icc_profile, c.exif, c.xmp))
    return image


def _method_name(method: int) -> str:
    return "mixed" if method == fmt.METHOD_MIXED else Method(method).name.lower()


def read_info(source: BytesLike | str | os.PathLike, *, max_pixels: int | None = None) -> KmcInfo:
    """Read a .kmc file's header facts without decoding its pixels.

    *source* is the file's bytes or a path.  Every chunk's CRC is checked.
    """
    data = read_bytes(source) if isinstance(source, (str, os.PathLike)) else source
    c = _parse(data, max_pixels)
    h = c.header
    palette = np.frombuffer(c.palette, dtype=np.uint8).reshape(h.colors, h.layout.channels)
    made = dataclasses.asdict(c.made) if c.made else {}
    return KmcInfo(
        version=f"{c.major}.{c.minor}",
        width=h.width,
        height=h.height,
        mode=layout_mode(h.layout),
        colors=h.colors,
        bits_per_label=h.bits_per_label,
        method=_method_name(h.method),
        rows_per_strip=h.rows_per_strip,
        strips=h.strip_count,
        strip_methods=[_method_name(s.method) for s in c.strips],
        chunks=[{"type": r.type, "offset": r.offset, "length": r.length} for r in c.chunks],
        file_bytes=c.file_bytes,
        palette=[tuple(p) for p in palette.tolist()],
        icc_profile=c.icc_profile is not None,
        exif=c.exif is not None,
        xmp=c.xmp is not None,
        **made,
    )


# ---------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------
def save(path: str | os.PathLike, image: ImageInput, colors: int = DEFAULT_COLORS, **options: object) -> int:
    """Encode *image* and write it to *path* atomically (replacing any file there).

    Takes the options of :func:`encode`; returns the number of bytes written.
    """
    data = encode(image, colors, **options)
    write_atomic(path, data, overwrite=True)
    return len(data)


def load(path: str | os.PathLike, *, max_pixels: int | None = fmt.DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Read and decode the .kmc file at *path* to an (H, W, C) uint8 array."""
    return decode(read_bytes(path), max_pixels=max_pixels)


__all__ = ["KmcError", "KmcInfo", "decode", "decode_image", "encode", "load", "read_info", "save"]
