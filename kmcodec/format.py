"""The .kmc container, declared once: constants, limits and construct structs.

Every declaration here mirrors a table in ``spec/kmc-format.md``; the section
numbers in the banners are that document's.  Nothing in this module reads or
validates a file; :mod:`kmcodec.container` does, and wraps every
``construct.ConstructError`` into a :class:`~kmcodec.errors.FormatError`.

Per-pixel data never passes through construct: strips are plain bytes handed
to numpy by :mod:`kmcodec.labels`.
"""

from __future__ import annotations

import enum

from construct import Bytes, Const, Float64b, Int8ub, Int16ub, Int32ub, Int64ub, Struct

from . import limits as _limits

# ---------------------------------------------------------------------------
# §2 Signature and version
# ---------------------------------------------------------------------------
#: 0x8B (non-ASCII: catches 7-bit channels), "KMC", CR LF (catches CR LF ->
#: LF conversion), ^Z (stops `type` on DOS), LF (catches LF -> CR LF).
SIGNATURE = b"\x8bKMC\r\n\x1a\n"

#: Newest version this decoder reads.  The encoder writes the lowest minor
#: version its file needs (see METHOD_MINOR), so files without cm strips stay 1.0.
VERSION_MAJOR = 1
VERSION_MINOR = 4

Preamble = Struct(
    "signature" / Const(SIGNATURE),
    "major" / Int8ub,
    "minor" / Int8ub,
    "check" / Int16ub,  # low 16 bits of CRC-32 over the 10 bytes before it
)
PREAMBLE_SIZE = 12

# ---------------------------------------------------------------------------
# §3 Chunks
# ---------------------------------------------------------------------------
ChunkHead = Struct(
    "length" / Int32ub,  # payload bytes, at most MAX_CHUNK_LENGTH
    "type" / Bytes(4),  # four ASCII letters; checked by the reader
)
CHUNK_HEAD_SIZE = 8  # length + type
CHUNK_CRC_SIZE = 4  # CRC-32 over length + type + payload

#: PNG's bound: a length that fits a signed 32-bit integer in every language.
MAX_CHUNK_LENGTH = 2**31 - 1

# Critical chunk types (first letter upper case).
HEAD = b"HEAD"
PALT = b"PALT"
STRP = b"STRP"
DONE = b"DONE"
# Ancillary chunk types (first letter lower case).
ICCP = b"iccp"
EXIF = b"exif"
XMPD = b"xmpd"
MADE = b"made"

CRITICAL_TYPES = (HEAD, PALT, STRP, DONE)
ANCILLARY_TYPES = (ICCP, EXIF, XMPD, MADE)


def is_critical(chunk_type: bytes) -> bool:
    """Return True if *chunk_type* names a critical chunk (upper-case first letter)."""
    return 0x41 <= chunk_type[0] <= 0x5A


# ---------------------------------------------------------------------------
# §4 HEAD: the image header
# ---------------------------------------------------------------------------
class Layout(enum.IntEnum):
    """Channel layout; the code is the channel count."""

    L = 1
    LA = 2
    RGB = 3
    RGBA = 4

    @property
    def channels(self) -> int:
        return int(self)

    @property
    def has_alpha(self) -> bool:
        return self in (Layout.LA, Layout.RGBA)


class Method(enum.IntEnum):
    """Label coding method ids (§6)."""

    STORED = 0
    DEFLATE = 1
    LZMA = 2
    CM = 3  # context-modelled binary range coding, since 1.1 (spec/kmc-method-cm.md)
    CMM = 4  # cm with a match model, since 1.2 (spec/kmc-method-cm.md §9)
    CM2D = 5  # cm with a 2-D match model, since 1.3 (spec/kmc-method-cm.md §10)
    CMX = 6  # cm2d with a logistic mixer, since 1.4 (spec/kmc-method-cm.md §11)


#: The minor version (of major 1) that introduced each method.
METHOD_MINOR = {
    Method.STORED: 0,
    Method.DEFLATE: 0,
    Method.LZMA: 0,
    Method.CM: 1,
    Method.CMM: 2,
    Method.CM2D: 3,
    Method.CMX: 4,
}
#: Methods introduced from this minor version on are unknown in a file of an
#: older minor version (§6.2); method 3 in a 1.0 file stays accepted, as 1.1 said.
METHOD_VERSION_CHECK_FROM = 2


#: HEAD's method field when the strips do not all use one method.
METHOD_MIXED = 255

Header = Struct(
    "width" / Int32ub,
    "height" / Int32ub,
    "colors" / Int32ub,  # palette entries k, 1 ..= MAX_COLORS
    "rows_per_strip" / Int32ub,
    "layout" / Int8ub,  # Layout code
    "method" / Int8ub,  # Method id, or METHOD_MIXED
)
HEADER_SIZE = 18

# ---------------------------------------------------------------------------
# §5 PALT: the palette is k entries of `channels` bytes each; no struct needed.
# §6 STRP: a strip of label rows.
# ---------------------------------------------------------------------------
StripHead = Struct(
    "index" / Int32ub,  # 0 for the top strip, then 1, 2, ... with no gaps
    "method" / Int8ub,  # Method id
)
STRIP_HEAD_SIZE = 5

# ---------------------------------------------------------------------------
# §7 Ancillary chunks: iccp, exif and xmpd are opaque bytes; made is this.
# ---------------------------------------------------------------------------
Made = Struct(
    "seed" / Int64ub,
    "requested_colors" / Int32ub,
    "unique_colors" / Int32ub,  # distinct colours in the input, saturating at 2**32 - 1
    "iterations" / Int32ub,  # Lloyd iterations run (0 when the palette is exact)
    "mse" / Float64b,  # mean squared error per channel, 8-bit units
)
MADE_SIZE = 28

# ---------------------------------------------------------------------------
# §8 Limits
# ---------------------------------------------------------------------------
#: A row of 16-bit labels then stays under 32 MiB, far inside one chunk.
MAX_DIMENSION = 2**24 - 1
#: Pixel indices fit an unsigned 32-bit integer in every implementation.
MAX_PIXELS = 2**32 - 1
#: Labels are at most 16 bits.  kmcodec.limits owns the value.
MAX_COLORS = _limits.MAX_COLORS
#: One strip's unpacked labels must fit in 256 MiB: bounds the memory a
#: decoder needs for one strip whatever the header claims.
MAX_STRIP_BYTES = 2**28
#: Default pixel limit of the decoder (a caller may raise or lower it):
#: an RGBA image of this size is 1 GiB.  kmcodec.limits owns the value.
DEFAULT_MAX_PIXELS = _limits.DEFAULT_MAX_PIXELS


def bits_per_label(colors: int) -> int:
    """Bits the stored method spends per label: ceil(log2 k), at least 1."""
    return max(1, (colors - 1).bit_length())


def row_bytes(width: int, bits: int) -> int:
    """Bytes of one packed row: width * bits rounded up to whole bytes."""
    return (width * bits + 7) // 8
