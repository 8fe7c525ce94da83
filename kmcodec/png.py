"""Streaming PNG: a writer (rows in, a PNG file out) and a reader, never the whole image in memory.

Only what decoding a .kmc file needs (PNG, ISO/IEC 15948:2003 and the W3C
Third Edition): 8-bit greyscale, greyscale with alpha, truecolour and
truecolour with alpha, and indexed colour at 1, 2, 4 or 8 bits with a PLTE
and, for transparency, a tRNS chunk; iCCP, eXIf and XMP (iTXt) metadata.
Not interlaced.

The image data is one zlib stream fed row block by row block and cut into
IDAT chunks of at most :data:`IDAT_BYTES`, so memory is bounded by a block,
not the image.  Indexed rows are written unfiltered (filter type 0, what the
PNG specification recommends for palette images); other rows get the
filter, of the five (§9.2), whose output has the smallest sum of absolute
values read as signed bytes, the heuristic of libpng and Pillow.
"""

from __future__ import annotations

import queue
import threading
import weakref
import zlib
from collections.abc import Iterator
from typing import IO, NoReturn, TypeVar

import numpy as np

from . import _kernels
from .errors import InputImageError, ParameterError
from .fileio import write_all

T = TypeVar("T")

SIGNATURE = b"\x89PNG\r\n\x1a\n"
#: Colour types (PNG §6.1).
GREY, TRUECOLOUR, INDEXED, GREY_ALPHA, TRUECOLOUR_ALPHA = 0, 2, 3, 4, 6
#: Channels per pixel of each colour type.
CHANNELS = {GREY: 1, TRUECOLOUR: 3, INDEXED: 1, GREY_ALPHA: 2, TRUECOLOUR_ALPHA: 4}
#: Compressed bytes gathered before an IDAT chunk is written: large enough that
#: the 12 bytes of chunk framing do not matter, small enough to stay cheap.
IDAT_BYTES = 1 << 18
#: Raw bytes filtered at a time (whole rows, at least one): choosing a filter
#: takes about 20 bytes of scratch per byte, so this keeps it near 1 MiB.
FILTER_BLOCK_BYTES = 1 << 16
#: zlib level: Pillow's default for PNG (zlib's own default).
ZLIB_LEVEL = 6


def _chunk(chunk_type: bytes, payload: bytes) -> bytes:
    """One PNG chunk (§5.3): length, type, data, CRC-32 over type and data."""
    crc = zlib.crc32(payload, zlib.crc32(chunk_type))
    return len(payload).to_bytes(4, "big") + chunk_type + payload + crc.to_bytes(4, "big")


#: A filtered byte's cost in the filter choice: its distance from zero read as a signed byte.
_COST = np.minimum(np.arange(256), 256 - np.arange(256)).astype(np.uint8)


def _filter_rows(rows: np.ndarray, previous: np.ndarray, bpp: int) -> np.ndarray:
    """Filter (h, n) raw rows with the best of the five filters per row; return (h, 1 + n) filtered rows.

    *previous* is the raw row above the first (zeros for the image's top row);
    *bpp* the bytes per complete pixel.  Filters act on raw bytes (§9.2), so
    all rows are filtered at once; the scratch is about 20 bytes per byte.
    """
    h, n = rows.shape
    x = rows.astype(np.int16)
    b = np.concatenate([previous[None].astype(np.int16), x[:-1]])  # the byte above
    a = np.zeros_like(x)  # the byte one pixel to the left
    a[:, bpp:] = x[:, :-bpp]
    c = np.zeros_like(x)  # the byte above that one
    c[:, bpp:] = b[:, :-bpp]
    # Paeth (§9.4): p = a + b - c, and the distances of p from a, b and c.
    pa, pb, pc = np.abs(b - c), np.abs(a - c), np.abs(a + b - 2 * c)
    paeth = np.where((pa <= pb) & (pa <= pc), a, np.where(pb <= pc, b, c))
    del pa, pb, pc
    out = np.empty((5, h, 1 + n), dtype=np.uint8)
    out[:, :, 0] = np.arange(5, dtype=np.uint8)[:, None]
    for kind, predictor in enumerate((None, a, b, (a + b) >> 1, paeth)):
        out[kind, :, 1:] = x if predictor is None else x - predictor  # wraps modulo 256
    best = _COST[out[:, :, 1:]].sum(axis=2, dtype=np.int64).argmin(axis=0)
    return out[best, np.arange(h)]


class PngWriter:
    """Write a PNG to *fp* block of rows by block of rows.

    Parameters
    ----------
    fp : binary file object
        Written sequentially; never sought.
    width, height : int
    colour_type : int
        :data:`GREY`, :data:`GREY_ALPHA`, :data:`TRUECOLOUR`,
        :data:`TRUECOLOUR_ALPHA` (8 bits per sample) or :data:`INDEXED`.
    palette : ndarray, optional
        For :data:`INDEXED`: (k, 3) or (k, 4) uint8, k <= 256; a fourth
        column is the alpha, written as tRNS (trailing opaque entries
        dropped).  The bit depth is the smallest of 1, 2, 4, 8 that holds k.
    icc_profile, exif, xmp : bytes, optional
        Written as iCCP, eXIf (TIFF header first, no ``Exif\\0\\0``) and an
        iTXt chunk with keyword ``XML:com.adobe.xmp``.

    Rows go in through :meth:`write` as (h, width, channels) uint8 arrays,
    or (h, width) indices for :data:`INDEXED`; :meth:`close` ends the file
    and checks that *height* rows came.
    """

    def __init__(
        self,
        fp: IO[bytes],
        width: int,
        height: int,
        colour_type: int,
        *,
        palette: np.ndarray | None = None,
        icc_profile: bytes | None = None,
        exif: bytes | None = None,
        xmp: bytes | None = None,
    ) -> None:
        if not (1 <= width < 2**31 and 1 <= height < 2**31) or colour_type not in CHANNELS:
            msg = f"PNG cannot hold {width} x {height} pixels of colour type {colour_type}"
            raise ParameterError(msg)
        self._fp = fp
        self.width, self.height, self.colour_type = width, height, colour_type
        self.bit_depth = 8
        if colour_type == INDEXED:
            if palette is None or not 1 <= len(palette) <= 256 or palette.shape[1] not in (3, 4):
                msg = "an indexed PNG needs a (k, 3) or (k, 4) palette with k <= 256"
                raise ParameterError(msg)
            self.bit_depth = next(d for d in (1, 2, 4, 8) if len(palette) <= 1 << d)
        self._bpp = CHANNELS[colour_type]  # bytes per pixel (at least one, for filtering)
        self._previous = np.zeros(width * self._bpp, dtype=np.uint8)
        self._rows = 0
        self._zlib = zlib.compressobj(ZLIB_LEVEL)
        self._pending: list[bytes] = []
        self._pending_bytes = 0
        self.bytes_written = 0
        ihdr = b"".join(
            (width.to_bytes(4, "big"), height.to_bytes(4, "big"), bytes((self.bit_depth, colour_type, 0, 0, 0)))
        )
        head = [SIGNATURE, _chunk(b"IHDR", ihdr)]
        if icc_profile:
            head.append(_chunk(b"iCCP", b"ICC profile\x00\x00" + zlib.compress(icc_profile)))
        if exif:
            head.append(_chunk(b"eXIf", exif))
        if xmp:
            head.append(_chunk(b"iTXt", b"XML:com.adobe.xmp\x00\x00\x00\x00\x00" + xmp))
        if colour_type == INDEXED:
            head.append(_chunk(b"PLTE", palette[:, :3].tobytes()))
            if palette.shape[1] == 4:
                alpha = palette[:, 3]
                opaque_tail = np.flatnonzero(alpha != 255)
                if len(opaque_tail):
                    head.append(_chunk(b"tRNS", alpha[: opaque_tail[-1] + 1].tobytes()))
        self._write(b"".join(head))

    def _write(self, data: bytes) -> None:
        write_all(self._fp, data)
        self.bytes_written += len(data)

    def _flush_idat(self) -> None:
        if self._pending:
            self._write(_chunk(b"IDAT", b"".join(self._pending)))
            self._pending, self._pending_bytes = [], 0

    def _compress(self, data: bytes) -> None:
        out = self._zlib.compress(data)
        if out:
            self._pending.append(out)
            self._pending_bytes += len(out)
            if self._pending_bytes >= IDAT_BYTES:
                self._flush_idat()

    def write(self, rows: np.ndarray) -> None:
        """Append rows: (h, width, channels) uint8, or (h, width) palette indices for an indexed PNG."""
        h = rows.shape[0]
        if self._rows + h > self.height:
            msg = f"{self._rows + h} rows written to a PNG of height {self.height}"
            raise ParameterError(msg)
        if self.colour_type == INDEXED:
            filtered = np.zeros((h, 1 + (self.width * self.bit_depth + 7) // 8), dtype=np.uint8)  # filter type 0
            if self.bit_depth == 8:
                filtered[:, 1:] = rows
            else:
                per_byte = 8 // self.bit_depth
                padded = np.zeros((h, -(-self.width // per_byte) * per_byte), dtype=np.uint8)
                padded[:, : self.width] = rows
                shifts = np.arange(8 - self.bit_depth, -1, -self.bit_depth, dtype=np.uint8)
                filtered[:, 1:] = np.bitwise_or.reduce(padded.reshape(h, -1, per_byte) << shifts, axis=2)
            self._compress(filtered.tobytes())
        else:
            raw = np.ascontiguousarray(rows, dtype=np.uint8).reshape(h, self.width * self._bpp)
            step = max(1, FILTER_BLOCK_BYTES // raw.shape[1])
            for top in range(0, h, step):
                self._compress(_filter_rows(raw[top : top + step], self._previous, self._bpp).tobytes())
                self._previous = raw[min(top + step, h) - 1]
        self._rows += h

    def close(self) -> None:
        """Finish the zlib stream, write the last IDAT and IEND."""
        if self._rows != self.height:
            msg = f"PNG of height {self.height} closed after {self._rows} rows"
            raise ParameterError(msg)
        self._pending.append(self._zlib.flush())
        self._flush_idat()
        self._write(_chunk(b"IEND", b""))


# ---------------------------------------------------------------------------
# Reading
# ---------------------------------------------------------------------------
#: Compressed bytes read from the file at a time.
READ_BYTES = 1 << 16
#: Colour type -> channels of the layouts the reader streams (8 bits, no palette).
STREAMED = {GREY: 1, GREY_ALPHA: 2, TRUECOLOUR: 3, TRUECOLOUR_ALPHA: 4}
#: The name of the thread that inflates the next block of rows.
READER_THREAD = "kmcodec-png-inflate"


class PngReader:
    """Read an 8-bit, non-interlaced greyscale or truecolour PNG a block of rows at a time.

    The mirror of :class:`PngWriter` for the encoder's input: the image is
    inflated and unfiltered as it is read, so memory is bounded by a block,
    and each pass (:meth:`blocks`) reads the file again from its first IDAT.
    :meth:`open` returns None for anything else PNG can hold (other bit
    depths, palettes, tRNS, interlacing, an EXIF orientation to apply):
    Pillow reads those.  Metadata is read as Pillow reads it: the iCCP
    profile, the eXIf chunk and the ``XML:com.adobe.xmp`` iTXt text, from
    anywhere in the file.

    Raises :class:`~kmcodec.InputImageError` for a damaged file (bad CRC,
    truncated or corrupt zlib data, unknown filter type).
    """

    def __init__(self, fp: IO[bytes], name: str) -> None:
        self._fp = fp
        self.name = name
        self.icc_profile = self.exif = self.xmp = None
        self._idat: list[tuple[int, int]] = []  # (offset, length) of each IDAT payload
        self._passes: weakref.WeakSet[Iterator[np.ndarray]] = weakref.WeakSet()  # open blocks() iterators

    @classmethod
    def open(cls, fp: IO[bytes], name: str) -> PngReader | None:
        """A reader for *fp* (seekable, at the file's start), or None if it is not a PNG this reads."""
        self = cls(fp, name)
        start = fp.tell()
        if fp.read(8) != SIGNATURE:
            fp.seek(start)
            return None
        ihdr = None
        while True:
            head = fp.read(8)
            if len(head) < 8:
                self._fail("truncated: no IEND")
            length, kind = int.from_bytes(head[:4], "big"), head[4:]
            if length >= 2**31:
                self._fail(f"chunk length {length} over 2**31 - 1")
            if kind == b"IDAT":
                self._idat.append((fp.tell(), length))
                fp.seek(length + 4, 1)  # the CRC is checked as the data is read
                continue
            payload = fp.read(length)
            crc = fp.read(4)
            if len(payload) < length or len(crc) < 4:
                self._fail("truncated inside a chunk")
            if zlib.crc32(payload, zlib.crc32(kind)) != int.from_bytes(crc, "big"):
                self._fail(f"CRC mismatch in chunk {kind.decode('latin-1')!r}")
            if kind == b"IHDR":
                ihdr = payload
            elif kind in (b"PLTE", b"tRNS") or (kind == b"eXIf" and _exif_turns(payload)):
                return None
            elif kind == b"iCCP":
                self.icc_profile = _inflate_text_chunk(payload, self)
            elif kind == b"eXIf":
                self.exif = payload
            elif kind == b"iTXt" and payload.startswith(b"XML:com.adobe.xmp\x00"):
                self.xmp = _itxt_text(payload, self)
            elif kind == b"IEND":
                break
        if ihdr is None or len(ihdr) != 13 or not self._idat:
            self._fail("no IHDR or no IDAT")
        self.width, self.height = int.from_bytes(ihdr[:4], "big"), int.from_bytes(ihdr[4:8], "big")
        depth, colour_type, _, _, interlace = ihdr[8:]
        if depth != 8 or colour_type not in STREAMED or interlace != 0 or not (self.width and self.height):
            return None
        self.channels = STREAMED[colour_type]
        return self

    def _fail(self, reason: str) -> NoReturn:
        msg = f"cannot read image {self.name!r}: broken PNG file ({reason})"
        raise InputImageError(msg)

    def _compressed(self) -> Iterator[bytes]:
        for offset, length in self._idat:
            self._fp.seek(offset)
            crc = zlib.crc32(b"IDAT")
            left = length
            while left:
                data = self._fp.read(min(left, READ_BYTES))
                if not data:
                    self._fail("truncated inside IDAT")
                crc = zlib.crc32(data, crc)
                left -= len(data)
                yield data
            if int.from_bytes(self._fp.read(4), "big") != crc:
                self._fail("CRC mismatch in chunk 'IDAT'")

    def blocks(self, rows: int, *, ahead: bool = True) -> Iterator[np.ndarray]:
        """The image top to bottom as (rows, width, channels) uint8 blocks (the last may be shorter).

        A thread inflates the next block while this one is unfiltered and
        used (zlib and the kernels release the GIL), never more than one
        block ahead; a damaged file raises when the block it spoils is asked
        for, as if read here.  Closing the iterator, or :meth:`close`, stops
        the thread.  With *ahead* False everything runs here, in turn (the
        same blocks; for measuring what the thread buys).
        """
        passes = self._blocks(rows, ahead)
        self._passes.add(passes)
        return passes

    def close(self) -> None:
        """Stop every pass of :meth:`blocks` still open (it yields no more), so nothing reads the file after this."""
        for passes in list(self._passes):
            passes.close()

    def _blocks(self, rows: int, ahead: bool) -> Iterator[np.ndarray]:
        """:meth:`blocks`: unfilter here what :meth:`_inflated` inflates one block ahead in a thread."""
        stride = self.width * self.channels
        previous = np.zeros(stride, dtype=np.uint8)
        done = 0
        inflated = _ahead(self._inflated(rows)) if ahead else self._inflated(rows)
        try:
            for filtered in inflated:
                want = filtered.shape[0]
                out = np.empty((want, stride), dtype=np.uint8)
                bad = _kernels.png_unfilter(filtered, previous, self.channels, out)
                if bad >= 0:
                    self._fail(f"unknown filter type {filtered[bad, 0]} in row {done + bad}")
                del filtered
                previous = out[-1].copy()  # not a view: the caller may let the block go
                done += want
                yield out.reshape(want, self.width, self.channels)
        finally:
            inflated.close()

    def _inflated(self, rows: int) -> Iterator[np.ndarray]:
        """The filtered rows (§9.2) in (rows, 1 + width * channels) uint8 blocks, the last possibly shorter."""
        stride = self.width * self.channels
        inflater = zlib.decompressobj()
        compressed = self._compressed()
        tail = b""
        for top in range(0, self.height, rows):
            filtered = np.empty((min(rows, self.height - top), stride + 1), dtype=np.uint8)
            flat = filtered.reshape(-1)
            got = 0
            while got < len(flat):
                if not tail:
                    tail = next(compressed, b"")
                    if not tail:
                        self._fail("truncated image data")
                try:  # never inflates more than the rows asked for
                    data = inflater.decompress(tail, len(flat) - got)
                except zlib.error as exc:
                    self._fail(f"corrupt image data: {exc}")
                tail = inflater.unconsumed_tail
                flat[got : got + len(data)] = np.frombuffer(data, dtype=np.uint8)
                got += len(data)
            yield filtered


def _ahead(items: Iterator[T]) -> Iterator[T]:
    """*items* in order, each next one made in a thread while the caller has the current one.

    At most one item is made ahead, so memory grows by one item.  What
    making an item raises is raised here when that item is asked for.
    Closing this generator (an early stop, an exception or
    KeyboardInterrupt in the caller) stops the thread after the item it is
    making and joins it; *items* is closed in the thread.
    """
    go = threading.Semaphore(0)  # one release: make one more item
    made: queue.SimpleQueue[tuple[bool, object]] = queue.SimpleQueue()  # (True, item) or (False, exception or None)
    stop = threading.Event()

    def make() -> None:
        try:
            while True:
                go.acquire()
                if stop.is_set():
                    return
                try:
                    item = next(items)
                except StopIteration:
                    made.put((False, None))
                    return
                except BaseException as exc:  # any: handed to the caller as it is
                    made.put((False, exc))
                    return
                made.put((True, item))
                del item  # held by the queue and then the caller only
        finally:
            items.close()

    thread = threading.Thread(target=make, name=READER_THREAD, daemon=True)
    try:
        thread.start()
        go.release()
        while True:
            ok, item = made.get()
            if not ok:
                if item is None:
                    return
                raise item
            go.release()
            yield item
            del item
    finally:
        stop.set()
        go.release()
        # Not joined if it never started, or if this runs in it (the garbage collector may close us there).
        if thread.ident is not None and thread is not threading.current_thread():
            thread.join()


def _exif_turns(exif: bytes) -> bool:
    """Whether an eXIf payload has an orientation other than 1 (Pillow applies those)."""
    from PIL import Image

    orientation = Image.Exif()
    try:
        orientation.load(exif)
    except Exception:  # any damage: leave the file to Pillow, which decides
        return True
    return orientation.get(0x0112, 1) not in (1, None)


def _inflate_text_chunk(payload: bytes, reader: PngReader) -> bytes:
    """The profile of an iCCP chunk: name, NUL, method 0, zlib data."""
    name_end = payload.find(b"\x00")
    if name_end < 0 or payload[name_end + 1 : name_end + 2] != b"\x00":
        reader._fail("bad iCCP chunk")
    try:
        return zlib.decompress(payload[name_end + 2 :])
    except zlib.error:
        reader._fail("bad iCCP chunk")


def _itxt_text(payload: bytes, reader: PngReader) -> bytes:
    """The text of an iTXt chunk: keyword, NUL, flag, method, language, NUL, translated keyword, NUL, text."""
    keyword_end = payload.find(b"\x00")
    flag, method = payload[keyword_end + 1 : keyword_end + 3]
    language_end = payload.find(b"\x00", keyword_end + 3)
    translated_end = payload.find(b"\x00", language_end + 1)
    if language_end < 0 or translated_end < 0:
        reader._fail("bad iTXt chunk")
    text = payload[translated_end + 1 :]
    if flag:
        if method != 0:
            reader._fail("bad iTXt chunk")
        try:
            text = zlib.decompress(text)
        except zlib.error:
            reader._fail("bad iTXt chunk")
    return text
