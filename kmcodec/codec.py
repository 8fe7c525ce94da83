"""The public API: encode and decode side by side.

Data flows one way: options (:mod:`.options`) and image in ->
:mod:`.inputs` -> :mod:`.quantize` (colour counts, palette) ->
:mod:`.labeller` -> :mod:`.labels` (strip coding) -> :mod:`.container` ->
bytes out, and back the other way (:func:`encode_with` is the encoder's
pipeline).  Each public function validates its arguments once; the helpers
trust them.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import io
import itertools
import math
import os
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import IO, TypeVar

import numpy as np
from PIL import Image

from . import format as fmt
from . import png, threads
from .colorspace import DEFAULT_COLORSPACE
from .container import Container, Header, Made, Strip, build_container, parse_container, stream_container
from .defaults import DEFAULT_COLORS, DEFAULT_EFFORT
from .errors import KmcError, ParameterError, TargetError, counted
from .fileio import FileAccessError, atomic_output, file_id, read_bytes, write_atomic
from .format import Layout, Method
from .inputs import ImageInput, SourceImage, layout_mode, load_source, pillow_info
from .labeller import Labeller, labeller_for
from .labels import StripCoder, decode_strip, decode_strip_into, look_up, strip_height
from .limits import DEFAULT, MaxPixels, pixel_limit
from .masking import block_weights
from .options import EncodeOptions
from .quantize import EXACT_COLORS, ColorCounts, Fit, apply_palette, fit_palette, fit_to_psnr, psnr_mse

BytesLike = bytes | bytearray | memoryview

T = TypeVar("T")
R = TypeVar("R")


@dataclasses.dataclass(frozen=True)
class KmcInfo:
    """Facts about a .kmc file, read without decoding its pixels."""

    version: str
    width: int
    height: int
    mode: str  # L, LA, RGB or RGBA
    colors: int
    bits_per_label: int
    method: str  # stored, deflate, lzma, cm, cmm, cm2d, cmx, or mixed
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
def _in_threads(fn: Callable[[T], R], items: Iterable[T]) -> list[R]:
    """[fn(item) for item in items], items in parallel threads (the kernels release the GIL).

    :func:`_ordered_in_threads`, collected: *items* is consumed in the
    calling thread a few ahead of the workers, so a lazy iterable of strips
    is never all in memory; results keep the order of *items*, so the
    output does not depend on the thread count; the first failing item's
    exception is raised.
    """
    return list(_ordered_in_threads(fn, items))


def encode(
    image: ImageInput,
    colors: int | None = None,
    *,
    seed: int = 0,
    method: str = "auto",
    effort: int = DEFAULT_EFFORT,
    rows_per_strip: int | None = None,
    metadata: bool = True,
    palette: np.ndarray | None = None,
    dither: float = 0.0,
    target_psnr: float | None = None,
    max_bytes: int | None = None,
    colorspace: str | None = None,
    rdo: float | None = None,
    masking: bool | None = None,
    max_pixels: MaxPixels = DEFAULT,
) -> bytes:
    """Encode an image as .kmc bytes with a palette of at most *colors* entries.

    Parameters
    ----------
    image : PIL.Image.Image, path, binary file or ndarray
        Arrays are uint8 of shape (H, W), (H, W, C) with C = 1 (L), 2 (LA),
        3 (RGB) or 4 (RGBA).  Pillow images of any common mode are converted
        to the nearest of those layouts; EXIF orientation is applied.
    colors, seed, method, effort, rows_per_strip, metadata, palette, dither, target_psnr, max_bytes, colorspace, rdo,
    masking
        The options, each described where it is declared, in
        :class:`~kmcodec.options.EncodeOptions`: a palette size k
        (*colors*, default 64), or a target (*target_psnr*, *max_bytes*)
        with *colors* as the largest k; label coding (*method*, *effort*);
        the labels (*dither*, *rdo*); where colours are compared
        (*colorspace*) and where their errors count most (*masking*).
        Raises :class:`~kmcodec.ParameterError` for a bad
        value or combination.
    max_pixels : int or None
        An image *file* (a path or a file object) of more pixels is refused
        with :class:`~kmcodec.ImageTooLargeError` before its pixels are
        read; not given, ``kmcodec.MAX_IMAGE_PIXELS`` as it is at call time
        (None: no limit but the format's).  Arrays and PIL images are in
        memory already and have no limit.

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
    options = EncodeOptions(
        colors=colors,
        seed=seed,
        method=method,
        effort=effort,
        rows_per_strip=rows_per_strip,
        metadata=metadata,
        palette=palette,
        dither=dither,
        target_psnr=target_psnr,
        max_bytes=max_bytes,
        colorspace=colorspace,
        rdo=rdo,
        masking=masking,
    )
    return encode_with(image, options, max_pixels=max_pixels)


def encode_with(image: ImageInput, options: EncodeOptions, *, max_pixels: MaxPixels = DEFAULT) -> bytes:
    """:func:`encode` with its options checked already, as an :class:`~kmcodec.options.EncodeOptions`.

    The pipeline: the source image, its colour counts, a palette (given,
    fitted at k, or searched for a target), a labeller, the strip coder,
    the container.  A ``max_bytes`` target drives the later stages once per
    k it tries (:func:`_largest_that_fits`).
    """
    if not isinstance(options, EncodeOptions):
        msg = f"options must be an EncodeOptions (EncodeOptions.from_mapping makes one), not {type(options).__name__}"
        raise ParameterError(msg)
    with load_source(image, max_pixels) as source:
        encoder = _Encoder(source, options)
        if options.max_bytes is not None:
            return _largest_that_fits(encoder, options.max_bytes)
        return encoder.file(encoder.palette())


class _Encoder:
    """One image on its way down the pipeline, with checked *options*.

    Built, it has counted the source's colours; :meth:`palette` (or
    :meth:`fit` at a given k) chooses a palette, and :meth:`file` labels,
    codes and wraps the image with one.  The pixels are read a strip at a
    time, once or twice to count the colours and once per file; no
    whole-image copy is made besides the source.
    """

    def __init__(self, source: SourceImage, options: EncodeOptions) -> None:
        self.source, self.options = source, options
        height, width, channels = source.shape
        if options.palette is not None:
            _check_palette(options.palette, channels)
        self.rows = strip_height(width, height, options.rows_per_strip)
        blocks = functools.partial(source.blocks, self.rows)
        self.counted = ColorCounts.of(blocks, channels, source.layout.has_alpha, height * width, masking=options.masked)

    def palette(self) -> Fit:
        """The palette the options ask for: the given one, the smallest that reaches target_psnr, or one of k."""
        o = self.options
        if o.palette is not None:
            return apply_palette(self.counted, o.palette, colorspace=o.fit_colorspace)
        if o.target_psnr is not None:
            fit = fit_to_psnr(self.counted, o.target_psnr, o.k, seed=o.seed, colorspace=o.fit_colorspace)
            _check_reached(fit, o.target_psnr)
            return fit
        return self.fit(o.k)

    def fit(self, k: int) -> Fit:
        """A palette of at most *k* entries fitted by k-means."""
        return fit_palette(self.counted, k, seed=self.options.seed, colorspace=self.options.fit_colorspace)

    def file(self, fit: Fit) -> bytes:
        """The .kmc file of the image labelled with *fit*'s palette."""
        o, source = self.options, self.source
        height, width, channels = source.shape
        labeller = labeller_for(o, self.counted, fit, width)
        strips, error = self._code(labeller, StripCoder.of(len(fit.palette), o.method, o.effort))
        used = {method for method, _ in strips}
        header = Header(
            width=width,
            height=height,
            colors=len(fit.palette),
            rows_per_strip=self.rows,
            layout=source.layout,
            method=int(used.pop()) if len(used) == 1 else fmt.METHOD_MIXED,
        )
        mse = fit.mse if error is None else error / (height * width * channels)
        requested = len(o.palette) if o.palette is not None else o.k
        made = Made(o.seed, requested, min(fit.unique_colors, 2**32 - 1), fit.iterations, mse)
        return build_container(
            header,
            fit.palette.tobytes(),
            [(int(method), data) for method, data in strips],
            icc_profile=source.icc_profile if o.metadata else None,
            exif=source.exif if o.metadata else None,
            xmp=source.xmp if o.metadata else None,
            made=made,
        )

    def _code(self, labeller: Labeller, coder: StripCoder) -> tuple[list[tuple[Method, bytes]], int | None]:
        """Each strip labelled and coded, in worker threads; and the labels' squared error (None: the fit's)."""
        blocks = self.source.blocks(self.rows)
        if labeller.in_order:  # labelled here, top to bottom; coded in the threads
            coded = _in_threads(lambda labelled: (coder(labelled[0]), labelled[1]), map(labeller.label, blocks))
        else:
            coded = _in_threads(lambda block: _label_and_code(labeller, coder, block), blocks)
        errors = [error for _, error in coded]
        return [strip for strip, _ in coded], None if None in errors else sum(errors)


def _label_and_code(
    labeller: Labeller, coder: StripCoder, block: np.ndarray
) -> tuple[tuple[Method, bytes], int | None]:
    labels, error = labeller.label(block)
    return coder(labels), error


def _largest_that_fits(encoder: _Encoder, max_bytes: int) -> bytes:
    """The file of the largest k <= the options' k that fits in *max_bytes*.

    An input of at most ``min(k, EXACT_COLORS)`` distinct colours is tried
    exact first (as :func:`~kmcodec.quantize.fit_to_psnr` keeps it).
    Otherwise k doubles from 1 until a file does not fit (large k are slow
    to fit and rarely fit a budget), then bisection between the last fit and
    that miss.  File size is not strictly monotone in k, so the guarantee is
    local: the file returned fits and the one at k + 1 (if allowed) does not.
    """
    files: dict[int, bytes] = {}

    def fits(k: int) -> bool:
        if k not in files:
            files[k] = encoder.file(encoder.fit(k))
        return len(files[k]) <= max_bytes

    colors = encoder.options.k
    unique = len(encoder.counted.distinct)
    if unique <= min(colors, EXACT_COLORS) and fits(unique):
        return files[unique]
    colors = min(colors, unique)  # k = U is exact; larger k give the same palette
    if not fits(1):
        msg = f"even a 1-colour palette takes {len(files[1]):,} bytes, more than max_bytes = {max_bytes:,}"
        raise TargetError(msg)
    hit, miss = 1, 2
    while miss <= colors and fits(miss):
        hit, miss = miss, 2 * miss
    if miss > colors:
        if hit == colors or fits(colors):
            return files[colors]
        miss = colors
    while miss - hit > 1:
        mid = (hit + miss) // 2
        if fits(mid):
            hit = mid
        else:
            miss = mid
    return files[hit]


def _check_reached(fit: Fit, target: float) -> None:
    """Raise :class:`~kmcodec.TargetError` if *fit*, the best :func:`fit_to_psnr` allowed, misses *target* dB."""
    if fit.mse <= psnr_mse(target):
        return
    k = len(fit.palette)
    reached = math.floor(10 * math.log10(255**2 / fit.mse) * 100) / 100  # down: never shown as the target
    colours = f"{k} colour, the most allowed, reaches" if k == 1 else f"{k} colours, the most allowed, reach"
    if math.isinf(target):
        needs = f"not lossless, which needs all {fit.unique_colors:,} colours"
    else:
        needs = f"short of the {target:g} dB target"
    msg = f"even {colours} only {reached:.2f} dB PSNR, {needs}"
    raise TargetError(msg)


def _check_palette(palette: np.ndarray, channels: int) -> None:
    """Refuse a given *palette* (checked by the options already) whose channels are not the image's."""
    if palette.shape[1] != channels:
        palette_mode, image_mode = layout_mode(Layout(palette.shape[1])), layout_mode(Layout(channels))
        msg = (
            f"the palette is {palette_mode} ({counted(palette.shape[1], 'channel')}), "
            f"the image {image_mode} ({counted(channels, 'channel')}): they must match"
        )
        raise ParameterError(msg)


def shared_palette(
    images: Iterable[ImageInput],
    colors: int = DEFAULT_COLORS,
    *,
    seed: int = 0,
    colorspace: str | None = DEFAULT_COLORSPACE,
    masking: bool | None = None,
    max_pixels: MaxPixels = DEFAULT,
) -> np.ndarray:
    """One palette of at most *colors* entries fitted to all *images* together, as (k, C) uint8.

    For sets that should share colours (sprite sheets, animation frames, a
    catalogue): pass it to :func:`encode` as ``palette=``.  Every image
    must have the same layout (L, LA, RGB or RGBA).  The images are read
    twice (three times with *masking*), one at a time, so the set need not
    fit in memory.  *colorspace* is as for :func:`encode` (pass the same one
    there to map with it), but None is "srgb", the space a given palette
    maps in by default.  *masking* is as for :func:`encode`, each image
    weighed alone; None: on unless the fit is in "srgb", as ``encode``'s is
    for a *colorspace* given.  ``colorspace="oklrab"`` then
    ``encode(..., palette=p, colorspace="oklrab")`` is the fit for the eye of
    ``kmc encode --shared-palette``.  *max_pixels* as for :func:`encode`, for
    each image file.

    >>> import numpy as np, kmcodec
    >>> a = np.zeros((2, 2, 3), np.uint8); b = np.full((2, 2, 3), 200, np.uint8)
    >>> kmcodec.shared_palette([a, b], colors=4).tolist()
    [[0, 0, 0], [200, 200, 200]]
    """
    space = DEFAULT_COLORSPACE if colorspace is None else colorspace
    options = EncodeOptions(colors=colors, seed=seed, colorspace=space, masking=masking)
    return shared_fit(images, options, max_pixels).palette


def shared_fit(images: Iterable[ImageInput], options: EncodeOptions, max_pixels: MaxPixels = DEFAULT) -> Fit:
    """:func:`shared_palette`'s fit, whole, of *options*' k and seed, in their fit colour space, masked where
    they mask: its ``mse`` is 0 where the palette holds every colour of the set."""
    one_image = (str, bytes, bytearray, memoryview, os.PathLike, Image.Image)
    if isinstance(images, one_image) or hasattr(images, "read") or (isinstance(images, np.ndarray) and images.ndim < 4):
        msg = "images is one image; pass a list of images"
        raise ParameterError(msg)
    if not isinstance(images, Iterable):
        msg = f"images must be a list of images, not {type(images).__name__}"
        raise ParameterError(msg)
    images = list(images)
    if not images:
        msg = "shared_palette needs at least one image"
        raise ParameterError(msg)
    with load_source(images[0], max_pixels) as first:
        layout = first.layout

    def each_image() -> Iterator[Iterator[np.ndarray]]:
        for index, image in enumerate(images):
            with load_source(image, max_pixels) as source:
                if source.layout != layout:
                    modes = layout_mode(source.layout), layout_mode(layout)
                    msg = f"image {index} is {modes[0]}, the first {modes[1]}: a shared palette needs one layout"
                    raise ParameterError(msg)
                height, width, _ = source.shape
                yield source.blocks(strip_height(width, height, None))

    def blocks() -> Iterator[np.ndarray]:
        for image_blocks in each_image():
            yield from image_blocks

    def weighed() -> Iterator[tuple[np.ndarray, np.ndarray]]:
        for image_blocks in each_image():
            yield from block_weights(image_blocks)

    counted = ColorCounts.of(blocks, layout.channels, layout.has_alpha, weighed=weighed if options.masked else None)
    return fit_palette(counted, options.k, seed=options.seed, colorspace=options.fit_colorspace)


def read_palette(source: BytesLike | str | os.PathLike) -> np.ndarray:
    """The palette of a .kmc file (bytes or path) as (k, C) uint8, for :func:`encode`'s ``palette=``."""
    info = read_info(source)
    return np.array(info.palette, dtype=np.uint8).reshape(info.colors, len(info.mode))


# ---------------------------------------------------------------------------
# Decoding
# ---------------------------------------------------------------------------
def _check_path(path: object, name: str) -> None:
    """Raise :class:`~kmcodec.ParameterError` unless *path* is a str or os.PathLike that a file can have as name."""
    if not isinstance(path, (str, os.PathLike)):
        msg = f"{name} must be a str or os.PathLike, not {type(path).__name__}"
        raise ParameterError(msg)
    if "\0" in os.fsdecode(path):
        msg = f"{name} {os.fsdecode(path)!r} contains a NUL character, which no file name can"
        raise ParameterError(msg)


def _check_binary(stream: object, name: str, mode: str) -> None:
    """Raise :class:`~kmcodec.ParameterError` if the file object *stream* is a text stream: .kmc and PNG are bytes."""
    if isinstance(stream, io.TextIOBase):
        msg = f"{name} is a text stream; pass a binary file (opened with {mode!r})"
        raise ParameterError(msg)


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


def _parse(data: object, max_pixels: MaxPixels) -> Container:
    return parse_container(_check_data(data), max_pixels=pixel_limit(max_pixels))


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


def decode(data: BytesLike, *, max_pixels: MaxPixels = DEFAULT) -> np.ndarray:
    """Decode .kmc bytes to an (H, W, C) uint8 array (C = 1, 2, 3 or 4 for L, LA, RGB, RGBA).

    Raises a :class:`~kmcodec.KmcError` subclass for any invalid input;
    :class:`~kmcodec.ImageTooLargeError` above *max_pixels* pixels, before
    allocating.  Not given, the limit is ``kmcodec.MAX_IMAGE_PIXELS`` as it
    is at call time (``2**28`` unless the caller changed it); ``None``
    leaves only the format's own limit.

    Examples
    --------
    >>> import numpy as np, kmcodec
    >>> pixels = kmcodec.decode(kmcodec.encode(np.full((2, 3), 7, np.uint8)))
    >>> pixels.shape, pixels.dtype.name, int(pixels.max())
    ((2, 3, 1), 'uint8', 7)
    """
    return _decode_container(_parse(data, max_pixels))


def decode_image(data: BytesLike, *, max_pixels: MaxPixels = DEFAULT) -> Image.Image:
    """Decode .kmc bytes to a PIL image of mode L, LA, RGB or RGBA, with its metadata in ``info``.

    *max_pixels* as for :func:`decode`.

    Examples
    --------
    >>> import numpy as np, kmcodec
    >>> image = kmcodec.decode_image(kmcodec.encode(np.zeros((2, 3, 4), np.uint8)))
    >>> image.mode, image.size
    ('RGBA', (3, 2))
    """
    c = _parse(data, max_pixels)
    pixels = _decode_container(c)
    mode = layout_mode(c.header.layout)
    image = Image.fromarray(pixels[:, :, 0] if mode == "L" else pixels, mode=mode)
    image.info.update(pillow_info(c.icc_profile, c.exif, c.xmp))
    return image


# ---------------------------------------------------------------------------
# Decoding strip by strip
# ---------------------------------------------------------------------------
#: Strips decoded ahead of the consumer, per worker thread: enough to keep the
#: workers busy while the consumer writes, few enough to bound memory.
STRIPS_AHEAD_PER_WORKER = 2


_END = object()


def _ordered_in_threads(fn: Callable[[T], R], items: Iterable[T]) -> Iterator[R]:
    """Yield fn(item) for each item in order, running a few items ahead in threads.

    Lazy: at most ``workers * STRIPS_AHEAD_PER_WORKER`` results exist
    before the consumer takes them, and *items* is advanced no further than
    that.  An exception from advancing *items* is raised after the results
    of the items before it.  One item, or one thread, runs in the calling
    thread.
    """
    items = iter(items)
    first = next(items, _END)
    if first is _END:
        return
    try:
        second = next(items, _END)
    except Exception:
        yield fn(first)
        raise
    if second is _END:  # one strip: no threads to start
        yield fn(first)
        return
    items = itertools.chain((first, second), items)
    workers = threads.count()
    if workers <= 1:
        yield from map(fn, items)
        return
    with ThreadPoolExecutor(workers) as pool:
        pending: collections.deque[Future[R]] = collections.deque()
        try:
            while True:
                try:
                    item = next(items)
                except StopIteration:
                    break
                except Exception:
                    while pending:
                        yield threads.result(pending.popleft())
                    raise
                pending.append(pool.submit(fn, item))
                if len(pending) >= workers * STRIPS_AHEAD_PER_WORKER:
                    yield threads.result(pending.popleft())
            while pending:
                yield threads.result(pending.popleft())
        finally:
            for future in pending:
                future.cancel()


class StripReader:
    """A .kmc file decoded strip by strip, from :func:`open_strips`.

    The image's facts are attributes, read and checked on opening; the rows
    come from iterating, one strip at a time, top to bottom.  The whole file
    is checked on the way (every CRC, the chunk order, DONE), so a fault
    after the first strip raises from the iteration once the strips before
    it were handed out: a caller that must not act on a damaged file keeps
    what it gets until the iteration ends.

    Attributes
    ----------
    width, height : int
    mode : str
        L, LA, RGB or RGBA.
    palette : ndarray, shape (colors, channels), uint8
    rows_per_strip : int
    icc_profile, exif, xmp : bytes or None
        The metadata chunks that come before the first strip (where
        kmcodec's encoder writes them; later ones are not reported).
    """

    def __init__(self, source: BytesLike | str | os.PathLike | IO[bytes], max_pixels: MaxPixels) -> None:
        limit = pixel_limit(max_pixels)
        self._file = None
        self._stream: IO[bytes] | None = None  # the file read, for decode_to_png's same-file check
        if isinstance(source, (str, os.PathLike)):
            _check_path(source, "source")
            try:
                self._file = source = open(source, "rb")  # noqa: SIM115 (closed by close())
            except OSError as exc:
                msg = f"cannot read {os.fsdecode(source)!r}: {exc.strerror or exc}"
                raise FileAccessError(msg) from None
        elif not hasattr(source, "read"):
            source = _check_data(source)
        else:
            _check_binary(source, "source", "rb")
        if hasattr(source, "read") and not source.seekable():
            source = source.read()  # a pipe: the parser needs the file's size first
        if hasattr(source, "read"):
            self._stream = source
        try:
            prelude, self._strips = stream_container(source, max_pixels=limit)
        except BaseException:
            self.close()
            raise
        h = self._header = prelude.header
        self.width, self.height, self.rows_per_strip = h.width, h.height, h.rows_per_strip
        self.mode = layout_mode(h.layout)
        self.palette = np.frombuffer(prelude.palette, dtype=np.uint8).reshape(h.colors, h.layout.channels)
        self.icc_profile, self.exif, self.xmp = prelude.icc_profile, prelude.exif, prelude.xmp
        self._iterated = False

    def _labels(self, strip: Strip) -> tuple[int, np.ndarray]:
        h = self._header
        rows = h.strip_rows(strip.index)
        return strip.index * h.rows_per_strip, decode_strip(strip.data, Method(strip.method), rows, h.width, h.colors)

    def labels(self) -> Iterator[tuple[int, np.ndarray]]:
        """Yield (top row, labels) per strip: labels (rows, width), uint8 for up to 256 colours, else uint16.

        A reader goes through its file once: iterating it a second time
        (this or the pixels) raises :class:`~kmcodec.ParameterError`.
        """
        if self._iterated:
            msg = "a StripReader goes through its file once: open the file again to decode it again"
            raise ParameterError(msg)
        self._iterated = True
        try:
            yield from _ordered_in_threads(self._labels, self._strips)
        except OSError as exc:  # the file could not be read on
            msg = f"cannot read the .kmc file: {exc.strerror or exc}"
            raise FileAccessError(msg) from None
        finally:
            self.close()

    def __iter__(self) -> Iterator[tuple[int, np.ndarray]]:
        """Yield (top row, pixels) per strip: pixels (rows, width, channels) uint8."""
        for top, labels in self.labels():
            yield top, look_up(self.palette, labels)

    def close(self) -> None:
        """Close the file this reader opened (a caller's file object is left open)."""
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> StripReader:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def open_strips(source: BytesLike | str | os.PathLike | IO[bytes], *, max_pixels: MaxPixels = DEFAULT) -> StripReader:
    """Open a .kmc file for decoding strip by strip, without ever holding the whole image.

    *source* is the file's bytes, a path, or a binary file object at the
    file's start (one that cannot seek, a pipe, is read whole first).  Memory is bounded by a few strips (kmcodec writes
    strips of about a million pixels; the format allows up to 2**27) plus
    one compressed strip, whatever the image's size.  *max_pixels* as for
    :func:`decode`.

    Examples
    --------
    >>> import numpy as np, kmcodec
    >>> data = kmcodec.encode(np.zeros((300, 4, 3), np.uint8), rows_per_strip=128)
    >>> with kmcodec.open_strips(data) as reader:
    ...     print(reader.width, reader.height, reader.mode)
    ...     for top, pixels in reader:
    ...         print(top, pixels.shape)
    4 300 RGB
    0 (128, 4, 3)
    128 (128, 4, 3)
    256 (44, 4, 3)
    """
    return StripReader(source, max_pixels)


#: PNG colour type per layout when the palette does not go into an indexed PNG.
_PNG_COLOUR = {"L": png.GREY, "LA": png.GREY_ALPHA, "RGB": png.TRUECOLOUR, "RGBA": png.TRUECOLOUR_ALPHA}


def decode_to_png(
    source: BytesLike | str | os.PathLike | IO[bytes] | StripReader,
    dest: str | os.PathLike | IO[bytes],
    *,
    overwrite: bool = True,
    max_pixels: MaxPixels = DEFAULT,
) -> int:
    """Decode a .kmc file to a PNG strip by strip, never holding the whole image.

    RGB and RGBA images of at most 256 colours become indexed PNGs (PLTE,
    and tRNS for alpha) whose indices are the file's labels, at 1, 2, 4 or
    8 bits; others, and all L and LA images, 8-bit greyscale or truecolour
    PNGs.  The ICC profile, EXIF and XMP go into iCCP, eXIf and iTXt chunks.
    Either way the PNG decodes to exactly the pixels of :func:`decode`.

    Parameters
    ----------
    source : bytes-like, path, binary file object or StripReader
        As for :func:`open_strips`, or a reader it returned (not yet iterated).
    dest : path or binary file object
        A path is written atomically (a temporary file beside it, renamed
        when complete; removed on any failure); an existing file is replaced
        only if *overwrite*, and never the file *source* reads
        (:class:`~kmcodec.ParameterError`, before anything is read).  A file
        object is written sequentially.
    max_pixels : int or None
        As for :func:`decode`.

    Returns
    -------
    int
        Bytes written.
    """
    if isinstance(dest, (str, os.PathLike)):
        _check_path(dest, "dest")
        _refuse_same_file(dest, source._stream if isinstance(source, StripReader) else source)
    elif hasattr(dest, "write"):
        _check_binary(dest, "dest", "wb")
    else:
        msg = f"dest must be a path or a binary file object, not {type(dest).__name__}"
        raise ParameterError(msg)
    reader = source if isinstance(source, StripReader) else open_strips(source, max_pixels=max_pixels)
    with reader:
        if isinstance(dest, (str, os.PathLike)):
            with atomic_output(dest, overwrite=overwrite) as fp:
                return _write_png(reader, fp)
        return _write_png(reader, dest)


def _write_png(reader: StripReader, fp: IO[bytes]) -> int:
    indexed = reader.mode in ("RGB", "RGBA") and len(reader.palette) <= 256
    writer = png.PngWriter(
        fp,
        reader.width,
        reader.height,
        png.INDEXED if indexed else _PNG_COLOUR[reader.mode],
        palette=reader.palette if indexed else None,
        icc_profile=reader.icc_profile,
        exif=reader.exif,
        xmp=reader.xmp,
    )
    for _, rows in reader.labels() if indexed else reader:
        writer.write(rows)
    writer.close()
    return writer.bytes_written


def _method_name(method: int) -> str:
    return "mixed" if method == fmt.METHOD_MIXED else Method(method).name.lower()


def read_info(source: BytesLike | str | os.PathLike, *, max_pixels: int | None = None) -> KmcInfo:
    """Read a .kmc file's header facts without decoding its pixels.

    *source* is the file's bytes or a path.  Every chunk's CRC is checked.
    Nothing grows with the image's size, so there is no pixel limit unless
    *max_pixels* sets one.

    Examples
    --------
    >>> import numpy as np, kmcodec
    >>> img = np.zeros((4, 6, 3), np.uint8); img[:, 3:] = (255, 0, 0)
    >>> info = kmcodec.read_info(kmcodec.encode(img, colors=16))
    >>> info.width, info.height, info.mode, info.palette
    (6, 4, 'RGB', [(0, 0, 0), (255, 0, 0)])
    """
    if isinstance(source, (str, os.PathLike)):
        _check_path(source, "source")
        source = read_bytes(source)
    c = _parse(source, max_pixels)
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
def save(path: str | os.PathLike, image: ImageInput, colors: int | None = None, **options: object) -> int:
    """Encode *image* and write it to *path* atomically (replacing any file there).

    Takes the options of :func:`encode`; returns the number of bytes written.
    Raises :class:`~kmcodec.ParameterError`, before any work, if *path* is
    the file *image* is read from (a path or a file object).

    Examples
    --------
    >>> import os, tempfile, numpy as np, kmcodec
    >>> path = os.path.join(tempfile.mkdtemp(), "grey.kmc")
    >>> kmcodec.save(path, np.full((3, 5), 128, np.uint8), colors=2) == os.path.getsize(path)
    True
    """
    _check_path(path, "path")
    _refuse_same_file(path, image)
    data = encode(image, colors, **options)
    write_atomic(path, data, overwrite=True)
    return len(data)


def _refuse_same_file(output: str | os.PathLike, source: object) -> None:
    """Raise :class:`~kmcodec.ParameterError` if the path *output* is the file *source* reads, even through links.

    Checked before any work: writing *output* would destroy the input, and
    no ``overwrite`` allows that (``kmc`` refuses it the same way).
    """
    output_id = file_id(output)
    if output_id is None or output_id != file_id(source):
        return
    name = os.fsdecode(source) if isinstance(source, (str, os.PathLike)) else getattr(source, "name", None)
    input_named = f"the input {os.fsdecode(name)!r}" if isinstance(name, (str, bytes)) else "the input file"
    msg = f"{os.fsdecode(output)!r} is the same file as {input_named}: writing it would destroy the input"
    raise ParameterError(msg)


def load(path: str | os.PathLike, *, max_pixels: MaxPixels = DEFAULT) -> np.ndarray:
    """Read and decode the .kmc file at *path* to an (H, W, C) uint8 array (*max_pixels* as for :func:`decode`).

    Examples
    --------
    >>> import os, tempfile, numpy as np, kmcodec
    >>> path = os.path.join(tempfile.mkdtemp(), "grey.kmc")
    >>> _ = kmcodec.save(path, np.full((3, 5), 128, np.uint8))
    >>> kmcodec.load(path)[:, :, 0].tolist()[0]
    [128, 128, 128, 128, 128]
    """
    if isinstance(path, (bytes, bytearray, memoryview)):
        msg = "load() takes a path; use kmcodec.decode() for the file's bytes"
        raise ParameterError(msg)
    _check_path(path, "path")
    return decode(read_bytes(path), max_pixels=max_pixels)


__all__ = [
    "KmcError",
    "KmcInfo",
    "StripReader",
    "decode",
    "decode_image",
    "decode_to_png",
    "encode",
    "encode_with",
    "load",
    "open_strips",
    "read_info",
    "read_palette",
    "save",
    "shared_palette",
]
