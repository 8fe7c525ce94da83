"""Label coding (spec §6): bit packing, the per-strip coding methods, and the encoder's choice among them.

``encode_strip`` and ``decode_strip`` mirror each other.  Bit packing
(§6.1) is vectorised numpy, deflate and LZMA are zlib's and liblzma's, and
cm, cmm, cm2d and cmx are the compiled kernels of :mod:`kmcodec.cm`.  Decompression is
bounded by the size the header implies, so a small hostile stream cannot
expand into a large allocation.  :class:`StripCoder` is the encoder's
choice of method per strip (the policy spec Appendix A describes).
"""

from __future__ import annotations

import dataclasses
import lzma
import zlib

import numpy as np

from . import cm
from . import format as fmt
from .defaults import EFFORTS, METHODS
from .errors import FormatError, ParameterError, counted
from .format import Method

#: Memory limit handed to the LZMA decoder: it never gets a dictionary above
#: 16 MiB (see :func:`_decoder_lzma_header`).
LZMA_MEMLIMIT = 64 * 2**20
#: Largest LZMA dictionary the encoder uses (a strip is rarely larger).
LZMA_MAX_DICT = 16 * 2**20
#: LZMA-alone header: properties byte, dictionary size u32 LE, uncompressed size u64 LE.
LZMA_HEADER_SIZE = 13

#: Each method by its name in ``encode(method=...)``.
METHOD_NAMES = {name: Method(index) for index, name in enumerate(METHODS)}
#: The methods of :mod:`kmcodec.cm`, and the keywords that name their models there.
CM_METHODS = {
    Method.CM: {},
    Method.CMM: {"match": True},
    Method.CM2D: {"twod": True},
    Method.CMX: {"mix": True},
}


def code_width(bits: int) -> int:
    """Label width inside deflate and LZMA streams: the smallest of 1, 2, 4, 8, 16 >= bits.

    Byte-aligned symbols let LZ77 find repeats that a 6-bit packing would hide.
    """
    for width in (1, 2, 4, 8, 16):
        if bits <= width:
            return width
    msg = f"labels of {bits} bits exceed 16"
    raise ParameterError(msg)


#: Labels packed or unpacked per block by the general paths, bounding their
#: scratch memory (up to 16 bytes per label) to 16 MiB whatever the strip size.
UNPACK_BLOCK_LABELS = 1 << 20


# ---------------------------------------------------------------------------
# §6.1 Bit packing: MSB first, each row padded with zero bits to a byte.
# ---------------------------------------------------------------------------
def pack_rows(labels: np.ndarray, bits: int) -> bytes:
    """Pack an (h, w) array of labels < 2**bits into rows of ``bits``-bit fields.

    Parameters
    ----------
    labels : ndarray, shape (h, w), dtype uint8 or uint16
    bits : int, 1 ..= 16
    """
    h, w = labels.shape
    if bits == 8:
        return labels.astype(np.uint8, copy=False).tobytes()
    if bits == 16:
        return labels.astype(">u2").tobytes()
    out = np.zeros((h, fmt.row_bytes(w, bits)), dtype=np.uint8)
    if 8 % bits == 0:  # whole labels per byte: OR each one's shifted field in, no scratch beyond a slice
        per_byte = 8 // bits
        for j in range(per_byte):
            column = labels[:, j::per_byte].astype(np.uint8)
            out[:, : column.shape[1]] |= column << (8 - bits * (j + 1))
        return out.tobytes()
    # Fields straddle bytes: through bit planes (8 bytes of scratch per label), a block of rows at a time.
    shifts = np.arange(bits - 1, -1, -1, dtype=np.uint16)
    step = max(1, UNPACK_BLOCK_LABELS // max(w, 1))
    for top in range(0, h, step):
        block = labels[top : top + step]
        planes = ((block[..., None].astype(np.uint16) >> shifts) & 1).astype(np.uint8)
        out[top : top + len(block)] = np.packbits(planes.reshape(len(block), w * bits), axis=1)
    return out.tobytes()


def _nibble_table(bits: int) -> np.ndarray:
    """(256, 8 // bits) table: the labels packed in each byte value, for bits 1, 2, 4."""
    per_byte = 8 // bits
    values = np.arange(256, dtype=np.uint8)[:, None]
    shifts = np.arange(8 - bits, -1, -bits, dtype=np.uint8)[None, :per_byte]
    return (values >> shifts) & ((1 << bits) - 1)


def unpack_rows(data: bytes | memoryview, h: int, w: int, bits: int) -> np.ndarray:
    """Inverse of :func:`pack_rows`; *data* must hold exactly h * row_bytes(w, bits) bytes.

    Returns an (h, w) array, uint8 for bits <= 8 and uint16 above.
    Raises FormatError if a row's padding bits are not zero.
    """
    rb = fmt.row_bytes(w, bits)
    rows = np.frombuffer(data, dtype=np.uint8).reshape(h, rb)
    pad = rb * 8 - w * bits
    if pad and np.any(rows[:, -1] & ((1 << pad) - 1)):
        msg = "nonzero padding bits at the end of a label row"
        raise FormatError(msg)
    if bits == 8:
        return rows.copy()
    if bits == 16:
        return rows.view(">u2").astype(np.uint16)
    if bits in (1, 2, 4):
        return _nibble_table(bits)[rows].reshape(h, rb * (8 // bits))[:, :w].copy()
    out_bits = 8 if bits <= 8 else 16
    out = np.empty((h, w), dtype=np.uint8 if out_bits == 8 else np.uint16)
    step = max(1, UNPACK_BLOCK_LABELS // max(w, 1))
    for top in range(0, h, step):
        block = rows[top : top + step]
        n = len(block)
        planes = np.unpackbits(block, axis=1, count=w * bits).reshape(n, w, bits)
        padded = np.zeros((n, w, out_bits), dtype=np.uint8)
        padded[..., out_bits - bits :] = planes
        packed = np.packbits(padded, axis=2).reshape(n, w * (out_bits // 8))
        out[top : top + n] = packed if out_bits == 8 else packed.view(">u2")
    return out


# ---------------------------------------------------------------------------
# §6.2 Methods
# ---------------------------------------------------------------------------
def _lzma_filters(size: int) -> list[dict]:
    dict_size = min(max(4096, 1 << max(size - 1, 1).bit_length()), LZMA_MAX_DICT)
    return [{"id": lzma.FILTER_LZMA1, "preset": 9, "dict_size": dict_size}]


def encode_strip(labels: np.ndarray, colors: int, method: Method, limit: int | None = None) -> bytes | None:
    """Code one strip of labels < *colors* with *method* (the bytes after the strip head).

    With a *limit*, cm, cmm, cm2d and cmx give up (None) as soon as they
    are sure to need more bytes than that; the other methods ignore it.
    """
    if method in CM_METHODS:
        return cm.encode_labels(labels, colors, **CM_METHODS[method], limit=limit)
    bits = fmt.bits_per_label(colors)
    if method == Method.STORED:
        return pack_rows(labels, bits)
    packed = pack_rows(labels, code_width(bits))
    if method == Method.DEFLATE:
        return zlib.compress(packed, 9)
    if method == Method.LZMA:
        return lzma.compress(packed, format=lzma.FORMAT_ALONE, filters=_lzma_filters(len(packed)))
    msg = f"unknown label coding method {method!r}"
    raise ParameterError(msg)


def deflate_probe(labels: np.ndarray, colors: int) -> int:
    """Bytes of the strip deflated at zlib's fastest level: a cheap guess at how well LZ coders do.

    About 10x faster than the level 9 of :data:`Method.DEFLATE`, and within
    10-20 % of its size on label data.
    """
    return len(zlib.compress(pack_rows(labels, code_width(fmt.bits_per_label(colors))), 1))


#: A method that decodes far slower than the others counts its bytes this many per mille higher when
#: the encoder chooses, so it is kept only where it saves about that share: cmx decodes in 1.7 x cm2d's
#: time and 5-6 x cm's, and saves 8-40 % on graphics but at most about 2 % on photos (docs/benchmarks.md).
SLOW_METHOD_CHARGE = {Method.CMX: 50}


def charged(method: Method, size: int) -> int:
    """The size that *size* bytes of *method* count as when a strip's method is chosen.

    >>> charged(Method.CM2D, 1000), charged(Method.CMX, 1000)
    (1000, 1050)
    """
    return size + size * SLOW_METHOD_CHARGE.get(method, 0) // 1000


def _budget(method: Method, most: int) -> int:
    """The most bytes *method* may write and still count as at most *most* (-1 if none)."""
    size = most * 1000 // (1000 + SLOW_METHOD_CHARGE.get(method, 0))
    while charged(method, size + 1) <= most:
        size += 1
    return size


def encode_strip_best(labels: np.ndarray, colors: int, methods: tuple[Method, ...]) -> tuple[Method, bytes]:
    """Code a strip with each of *methods* and keep the smallest (the lowest method id on a tie).

    Sizes are compared as :func:`charged`, so a slow method must be
    smaller by SLOW_METHOD_CHARGE to win.  Stored's size is known without
    packing (h rows of ``row_bytes``), so its bytes are made only if it
    wins: packing 6-bit labels costs half of cm.  cm, cmm, cm2d and cmx are
    coded with the best size so far as their budget and stop once they
    cannot beat it, so the order of *methods* changes the time the search
    takes (put the likely winner first), never its result.
    """
    h, w = labels.shape
    best = None  # (charged size, method, bytes or None for stored)
    for method in methods:
        if method == Method.STORED:
            data, size = None, h * fmt.row_bytes(w, fmt.bits_per_label(colors))
        else:
            # to win, beat the best, or tie it with a lower id
            limit = None if best is None else _budget(method, best[0] - (method > best[1]))
            data = encode_strip(labels, colors, method, limit)
            if data is None:
                continue
            size = len(data)
        if best is None or (charged(method, size), method) < best[:2]:
            best = (charged(method, size), method, data)
    _, method, data = best
    return method, encode_strip(labels, colors, method) if data is None else data


# ---------------------------------------------------------------------------
# The encoder's policy: strip height and the methods each strip tries.
# Appendix A of the spec ("Strips and methods") describes it; the
# measurements behind each number are in docs/benchmarks.md.
# ---------------------------------------------------------------------------
#: Labels per strip the encoder aims for: big enough for deflate and LZMA to
#: find their repeats, small enough to keep one strip's work in cache-sized memory.
STRIP_LABELS = 1 << 20

#: The methods ``method="auto"`` tries at each effort (effort 2 narrows its set per strip: :func:`code_strip`).
EFFORT_METHODS = dict(
    zip(
        EFFORTS,
        (
            (Method.STORED, Method.CM),
            (Method.STORED, Method.CM, Method.CMM, Method.CM2D, Method.CMX),
            (Method.STORED, Method.DEFLATE, Method.LZMA, Method.CM, Method.CMM, Method.CM2D, Method.CMX),
        ),
        strict=True,
    )
)
#: Effort 2 tries deflate and LZMA on a strip whose level-1 deflate is below
#: this times the best of stored and cm or cmm: photos stay above it.
PROBE_MARGIN = 1.5
#: The match probe (:func:`match_may_pay`) looks at every MATCH_PROBE_ROW_STEP-th
#: row: an eighth of the work, and chance matches in photos mostly vanish
#: with the rows between, while repeats along a row (glyphs, widgets) stay.
MATCH_PROBE_ROW_STEP = 8
#: cmm is the better bet where long matches predict at least this share of
#: the non-flat pixels the probe saw: undithered photos score below it.  Dithered
#: photos at k = 16 score up to 0.03, where cm still beats cmm by about 5 %,
#: so between this and MATCH_PROBE_MIN_2D a strip tries both.
MATCH_PROBE_MIN = 0.01
#: cm2d and cmx are tried beside cmm where the share is at least this.  Every strip of
#: 512 rows or more of the image set's graphics scores 0.040 or more but the
#: sprite sheet's (0.020, where cm2d loses); the corpus photos score at most
#: 0.030 (dithered, k = 16), where cm2d, larger than cm, would still beat the
#: cmm the probe picks for them.  Short last strips of screenshots score
#: 0.012-0.038: below MATCH_PROBE_SMALL labels they try cm2d and cmx from MATCH_PROBE_MIN on.
MATCH_PROBE_MIN_2D = 0.035
#: Strips of fewer labels (but MATCH_PROBE_ALWAYS or more) that the probe scores from MATCH_PROBE_MIN
#: on try every method.  These are the last strips of screenshots (a 141-row strip of a
#: 1280-wide page scores 0.015-0.026 and saves 4-12 % with cmx) and small images, where trying
#: cmx costs little: under 2^18 labels, at most about 70 ms.
MATCH_PROBE_SMALL = 1 << 18
#: Strips of fewer labels always try cm and cmm (it costs little there, and the probe's sample is
#: small), not cm2d nor cmx, whose offsets need more rows to pay: their files stay as before format 1.3.
MATCH_PROBE_ALWAYS = 1 << 16


def strip_height(width: int, height: int, rows_per_strip: int | None) -> int:
    """Rows per strip: *rows_per_strip* or about STRIP_LABELS labels, capped to *height* and the format's bound."""
    if rows_per_strip is None:
        rows_per_strip = max(1, STRIP_LABELS // width)
    limit = max(1, fmt.MAX_STRIP_BYTES // fmt.row_bytes(width, 16))
    return min(rows_per_strip, height, limit)


def strip_methods(method: str, effort: int) -> tuple[Method, ...]:
    """The methods a strip tries: *effort*'s set for "auto", else the comma-joined names (already checked)."""
    if method == "auto":
        return EFFORT_METHODS[effort]
    return tuple(sorted({METHOD_NAMES[name] for name in method.split(",")}))


def match_may_pay(labels: np.ndarray) -> bool:
    """Whether method cmm will code an (h, w) label map smaller than cm: effort 2's cheap guess.

    A strip of photo almost never has the long exact repeats the match model
    predicts; text, user interfaces and pixel art do (and these are also
    where deflate and LZMA can win).  The guess follows the match model
    along every MATCH_PROBE_ROW_STEP-th row, coding nothing (about a
    twentieth of cm's encoding time), and says yes where long matches
    predict at least MATCH_PROBE_MIN of the non-flat pixels.  Strips below
    MATCH_PROBE_ALWAYS labels always get a yes.

    >>> match_may_pay(np.zeros((400, 400), np.uint8))
    False
    >>> text = np.tile(np.kron(np.eye(4, dtype=np.uint8), np.ones((2, 3), np.uint8)), (50, 40))
    >>> match_may_pay(text)
    True
    """
    return labels.size < MATCH_PROBE_ALWAYS or _repeats(*cm.match_counts(labels, MATCH_PROBE_ROW_STEP), MATCH_PROBE_MIN)


def _repeats(hits: int, seen: int, share: float) -> bool:
    """Whether the match probe's *hits* are at least *share* of the *seen* pixels (and not none)."""
    return hits >= share * seen and hits > 0


def code_strip(labels: np.ndarray, colors: int, methods: tuple[Method, ...], probe: bool) -> tuple[Method, bytes]:
    """The smallest coding of one strip among *methods*, or, if *probe*, effort 2's choice among them.

    With *probe* (*methods* being effort 2's), :func:`match_may_pay` picks
    cm and cmm where it finds long exact repeats, cmm, cm2d and cmx where
    they are frequent (MATCH_PROBE_MIN_2D), and cm where it finds none
    (strips below MATCH_PROBE_ALWAYS labels try cm and cmm, strips below
    MATCH_PROBE_SMALL with repeats every method); deflate and LZMA,
    which need the repeats too, are then tried only where a level-1 deflate
    is below PROBE_MARGIN times the best so far.  Ties keep the lower method
    id, as :func:`encode_strip_best`.
    """
    if probe and colors > 1:
        hits, seen = (0, 0) if labels.size < MATCH_PROBE_ALWAYS else cm.match_counts(labels, MATCH_PROBE_ROW_STEP)
        twod = (Method.CM2D, Method.CMX)
        if labels.size < MATCH_PROBE_ALWAYS:  # too small for the probe: cm and cmm, cheap here
            methods = tuple(m for m in methods if m not in twod)
        elif _repeats(hits, seen, MATCH_PROBE_MIN_2D):
            methods = tuple(m for m in methods if m != Method.CM)
        elif _repeats(hits, seen, MATCH_PROBE_MIN):
            if labels.size >= MATCH_PROBE_SMALL:
                methods = tuple(m for m in methods if m not in twod)
        else:  # no long repeats: cmm, cm2d, cmx, deflate and LZMA would lose
            methods = tuple(m for m in methods if m not in (Method.CMM, *twod))
            probe = False
    # cmx, where tried, usually wins (then cm2d): coded first, its size is the budget that stops the others early
    first = (Method.CMX, Method.CM2D, Method.CMM)
    methods = tuple(sorted(methods, key=lambda m: (m != Method.STORED, first.index(m) if m in first else 2, m)))
    best = encode_strip_best(labels, colors, methods)
    if probe and deflate_probe(labels, colors) < PROBE_MARGIN * len(best[1]):
        other = encode_strip_best(labels, colors, (Method.DEFLATE, Method.LZMA))
        if (len(other[1]), other[0]) < (charged(best[0], len(best[1])), best[0]):
            best = other
    return best


@dataclasses.dataclass(frozen=True)
class StripCoder:
    """Codes each strip of one file: labels < *colors*, with :func:`code_strip` over *methods*.

    Called on a strip's labels (h, w), returns (method, bytes).
    """

    colors: int
    methods: tuple[Method, ...]
    probe: bool = False

    @classmethod
    def of(cls, colors: int, method: str, effort: int) -> StripCoder:
        """The coder the encoder's *method* and *effort* options (already checked) ask for."""
        return cls(colors, strip_methods(method, effort), probe=method == "auto" and effort == 2)

    def __call__(self, labels: np.ndarray) -> tuple[Method, bytes]:
        return code_strip(labels, self.colors, self.methods, self.probe)


def _check_lzma_header(data: memoryview, expected: int) -> None:
    """Refuse LZMA-alone headers the encoder never writes (§6.2.3), before liblzma sees them."""
    if len(data) < LZMA_HEADER_SIZE:
        msg = f"LZMA strip of {counted(len(data), 'byte')} is shorter than its 13-byte header"
        raise FormatError(msg)
    props = data[0]
    lc, lp, pb = props % 9, props // 9 % 5, props // 45
    dict_size = int.from_bytes(data[1:5], "little")
    size = int.from_bytes(data[5:13], "little")
    if props >= 225 or lc + lp > 4:
        msg = f"LZMA properties byte {props} (lc={lc}, lp={lp}, pb={pb}) is invalid"
        raise FormatError(msg)
    if dict_size > LZMA_MAX_DICT:
        msg = f"LZMA dictionary of {dict_size} bytes exceeds the {LZMA_MAX_DICT}-byte limit"
        raise FormatError(msg)
    if size not in (expected, 2**64 - 1):
        msg = f"LZMA header declares {counted(size, 'byte')}, the header implies {expected:,}"
        raise FormatError(msg)


def _decoder_lzma_header(data: memoryview, expected: int) -> bytes:
    """The strip's LZMA-alone header with a dictionary no larger than its content needs.

    liblzma allocates the dictionary the header declares, so a 100-byte strip
    declaring 16 MiB would cost 16 MiB per decoding thread.  A match can reach
    back only over bytes already decoded, at most *expected* (+ 1, where the
    decoder stops), so a dictionary of the smallest power of two above that
    (at least 4 KiB, as the encoder writes) accepts and rejects the very same
    streams as the declared one, when that is larger.
    """
    declared = int.from_bytes(data[1:5], "little")
    needed = max(4096, 1 << (expected + 1).bit_length())
    return bytes(data[:1]) + min(declared, needed).to_bytes(4, "little") + bytes(data[5:LZMA_HEADER_SIZE])


def _inflate(data: memoryview, expected: int, method: Method) -> bytes:
    """Decompress at most *expected* + 1 bytes; the stream must end exactly there."""
    name = method.name.lower()
    if method == Method.LZMA:
        _check_lzma_header(data, expected)
    try:
        if method == Method.DEFLATE:
            d = zlib.decompressobj()
        else:
            d = lzma.LZMADecompressor(format=lzma.FORMAT_ALONE, memlimit=LZMA_MEMLIMIT)
            d.decompress(_decoder_lzma_header(data, expected))  # the header alone gives no output
            data = data[LZMA_HEADER_SIZE:]
        out = d.decompress(data, expected + 1)
        complete = d.eof and not d.unused_data
    except (zlib.error, lzma.LZMAError) as exc:
        msg = f"{name} stream in a strip is invalid ({exc})"
        raise FormatError(msg) from None
    if len(out) != expected:
        more = "more" if len(out) > expected else "fewer"
        msg = f"{name} strip decodes to {more} than the {counted(expected, 'byte')} the header implies"
        raise FormatError(msg)
    if not complete:
        msg = f"{name} stream does not end after the {counted(expected, 'byte')} the header implies"
        raise FormatError(msg)
    return out


def decode_strip_into(
    data: memoryview, method: Method, h: int, w: int, colors: int, palette: np.ndarray, out: np.ndarray
) -> None:
    """Decode one strip and write its pixels, ``palette[label]``, into *out* of shape (h, w, channels).

    The cm methods look the palette up in their compiled kernel; the others
    with ``np.take`` into *out*, without a temporary.
    """
    if method in CM_METHODS:
        cm.decode_pixels(data, h, w, colors, palette, out, **CM_METHODS[method])
        return
    look_up(palette, decode_strip(data, method, h, w, colors), out)


def look_up(palette: np.ndarray, labels: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """``palette[labels]`` written into *out* (made when None), UNPACK_BLOCK_LABELS labels at a time.

    ``np.take`` copies its indices as intp first, 8 bytes a label: on a strip
    of a hundred million labels (a one-colour image costs no label bytes at
    all) that is most of a gigabyte; in blocks it is 8 MiB.
    """
    if out is None:
        out = np.empty((*labels.shape, palette.shape[1]), dtype=np.uint8)
    flat_labels, flat_out = labels.reshape(-1), out.reshape(-1, palette.shape[1])
    for start in range(0, flat_labels.size, UNPACK_BLOCK_LABELS):
        stop = start + UNPACK_BLOCK_LABELS
        np.take(palette, flat_labels[start:stop], axis=0, out=flat_out[start:stop])
    return out


def decode_strip(data: memoryview, method: Method, h: int, w: int, colors: int) -> np.ndarray:
    """Decode one strip into an (h, w) label array; every label is checked to be < colors."""
    if method in CM_METHODS:
        return cm.decode_labels(data, h, w, colors, **CM_METHODS[method])
    bits = fmt.bits_per_label(colors)
    if method == Method.STORED:
        expected = h * fmt.row_bytes(w, bits)
        if len(data) != expected:
            msg = f"stored strip is {counted(len(data), 'byte')}, the header implies {expected:,}"
            raise FormatError(msg)
        labels = unpack_rows(data, h, w, bits)
    else:
        width = code_width(bits)
        labels = unpack_rows(_inflate(data, h * fmt.row_bytes(w, width), method), h, w, width)
    if colors < (1 << 16) and labels.size and int(labels.max()) >= colors:
        msg = f"a label is {int(labels.max())}, the palette has {counted(colors, 'colour')}"
        raise FormatError(msg)
    return labels
