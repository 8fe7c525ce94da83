#!/usr/bin/env python3
"""Mutation fuzzer for kmcodec's decoder.

Every input is a mutant of a golden vector (``fixtures/valid`` by default),
run through ``kmcodec.decode``, ``kmcodec.read_info``, the streaming
decoder (``kmcodec.open_strips`` and ``kmcodec.decode_to_png``) and, when
it decodes, ``kmcodec.decode_image``.  The contract checked, per input:

* **escape**: only ``kmcodec.KmcError`` subclasses may leave the decoder;
* **hang**: it uses at most ``--time-limit-per-input`` seconds of CPU time
  (machine load slows an input down but does not add to its CPU time), and
  finishes within ``--wall-limit-per-input`` seconds, by default 10 times as
  many (for an input that blocks rather than computes);
* **memory**: its peak traced allocation (tracemalloc) stays within
  :func:`memory_budget`, which grows only with the image size its HEAD
  declares *and the decoder accepts*, and the process's resident set grows
  by at most ``--max-rss-mb`` while it runs, or by that budget where the
  declared image justifies more;
* **mismatch**: when it decodes, ``read_info`` agrees on the image's shape
  and the streaming decoder on its pixels; when it does not, the streaming
  decoder fails too (with a ``KmcError``, not necessarily the same: it
  checks in file order, strip by strip).

Mutations (the table ``MUTATIONS``): bit flips, byte writes, interesting
integers at field offsets, insertions and deletions, truncation, trailing
bytes, splices of two vectors, chunk reordering, duplication, removal,
insertion and retyping, resized payloads, length fields that lie, HEAD
fields set to edge values or huge sizes (with a palette and strips made to
fit), and strip payloads replaced by generated streams: valid ones, wrong
sizes, labels out of range, nonzero padding, raw deflate, gzip, preset
dictionaries, bad LZMA headers, truncated streams, trailing bytes, and
decompression bombs (zlib and LZMA streams of ``--bomb-mib`` MiB of zeros).
One to three mutations are stacked; then, for most inputs, the preamble
check and every chunk CRC are **recomputed** where the (possibly lying)
lengths put them, so the parser behind the CRC check is what gets tested.

Each input is a pure function of (seed, index): ``--replay INDEX`` runs one
again and shows its traceback.

By default the inputs run in a child process: a child that stops
reporting while it uses more CPU time than the limit, or more wall time than
the wall limit (a hang in C code, where the per-input alarms cannot reach),
is killed and its input counted as a hang; a
child that dies (a crash, the kernel's OOM killer) is counted as a crash;
the campaign then goes on from the next index.  ``--in-process`` runs
everything in this process.

Usage::

    python tools/fuzz.py --count 100000 --seed 1 --save-crashers /tmp/kmc-crashers
    python tools/fuzz.py --seed 1 --replay 4711             # one input again, with its traceback
    python tools/fuzz.py --atheris --count 100000           # coverage-guided (pip install atheris)

Exit status: 0 when the run found nothing, 1 otherwise.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import dataclasses
import io
import lzma
import multiprocessing
import os
import random
import shutil
import signal
import sys
import tempfile
import time
import traceback
import tracemalloc
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # fuzz this checkout's kmcodec, not an installed one

import kmcodec  # noqa: E402
from kmcodec import cm  # noqa: E402
from kmcodec import format as fmt  # noqa: E402
from kmcodec.labels import code_width, pack_rows  # noqa: E402

MIB = 2**20
DEFAULT_CORPUS = ROOT / "fixtures" / "valid"

#: Traced allocation any input may make whatever it declares: the parser's
#: own objects, zlib and liblzma state, small strips.
BASE_BUDGET = 64 * MIB
#: Decompressed content the generated *valid* strips may have: keeps a
#: campaign fast and its memory modest.  Larger declared strips get bombs
#: and short streams only, which the decoder must refuse.
CONTENT_CAP = 1 * MIB
#: Strips written by the mutation that reshapes the image (more make files
#: big without reaching new code).
MAX_GENERATED_STRIPS = 12

#: Integer values at the edges of the limits of spec §4 and §8.
INTERESTING_U32 = (
    *(0, 1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 31, 255, 256, 257, 4095, 4096, 65535, 65536, 65537),
    *(2**24 - 1, 2**24, 2**27, 2**27 + 1, 2**28, 2**31 - 1, 2**31, 2**32 - 1),
)
INTERESTING_U8 = (0, 1, 2, 3, 4, 5, 7, 8, 127, 128, 224, 225, 254, 255)
COLOR_CHOICES = (1, 2, 3, 4, 5, 8, 9, 16, 17, 32, 33, 128, 129, 255, 256, 257, 4096, 65535, 65536)
KNOWN_TYPES = (fmt.HEAD, fmt.PALT, fmt.STRP, fmt.DONE, *fmt.ANCILLARY_TYPES)


# ---------------------------------------------------------------------------
# File structure (spec §2, §3), read leniently: mutants are seldom valid
# ---------------------------------------------------------------------------
@dataclasses.dataclass
class Chunk:
    type: bytes
    payload: bytes


def make_chunk(chunk_type: bytes, payload: bytes) -> bytes:
    """A chunk with its true length and CRC."""
    head = len(payload).to_bytes(4, "big") + chunk_type
    return head + payload + zlib.crc32(head + payload).to_bytes(4, "big")


def split_file(data: bytes) -> tuple[bytes, list[Chunk], bytes]:
    """(preamble, chunks, tail): the chunks that frame by their declared lengths, then the rest."""
    chunks = []
    offset = fmt.PREAMBLE_SIZE
    while offset + 12 <= len(data):
        end = offset + 12 + int.from_bytes(data[offset : offset + 4], "big")
        if end > len(data):
            break
        chunks.append(Chunk(data[offset + 4 : offset + 8], data[offset + 8 : end - 4]))
        offset = end
    return data[: fmt.PREAMBLE_SIZE], chunks, data[max(offset, fmt.PREAMBLE_SIZE) :]


def join_file(preamble: bytes, chunks: list[Chunk], tail: bytes = b"") -> bytes:
    return preamble + b"".join(make_chunk(c.type, c.payload) for c in chunks) + tail


def fix_crcs(data: bytes) -> bytes:
    """Recompute the preamble check and every chunk CRC where the declared lengths put them.

    A lying length moves its CRC: the CRC is written at the place the lie
    points to, over the bytes the lie covers, exactly as a parser reads it.
    """
    out = bytearray(data)
    if len(out) >= fmt.PREAMBLE_SIZE and out[:8] == fmt.SIGNATURE:
        out[10:12] = (zlib.crc32(out[:10]) & 0xFFFF).to_bytes(2, "big")
    offset = fmt.PREAMBLE_SIZE
    while offset + 12 <= len(out):
        end = offset + 12 + int.from_bytes(out[offset : offset + 4], "big")
        if end > len(out):
            break
        out[end - 4 : end] = zlib.crc32(out[offset : end - 4]).to_bytes(4, "big")
        offset = end
    return bytes(out)


class Declared(NamedTuple):
    """HEAD's fields as written, unchecked."""

    width: int
    height: int
    colors: int
    rows_per_strip: int
    layout: int
    method: int

    @classmethod
    def from_payload(cls, payload: bytes) -> Declared | None:
        if len(payload) != fmt.HEADER_SIZE:
            return None
        f = fmt.Header.parse(payload)
        return cls(f.width, f.height, f.colors, f.rows_per_strip, f.layout, f.method)

    def build(self) -> bytes:
        return fmt.Header.build(self._asdict())

    def acceptable(self, max_pixels: int | None) -> bool:
        """Would the decoder accept this header (spec §4, §8)?"""
        return (
            1 <= self.width <= fmt.MAX_DIMENSION
            and 1 <= self.height <= fmt.MAX_DIMENSION
            and 1 <= self.colors <= fmt.MAX_COLORS
            and 1 <= self.rows_per_strip <= self.height
            and 1 <= self.layout <= 4
            and self.width * self.height <= min(fmt.MAX_PIXELS, max_pixels or fmt.MAX_PIXELS)
            and self.rows_per_strip * fmt.row_bytes(self.width, 16) <= fmt.MAX_STRIP_BYTES
        )


def declared_header(data: bytes) -> Declared | None:
    """The HEAD a parser would meet first (the chunk right after the preamble)."""
    if data[12:20] != fmt.HEADER_SIZE.to_bytes(4, "big") + fmt.HEAD or len(data) < 38:
        return None
    return Declared.from_payload(data[20:38])


#: CPU seconds each pixel of an accepted header adds to the per-input time limit.  The harness runs the
#: decoder's entry points over the whole image (decode, open_strips, decode_to_png, read_info,
#: decode_image): a one-colour 16,777,215 x 7 image, valid from 126 bytes, took 6.2 s here (53 ns a
#: pixel), past the flat 5 s.  The limit stays what bounds work that the header does not justify.
TIME_PER_PIXEL = 100e-9


def time_allowance(data: bytes, max_pixels: int | None = fmt.DEFAULT_MAX_PIXELS) -> float:
    """CPU seconds beyond the flat per-input limit that decoding *data*'s declared image may take."""
    h = declared_header(data)
    if h is None or not h.acceptable(max_pixels):
        return 0.0
    return TIME_PER_PIXEL * h.width * h.height


def memory_budget(data: bytes, max_pixels: int | None = fmt.DEFAULT_MAX_PIXELS) -> int:
    """Bytes of traced allocation that decoding *data* may justify.

    A header the decoder accepts justifies its output, W x H x C bytes (twice:
    ``decode_image`` copies it), and per strip the decompressed content,
    the labels and the palette lookup, at most 16 bytes per label of one
    strip.  Any other input justifies only :data:`BASE_BUDGET`.
    """
    h = declared_header(data)
    if h is None or not h.acceptable(max_pixels):
        return BASE_BUDGET
    return BASE_BUDGET + 2 * h.width * h.height * h.layout + 16 * min(h.rows_per_strip, h.height) * h.width


# ---------------------------------------------------------------------------
# Strip payloads (spec §6): valid streams, wrong streams and bombs
# ---------------------------------------------------------------------------
class Streams:
    """Decompression bombs, made once per process: zlib and LZMA streams of many zeros."""

    def __init__(self, bomb_bytes: int) -> None:
        self.bomb_bytes = bomb_bytes
        self._cache: dict[str, bytes] = {}

    def _compress_zeros(self, compressor) -> bytes:
        block = bytes(MIB)
        parts = [compressor.compress(block) for _ in range(self.bomb_bytes // MIB)]
        return b"".join(parts) + compressor.compress(bytes(self.bomb_bytes % MIB)) + compressor.flush()

    def zlib_bomb(self) -> bytes:
        if "zlib" not in self._cache:
            self._cache["zlib"] = self._compress_zeros(zlib.compressobj(9))
        return self._cache["zlib"]

    def lzma_bomb(self) -> bytes:
        if "lzma" not in self._cache:
            filters = [{"id": lzma.FILTER_LZMA1, "preset": 6, "dict_size": 2**24}]
            self._cache["lzma"] = self._compress_zeros(lzma.LZMACompressor(format=lzma.FORMAT_ALONE, filters=filters))
        return self._cache["lzma"]


def _content(rng: random.Random, width: int, rows: int, colors: int, bits: int, kind: str) -> bytes:
    """Packed label rows: valid (labels < colors, zero padding) unless *kind* asks for a fault."""
    if kind == "random":  # labels out of range and nonzero padding, as it falls
        return rng.randbytes(rows * fmt.row_bytes(width, bits))
    nprng = np.random.default_rng(rng.getrandbits(32))
    if rng.random() < 0.5:  # low entropy: one random row repeated, compresses fast
        row = nprng.integers(0, colors, (1, width), dtype=np.uint32)
        labels = np.repeat(row, rows, axis=0)
    else:
        labels = nprng.integers(0, colors, (rows, width), dtype=np.uint32)
    if kind == "label-too-big" and colors < 2**bits:
        labels[nprng.integers(rows), nprng.integers(width)] = colors + nprng.integers(2**bits - colors)
    return pack_rows(labels.astype(np.uint16), bits)


def _lzma_alone(rng: random.Random, content: bytes) -> bytes:
    dict_size = rng.choice((4096, 2**16, 2**20, 2**24, 1 << max(12, (len(content) - 1).bit_length())))
    preset = rng.choice((0, 1, 6)) if len(content) <= 2**18 else 0  # preset 6 takes seconds on MiBs
    filters = [{"id": lzma.FILTER_LZMA1, "preset": preset, "dict_size": min(dict_size, 2**24)}]
    return lzma.compress(content, format=lzma.FORMAT_ALONE, filters=filters)


def _lzma_header_lie(rng: random.Random, data: bytes, expected: int) -> bytes:
    """Rewrite one field of an LZMA-alone header (properties, dictionary size, uncompressed size)."""
    if len(data) < 13:
        return data
    head = bytearray(data[:13])
    field = rng.randrange(3)
    if field == 0:
        head[0] = rng.choice((225, 255, 4 + 9 * 1, 9 * 4 + 1, rng.randrange(256)))  # bad pb, lc + lp > 4
    elif field == 1:
        head[1:5] = rng.choice((0, 1, 4096, 2**24, 2**24 + 1, 2**32 - 1, rng.getrandbits(32))).to_bytes(4, "little")
    else:
        size = rng.choice((0, expected, expected - 1, expected + 1, 2**63, 2**64 - 2, rng.getrandbits(64)))
        head[5:13] = (size % 2**64).to_bytes(8, "little")
    return bytes(head) + data[13:]


def strip_data(rng: random.Random, streams: Streams, width: int, rows: int, colors: int) -> tuple[int, bytes, str]:
    """(method id, data, description) for one strip of *rows* rows: often valid, often not."""
    method = rng.choice((0, 1, 2))
    bits = fmt.bits_per_label(colors) if method == 0 else code_width(fmt.bits_per_label(colors))
    expected = rows * fmt.row_bytes(width, bits)
    if rng.random() < 0.15:
        if rng.random() < 0.5:
            return 1, streams.zlib_bomb(), "deflate-bomb"
        return 2, streams.lzma_bomb(), "lzma-bomb"
    if expected > CONTENT_CAP:  # too big to make: short streams and junk, which must be refused
        data = rng.randbytes(rng.randrange(64))
        if method == 1:
            data = zlib.compress(bytes(rng.randrange(1, 4096)))
        elif method == 2:
            data = _lzma_alone(rng, bytes(rng.randrange(1, 4096)))
        return method, data, "short-for-huge"
    kind = rng.choice(("valid", "valid", "valid", "random", "label-too-big", "size-minus", "size-plus"))
    content = _content(rng, width, rows, colors, bits, "random" if kind == "random" else kind)
    if kind == "size-minus":
        content = content[: rng.randrange(len(content) + 1)] if content else content
    elif kind == "size-plus":
        content += rng.randbytes(rng.randrange(1, 64)) if rng.random() < 0.5 else bytes(rng.randrange(1, 2**16))
    if method == 0:
        return method, content, f"stored-{kind}"
    if method == 1:
        variant = rng.choice(("zlib", "zlib", "raw", "gzip", "zdict", "truncated", "trailing", "two-streams"))
        level = rng.choice((0, 1, 6, 9))
        if variant == "raw":
            c = zlib.compressobj(level, wbits=-15)
            data = c.compress(content) + c.flush()
        elif variant == "gzip":
            c = zlib.compressobj(level, wbits=31)
            data = c.compress(content) + c.flush()
        elif variant == "zdict":
            c = zlib.compressobj(level, zdict=rng.randbytes(32) + content[:64])
            data = c.compress(content) + c.flush()
        else:
            data = zlib.compress(content, level)
            if variant == "truncated":
                data = data[: rng.randrange(len(data))]
            elif variant == "trailing":
                data += rng.randbytes(rng.randrange(1, 8))
            elif variant == "two-streams":
                data += zlib.compress(content[:16])
        return method, data, f"deflate-{kind}-{variant}"
    variant = rng.choice(("alone", "alone", "header-lie", "truncated", "trailing", "xz", "raw-lzma2"))
    if variant == "xz":
        data = lzma.compress(content, format=lzma.FORMAT_XZ, preset=0)
    elif variant == "raw-lzma2":
        data = lzma.compress(content, format=lzma.FORMAT_RAW, filters=[{"id": lzma.FILTER_LZMA2, "preset": 0}])
    else:
        data = _lzma_alone(rng, content)
        if variant == "header-lie":
            data = _lzma_header_lie(rng, data, expected)
        elif variant == "truncated":
            data = data[: rng.randrange(len(data))]
        elif variant == "trailing":
            data += rng.randbytes(rng.randrange(1, 8))
    return method, data, f"lzma-{kind}-{variant}"


def strip_payload(index: int, method: int, data: bytes) -> bytes:
    return fmt.StripHead.build({"index": index, "method": method}) + data


# ---------------------------------------------------------------------------
# Mutations: each takes (mutator, rng, data) and returns new bytes
# ---------------------------------------------------------------------------
def _field_offsets(data: bytes) -> list[tuple[int, int]]:
    """(offset, size) of the integer fields a parser reads: lengths, HEAD, strip heads, LZMA headers."""
    fields = [(8, 1), (9, 1), (10, 2)]
    offset = fmt.PREAMBLE_SIZE
    while offset + 12 <= len(data):
        length = int.from_bytes(data[offset : offset + 4], "big")
        fields.append((offset, 4))
        chunk_type = data[offset + 4 : offset + 8]
        p = offset + 8
        if chunk_type == fmt.HEAD:
            fields += [(p, 4), (p + 4, 4), (p + 8, 4), (p + 12, 4), (p + 16, 1), (p + 17, 1)]
        elif chunk_type == fmt.STRP:
            fields += [(p, 4), (p + 4, 1), (p + 5, 1), (p + 6, 4), (p + 10, 4), (p + 14, 4)]
        elif chunk_type == fmt.MADE:
            fields += [(p + 8, 4), (p + 12, 4), (p + 16, 4)]
        if offset + 12 + length > len(data):
            break
        offset += 12 + length
    return [(o, s) for o, s in fields if o + s <= len(data)]


def m_bit_flip(m: Mutator, rng: random.Random, data: bytes) -> bytes:
    out = bytearray(data)
    for _ in range(rng.choice((1, 1, 1, 2, 3, 4))):
        if out:
            out[rng.randrange(len(out))] ^= 1 << rng.randrange(8)
    return bytes(out)


def m_byte_set(m: Mutator, rng: random.Random, data: bytes) -> bytes:
    out = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        if out:
            out[rng.randrange(len(out))] = rng.choice(INTERESTING_U8) if rng.random() < 0.5 else rng.randrange(256)
    return bytes(out)


def m_field_set(m: Mutator, rng: random.Random, data: bytes) -> bytes:
    """Write an edge value into an integer field the parser reads (a length, a HEAD field, ...)."""
    fields = _field_offsets(data)
    if not fields:
        return m_byte_set(m, rng, data)
    offset, size = rng.choice(fields)
    old = int.from_bytes(data[offset : offset + size], "big")
    edge = rng.choice(INTERESTING_U32)
    value = rng.choice(
        (edge, old + rng.randint(-16, 16), old ^ (1 << rng.randrange(8 * size)), rng.getrandbits(8 * size))
    )
    return data[:offset] + (value % 2 ** (8 * size)).to_bytes(size, "big") + data[offset + size :]


def m_lying_length(m: Mutator, rng: random.Random, data: bytes) -> bytes:
    """Make one chunk's length lie; the final CRC fix puts a valid CRC where the lie points."""
    starts = [o for o, s in _field_offsets(data) if s == 4 and o >= fmt.PREAMBLE_SIZE and data[o + 4 : o + 8].isalpha()]
    if not starts:
        return m_field_set(m, rng, data)
    offset = rng.choice(starts)
    old = int.from_bytes(data[offset : offset + 4], "big")
    rest = len(data) - offset - 12
    value = rng.choice((old + rng.randint(1, 16), max(0, old - rng.randint(1, 16)), 0, rest, rest + 1, rest - 4))
    value = rng.choice((value, value, rng.choice((2**31 - 1, 2**31, 2**32 - 1, rng.getrandbits(32)))))
    return data[:offset] + (max(0, value) % 2**32).to_bytes(4, "big") + data[offset + 4 :]


def m_insert(m: Mutator, rng: random.Random, data: bytes) -> bytes:
    at = rng.randint(0, len(data))
    if data and rng.random() < 0.5:
        start = rng.randrange(len(data))
        blob = data[start : start + rng.randint(1, 64)]
    else:
        blob = rng.randbytes(rng.randint(1, 32))
    return data[:at] + blob + data[at:]


def m_delete(m: Mutator, rng: random.Random, data: bytes) -> bytes:
    if not data:
        return data
    at = rng.randrange(len(data))
    return data[:at] + data[at + rng.randint(1, 32) :]


def m_truncate(m: Mutator, rng: random.Random, data: bytes) -> bytes:
    return data[: rng.randrange(len(data))] if data else data


def m_append(m: Mutator, rng: random.Random, data: bytes) -> bytes:
    extra = rng.choice((b"\x00", rng.randbytes(rng.randint(1, 16)), make_chunk(fmt.DONE, b""), data[-12:]))
    return data + extra


def m_splice(m: Mutator, rng: random.Random, data: bytes) -> bytes:
    """The front of this file and the back of another, cut anywhere or at chunk boundaries."""
    other = rng.choice(m.corpus)
    if rng.random() < 0.5:
        return data[: rng.randint(0, len(data))] + other[rng.randint(0, len(other)) :]
    p1, c1, _ = split_file(data)
    _, c2, t2 = split_file(other)
    i, j = rng.randint(0, len(c1)), rng.randint(0, len(c2))
    return join_file(p1, c1[:i] + c2[j:], t2)


def _chunk_op(op: Callable[[random.Random, list[Chunk], Mutator], None]):
    def mutate(m: Mutator, rng: random.Random, data: bytes) -> bytes:
        preamble, chunks, tail = split_file(data)
        op(rng, chunks, m)
        return join_file(preamble, chunks, tail)

    mutate.__doc__ = op.__doc__
    return mutate


def _swap(rng: random.Random, chunks: list[Chunk], m: Mutator) -> None:
    """Swap two chunks or move one elsewhere."""
    if len(chunks) >= 2:
        i, j = rng.sample(range(len(chunks)), 2)
        if rng.random() < 0.5:
            chunks[i], chunks[j] = chunks[j], chunks[i]
        else:
            chunks.insert(j, chunks.pop(i))


def _duplicate(rng: random.Random, chunks: list[Chunk], m: Mutator) -> None:
    if chunks:
        c = rng.choice(chunks)
        chunks.insert(rng.randint(0, len(chunks)), Chunk(c.type, c.payload))


def _remove(rng: random.Random, chunks: list[Chunk], m: Mutator) -> None:
    if chunks:
        del chunks[rng.randrange(len(chunks))]


def _random_type(rng: random.Random) -> bytes:
    letters = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
    choice = rng.random()
    if choice < 0.5:
        return rng.choice(KNOWN_TYPES)
    if choice < 0.9:
        return bytes(rng.choice(letters) for _ in range(4))
    return rng.randbytes(4)  # not letters: FormatError at the framing check


def _insert_chunk(rng: random.Random, chunks: list[Chunk], m: Mutator) -> None:
    payload = rng.randbytes(rng.choice((0, 1, 5, 18, 28, rng.randint(0, 300))))
    chunks.insert(rng.randint(0, len(chunks)), Chunk(_random_type(rng), payload))


def _retype(rng: random.Random, chunks: list[Chunk], m: Mutator) -> None:
    if chunks:
        rng.choice(chunks).type = _random_type(rng)


def _resize(rng: random.Random, chunks: list[Chunk], m: Mutator) -> None:
    """Grow or shrink one payload (a PALT that does not fit k x C, a short HEAD, ...)."""
    if chunks:
        c = rng.choice(chunks)
        if c.payload and rng.random() < 0.5:
            c.payload = c.payload[: rng.randrange(len(c.payload))]
        else:
            c.payload += rng.randbytes(rng.choice((1, 2, 3, 4, rng.randint(1, 100))))


def _head_fields(rng: random.Random, chunks: list[Chunk], m: Mutator) -> None:
    """Set one to three HEAD fields to edge values, nothing else changed."""
    heads = [c for c in chunks if c.type == fmt.HEAD and Declared.from_payload(c.payload)]
    if not heads:
        return
    head = rng.choice(heads)
    values = Declared.from_payload(head.payload)._asdict()
    for name in rng.sample(list(values), rng.randint(1, 3)):
        if name in ("layout", "method"):
            values[name] = rng.choice(INTERESTING_U8)
        else:
            values[name] = rng.choice((rng.choice(INTERESTING_U32), values[name] + rng.randint(-2, 2)))
        values[name] %= 2**8 if name in ("layout", "method") else 2**32
    head.payload = Declared(**values).build()


def _pick_size(rng: random.Random) -> tuple[int, int]:
    """Width and height: mostly small, sometimes large, now and then at or past the format's limits."""
    kind = rng.random()
    if kind < 0.8:
        return rng.randint(1, 64), rng.randint(1, 64)
    if kind < 0.9:
        return rng.choice((1, rng.randint(1, 1024), 1024)), rng.choice((1, rng.randint(1, 1024), 1024))
    edge = (1, 2**14, 2**16, 2**24 - 1, 2**24, 2**32 - 1, rng.randint(1, 2**24))
    return rng.choice(edge), rng.choice(edge)


def _reshape(rng: random.Random, chunks: list[Chunk], m: Mutator) -> None:
    """Declare a new size, colours and layout, with a PALT and strips made to fit (or nearly).

    This is what reaches the strip decoders with sizes other than the
    vectors': huge declared images with a consistent strip count,
    decompression bombs against small and large expected sizes.
    """
    width, height = _pick_size(rng)
    colors = rng.choice((rng.choice(COLOR_CHOICES), rng.randint(1, 70000)))
    layout = rng.choice((1, 2, 3, 4, 4, 3, rng.choice((0, 5, 255))))
    strips = rng.randint(1, 4)
    rows = max(1, -(-height // strips))
    if rows * fmt.row_bytes(width, 16) > fmt.MAX_STRIP_BYTES:
        rows = max(1, fmt.MAX_STRIP_BYTES // max(1, fmt.row_bytes(width, 16)))
    rows = rng.choice((rows, rows, rng.choice((0, rows + 1, rows - 1, height))))
    count = -(-height // rows) if rows > 0 else 1
    written = []
    for index in range(min(count, MAX_GENERATED_STRIPS)):
        h = min(rows, height - index * rows) if rows > 0 else 1
        method, data, _ = strip_data(rng, m.streams, width, max(1, min(h, 2**24)), max(1, min(colors, 2**16)))
        written.append((method, data))
    methods = {method for method, _ in written}
    head_method = methods.pop() if len(methods) == 1 else fmt.METHOD_MIXED
    if rng.random() < 0.1:
        head_method = rng.choice(INTERESTING_U8)
    header = Declared(width % 2**32, height % 2**32, colors, max(0, rows) % 2**32, layout, head_method)
    palette_size = min(colors, 2**16) * (layout if 1 <= layout <= 4 else 3)
    if rng.random() < 0.1:
        palette_size += rng.choice((-1, 1, 3))
    new = [Chunk(fmt.HEAD, header.build())]
    new += [c for c in chunks if c.type in fmt.ANCILLARY_TYPES and rng.random() < 0.7]
    new.append(Chunk(fmt.PALT, rng.randbytes(max(0, palette_size))))
    new += [Chunk(fmt.STRP, strip_payload(i, method, data)) for i, (method, data) in enumerate(written)]
    new.append(Chunk(fmt.DONE, b""))
    chunks[:] = new


def _strip(rng: random.Random, chunks: list[Chunk], m: Mutator) -> None:
    """Replace one strip's data with a generated stream for the size the header declares."""
    strips = [i for i, c in enumerate(chunks) if c.type == fmt.STRP]
    heads = [Declared.from_payload(c.payload) for c in chunks if c.type == fmt.HEAD]
    if not strips or not heads or heads[0] is None:
        return
    h = heads[0]
    i = rng.choice(strips)
    index = int.from_bytes(chunks[i].payload[:4], "big") if len(chunks[i].payload) >= 4 else 0
    rows = max(1, min(h.rows_per_strip, h.height - index * h.rows_per_strip, 2**16))
    method, data, _ = strip_data(rng, m.streams, max(1, min(h.width, 2**24)), rows, max(1, min(h.colors, 2**16)))
    if rng.random() < 0.1:
        method = rng.choice(INTERESTING_U8)
    chunks[i].payload = strip_payload(index, method, data)
    if method != h.method and rng.random() < 0.8:  # mostly let HEAD agree, so the stream is reached
        head = next(c for c in chunks if c.type == fmt.HEAD)
        head.payload = h._replace(method=fmt.METHOD_MIXED).build()


def _strip_head(rng: random.Random, chunks: list[Chunk], m: Mutator) -> None:
    """Set a strip's index or method to an edge value."""
    strips = [c for c in chunks if c.type == fmt.STRP and len(c.payload) >= 5]
    if strips:
        c = rng.choice(strips)
        if rng.random() < 0.5:
            c.payload = rng.choice(INTERESTING_U32).to_bytes(4, "big") + c.payload[4:]
        else:
            c.payload = c.payload[:4] + bytes([rng.choice(INTERESTING_U8)]) + c.payload[5:]


def _swap_in(rng: random.Random, chunks: list[Chunk], m: Mutator) -> None:
    """Replace a chunk with one of the same type from another vector (a PALT of another k, ...)."""
    _, others, _ = split_file(rng.choice(m.corpus))
    if chunks and others:
        i = rng.randrange(len(chunks))
        same = [c for c in others if c.type == chunks[i].type] or others
        c = rng.choice(same)
        chunks[i] = Chunk(c.type, c.payload)


#: The context-modelled methods, whose streams the cm-method mutation trades (cmx, the newest, most often).
CM_FAMILY = (fmt.Method.CM, fmt.Method.CMM, fmt.Method.CM2D, fmt.Method.CMX, fmt.Method.CMX)
#: Labels up to which the cm-method mutation codes a fresh cmx strip (more only slows the campaign).
CMX_STRIP_LABELS = 2**16


def m_cm_method(m: Mutator, rng: random.Random, data: bytes) -> bytes:
    """Give a strip another cm method: its stream read as another model, or a fresh cmx stream, maybe cut or flipped.

    The file's minor version is raised to the method's, so that the stream is
    decoded rather than refused as unknown; HEAD mostly agrees.
    """
    preamble, chunks, tail = split_file(data)
    strips = [c for c in chunks if c.type == fmt.STRP and len(c.payload) >= 5]
    heads = [c for c in chunks if c.type == fmt.HEAD]
    h = Declared.from_payload(heads[0].payload) if heads else None
    if not strips or h is None or len(preamble) < fmt.PREAMBLE_SIZE:
        return data
    c = rng.choice(strips)
    method = rng.choice(CM_FAMILY)
    stream = c.payload[5:]
    index = int.from_bytes(c.payload[:4], "big")
    rows = max(1, min(h.rows_per_strip, h.height - index * h.rows_per_strip))
    fits = 2 <= h.colors <= fmt.MAX_COLORS and 0 < h.width * rows <= CMX_STRIP_LABELS
    if method == fmt.Method.CMX and fits and rng.random() < 0.5:  # a valid cmx stream of text-like labels
        nprng = np.random.default_rng(rng.getrandbits(32))
        labels = np.repeat(nprng.integers(0, h.colors, (rows, h.width // 4 + 1)), 4, axis=1)[:, : h.width]
        noise = nprng.random(labels.shape) < 0.05
        labels[noise] = nprng.integers(0, h.colors, int(noise.sum()))
        stream = cm.encode_labels(labels.astype(np.uint16), h.colors, mix=True)
        if stream and rng.random() < 0.5:
            fault = rng.choice(("cut", "flip", "append"))
            if fault == "cut":
                stream = stream[: rng.randrange(len(stream))]
            elif fault == "flip":
                at = rng.randrange(len(stream))
                stream = stream[:at] + bytes([stream[at] ^ (1 << rng.randrange(8))]) + stream[at + 1 :]
            else:
                stream += rng.randbytes(rng.randrange(1, 4))
    c.payload = c.payload[:4] + bytes([method]) + stream
    if method != h.method and rng.random() < 0.8:  # mostly let HEAD agree, so the stream is reached
        heads[0].payload = h._replace(method=fmt.METHOD_MIXED).build()
    minor = max(preamble[9], fmt.METHOD_MINOR[method])
    return join_file(preamble[:9] + bytes([minor]) + preamble[10:], chunks, tail)


#: name -> (weight, mutation).  The weights favour what reaches deep code.
MUTATIONS: dict[str, tuple[int, Callable[[Mutator, random.Random, bytes], bytes]]] = {
    "bit-flip": (10, m_bit_flip),
    "byte-set": (6, m_byte_set),
    "field-set": (12, m_field_set),
    "lying-length": (8, m_lying_length),
    "insert": (4, m_insert),
    "delete": (4, m_delete),
    "truncate": (4, m_truncate),
    "append": (2, m_append),
    "splice": (4, m_splice),
    "chunk-swap": (4, _chunk_op(_swap)),
    "chunk-duplicate": (4, _chunk_op(_duplicate)),
    "chunk-remove": (4, _chunk_op(_remove)),
    "chunk-insert": (4, _chunk_op(_insert_chunk)),
    "chunk-retype": (3, _chunk_op(_retype)),
    "chunk-resize": (4, _chunk_op(_resize)),
    "chunk-swap-in": (3, _chunk_op(_swap_in)),
    "head-fields": (10, _chunk_op(_head_fields)),
    "reshape": (10, _chunk_op(_reshape)),
    "strip-data": (12, _chunk_op(_strip)),
    "strip-head": (4, _chunk_op(_strip_head)),
    "cm-method": (6, m_cm_method),
}


class Mutator:
    """Makes input number *index* of a campaign with *seed*: a pure function of both."""

    #: Share of inputs whose CRCs are recomputed after mutation.
    FIX_CRCS = 0.85

    def __init__(self, corpus: list[bytes], *, bomb_bytes: int = 64 * MIB) -> None:
        if not corpus:
            msg = "empty corpus"
            raise ValueError(msg)
        self.corpus = corpus
        self.streams = Streams(bomb_bytes)
        self._names = list(MUTATIONS)
        self._weights = [MUTATIONS[n][0] for n in self._names]

    def generate(self, seed: int, index: int) -> tuple[bytes, tuple[str, ...]]:
        """(input bytes, names of the mutations applied, ending in "crc-fixed" or "crc-kept")."""
        rng = random.Random(f"kmc-fuzz/{seed}/{index}")
        data = rng.choice(self.corpus)
        names = rng.choices(self._names, self._weights, k=rng.choice((1, 1, 1, 2, 2, 3)))
        for name in names:
            data = MUTATIONS[name][1](self, rng, data)
        fixed = rng.random() < self.FIX_CRCS
        if fixed:
            data = fix_crcs(data)
        return data, (*names, "crc-fixed" if fixed else "crc-kept")


def load_corpus(folder: Path | str) -> list[bytes]:
    files = sorted(Path(folder).glob("*.kmc"))
    if not files:
        msg = f"no .kmc files in {folder}"
        raise FileNotFoundError(msg)
    return [f.read_bytes() for f in files]


# ---------------------------------------------------------------------------
# Running one input: outcome, time and memory
# ---------------------------------------------------------------------------
class InputTimeout(BaseException):
    """Raised by a per-input alarm; a BaseException, so no ``except Exception`` in the decoder eats it."""


def _cpu_alarm(signum, frame):
    raise InputTimeout("cpu")


def _wall_alarm(signum, frame):
    raise InputTimeout("wall")


class Result(NamedTuple):
    index: int
    outcome: str  # "decoded", a KmcError class name, or one of FAILURES
    seconds: float  # wall time
    traced_peak: int  # bytes, 0 when not measured
    rss_growth: int  # bytes, 0 when not measured
    budget: int  # bytes the declared size justifies
    mutations: tuple[str, ...] = ()
    detail: str = ""  # traceback or explanation of a failure: the limit that tripped and the value measured
    file_bytes: int = 0
    cpu_seconds: float = 0.0  # CPU time of the process (all threads) while it ran
    header: str = ""  # the HEAD a parser meets first, as declared, or "" when there is none

    def headline(self, seed: int) -> str:
        """Which input this is: seed, index, mutations, size and declared HEAD, and how to replay it."""
        head = f"; HEAD {self.header}" if self.header else ""
        return (
            f"{self.outcome}: seed {seed}, index {self.index} ({' + '.join(self.mutations) or 'no mutations'}; "
            f"{self.file_bytes:,} bytes{head}); replay: python tools/fuzz.py --seed {seed} --replay {self.index}"
        )


#: Outcomes that fail a campaign.
FAILURES = ("escape", "hang", "crash", "memory", "mismatch")

#: The wall-clock limit per input, as a multiple of the CPU-time limit, when none is given.  An input
#: that computes is stopped by the CPU-time limit, which machine load cannot trip; the wall limit only
#: stops one that blocks without computing, and is wide enough that load does not reach it either: an
#: input using all its CPU limit would need a process getting under a tenth of a core, and inputs use
#: a small part of it (with both cores of a 2-core machine loaded by 10 processes, wall time was 6
#: times CPU time).
WALL_FACTOR = 10.0


def _proc_status_kib(*fields: str) -> dict[str, int]:
    """Fields of /proc/self/status in KiB (Linux; empty elsewhere)."""
    found = {}
    try:
        with open("/proc/self/status") as f:
            for line in f:
                name = line.split(":", 1)[0]
                if name in fields:
                    found[name] = int(line.split()[1])
    except OSError:
        pass
    return found


def _reset_peak_rss() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # Linux: reset the peak resident set (VmHWM) to the current one
        return True
    except OSError:
        return False


def _decode_streamed(data: bytes) -> np.ndarray:
    """The image from ``kmcodec.open_strips``, the strips stacked (the PNG writer run on them too)."""
    with kmcodec.open_strips(io.BytesIO(data)) as reader:
        strips = [pixels for _, pixels in reader]
    kmcodec.decode_to_png(data, io.BytesIO())
    return np.concatenate(strips)


def _decode_all(data: bytes) -> str:
    """Run the decoder's entry points; the outcome name, or raise what escaped."""
    error = None
    try:
        pixels = kmcodec.decode(data)
    except kmcodec.KmcError as exc:
        error = repr(exc)  # not exc: its traceback would keep the decoder's state alive
    if error is not None:
        with contextlib.suppress(kmcodec.KmcError):
            kmcodec.read_info(data)
        try:
            _decode_streamed(data)
        except kmcodec.KmcError:
            return error[: error.index("(")]
        return f"mismatch: decode raised {error}, the streaming decoder did not"
    try:
        streamed = _decode_streamed(data)
    except kmcodec.KmcError as exc:
        return f"mismatch: decode succeeded, the streaming decoder raised {exc!r}"
    if not np.array_equal(streamed, pixels):
        return "mismatch: the streaming decoder gave other pixels than decode"
    try:
        info = kmcodec.read_info(data)
    except kmcodec.KmcError as exc:
        return f"mismatch: decode succeeded, read_info raised {exc!r}"
    if pixels.shape != (info.height, info.width, len(info.mode)) or pixels.dtype != np.uint8:
        got = f"{pixels.shape} {pixels.dtype}"
        return f"mismatch: decode gave {got}, read_info {info.width} x {info.height} {info.mode}"
    image = kmcodec.decode_image(data)
    if image.size != (info.width, info.height) or image.mode != info.mode:
        return f"mismatch: decode_image gave {image.size} {image.mode}"
    return "decoded"


class _Alarms:
    """The per-input alarms: CPU time (ITIMER_PROF, SIGPROF) and wall time (ITIMER_REAL, SIGALRM)."""

    def __init__(self, cpu_limit: float, wall_limit: float) -> None:
        self.limits = [
            (signal.ITIMER_PROF, signal.SIGPROF, _cpu_alarm, cpu_limit),
            (signal.ITIMER_REAL, signal.SIGALRM, _wall_alarm, wall_limit),
        ]
        self.limits = [t for t in self.limits if t[3] > 0] if hasattr(signal, "setitimer") else []
        self.old_handlers: list = []

    def __enter__(self) -> _Alarms:
        self.old_handlers = [signal.signal(signum, handler) for _, signum, handler, _ in self.limits]
        for timer, _, _, seconds in self.limits:
            signal.setitimer(timer, seconds)
        return self

    def __exit__(self, *exc_info) -> None:
        for timer, _, _, _ in self.limits:
            signal.setitimer(timer, 0)
        for (_, signum, _, _), old in zip(self.limits, self.old_handlers, strict=True):
            signal.signal(signum, old)


def _header_text(h: Declared | None) -> str:
    return "" if h is None else f"{h.width} x {h.height}, {h.colors} colours, layout {h.layout}, method {h.method}"


def check_input(
    data: bytes,
    *,
    time_limit: float,
    wall_limit: float | None = None,
    max_rss: int | None = None,
    index: int = -1,
    mutations: tuple[str, ...] = (),
) -> Result:
    """Run one input under alarms, measuring its time and memory; never raises (but Ctrl-C).

    *time_limit* bounds the process's CPU time, which machine load does not
    inflate, so only an input that computes too long trips it; *wall_limit*
    (default :data:`WALL_FACTOR` times *time_limit*) bounds the wall time,
    for an input that blocks.  An alarm interrupts Python code only: code in
    C that overruns is caught when it returns (and by the supervisor of
    :func:`run_supervised` when it never does).

    The traced peak is measured when tracemalloc is running (the caller starts
    it: it slows the decoder about 6 times), the resident set always (Linux):
    its high-water mark over the input, which counts pages touched, not time,
    so machine load does not move it either.
    """
    if time_limit > 0:  # a big declared image justifies its time, as it does its memory (memory_budget)
        extra = time_allowance(data)
        time_limit += extra
        wall_limit = None if wall_limit is None else wall_limit + WALL_FACTOR * extra
    wall_limit = WALL_FACTOR * time_limit if wall_limit is None else wall_limit
    tracing = tracemalloc.is_tracing()
    rss_ok = _reset_peak_rss()
    before = _proc_status_kib("VmRSS", "RssAnon", "RssFile")
    if tracing:
        tracemalloc.reset_peak()
        traced_before = tracemalloc.get_traced_memory()[0]
    detail = ""
    start, cpu_start = time.perf_counter(), time.process_time()
    try:
        with _Alarms(time_limit, wall_limit):
            outcome = _decode_all(data)
    except InputTimeout as exc:
        outcome, tripped = "hang", exc.args[0]
    except Exception:  # the only outcome this harness exists to find
        outcome, detail = "escape", traceback.format_exc()
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    if outcome not in FAILURES:  # an overrun in C code, which the alarms cannot interrupt
        if cpu_seconds > time_limit > 0:
            outcome, tripped = "hang", "late cpu"
        elif seconds > wall_limit > 0:
            outcome, tripped = "hang", "late wall"
    if outcome == "hang":
        kind, limit, used = (
            ("CPU", time_limit, cpu_seconds) if tripped.endswith("cpu") else ("wall", wall_limit, seconds)
        )
        how = (
            f"{used:.2f} s, over the {limit:g} s limit in code no alarm interrupts"
            if tripped.startswith("late")
            else f"interrupted at the {limit:g} s limit"
        )
        detail = f"{kind} time limit tripped: {how}; wall {seconds:.2f} s, CPU {cpu_seconds:.2f} s"
    if outcome.startswith("mismatch"):
        outcome, detail = "mismatch", outcome
    traced = tracemalloc.get_traced_memory()[1] - traced_before if tracing else 0
    after = _proc_status_kib("VmHWM", "RssAnon", "RssFile")
    rss_growth = max(0, after.get("VmHWM", 0) - before.get("VmRSS", 0)) * 1024 if rss_ok else 0
    budget = memory_budget(data)
    # What the declared image justifies (its output, twice) may pass the flat limit: a one-colour
    # 16,777,215 x 7 image is valid from a few hundred bytes and its pixels alone take 336 MiB.
    max_rss = max(max_rss, budget - BASE_BUDGET) if max_rss else None
    if outcome not in FAILURES and (traced > budget or (max_rss and rss_growth > max_rss)):
        outcome = "memory"
        over = []
        if traced > budget:
            over.append(f"traced peak {traced / MIB:.1f} MiB over the budget {budget / MIB:.1f} MiB")
        if max_rss and rss_growth > max_rss:
            anon, file = (
                (after.get(f, 0) - before.get(f, 0)) / 1024 for f in ("RssAnon", "RssFile")
            )  # at the end: file pages faulted back in under memory pressure show here
            over.append(
                f"RSS growth {rss_growth / MIB:.1f} MiB over the limit {max_rss / MIB:.0f} MiB "
                f"(resident at the end: anonymous {anon:+.1f} MiB, file-backed {file:+.1f} MiB)"
            )
        detail = "memory limit tripped: " + "; ".join(over)
    return Result(
        index,
        outcome,
        seconds,
        traced,
        rss_growth,
        budget,
        tuple(mutations),
        detail,
        len(data),
        cpu_seconds,
        _header_text(declared_header(data)),
    )


# ---------------------------------------------------------------------------
# Campaigns
# ---------------------------------------------------------------------------
@dataclasses.dataclass
class Config:
    count: int = 10_000
    seed: int = 0
    time_limit: float = 5.0  # CPU seconds per input
    wall_limit: float | None = None  # wall seconds per input; None: WALL_FACTOR * time_limit
    max_rss_mb: float = 512.0
    corpus: str = str(DEFAULT_CORPUS)
    save_crashers: str | None = None
    bomb_mib: int = 64
    trace_memory: bool = True  # tracemalloc on every input (RSS is always tracked)
    progress: float = 30.0  # seconds between progress lines, 0 for none

    @property
    def max_rss(self) -> int | None:
        return int(self.max_rss_mb * MIB) if self.max_rss_mb else None

    @property
    def wall_seconds(self) -> float:
        return WALL_FACTOR * self.time_limit if self.wall_limit is None else self.wall_limit


@dataclasses.dataclass
class Stats:
    """What a campaign found; :meth:`report` prints it."""

    run: int = 0
    seconds: float = 0.0
    outcomes: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    mutations: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    failures: list[Result] = dataclasses.field(default_factory=list)
    slowest: Result | None = None
    most_traced: Result | None = None
    most_rss: Result | None = None
    worst_budget_share: Result | None = None
    max_input_bytes: int = 0
    interrupted: bool = False

    def add(self, r: Result) -> None:
        self.run += 1
        self.outcomes[r.outcome] += 1
        self.mutations.update(r.mutations)
        self.max_input_bytes = max(self.max_input_bytes, r.file_bytes)
        if r.outcome in FAILURES:
            self.failures.append(r)
        if self.slowest is None or r.cpu_seconds > self.slowest.cpu_seconds:
            self.slowest = r
        if self.most_traced is None or r.traced_peak > self.most_traced.traced_peak:
            self.most_traced = r
        if self.most_rss is None or r.rss_growth > self.most_rss.rss_growth:
            self.most_rss = r
        w = self.worst_budget_share
        if w is None or r.traced_peak / r.budget > w.traced_peak / w.budget:
            self.worst_budget_share = r

    def count(self, outcome: str) -> int:
        return self.outcomes.get(outcome, 0)

    @property
    def failed(self) -> bool:
        return bool(self.failures)

    def report(self, config: Config, *, tracebacks: int = 3) -> str:
        rate = self.run / self.seconds if self.seconds else 0.0
        lines = [
            f"inputs run      {self.run:,} (seed {config.seed}, corpus {config.corpus})"
            + (", interrupted" if self.interrupted else ""),
            f"wall time       {self.seconds:.1f} s ({rate:,.0f} inputs/s)",
            f"escapes         {self.count('escape')}",
            f"hangs           {self.count('hang')} (per input: CPU time limit {config.time_limit:g} s, "
            f"wall time limit {config.wall_seconds:g} s, each {TIME_PER_PIXEL * 1e6:g} s and {WALL_FACTOR:g} "
            "times that more per declared megapixel)",
            f"crashes         {self.count('crash')}",
            f"memory          {self.count('memory')} over budget",
            f"mismatches      {self.count('mismatch')}",
        ]
        if self.slowest:
            r = self.slowest
            lines.append(
                f"slowest input   {r.cpu_seconds * 1000:.1f} ms CPU, {r.seconds * 1000:.1f} ms wall (index {r.index})"
            )
        if not config.trace_memory:
            lines.append("max traced peak not measured (--no-tracemalloc)")
        elif self.most_traced:
            r = self.most_traced
            lines.append(
                f"max traced peak {r.traced_peak / MIB:.2f} MiB (index {r.index}, budget {r.budget / MIB:.1f} MiB)"
            )
        if self.worst_budget_share and config.trace_memory:
            r = self.worst_budget_share
            lines.append(
                f"max peak/budget {r.traced_peak / r.budget:.3f} (index {r.index}: {r.traced_peak / MIB:.2f} of "
                f"{r.budget / MIB:.1f} MiB)"
            )
        if self.most_rss:
            r = self.most_rss
            lines.append(f"max RSS growth  {r.rss_growth / MIB:.2f} MiB (index {r.index})")
        lines.append(f"largest input   {self.max_input_bytes:,} bytes")
        lines.append("outcomes        " + ", ".join(f"{k} {v:,}" for k, v in self.outcomes.most_common()))
        lines.append("mutations used  " + ", ".join(f"{k} {v:,}" for k, v in sorted(self.mutations.items())))
        for r in self.failures[:tracebacks]:
            lines.append(f"--- {r.headline(config.seed)}")
            lines.append(r.detail.rstrip())
        if len(self.failures) > tracebacks:
            lines.append(f"... and {len(self.failures) - tracebacks} more failures")
        return "\n".join(lines)


def _check_generated(config: Config, data: bytes, index: int, names: tuple[str, ...]) -> Result:
    """check_input of generated input *index* (made by *names*) under the campaign's limits."""
    return check_input(
        data,
        time_limit=config.time_limit,
        wall_limit=config.wall_seconds,
        max_rss=config.max_rss,
        index=index,
        mutations=names,
    )


def save_crasher(folder: str | os.PathLike, seed: int, result: Result, data: bytes) -> Path:
    """Write a failing input and a note on how it failed; returns the .kmc path."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{result.outcome}-seed{seed}-{result.index:08d}.kmc"
    path.write_bytes(data)
    note = f"{result.headline(seed)}\n\n{result.detail}\n"
    path.with_suffix(".txt").write_text(note)
    return path


def run_inputs(
    config: Config,
    start: int,
    stop: int,
    on_result: Callable[[Result], None],
    mutator: Mutator | None = None,
    on_allowance: Callable[[float], None] | None = None,
) -> None:
    """Generate and check inputs start .. stop - 1 in this process, handing each result to *on_result*.

    Before an input whose declared image earns it more time (:func:`time_allowance`), *on_allowance*
    is told how much, so that a supervisor can wait as long.
    """
    mutator = mutator or Mutator(load_corpus(config.corpus), bomb_bytes=config.bomb_mib * MIB)
    started_tracing = config.trace_memory and not tracemalloc.is_tracing()
    if started_tracing:
        tracemalloc.start()
    try:
        for index in range(start, stop):
            data, names = mutator.generate(config.seed, index)
            if on_allowance is not None and (extra := time_allowance(data)) > 1.0:  # else within STALL_GRACE
                on_allowance(extra)
            r = _check_generated(config, data, index, names)
            if r.outcome in FAILURES and config.save_crashers:
                save_crasher(config.save_crashers, config.seed, r, data)
            on_result(r)
    finally:
        if started_tracing:
            tracemalloc.stop()


def warm_up() -> None:
    """Run every decode path once before any input's clock starts.

    The first use of a path pays for its lazy imports and first-touch
    allocations, which would otherwise land on the first input that reached
    it.  The golden vectors reach them all: the smallest of each method (cm
    and cmm among them) and layout, through every entry point the inputs go
    through.
    """
    smallest = {}
    for data in sorted(load_corpus(DEFAULT_CORPUS), key=len):
        h = declared_header(data)
        smallest.setdefault(h and (h.method, h.layout), data)
    for data in smallest.values():
        _decode_all(data)


def run_campaign(config: Config, mutator: Mutator | None = None, log=None) -> Stats:
    """Run a campaign in this process (``--in-process``): a hang in C code blocks it."""
    warm_up()
    stats = Stats()
    start = time.perf_counter()
    last = start

    def on_result(r: Result) -> None:
        nonlocal last
        stats.add(r)
        now = time.perf_counter()
        if log and config.progress and now - last >= config.progress:
            last = now
            log(_progress_line(stats, now - start, config.count))

    run_inputs(config, 0, config.count, on_result, mutator)
    stats.seconds = time.perf_counter() - start
    return stats


def _say(line: str) -> None:
    print(line, flush=True)


def _progress_line(stats: Stats, elapsed: float, total: int) -> str:
    bad = sum(stats.count(f) for f in FAILURES)
    return f"[{elapsed:7.1f} s] {stats.run:,} / {total:,} inputs, {stats.run / elapsed:,.0f}/s, {bad} failures"


def _worker(conn, config: Config, start: int) -> None:
    """Child process: run inputs from *start* on, sending each Result to the parent."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C
    mutator = Mutator(load_corpus(config.corpus), bomb_bytes=config.bomb_mib * MIB)
    mutator.streams.zlib_bomb()  # make the bombs before the first input's clock starts
    mutator.streams.lzma_bomb()
    warm_up()
    conn.send("ready")
    run_inputs(config, start, config.count, conn.send, mutator, conn.send)
    conn.send("done")
    conn.close()


#: CPU seconds a child may take to start (import, build the bombs, warm up) before it counts as hung.
STARTUP_GRACE = 120.0
#: CPU seconds beyond the per-input limit before a silent child is killed (generation time, slack).
STALL_GRACE = 10.0


def _cpu_seconds_of(pid: int) -> float | None:
    """CPU time (user + system) process *pid* has used so far, from /proc (Linux); None elsewhere."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()  # after the command name, which may hold spaces
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # fields 14 and 15 of proc(5)
    except (OSError, ValueError, IndexError):
        return None


class _Watchdog:
    """Whether a silent child has overrun: by its CPU time, which load does not inflate, or its wall time.

    Each message from the child restarts it.  The CPU limit catches a child
    that computes without end (a hang in C code, out of the per-input
    alarm's reach); the wall limit, :data:`WALL_FACTOR` times wider, one that
    blocks, and stands alone where /proc is missing.
    """

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.restart(STARTUP_GRACE, WALL_FACTOR * STARTUP_GRACE)

    def restart(self, cpu_limit: float, wall_limit: float) -> None:
        self.cpu_limit, self.wall_limit = cpu_limit, wall_limit
        self.cpu_start, self.wall_start = _cpu_seconds_of(self.pid), time.monotonic()

    def overrun(self) -> str | None:
        """Why the child should be killed, with the values measured, or None."""
        wall = time.monotonic() - self.wall_start
        now = _cpu_seconds_of(self.pid)
        cpu = None if now is None or self.cpu_start is None else now - self.cpu_start
        cpu_text = "not measured" if cpu is None else f"{cpu:.1f} s"
        if cpu is not None and cpu > self.cpu_limit:
            return (
                f"CPU time limit tripped: worker computed {cpu:.1f} s without reporting "
                f"(limit {self.cpu_limit:g} s; wall {wall:.1f} s) and was killed"
            )
        if wall > self.wall_limit:
            return (
                f"wall time limit tripped: worker silent for {wall:.1f} s "
                f"(limit {self.wall_limit:g} s; CPU {cpu_text}) and was killed"
            )
        return None


def run_supervised(config: Config, log=None) -> Stats:
    """Run a campaign in child processes, killing and replacing a child that hangs or dies."""
    ctx = multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn")
    if ctx.get_start_method() == "fork":
        warm_up()  # the children inherit the warmed-up imports
    stats = Stats()
    begin = time.perf_counter()
    last_log = begin
    next_index = 0
    log = log or _say
    mutator = None  # made in this process only to save the input of a hang or crash
    while next_index < config.count:
        receiver, sender = ctx.Pipe(duplex=False)
        child = ctx.Process(target=_worker, args=(sender, config, next_index), daemon=True)
        child.start()
        sender.close()
        watchdog = _Watchdog(child.pid)
        lost = None  # (outcome, detail) when the child hangs or dies
        try:
            while True:
                if receiver.poll(0.2):
                    try:
                        msg = receiver.recv()
                    except EOFError:
                        child.join(5)
                        lost = ("crash", f"worker died with exit code {child.exitcode}")
                        break
                    if msg == "done":
                        next_index = config.count
                        break
                    grace = STALL_GRACE
                    if isinstance(msg, float):  # seconds the next input's declared image justifies
                        grace += msg
                        watchdog.restart(config.time_limit + grace, config.wall_seconds + WALL_FACTOR * grace)
                        continue
                    watchdog.restart(config.time_limit + grace, config.wall_seconds + WALL_FACTOR * grace)
                    if msg == "ready":
                        continue
                    stats.add(msg)
                    next_index = msg.index + 1
                    now = time.perf_counter()
                    if config.progress and now - last_log >= config.progress:
                        last_log = now
                        log(_progress_line(stats, now - begin, config.count))
                elif why := watchdog.overrun():
                    child.kill()
                    lost = ("hang", why)
                    break
                elif not child.is_alive() and not receiver.poll(0):
                    lost = ("crash", f"worker died with exit code {child.exitcode}")
                    break
        except KeyboardInterrupt:
            stats.interrupted = True
            break
        finally:
            if child.is_alive() and (lost or stats.interrupted):
                child.kill()
            child.join(5)
            if child.is_alive():
                child.kill()
            receiver.close()
        if lost:
            mutator = mutator or Mutator(load_corpus(config.corpus), bomb_bytes=config.bomb_mib * MIB)
            data, names = mutator.generate(config.seed, next_index)
            h = declared_header(data)
            r = Result(
                next_index,
                lost[0],
                0.0,
                0,
                0,
                memory_budget(data),
                names,
                lost[1],
                len(data),
                header=_header_text(h),
            )
            stats.add(r)
            if config.save_crashers:
                save_crasher(config.save_crashers, config.seed, r, data)
            log(f"{r.headline(config.seed)}: {lost[1]}; going on")
            next_index += 1
    stats.seconds = time.perf_counter() - begin
    return stats


# ---------------------------------------------------------------------------
# Coverage-guided mode (optional): atheris with the structure-aware mutator
# ---------------------------------------------------------------------------
def run_atheris(config: Config, extra: list[str]) -> None:  # pragma: no cover - needs atheris
    import atheris

    mutator = Mutator(load_corpus(config.corpus), bomb_bytes=config.bomb_mib * MIB)

    def test_one_input(data: bytes) -> None:
        try:
            kmcodec.decode(data)
            kmcodec.read_info(data)
        except kmcodec.KmcError:
            pass

    def custom_mutator(data: bytes, max_size: int, seed: int) -> bytes:
        rng = random.Random(seed)
        if rng.random() < 0.3:
            data = atheris.Mutate(data, max_size)
        else:
            names = rng.choices(mutator._names, mutator._weights, k=rng.choice((1, 1, 2)))
            for name in names:
                data = MUTATIONS[name][1](mutator, rng, data)
        data = data[:max_size]  # libFuzzer's bound; the CRCs are fixed after the cut
        return fix_crcs(data) if rng.random() < Mutator.FIX_CRCS else data

    seeds = tempfile.mkdtemp(prefix="kmc-atheris-")  # libFuzzer writes into its corpus folder
    for path in Path(config.corpus).glob("*.kmc"):
        shutil.copy(path, seeds)
    args = [
        sys.argv[0],
        f"-runs={config.count}",
        f"-seed={config.seed}",
        f"-timeout={max(1, round(config.time_limit))}",
        f"-rss_limit_mb={max(1, round(config.max_rss_mb) + 512)}",  # the interpreter's own ~100 MiB on top
        "-max_len=65536",
    ]
    if config.save_crashers:
        os.makedirs(config.save_crashers, exist_ok=True)
        args.append(f"-artifact_prefix={os.path.join(config.save_crashers, '')}")
    atheris.instrument_all()
    atheris.Setup([*args, *extra, seeds], test_one_input, custom_mutator=custom_mutator)
    atheris.Fuzz()


# ---------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------
def _replay(config: Config, index: int, out: str | None) -> int:
    mutator = Mutator(load_corpus(config.corpus), bomb_bytes=config.bomb_mib * MIB)
    data, names = mutator.generate(config.seed, index)
    if out:
        Path(out).write_bytes(data)
    warm_up()
    tracemalloc.start()
    r = _check_generated(config, data, index, names)
    tracemalloc.stop()
    print(f"index {index}: {len(data)} bytes, mutations {' + '.join(names)}")
    print(
        f"outcome {r.outcome} in {r.cpu_seconds * 1000:.1f} ms CPU, {r.seconds * 1000:.1f} ms wall, "
        f"traced peak {r.traced_peak / MIB:.2f} MiB, RSS growth {r.rss_growth / MIB:.2f} MiB"
    )
    if r.detail:
        print(r.detail)
    return 1 if r.outcome in FAILURES else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=10_000, help="inputs to run (default 10000)")
    parser.add_argument("--seed", type=int, default=0, help="campaign seed; input i depends on (seed, i) only")
    parser.add_argument(
        "--time-limit-per-input",
        type=float,
        default=5.0,
        metavar="S",
        help="CPU seconds one input may take (default 5)",
    )
    parser.add_argument(
        "--wall-limit-per-input",
        type=float,
        metavar="S",
        help=f"wall-clock seconds one input may take (default {WALL_FACTOR:g} times the CPU limit)",
    )
    parser.add_argument(
        "--max-rss-mb", type=float, default=512.0, help="resident-set growth one input may cause (default 512)"
    )
    parser.add_argument("--corpus", default=str(DEFAULT_CORPUS), help="folder of .kmc seeds (default fixtures/valid)")
    parser.add_argument("--save-crashers", metavar="DIR", help="write failing inputs (and notes) into DIR")
    parser.add_argument("--bomb-mib", type=int, default=64, help="decompressed size of the bombs (default 64)")
    parser.add_argument(
        "--no-tracemalloc", action="store_true", help="track only the resident set, not traced peaks (6x faster)"
    )
    parser.add_argument("--in-process", action="store_true", help="no child process (a hang in C code then blocks)")
    parser.add_argument("--progress", type=float, default=30.0, metavar="S", help="seconds between progress lines")
    parser.add_argument("--replay", type=int, metavar="INDEX", help="run input INDEX alone and show its outcome")
    parser.add_argument("--out", metavar="FILE", help="with --replay: also write the input to FILE")
    parser.add_argument("--atheris", action="store_true", help="coverage-guided fuzzing with atheris")
    args, extra = parser.parse_known_args(argv)
    if extra and not args.atheris:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    config = Config(
        count=args.count,
        seed=args.seed,
        time_limit=args.time_limit_per_input,
        wall_limit=args.wall_limit_per_input,
        max_rss_mb=args.max_rss_mb,
        corpus=args.corpus,
        save_crashers=args.save_crashers,
        bomb_mib=args.bomb_mib,
        trace_memory=not args.no_tracemalloc,
        progress=args.progress,
    )
    if args.replay is not None:
        return _replay(config, args.replay, args.out)
    if args.atheris:
        try:
            import atheris  # noqa: F401
        except ImportError:
            parser.error("--atheris needs atheris: pip install atheris")
        run_atheris(config, [a for a in extra if a != "--"])
        return 0
    _say(f"fuzzing: {' '.join(sys.argv)}")
    stats = run_campaign(config, log=_say) if args.in_process else run_supervised(config, log=_say)
    print(stats.report(config))
    return 1 if stats.failed else 0


if __name__ == "__main__":
    sys.exit(main())
