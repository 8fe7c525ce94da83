"""Reading and writing the .kmc chunk stream (spec §2-§8).

:func:`build_container` and :func:`parse_container` mirror each other.  The
parser checks, in this order and before trusting anything: the signature and
version (§2), each chunk's framing and CRC (§3), the chunk grammar (§3.3),
and every header field against the limits (§4, §8).  Only then are sizes
derived from the header used.  Pixel data is not decoded here: strips come
back as memoryviews for :mod:`kmcodec.labels`.

One walk over the chunks, in file order, does the reading (:class:`_Parser`);
three entry points run it to different ends: :func:`parse_container` to the
end of a file in memory, :func:`read_prelude` up to the first strip of a
file object, for readers that want the image's facts without its pixels (the
Pillow plugin), and :func:`stream_container` handing out one strip at a
time, for decoders that never hold the whole file or image.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import zlib
from collections.abc import Callable, Iterable, Iterator
from typing import IO

import construct

from . import format as fmt
from .errors import (
    ChecksumError,
    FormatError,
    ImageTooLargeError,
    TruncatedError,
    UnsupportedFeatureError,
    UnsupportedVersionError,
    counted,
)
from .format import Layout, Method
from .limits import check_pixels


@dataclasses.dataclass(frozen=True)
class Header:
    """The HEAD chunk's fields, validated."""

    width: int
    height: int
    colors: int
    rows_per_strip: int
    layout: Layout
    method: int  # a Method id or fmt.METHOD_MIXED

    @property
    def bits_per_label(self) -> int:
        return fmt.bits_per_label(self.colors)

    @property
    def strip_count(self) -> int:
        return -(-self.height // self.rows_per_strip)

    def strip_rows(self, index: int) -> int:
        """Rows in strip *index* (the last strip may be shorter)."""
        return min(self.rows_per_strip, self.height - index * self.rows_per_strip)


@dataclasses.dataclass(frozen=True)
class Made:
    """The made chunk's fields: how the file was encoded."""

    seed: int
    requested_colors: int
    unique_colors: int
    iterations: int
    mse: float


@dataclasses.dataclass(frozen=True)
class Strip:
    index: int
    method: int
    data: memoryview  # the coded labels, after the 5-byte strip head


@dataclasses.dataclass(frozen=True)
class ChunkRecord:
    type: str
    offset: int  # of the chunk's length field, from the start of the file
    length: int  # payload bytes


@dataclasses.dataclass
class Prelude:
    """What a file holds before its first strip (§3.3): the image's facts without its pixels.

    The metadata fields hold only the ancillary chunks that come before the
    first STRP, where §3.3 asks encoders to put them.
    """

    major: int
    minor: int
    header: Header
    palette: bytes  # colors * channels bytes
    icc_profile: bytes | None = None
    exif: bytes | None = None
    xmp: bytes | None = None
    made: Made | None = None


@dataclasses.dataclass(kw_only=True)
class Container(Prelude):
    """A parsed file: everything except the decoded labels (the metadata fields from anywhere in it)."""

    strips: list[Strip]
    chunks: list[ChunkRecord]
    file_bytes: int


# ---------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------
def _preamble(major: int, minor: int) -> bytes:
    head = fmt.SIGNATURE + bytes((major, minor))
    return head + (zlib.crc32(head) & 0xFFFF).to_bytes(2, "big")


def _chunk(chunk_type: bytes, payload: bytes) -> bytes:
    if len(payload) > fmt.MAX_CHUNK_LENGTH:
        msg = f"{chunk_type.decode()} chunk of {len(payload)} bytes exceeds the format's chunk limit"
        raise ImageTooLargeError(msg)
    head = len(payload).to_bytes(4, "big") + chunk_type
    return b"".join((head, payload, zlib.crc32(payload, zlib.crc32(head)).to_bytes(4, "big")))


#: The whole DONE chunk (§3.3): its payload is empty, so its 12 bytes are always these.
_DONE_CHUNK = _chunk(fmt.DONE, b"")


def build_container(
    header: Header,
    palette: bytes,
    strips: Iterable[tuple[int, bytes]],
    *,
    icc_profile: bytes | None = None,
    exif: bytes | None = None,
    xmp: bytes | None = None,
    made: Made | None = None,
) -> bytes:
    """Assemble a file from already coded parts (the mirror of :func:`parse_container`).

    Chunk order is the one §3.3 recommends: HEAD, the ancillary chunks,
    PALT, the strips in order, DONE.  The version is the lowest that has
    every method the strips use (§2).
    """
    strips = list(strips)
    minor = max([fmt.METHOD_MINOR[Method(method)] for method, _ in strips], default=0)
    parts = [
        _preamble(fmt.VERSION_MAJOR, minor),
        _chunk(fmt.HEAD, fmt.Header.build(dataclasses.asdict(header))),
    ]
    if made is not None:
        parts.append(_chunk(fmt.MADE, fmt.Made.build(dataclasses.asdict(made))))
    for chunk_type, value in ((fmt.ICCP, icc_profile), (fmt.EXIF, exif), (fmt.XMPD, xmp)):
        if value:
            parts.append(_chunk(chunk_type, value))
    parts.append(_chunk(fmt.PALT, palette))
    for index, (method, data) in enumerate(strips):
        parts.append(_chunk(fmt.STRP, fmt.StripHead.build({"index": index, "method": method}) + data))
    parts.append(_chunk(fmt.DONE, b""))
    return b"".join(parts)


# ---------------------------------------------------------------------------
# Reading
# ---------------------------------------------------------------------------
def check_preamble(data: bytes | memoryview) -> tuple[int, int]:
    """Validate the 12-byte preamble (§2) and return (major, minor)."""
    head = bytes(data[: fmt.PREAMBLE_SIZE])
    signature = head[:8]
    if signature != fmt.SIGNATURE[: len(signature)]:
        if head.startswith(b"\x8bKMC\n"):
            msg = "not a valid .kmc file: CR LF in the signature became LF (text-mode transfer?)"
        elif head.startswith(b"\x8bKMC\r\r\n"):
            msg = "not a valid .kmc file: LF in the signature became CR LF (text-mode transfer?)"
        elif head.startswith(b"\x0bKMC"):
            msg = "not a valid .kmc file: the top bit of the first byte was lost (7-bit transfer?)"
        else:
            msg = "not a .kmc file (signature does not match)"
        raise FormatError(msg, prefix="")
    if len(head) < fmt.PREAMBLE_SIZE:
        msg = f"{counted(len(head), 'byte')}, shorter than the {fmt.PREAMBLE_SIZE}-byte preamble"
        raise TruncatedError(msg)
    fields = fmt.Preamble.parse(head)
    if fields.check != zlib.crc32(head[:10]) & 0xFFFF:
        msg = "the version check bytes do not match"
        raise ChecksumError(msg)
    if fields.major != fmt.VERSION_MAJOR:
        msg = (
            f"unsupported .kmc version {fields.major}.{fields.minor}: this decoder reads version {fmt.VERSION_MAJOR}.x"
        )
        raise UnsupportedVersionError(msg)
    return fields.major, fields.minor


def _chunk_frame(head: bytes | memoryview, offset: int, size: int) -> tuple[bytes, int]:
    """Checks 1-4 of §3.1 on the chunk at *offset*; return its type and the offset after it.

    *head* is the chunk's first 8 bytes, or fewer when the file (of *size*
    bytes) ends sooner.
    """
    if len(head) < fmt.CHUNK_HEAD_SIZE:
        msg = f"ends at byte {size} inside a chunk header (no DONE chunk)"
        raise TruncatedError(msg)
    length = int.from_bytes(head[:4], "big")
    chunk_type = bytes(head[4:8])
    if not chunk_type.isalpha() or not chunk_type.isascii():
        msg = f"chunk type {chunk_type!r} at byte {offset} is not four ASCII letters"
        raise FormatError(msg)
    name = chunk_type.decode("ascii")
    if length > fmt.MAX_CHUNK_LENGTH:
        msg = f"{name} chunk at byte {offset} claims {length} bytes, over the 2**31 - 1 limit"
        raise FormatError(msg)
    end = offset + fmt.CHUNK_HEAD_SIZE + length + fmt.CHUNK_CRC_SIZE
    if end > size:
        msg = f"{name} chunk at byte {offset} needs {end - offset:,} bytes, only {counted(size - offset, 'byte')} left"
        raise TruncatedError(msg)
    return chunk_type, end


def _chunk_payload(head: bytes | memoryview, body: bytes | memoryview, offset: int) -> memoryview:
    """Check 5 of §3.1, the CRC over length, type and payload, of a framed chunk; return its payload.

    *head* is the chunk's first 8 bytes, *body* the rest: payload and CRC.
    """
    stored_crc = int.from_bytes(body[-fmt.CHUNK_CRC_SIZE :], "big")
    if zlib.crc32(body[: -fmt.CHUNK_CRC_SIZE], zlib.crc32(head)) != stored_crc:
        name = bytes(head[4:8]).decode("ascii")
        msg = f"CRC mismatch in {name} chunk at byte {offset}"
        raise ChecksumError(msg)
    return memoryview(body)[: -fmt.CHUNK_CRC_SIZE]


def _check_done(payload: memoryview, offset: int, end: int, size: int) -> None:
    """DONE is empty and ends the file (§3.3)."""
    if payload:
        msg = f"DONE chunk at byte {offset} has a {len(payload)}-byte payload"
        raise FormatError(msg)
    if end != size:
        msg = f"{counted(size - end, 'byte')} of trailing data after the DONE chunk"
        raise FormatError(msg)


def _parse_header(payload: memoryview, max_pixels: int | None) -> Header:
    """Validate HEAD (§4) and the limits (§8) before any size derived from it is used."""
    if len(payload) != fmt.HEADER_SIZE:
        msg = f"HEAD chunk is {counted(len(payload), 'byte')}, expected {fmt.HEADER_SIZE}"
        raise FormatError(msg)
    f = fmt.Header.parse(bytes(payload))
    problems = []
    for field in ("width", "height"):
        if not 1 <= f[field] <= fmt.MAX_DIMENSION:
            problems.append(f"{field} {f[field]} outside 1..{fmt.MAX_DIMENSION}")
    if not 1 <= f.colors <= fmt.MAX_COLORS:
        problems.append(f"palette size {f.colors} outside 1..{fmt.MAX_COLORS}")
    if f.layout not in Layout._value2member_map_:
        problems.append(f"unknown channel layout code {f.layout}")
    if not 1 <= f.rows_per_strip <= max(f.height, 1):
        problems.append(f"rows per strip {f.rows_per_strip} outside 1..height ({f.height})")
    if problems:
        msg = "; ".join(problems)
        raise FormatError(msg)
    if f.method != fmt.METHOD_MIXED and f.method not in Method._value2member_map_:
        msg = f"unsupported label coding method {f.method} (this decoder knows 0-{max(Method)} and 255)"
        raise UnsupportedFeatureError(msg)
    pixels = f.width * f.height
    if pixels > fmt.MAX_PIXELS:
        msg = f"{f.width} x {f.height} exceeds the format's {fmt.MAX_PIXELS:,}-pixel limit"
        raise FormatError(msg)
    check_pixels(f.width, f.height, max_pixels)
    strip_bytes = f.rows_per_strip * fmt.row_bytes(f.width, 16)
    if strip_bytes > fmt.MAX_STRIP_BYTES:
        msg = (
            f"a strip of {f.rows_per_strip} rows of width {f.width} "
            f"exceeds the {fmt.MAX_STRIP_BYTES:,}-byte strip limit"
        )
        raise FormatError(msg)
    return Header(f.width, f.height, f.colors, f.rows_per_strip, Layout(f.layout), f.method)


def parse_container(data: bytes | bytearray | memoryview, *, max_pixels: int | None) -> Container:
    """Parse and validate a whole file, leaving the strips coded.

    Parameters
    ----------
    data : bytes-like
        The complete file.
    max_pixels : int or None
        Refuse images with more pixels than this (``None``: only the format limit).
    """
    with _construct_errors():
        parser = _Parser(memoryview(data).cast("B"), max_pixels)
        strips = [strip for strip in parser.chunks() if strip is not None]
        _check_methods_defined(parser.minor, parser.header.method, *(s.method for s in strips))
        return Container(**parser.facts(), strips=strips, chunks=parser.records, file_bytes=parser.size)


def read_prelude(fp: IO[bytes], *, max_pixels: int | None) -> Prelude:
    """Parse a file from *fp* up to its first strip, without reading the strips.

    Runs the checks of :func:`parse_container` (§2, §3, §4, §5, §8) on the
    preamble and every chunk before the first STRP, and stops at that STRP
    having read its 8-byte head only.  The strips, DONE and whatever follows
    them are checked when the whole file is parsed.

    Parameters
    ----------
    fp : binary file object
        Seekable, positioned at the start of the file; offsets in messages
        count from there.
    max_pixels : int or None
        Refuse images with more pixels than this (``None``: only the format limit).
    """
    with _construct_errors():
        parser = _Parser(fp, max_pixels)
        for _ in parser.chunks(prelude_only=True):
            pass
        _check_methods_defined(parser.minor, parser.header.method)
        return Prelude(**parser.facts())


def read_outline(fp: IO[bytes], *, max_pixels: int | None) -> Prelude:
    """:func:`read_prelude`, and a check that the file ends with its DONE chunk: the shape of a whole file, cheaply.

    Reads the prelude and the last 12 bytes, not the strips: a file cut off
    anywhere, or padded after DONE, fails with :class:`TruncatedError`,
    though a strip damaged in place passes (its CRC is checked on decoding).
    This is how a batch decides that an output it finds was written whole.

    Parameters
    ----------
    fp : binary file object
        Seekable, positioned at the start of the file.
    max_pixels : int or None
        As for :func:`read_prelude`.
    """
    start = fp.tell()
    prelude = read_prelude(fp, max_pixels=max_pixels)
    end = fp.seek(0, os.SEEK_END)
    fp.seek(max(start, end - len(_DONE_CHUNK)))
    if fp.read() != _DONE_CHUNK:
        msg = "does not end with its DONE chunk"
        raise TruncatedError(msg)
    return prelude


def stream_container(
    source: bytes | bytearray | memoryview | IO[bytes], *, max_pixels: int | None
) -> tuple[Prelude, Iterator[Strip]]:
    """Parse a file strip by strip: its prelude now, its strips as the iterator is advanced.

    The checks are those of :func:`parse_container`, made in file order: a
    fault after the first strip (a bad CRC, a missing DONE, trailing bytes)
    is raised by the iterator when it gets there, after the strips before
    it were yielded.  Only one chunk is held at a time.

    Parameters
    ----------
    source : bytes-like, or binary file object
        The complete file, or a seekable file object positioned at its start
        (read sequentially after its size is taken).
    max_pixels : int or None
        Refuse images with more pixels than this (``None``: only the format limit).
    """
    if isinstance(source, (bytes, bytearray, memoryview)):
        source = memoryview(source).cast("B")
    with _construct_errors():
        parser = _Parser(source, max_pixels)
        chunks = parser.chunks()
        for first in chunks:
            if first is not None:
                break
        # The loop always breaks: DONE before the first strip fails the strip count.
        prelude = Prelude(**parser.facts())
        _check_methods_defined(parser.minor, prelude.header.method, first.method)

    def strips() -> Iterator[Strip]:
        nonlocal first
        with _construct_errors():
            strip, first = first, None  # the closure would hold it to the end
            yield strip
            for strip in chunks:
                if strip is not None:
                    _check_methods_defined(parser.minor, strip.method)
                    yield strip

    return prelude, strips()


def _check_methods_defined(minor: int, *methods: int) -> None:
    """Refuse a method that the file's minor version does not define yet (§6.2): it is unknown there."""
    for method in methods:
        since = 0 if method == fmt.METHOD_MIXED else fmt.METHOD_MINOR[Method(method)]
        if since >= fmt.METHOD_VERSION_CHECK_FROM and since > minor:
            msg = (
                f"unsupported label coding method {method} in a version 1.{minor} file: "
                f"it is defined from version 1.{since} on"
            )
            raise UnsupportedFeatureError(msg)


@contextlib.contextmanager
def _construct_errors() -> Iterator[None]:
    """Report a construct.ConstructError as FormatError (not expected: lengths are checked first)."""
    try:
        yield
    except construct.ConstructError as exc:
        raise FormatError(str(exc)) from None


class _Parser:
    """One walk over a file's chunks in file order: framing and CRC (§3.1), grammar (§3.3), payloads (§4-§7).

    The file is a byte view, read as views into it, or a seekable binary
    file, read forward one chunk at a time: a chunk's body is read only once
    its length is known to lie inside the file, so a lying length never
    forces a large read.  The preamble (§2) is checked on creation, and
    :meth:`chunks` raises on the first fault (§9.2 step 2).  The strips are
    not kept, so a streaming reader holds one at a time.
    """

    def __init__(self, source: memoryview | IO[bytes], max_pixels: int | None) -> None:
        if isinstance(source, memoryview):
            self.size = len(source)
            self._read = _view_reader(source)
        else:
            start = source.tell()
            self.size = source.seek(0, os.SEEK_END) - start
            source.seek(start)
            self._read = source.read
        self.major, self.minor = check_preamble(self._read(fmt.PREAMBLE_SIZE))
        self.max_pixels = max_pixels
        self.header: Header | None = None
        self.palette: bytes | None = None
        self.strip_count = 0
        self.records: list[ChunkRecord] = []
        self.ancillary: dict[bytes, memoryview] = {}

    def chunks(self, *, prelude_only: bool = False) -> Iterator[Strip | None]:
        """Read and check the chunks after the preamble, yielding the strip of each STRP (None for other chunks).

        Ends after DONE, once DONE is known to end the file.  With
        *prelude_only*, ends before the first STRP after PALT instead,
        having read only its 8-byte head.
        """
        offset = fmt.PREAMBLE_SIZE
        while True:
            head = self._read(fmt.CHUNK_HEAD_SIZE)
            chunk_type, end = _chunk_frame(head, offset, self.size)
            if prelude_only and chunk_type == fmt.STRP and self.palette is not None:
                return
            body = self._read(end - offset - fmt.CHUNK_HEAD_SIZE)
            if len(body) != end - offset - fmt.CHUNK_HEAD_SIZE:  # the file shrank while being read
                msg = f"ends inside the chunk at byte {offset}"
                raise TruncatedError(msg)
            payload = _chunk_payload(head, body, offset)
            yield self._feed(chunk_type, offset, payload)
            if chunk_type == fmt.DONE:
                _check_done(payload, offset, end, self.size)
                return
            offset = end

    def _feed(self, chunk_type: bytes, offset: int, payload: memoryview) -> Strip | None:
        """Check one chunk against the grammar of §3.3 and its payload; the strip a STRP holds, else None."""
        header = self.header
        name = chunk_type.decode("ascii")
        self.records.append(ChunkRecord(name, offset, len(payload)))
        if header is None and chunk_type != fmt.HEAD:
            msg = f"first chunk is {name}, expected HEAD"
            raise FormatError(msg)
        if chunk_type == fmt.HEAD:
            if header is not None:
                msg = "more than one HEAD chunk"
                raise FormatError(msg)
            self.header = _parse_header(payload, self.max_pixels)
        elif chunk_type == fmt.PALT:
            if self.palette is not None:
                msg = "more than one PALT chunk"
                raise FormatError(msg)
            expected = header.colors * header.layout.channels
            if len(payload) != expected:
                msg = (
                    f"PALT chunk is {counted(len(payload), 'byte')}, expected {expected:,} "
                    f"({counted(header.colors, 'colour')} x {counted(header.layout.channels, 'channel')})"
                )
                raise FormatError(msg)
            self.palette = bytes(payload)
        elif chunk_type == fmt.STRP:
            strip = _parse_strip(payload, header, self.palette, self.strip_count)
            self.strip_count += 1
            return strip
        elif chunk_type == fmt.DONE:
            if self.palette is None:
                msg = "no PALT chunk"
                raise FormatError(msg)
            if self.strip_count != header.strip_count:
                msg = f"{counted(self.strip_count, 'strip')}, the header needs {header.strip_count:,}"
                raise FormatError(msg)
        elif chunk_type in fmt.ANCILLARY_TYPES:
            if chunk_type in self.ancillary:
                msg = f"more than one {name} chunk"
                raise FormatError(msg)
            if chunk_type == fmt.MADE and len(payload) != fmt.MADE_SIZE:
                # Checked where it stands, so the streaming decoder sees a made chunk after the strips too.
                msg = f"made chunk is {counted(len(payload), 'byte')}, expected {fmt.MADE_SIZE}"
                raise FormatError(msg)
            self.ancillary[chunk_type] = payload
        elif fmt.is_critical(chunk_type):
            msg = f"unsupported critical chunk {name} at byte {offset}: the file needs a newer decoder"
            raise UnsupportedFeatureError(msg)
        # An unknown ancillary chunk is skipped (§3.2).
        return None

    def facts(self) -> dict[str, object]:
        """The fields of :class:`Prelude` from the chunks read so far (HEAD and PALT among them).

        The metadata are the iccp, exif, xmpd and made chunks (§7) seen so
        far; the made chunk's size was checked when it was read.
        """
        made = None
        if fmt.MADE in self.ancillary:
            f = fmt.Made.parse(bytes(self.ancillary[fmt.MADE]))
            made = Made(f.seed, f.requested_colors, f.unique_colors, f.iterations, f.mse)
        return {
            "major": self.major,
            "minor": self.minor,
            "header": self.header,
            "palette": self.palette,
            "icc_profile": _opt_bytes(self.ancillary.get(fmt.ICCP)),
            "exif": _opt_bytes(self.ancillary.get(fmt.EXIF)),
            "xmp": _opt_bytes(self.ancillary.get(fmt.XMPD)),
            "made": made,
        }


def _view_reader(view: memoryview) -> Callable[[int], memoryview]:
    """A ``read(n)`` over *view*, as a file's: the next n bytes (fewer at its end), as a view into it."""
    position = 0

    def read(n: int) -> memoryview:
        nonlocal position
        part = view[position : position + n]
        position += len(part)
        return part

    return read


def _opt_bytes(view: memoryview | None) -> bytes | None:
    """An ancillary payload, or None when the chunk is absent or empty (§7)."""
    return bytes(view) if view else None


def _parse_strip(payload: memoryview, header: Header, palette: bytes | None, index: int) -> Strip:
    """Validate one STRP chunk's head (§6) against the header and the strips before it."""
    if palette is None:
        msg = "STRP chunk before the PALT chunk"
        raise FormatError(msg)
    if index >= header.strip_count:
        msg = f"more strips than the {header.strip_count} the header needs"
        raise FormatError(msg)
    if len(payload) < fmt.STRIP_HEAD_SIZE:
        msg = f"STRP chunk of {counted(len(payload), 'byte')} is shorter than its head"
        raise FormatError(msg)
    f = fmt.StripHead.parse(bytes(payload[: fmt.STRIP_HEAD_SIZE]))
    if f.index != index:
        msg = f"strip {f.index} found where strip {index} belongs"
        raise FormatError(msg)
    if f.method == fmt.METHOD_MIXED:
        msg = f"strip {index} has method {f.method}, which only HEAD may use"
        raise FormatError(msg)
    if f.method not in Method._value2member_map_:
        msg = f"unsupported label coding method {f.method} in strip {index}: the file needs a newer decoder"
        raise UnsupportedFeatureError(msg)
    if header.method != fmt.METHOD_MIXED and f.method != header.method:
        msg = f"strip {index} uses method {f.method}, the header says {header.method}"
        raise FormatError(msg)
    return Strip(index, f.method, payload[fmt.STRIP_HEAD_SIZE :])
