#!/usr/bin/env python3
"""Make kmcodec's committed fixtures: source images, golden vectors and invalid vectors.

Run from anywhere; the kmcodec of this checkout is used, never an installed one::

    python tools/make_fixtures.py               # write new files, verify the committed ones
    python tools/make_fixtures.py --check       # write nothing; exit 1 if anything differs
    python tools/make_fixtures.py --overwrite   # replace files that differ (format changes only)

Everything is derived from integer formulas and fixed options, so two runs
give identical bytes.  The vectors pin the format: a run that would change a
committed file stops with an error unless ``--overwrite`` is given, and that
is only right together with a format version bump (see ``fixtures/README.md``).

Layout of what is made (paths relative to ``fixtures/``):

* ``images/*.png``: the source images;
* ``valid/NAME.kmc`` and ``valid/NAME.png``: a vector made by the real
  encoder and its decoded pixels (a lossless PNG of mode L, LA, RGB or RGBA);
* ``invalid/FAULT.kmc``: a valid vector edited to break one rule, with the
  CRCs recomputed wherever the fault must reach the parser past the CRC check;
* ``manifest.json``: every vector with its source, options, expected pixels
  or expected error class.
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import json
import lzma
import struct
import sys
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, PngImagePlugin

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # this checkout's encoder makes the vectors

import kmcodec  # noqa: E402
from kmcodec import (  # noqa: E402
    ChecksumError,
    FormatError,
    ImageTooLargeError,
    KmcError,
    TruncatedError,
    UnsupportedFeatureError,
    UnsupportedVersionError,
)
from kmcodec import format as fmt  # noqa: E402
from kmcodec.inputs import load_source  # noqa: E402
from kmcodec.labels import pack_rows, unpack_rows  # noqa: E402

FIXTURES = ROOT / "fixtures"


# ---------------------------------------------------------------------------
# Source images
# ---------------------------------------------------------------------------
def _grid(width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    ys, xs = np.mgrid[0:height, 0:width]
    return xs, ys


def _stack(*channels: np.ndarray) -> np.ndarray:
    return np.stack([np.asarray(c, dtype=np.int64) % 256 for c in channels], axis=-1).astype(np.uint8)


def _icc_profile() -> bytes:
    """A small, fixed ICC v4 display profile (header, one cprt tag): opaque bytes to carry."""
    text = b"text\0\0\0\0kmcodec fixture profile\0"
    text += b"\0" * (-len(text) % 4)
    tag_table = struct.pack(">I4sII", 1, b"cprt", 128 + 16, len(text))
    size = 128 + len(tag_table) + len(text)
    header = struct.pack(
        ">I4sI4s4s4s6H4sI4sIIQI3i4s16s28x",
        size,
        b"\0\0\0\0",  # preferred CMM: none
        0x04300000,  # version 4.3
        b"mntr",
        b"RGB ",
        b"XYZ ",
        *(2024, 1, 1, 0, 0, 0),  # a fixed date keeps the bytes reproducible
        b"acsp",
        0,  # platform
        b"\0\0\0\0",  # flags
        0,  # manufacturer
        0,  # model
        0,  # attributes
        0,  # rendering intent: perceptual
        *(0x0000F6D6, 0x00010000, 0x0000D32D),  # D50
        b"kmcd",
        b"\0" * 16,  # profile id: not computed
    )
    assert len(header) == 128
    return header + tag_table + text


def _exif(orientation: int | None = None) -> Image.Exif:
    exif = Image.Exif()
    exif[0x010E] = "kmcodec fixture"  # ImageDescription
    exif[0x0131] = "tools/make_fixtures.py"  # Software
    if orientation is not None:
        exif[0x0112] = orientation
    return exif


XMP = (
    '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"/></x:xmpmeta>'
)


def source_images() -> dict[str, bytes]:
    """Every source image as PNG bytes, by file name."""
    images: dict[str, tuple[Image.Image, dict]] = {}

    xs, ys = _grid(11, 7)  # 77 distinct colours (red and green identify the pixel)
    images["gradient-11x7-rgb.png"] = (Image.fromarray(_stack(xs * 25, ys * 42, xs * ys * 13 + 40), "RGB"), {})

    xs, ys = _grid(5, 3)
    three = np.array([(230, 40, 40), (40, 200, 60), (30, 60, 220)], dtype=np.uint8)
    images["three-colors-5x3-rgb.png"] = (Image.fromarray(three[(xs + 2 * ys) % 3], "RGB"), {})

    images["single-1x1-rgb.png"] = (Image.new("RGB", (1, 1), (200, 120, 40)), {})

    xs, ys = _grid(23, 17)  # 391 distinct colours: more than 256, fewer than 4096
    images["many-23x17-rgb.png"] = (Image.fromarray(_stack(xs * 11, ys * 15, xs * 7 + ys * 13), "RGB"), {})

    # 16 colours; the top 8 rows are one colour (deflate wins), the bottom 8
    # rows scattered (stored wins), so "auto" gives a mixed-method file.
    xs, ys = _grid(64, 16)
    scattered = ((xs * 73856093) ^ (ys * 19349663)) * 2654435761 % 2**32 >> 28  # a hash: 0..15
    idx = np.where(ys < 8, 0, scattered)
    i = np.arange(16)
    sixteen = _stack(i * 16, 255 - i * 16, i * 97)
    images["mixed-64x16-rgb.png"] = (Image.fromarray(sixteen[idx], "RGB"), {})

    xs, ys = _grid(13, 9)  # 117 distinct grey levels
    images["gray-13x9-l.png"] = (Image.fromarray((xs * 19 + ys * 2).astype(np.uint8), "L"), {})

    xs, ys = _grid(9, 3)
    images["bilevel-9x3-1.png"] = (Image.fromarray((xs + ys) % 3 == 0), {})

    # Row 0 is fully transparent with varying grey: those pixels collapse to (0, 0).
    xs, ys = _grid(9, 5)
    alpha = np.array([0, 64, 128, 200, 255])[ys]
    images["gray-alpha-9x5-la.png"] = (Image.fromarray(_stack(xs * 28 + 10, alpha), "LA"), {})

    # Fully transparent pixels on a diagonal pattern, half-transparent bottom row.
    xs, ys = _grid(10, 6)
    alpha = np.where((xs + ys) % 4 == 0, 0, np.where(ys == 5, 128, 255))
    images["rgba-10x6-transparent.png"] = (Image.fromarray(_stack(xs * 25, ys * 50, 128 + xs, alpha), "RGBA"), {})

    xs, ys = _grid(8, 4)
    pal = Image.new("P", (8, 4))
    pal.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0, 0, 0, 255, 255, 255, 255])
    pal.putdata(((xs + ys) % 5).ravel().tolist())
    images["palette-8x4-p-transparent.png"] = (pal, {"transparency": 0})

    xs, ys = _grid(6, 4)
    xmp = PngImagePlugin.PngInfo()
    xmp.add_itxt("XML:com.adobe.xmp", XMP)
    images["meta-6x4-rgb-icc-exif-xmp.png"] = (
        Image.fromarray(_stack(xs * 40, ys * 60, 90 + 0 * xs), "RGB"),
        {"icc_profile": _icc_profile(), "exif": _exif(), "pnginfo": xmp},
    )

    xs, ys = _grid(7, 4)  # stored 7 wide; orientation 6 makes it 4 x 7 upright
    images["oriented-7x4-rgb-exif6.png"] = (
        Image.fromarray(_stack(xs * 36, ys * 80, 0 * xs), "RGB"),
        {"exif": _exif(orientation=6)},
    )

    # The README's example input: smooth shading and a few hard edges, 64 x 48.
    xs, ys = _grid(64, 48)
    disc = (xs - 40) ** 2 + (ys - 20) ** 2 < 14**2
    stripe = (xs + ys) // 6 % 2 == 0
    demo = _stack(
        np.where(disc, 240, xs * 3 + 30),
        np.where(disc, 200 - ys * 2, ys * 4 + 20),
        np.where(disc, 40, np.where(stripe & (ys > 36), 220, 160 - xs)),
    )
    images["demo.png"] = (Image.fromarray(demo, "RGB"), {})

    # Text-like: three 5 x 7 "glyphs" of 4 grey levels repeated along two
    # lines on white, so that the match model of cmm (format 1.2) finds repeats.
    xs, ys = _grid(5, 7)
    glyphs = np.stack([(xs * 3 + ys * 5 + g * 7) % 11 % 4 * (1 - (xs + ys + g) % 5 // 4) for g in range(3)])
    order = [(i * 7 + i // 3) % 3 for i in range(16)]
    page = np.zeros((20, 96), np.int64)
    for line, top in enumerate((2, 11)):
        for i in range(8):
            page[top : top + 7, 6 * i + 48 * line : 6 * i + 48 * line + 5] = glyphs[order[8 * line + i]]
    images["glyphs-96x20-rgb.png"] = (
        Image.fromarray(np.repeat(255 - 60 * page, 3).reshape(20, 96, 3).astype(np.uint8), "RGB"),
        {},
    )

    # A page of text: 28 lines of ten 5 x 7 "glyphs" of 4 grey levels on white,
    # 256 x 256 (a strip big enough for the encoder's probe), so that the 2-D
    # match model of cm2d (format 1.3) finds glyphs it has seen on earlier lines.
    glyphs = np.stack([(xs * 3 + ys * 5 + g * 7) % 11 % 4 * (1 - (xs + ys + g) % 5 // 4) for g in range(10)])
    page = np.zeros((256, 256), np.int64)
    for line, top in enumerate(range(3, 256 - 7, 9)):
        left = 2 + line % 3
        for i in range(64):
            if left + 5 > 256:
                break
            if (i * 5 + line * 3) % 13 != 0:  # a space now and then
                page[top : top + 7, left : left + 5] = glyphs[(i * 7 + line * 3 + i // 5) % 10]
            left += 6 + (i + line) % 2
    images["text-256x256-rgb.png"] = (
        Image.fromarray(np.repeat(255 - 60 * page, 3).reshape(256, 256, 3).astype(np.uint8), "RGB"),
        {},
    )

    out = {}
    for name, (image, options) in images.items():
        buf = io.BytesIO()
        image.save(buf, "PNG", **options)
        out[name] = buf.getvalue()
    return out


# ---------------------------------------------------------------------------
# Valid vectors
# ---------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Valid:
    name: str
    source: str
    colors: int
    method: str = "stored,deflate,lzma"  # what "auto" meant in format 1.0
    rows_per_strip: int | None = None
    seed: int = 0
    metadata: bool = True
    # The vectors were made with the PSNR-first fit, the default before masking and Oklab (fixtures/README.md).
    masking: bool = False
    colorspace: str = "srgb"
    description: str = ""

    @property
    def options(self) -> dict:
        return {
            "colors": self.colors,
            "seed": self.seed,
            "method": self.method,
            "rows_per_strip": self.rows_per_strip,
            "metadata": self.metadata,
            "masking": self.masking,
            "colorspace": self.colorspace,
        }


GRADIENT = "gradient-11x7-rgb.png"
THREE = "three-colors-5x3-rgb.png"
MANY = "many-23x17-rgb.png"
GRAY = "gray-13x9-l.png"
LA = "gray-alpha-9x5-la.png"
RGBA = "rgba-10x6-transparent.png"
GLYPHS = "glyphs-96x20-rgb.png"
TEXT = "text-256x256-rgb.png"

VALID = [
    Valid("rgb-k1-stored", GRADIENT, 1, "stored", description="k = 1: one colour, 1-bit labels all zero"),
    Valid("rgb-k2-deflate", GRADIENT, 2, "deflate"),
    Valid("rgb-k3-lzma", GRADIENT, 3, "lzma"),
    Valid("rgb-k16-stored-rps2", GRADIENT, 16, "stored", 2, description="4 strips, the last one row"),
    Valid("rgb-k16-deflate-rps3", GRADIENT, 16, "deflate", 3, description="3 strips, the last one row"),
    Valid("rgb-k16-lzma", GRADIENT, 16, "lzma"),
    Valid("rgb-k16-auto-seed7", GRADIENT, 16, seed=7),
    Valid("rgb-k17-stored-rps1", GRADIENT, 17, "stored", 1, description="5-bit labels, 11 wide: 1 padding bit"),
    Valid("rgb-k256-exact-auto", GRADIENT, 256, description="77 colours <= k: exact palette"),
    Valid("rgb-3colors-k3-stored", THREE, 3, "stored", description="exactly k colours: bit-exact"),
    Valid("rgb-3colors-k2-deflate", THREE, 2, "deflate"),
    Valid("rgb-3colors-k16-lzma", THREE, 16, "lzma", description="fewer colours than k: a 3-entry palette"),
    Valid("rgb-1x1-k1-stored", "single-1x1-rgb.png", 1, "stored"),
    Valid("rgb-1x1-k256-auto", "single-1x1-rgb.png", 256),
    Valid("rgb-many-k256-stored", MANY, 256, "stored", description="391 colours into 256: 8-bit labels"),
    Valid("rgb-many-k256-deflate-rps5", MANY, 256, "deflate", 5),
    Valid("rgb-many-k256-lzma", MANY, 256, "lzma"),
    Valid("rgb-many-k256-auto", MANY, 256),
    Valid("rgb-many-k300-stored-rps4", MANY, 300, "stored", 4, description="9-bit labels"),
    Valid("rgb-many-k300-deflate", MANY, 300, "deflate", description="9-bit labels coded as 16-bit symbols"),
    Valid("rgb-many-k300-lzma", MANY, 300, "lzma"),
    Valid("rgb-many-k17-auto", MANY, 17),
    Valid("rgb-many-k4096-exact-deflate", MANY, 4096, "deflate", description="391 colours <= k: exact"),
    Valid("rgb-mixed-k16-auto-rps8", "mixed-64x16-rgb.png", 16, rows_per_strip=8, description="HEAD method 255"),
    Valid("l-k1-deflate", GRAY, 1, "deflate"),
    Valid("l-k2-stored", GRAY, 2, "stored"),
    Valid("l-k3-deflate", GRAY, 3, "deflate", description="2-bit labels: 13 wide rows of 4 bytes, 6 padding bits"),
    Valid("l-k16-lzma-rps4", GRAY, 16, "lzma", 4),
    Valid("l-k17-stored", GRAY, 17, "stored"),
    Valid("l-k256-exact-auto", GRAY, 256, description="117 grey levels <= k: exact"),
    Valid("l-bilevel-k2-stored", "bilevel-9x3-1.png", 2, "stored", description="mode 1 source"),
    Valid("la-k3-stored", LA, 3, "stored"),
    Valid("la-k16-deflate-rps2", LA, 16, "deflate", 2),
    Valid("la-k2-auto", LA, 2),
    Valid("la-k256-exact-lzma", LA, 256, "lzma", description="transparent pixels collapse to (0, 0)"),
    Valid("rgba-k2-stored", RGBA, 2, "stored"),
    Valid("rgba-k17-lzma-rps1", RGBA, 17, "lzma", 1),
    Valid("rgba-k16-auto", RGBA, 16),
    Valid("rgba-k256-exact-deflate", RGBA, 256, "deflate"),
    Valid("rgba-palette-k16-auto", "palette-8x4-p-transparent.png", 16, description="P with tRNS -> RGBA"),
    Valid(
        "rgb-metadata-k4-deflate",
        "meta-6x4-rgb-icc-exif-xmp.png",
        4,
        "deflate",
        description="iccp, exif and xmpd chunks",
    ),
    Valid("rgb-no-metadata-k4-deflate", "meta-6x4-rgb-icc-exif-xmp.png", 4, "deflate", metadata=False),
    Valid("rgb-oriented-k8-stored", "oriented-7x4-rgb-exif6.png", 8, "stored", description="EXIF orientation 6"),
    # Format 1.1: method 3, cm (spec/kmc-method-cm.md)
    Valid("cm-rgb-k2", GRADIENT, 2, "cm", description="cm: 1-bit labels"),
    Valid("cm-rgb-k3-rps2", GRADIENT, 3, "cm", 2, description="cm: 4 strips, the model reset in each"),
    Valid("cm-rgb-k16", GRADIENT, 16, "cm"),
    Valid("cm-rgb-k17", GRADIENT, 17, "cm", description="cm: 5-bit labels"),
    Valid("cm-rgb-many-k256", MANY, 256, "cm", description="cm: 8-bit labels"),
    Valid("cm-rgb-many-k300-rps5", MANY, 300, "cm", 5, description="cm: 9-bit labels"),
    Valid("cm-rgb-many-k4096-exact", MANY, 4096, "cm", description="cm: 391 colours, 9-bit labels, exact"),
    Valid("cm-rgb-1x1-k256", "single-1x1-rgb.png", 256, "cm", description="cm: one pixel, one colour: empty strip"),
    Valid("cm-rgb-k1", GRADIENT, 1, "cm", description="cm with k = 1: nothing coded, empty strip"),
    Valid("cm-l-k16-rps4", GRAY, 16, "cm", 4),
    Valid("cm-la-k16", LA, 16, "cm"),
    Valid("cm-rgba-k16", RGBA, 16, "cm"),
    Valid("cm-rgb-mixed-k16-auto-rps8", "mixed-64x16-rgb.png", 16, "auto", 8, description="auto at effort 2"),
    Valid("cm-rgb-many-k17-auto", MANY, 17, "auto", description="auto at effort 2"),
    # Format 1.2: method 4, cmm (spec/kmc-method-cm.md §9)
    Valid("cmm-rgb-k2", GRADIENT, 2, "cmm", description="cmm: 1-bit labels"),
    Valid("cmm-rgb-k3-rps2", GRADIENT, 3, "cmm", 2, description="cmm: 4 strips, the model reset in each"),
    Valid("cmm-rgb-k16", GRADIENT, 16, "cmm"),
    Valid("cmm-rgb-many-k17", MANY, 17, "cmm", description="cmm: 5-bit labels"),
    Valid("cmm-rgb-many-k256", MANY, 256, "cmm", description="cmm: 8-bit labels"),
    Valid("cmm-rgb-many-k300-rps5", MANY, 300, "cmm", 5, description="cmm: 9-bit labels"),
    Valid("cmm-rgb-1x1-k256", "single-1x1-rgb.png", 256, "cmm", description="cmm: one pixel: empty strip"),
    Valid("cmm-rgb-k1", GRADIENT, 1, "cmm", description="cmm with k = 1: nothing coded, empty strip"),
    Valid("cmm-l-k16-rps4", GRAY, 16, "cmm", 4),
    Valid("cmm-la-k16", LA, 16, "cmm"),
    Valid("cmm-rgba-k16", RGBA, 16, "cmm"),
    Valid("cmm-rgb-glyphs-k4", GLYPHS, 4, "cmm", description="cmm: repeated glyphs, the match model at work"),
    Valid("cmm-rgb-glyphs-k4-auto", GLYPHS, 4, "auto", description="auto at effort 2 picks cmm"),
    # Format 1.3: method 5, cm2d (spec/kmc-method-cm.md §10)
    Valid("cm2d-rgb-k2", GRADIENT, 2, "cm2d", description="cm2d: 1-bit labels"),
    Valid("cm2d-rgb-k3-rps2", GRADIENT, 3, "cm2d", 2, description="cm2d: 4 strips, the model reset in each"),
    Valid("cm2d-rgb-k16", GRADIENT, 16, "cm2d"),
    Valid("cm2d-rgb-many-k17", MANY, 17, "cm2d", description="cm2d: 5-bit labels"),
    Valid("cm2d-rgb-many-k256", MANY, 256, "cm2d", description="cm2d: 8-bit labels"),
    Valid("cm2d-rgb-many-k300-rps5", MANY, 300, "cm2d", 5, description="cm2d: 9-bit labels"),
    Valid("cm2d-rgb-1x1-k256", "single-1x1-rgb.png", 256, "cm2d", description="cm2d: one pixel: empty strip"),
    Valid("cm2d-rgb-k1", GRADIENT, 1, "cm2d", description="cm2d with k = 1: nothing coded, empty strip"),
    Valid("cm2d-l-k16-rps4", GRAY, 16, "cm2d", 4),
    Valid("cm2d-la-k16", LA, 16, "cm2d"),
    Valid("cm2d-rgba-k16", RGBA, 16, "cm2d"),
    Valid("cm2d-rgb-glyphs-k4", GLYPHS, 4, "cm2d", description="cm2d: repeated glyphs on two lines"),
    Valid("cm2d-rgb-text-k4", TEXT, 4, "cm2d", description="cm2d: a page of text, the 2-D model at work"),
    # made by auto at effort 2 in format 1.3, which picked cm2d; since 1.4 auto picks cmx there, so the vector
    # records the set that still reproduces it (fixtures/README.md)
    Valid("cm2d-rgb-text-k4-auto", TEXT, 4, "stored,cm,cmm,cm2d", description="auto at effort 2 picked cm2d (1.3)"),
    # Format 1.4: method 6, cmx (spec/kmc-method-cm.md §11)
    Valid("cmx-rgb-k2", GRADIENT, 2, "cmx", description="cmx: 1-bit labels"),
    Valid("cmx-rgb-k3-rps2", GRADIENT, 3, "cmx", 2, description="cmx: 4 strips, the model reset in each"),
    Valid("cmx-rgb-k16", GRADIENT, 16, "cmx"),
    Valid("cmx-rgb-many-k17", MANY, 17, "cmx", description="cmx: 5-bit labels"),
    Valid("cmx-rgb-many-k256", MANY, 256, "cmx", description="cmx: 8-bit labels"),
    Valid("cmx-rgb-many-k300-rps5", MANY, 300, "cmx", 5, description="cmx: 9-bit labels"),
    Valid("cmx-rgb-1x1-k256", "single-1x1-rgb.png", 256, "cmx", description="cmx: one pixel: empty strip"),
    Valid("cmx-rgb-k1", GRADIENT, 1, "cmx", description="cmx with k = 1: nothing coded, empty strip"),
    Valid("cmx-l-k16-rps4", GRAY, 16, "cmx", 4),
    Valid("cmx-la-k16", LA, 16, "cmx"),
    Valid("cmx-rgba-k16", RGBA, 16, "cmx"),
    Valid("cmx-rgb-glyphs-k4", GLYPHS, 4, "cmx", description="cmx: repeated glyphs on two lines"),
    Valid("cmx-rgb-text-k4", TEXT, 4, "cmx", description="cmx: a page of text, the mixer at work"),
    Valid("cmx-rgb-text-k4-auto", TEXT, 4, "auto", description="auto at effort 2 picks cmx"),
]


# ---------------------------------------------------------------------------
# Chunk surgery on valid files (no checks needed: the inputs are our vectors)
# ---------------------------------------------------------------------------
Chunks = list[tuple[bytes, bytes]]  # (type, payload)


def preamble(major: int = fmt.VERSION_MAJOR, minor: int = fmt.VERSION_MINOR) -> bytes:
    """The 12-byte preamble with a correct check field."""
    head = fmt.SIGNATURE + bytes((major, minor))
    return head + (zlib.crc32(head) & 0xFFFF).to_bytes(2, "big")


def split(data: bytes) -> Chunks:
    """The chunks of a valid file, in order."""
    chunks = []
    offset = fmt.PREAMBLE_SIZE
    while offset < len(data):
        length = int.from_bytes(data[offset : offset + 4], "big")
        chunks.append((data[offset + 4 : offset + 8], data[offset + 8 : offset + 8 + length]))
        offset += fmt.CHUNK_HEAD_SIZE + length + fmt.CHUNK_CRC_SIZE
    return chunks


def join(chunks: Chunks, head: bytes | None = None) -> bytes:
    """A file from chunks, every length and CRC computed, after *head* (default: a 1.0 preamble)."""
    parts = [head or preamble(minor=0)]
    for chunk_type, payload in chunks:
        head = len(payload).to_bytes(4, "big") + chunk_type
        parts.append(head + payload + zlib.crc32(head + payload).to_bytes(4, "big"))
    return b"".join(parts)


def find(chunks: Chunks, chunk_type: bytes, nth: int = 0) -> int:
    """Index of the *nth* chunk of *chunk_type*."""
    return [i for i, (t, _) in enumerate(chunks) if t == chunk_type][nth]


def offset_of(data: bytes, chunk_type: bytes, nth: int = 0) -> int:
    """Byte offset (of the length field) of the *nth* chunk of *chunk_type*."""
    chunks = split(data)
    return fmt.PREAMBLE_SIZE + sum(12 + len(p) for _, p in chunks[: find(chunks, chunk_type, nth)])


def edit(data: bytes, fn: Callable[[Chunks], None]) -> bytes:
    """Let *fn* edit the chunk list in place, then rebuild the file with valid CRCs."""
    chunks = split(data)
    fn(chunks)
    return join(chunks, data[: fmt.PREAMBLE_SIZE])


def with_header(data: bytes, **fields: int) -> bytes:
    """*data* with HEAD fields replaced."""

    def change(chunks: Chunks) -> None:
        header = {k: v for k, v in fmt.Header.parse(chunks[0][1]).items() if not k.startswith("_")}
        chunks[0] = (fmt.HEAD, fmt.Header.build({**header, **fields}))

    return edit(data, change)


def with_payload(data: bytes, chunk_type: bytes, fn: Callable[[bytes], bytes], nth: int = 0) -> bytes:
    """*data* with the payload of the *nth* chunk of *chunk_type* replaced by fn(payload)."""

    def change(chunks: Chunks) -> None:
        i = find(chunks, chunk_type, nth)
        chunks[i] = (chunk_type, fn(chunks[i][1]))

    return edit(data, change)


def with_strip(data: bytes, n: int, fn: Callable[[bytes], bytes], **head: int) -> bytes:
    """*data* with strip *n*'s coded labels replaced by fn(labels) and its head fields by *head*."""

    def change(payload: bytes) -> bytes:
        fields = {k: v for k, v in fmt.StripHead.parse(payload).items() if not k.startswith("_")}
        return fmt.StripHead.build({**fields, **head}) + fn(payload[fmt.STRIP_HEAD_SIZE :])

    return with_payload(data, fmt.STRP, change, n)


def inserted(data: bytes, after: bytes, new: Chunks) -> bytes:
    """*data* with *new* chunks inserted after the first chunk of type *after*."""

    def change(chunks: Chunks) -> None:
        i = find(chunks, after) + 1
        chunks[i:i] = new

    return edit(data, change)


def dropped(data: bytes, chunk_type: bytes, nth: int = 0) -> bytes:
    return edit(data, lambda chunks: chunks.pop(find(chunks, chunk_type, nth)))


def swapped(data: bytes, a: tuple[bytes, int], b: tuple[bytes, int]) -> bytes:
    """*data* with two chunks, each given as (type, nth), exchanged."""

    def change(chunks: Chunks) -> None:
        i, j = find(chunks, *a), find(chunks, *b)
        chunks[i], chunks[j] = chunks[j], chunks[i]

    return edit(data, change)


def copied(data: bytes, chunk_type: bytes) -> bytes:
    """*data* with its first *chunk_type* chunk repeated right after itself."""
    return edit(data, lambda chunks: chunks.insert(find(chunks, chunk_type), chunks[find(chunks, chunk_type)]))


def extra_strip(data: bytes) -> bytes:
    """*data* with one more strip (a copy of the last, renumbered) before DONE."""

    def change(chunks: Chunks) -> None:
        last = chunks[-2][1]
        index = int.from_bytes(last[:4], "big") + 1
        chunks.insert(len(chunks) - 1, (fmt.STRP, index.to_bytes(4, "big") + last[4:]))

    return edit(data, change)


def flipped(data: bytes, offset: int, mask: int = 0x01) -> bytes:
    """*data* with bits *mask* of byte *offset* inverted (no CRC fixed)."""
    b = bytearray(data)
    b[offset] ^= mask
    return bytes(b)


def recoded(coded: bytes, fn: Callable[[bytearray], None]) -> bytes:
    """A deflate strip's labels inflated, edited in place by *fn*, deflated again."""
    raw = bytearray(zlib.decompress(coded))
    fn(raw)
    return zlib.compress(bytes(raw), 9)


def set_bits(buf: bytearray, offset: int, mask: int) -> None:
    buf[offset] |= mask


#: LZMA settings of the bomb: a small dictionary, so that only the output could make the decoder allocate much.
SMALL_LZMA = [{"id": lzma.FILTER_LZMA1, "preset": 9, "dict_size": 4096}]


def raw_stream(content: bytes, wbits: int) -> bytes:
    """*content* deflated with zlib's *wbits* (-15: raw deflate, 31: gzip)."""
    c = zlib.compressobj(9, zlib.DEFLATED, wbits)
    stream = c.compress(content) + c.flush()
    if wbits > 15:  # gzip: zlib writes mtime 0 but the OS byte of its build; fix it to 255, "unknown"
        stream = stream[:9] + b"\xff" + stream[10:]
    return stream


def zdict_stream(content: bytes) -> bytes:
    """*content* deflated against a preset dictionary (FDICT = 1)."""
    c = zlib.compressobj(9, zlib.DEFLATED, 15, zdict=b"kmcodec")
    return c.compress(content) + c.flush()


def with_unknown_ancillary(data: bytes) -> bytes:
    """*data* with unknown ancillary chunks after HEAD, between strips 0 and 1, and before DONE."""

    def change(chunks: Chunks) -> None:
        chunks.insert(len(chunks) - 1, (b"futr", b"another one, right before DONE"))
        chunks.insert(find(chunks, fmt.STRP, 1), (b"futr", b"the same type again, between two strips"))
        chunks.insert(1, (b"futr", b"an ancillary chunk from a newer encoder: skip it"))

    return edit(data, change)


def with_unsorted_palette(data: bytes) -> bytes:
    """A stored k = 3 file with its palette reversed and entry 2 repeated (k = 4), labels remapped."""
    head = fmt.Header.parse(split(data)[0][1])
    assert head.colors == 3 and head.method == fmt.Method.STORED and head.rows_per_strip == head.height
    n = head.layout  # bytes per entry

    def reverse(palette: bytes) -> bytes:
        return palette[2 * n : 3 * n] + palette[n : 2 * n] + palette[:n] + palette[2 * n : 3 * n]

    def remap(stored: bytes) -> bytes:
        return pack_rows(2 - unpack_rows(stored, head.height, head.width, 2), 2)

    return with_header(with_strip(with_payload(data, fmt.PALT, reverse), 0, remap), colors=4)


# ---------------------------------------------------------------------------
# Valid vectors made by editing others: what a decoder must accept though
# kmcodec's encoder never writes it.  Each decodes to its base's pixels.
# ---------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Derived:
    name: str
    base: str
    make: Callable[[bytes], bytes]
    description: str


DERIVED = [
    Derived(
        "rgb-unknown-ancillary",
        "rgb-k16-deflate-rps3",
        with_unknown_ancillary,
        "three unknown ancillary 'futr' chunks (after HEAD, between strips, before DONE), CRCs valid: skipped",
    ),
    Derived(
        "rgb-minor-version-1",
        "rgb-3colors-k3-stored",
        lambda d: preamble(minor=1) + d[fmt.PREAMBLE_SIZE :],
        "version 1.1 with a valid check field: every minor version must be accepted",
    ),
    Derived(
        "rgb-head-mixed-one-method",
        "rgb-k16-deflate-rps3",
        lambda d: with_header(d, method=fmt.METHOD_MIXED),
        "HEAD says mixed (255) though every strip is deflate: must be accepted",
    ),
    Derived(
        "rgb-palette-unsorted-duplicate",
        "rgb-3colors-k3-stored",
        with_unsorted_palette,
        "palette in descending order with a repeated, unused entry (k = 4): must be accepted",
    ),
    Derived(
        "rgb-empty-metadata",
        "rgb-3colors-k3-stored",
        lambda d: inserted(d, fmt.MADE, [(fmt.ICCP, b""), (fmt.EXIF, b""), (fmt.XMPD, b"")]),
        "empty iccp, exif and xmpd chunks: accepted as carrying no data",
    ),
    Derived(
        "rgb-lzma-dict-16mib",
        "rgb-k16-lzma",
        lambda d: with_strip(d, 0, lambda s: s[:1] + (2**24).to_bytes(4, "little") + s[5:]),
        "the LZMA header's dictionary size raised to 16 MiB, the most an encoder may write",
    ),
]


# ---------------------------------------------------------------------------
# Invalid vectors
# ---------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Invalid:
    name: str
    base: str  # the valid vector it is made from
    make: Callable[[bytes], bytes]
    error: type[KmcError]  # what decode() must raise
    read_info_error: type[KmcError] | None  # what read_info() must raise; None: it succeeds
    fault: str


STORED3 = "rgb-3colors-k3-stored"  # 5 x 3, one stored strip; 2-bit labels in rows of 2 bytes (6 padding bits)
STORED4 = "rgb-k16-stored-rps2"  # 11 x 7, four stored strips
DEFLATE3 = "rgb-k16-deflate-rps3"  # 11 x 7, three deflate strips; 4-bit symbols, rows of 6 bytes
DEFLATE_K3 = "l-k3-deflate"  # 13 x 9, one deflate strip; 2-bit symbols, rows of 4 bytes (6 padding bits)
LZMA1 = "rgb-k16-lzma"  # 11 x 7, one LZMA strip
CM1 = "cm-rgb-k16"  # 11 x 7, one cm strip
CMM1 = "cmm-rgb-glyphs-k4"  # 96 x 20, one cmm strip
CM2D1 = "cm2d-rgb-glyphs-k4"  # 96 x 20, one cm2d strip
CMX1 = "cmx-rgb-glyphs-k4"  # 96 x 20, one cmx strip
META = "rgb-metadata-k4-deflate"  # HEAD, made, iccp, exif, xmpd, PALT, STRP, DONE

INVALID = [
    # §2 signature and version
    Invalid("empty.kmc", STORED3, lambda d: b"", TruncatedError, TruncatedError, "zero bytes"),
    Invalid(
        "bad-signature.kmc",
        STORED3,
        lambda d: d[:3] + b"X" + d[4:],
        FormatError,
        FormatError,
        "the signature reads KMX, not KMC",
    ),
    Invalid(
        "text-mode-crlf.kmc",
        DEFLATE3,
        lambda d: d.replace(b"\r\n", b"\n"),
        FormatError,
        FormatError,
        "every CR LF became LF, as a text-mode transfer does",
    ),
    Invalid(
        "text-mode-lf.kmc",
        DEFLATE3,
        lambda d: d.replace(b"\n", b"\r\n"),
        FormatError,
        FormatError,
        "every LF became CR LF, as a text-mode transfer does",
    ),
    Invalid(
        "seven-bit.kmc",
        STORED3,
        lambda d: bytes(b & 0x7F for b in d),
        FormatError,
        FormatError,
        "every byte lost its top bit",
    ),
    Invalid(
        "truncated-in-signature.kmc", STORED3, lambda d: d[:5], TruncatedError, TruncatedError, "the first 5 bytes only"
    ),
    Invalid(
        "truncated-in-preamble.kmc",
        STORED3,
        lambda d: d[:11],
        TruncatedError,
        TruncatedError,
        "cut inside the version check field",
    ),
    Invalid(
        "bad-version-check.kmc",
        STORED3,
        lambda d: flipped(d, 11),
        ChecksumError,
        ChecksumError,
        "the preamble's check field does not match the version bytes",
    ),
    Invalid(
        "newer-major-version.kmc",
        STORED3,
        lambda d: preamble(major=2, minor=0) + d[fmt.PREAMBLE_SIZE :],
        UnsupportedVersionError,
        UnsupportedVersionError,
        "version 2.0 with a valid check field",
    ),
    # §3 chunk framing
    Invalid(
        "truncated-in-head.kmc", STORED3, lambda d: d[:24], TruncatedError, TruncatedError, "cut inside the HEAD chunk"
    ),
    Invalid(
        "truncated-in-strip.kmc",
        DEFLATE3,
        lambda d: d[: offset_of(d, fmt.STRP, 1) + 15],
        TruncatedError,
        TruncatedError,
        "cut inside the second STRP chunk",
    ),
    Invalid(
        "truncated-in-done.kmc",
        STORED3,
        lambda d: d[:-2],
        TruncatedError,
        TruncatedError,
        "cut inside the DONE chunk's CRC",
    ),
    Invalid(
        "missing-done.kmc",
        DEFLATE3,
        lambda d: d[:-12],
        TruncatedError,
        TruncatedError,
        "the file ends after the last strip",
    ),
    Invalid("trailing-data.kmc", STORED3, lambda d: d + b"\0", FormatError, FormatError, "one zero byte after DONE"),
    Invalid(
        "bad-chunk-crc.kmc",
        STORED3,
        lambda d: flipped(d, offset_of(d, fmt.PALT) + 8),
        ChecksumError,
        ChecksumError,
        "a PALT byte changed, its CRC not",
    ),
    Invalid(
        "bad-strip-crc.kmc",
        DEFLATE3,
        lambda d: flipped(d, offset_of(d, fmt.DONE) - 1),
        ChecksumError,
        ChecksumError,
        "the last byte of the last strip's CRC changed",
    ),
    Invalid(
        "chunk-length-over-limit.kmc",
        STORED3,
        lambda d: flipped(d, offset_of(d, fmt.PALT), 0x80),
        FormatError,
        FormatError,
        "PALT's length field says 2**31 + 9, over the 2**31 - 1 limit",
    ),
    Invalid(
        "chunk-length-too-short.kmc",
        STORED3,
        lambda d: flipped(d, offset_of(d, fmt.PALT) + 3, 0x01),
        ChecksumError,
        ChecksumError,
        "PALT's length field says 8, the payload is 9: the CRC is read from the wrong place",
    ),
    Invalid(
        "bad-chunk-type.kmc",
        STORED3,
        lambda d: edit(d, lambda c: c.__setitem__(find(c, fmt.PALT), (b"PA1T", c[find(c, fmt.PALT)][1]))),
        FormatError,
        FormatError,
        "chunk type PA1T (not four letters), CRC valid",
    ),
    Invalid(
        "unknown-critical-chunk.kmc",
        STORED3,
        lambda d: inserted(d, fmt.HEAD, [(b"QUUX", b"data a newer decoder needs")]),
        UnsupportedFeatureError,
        UnsupportedFeatureError,
        "a QUUX chunk (critical: upper-case first letter) after HEAD, CRC valid",
    ),
    Invalid(
        "done-with-payload.kmc",
        STORED3,
        lambda d: with_payload(d, fmt.DONE, lambda p: b"\0"),
        FormatError,
        FormatError,
        "a DONE chunk with a 1-byte payload, CRC valid",
    ),
    # §3.3 chunk grammar
    Invalid(
        "head-not-first.kmc",
        META,
        lambda d: swapped(d, (fmt.HEAD, 0), (fmt.MADE, 0)),
        FormatError,
        FormatError,
        "made before HEAD",
    ),
    Invalid("duplicate-head.kmc", STORED3, lambda d: copied(d, fmt.HEAD), FormatError, FormatError, "two HEAD chunks"),
    Invalid("missing-palette.kmc", STORED3, lambda d: dropped(d, fmt.PALT), FormatError, FormatError, "no PALT chunk"),
    Invalid(
        "duplicate-palette.kmc", STORED3, lambda d: copied(d, fmt.PALT), FormatError, FormatError, "two PALT chunks"
    ),
    Invalid(
        "strip-before-palette.kmc",
        STORED3,
        lambda d: swapped(d, (fmt.PALT, 0), (fmt.STRP, 0)),
        FormatError,
        FormatError,
        "the STRP chunk comes before PALT",
    ),
    Invalid(
        "duplicate-ancillary.kmc", META, lambda d: copied(d, fmt.EXIF), FormatError, FormatError, "two exif chunks"
    ),
    Invalid(
        "strip-out-of-order.kmc",
        STORED4,
        lambda d: swapped(d, (fmt.STRP, 1), (fmt.STRP, 2)),
        FormatError,
        FormatError,
        "strips in the order 0, 2, 1, 3",
    ),
    Invalid(
        "missing-strip.kmc",
        STORED4,
        lambda d: dropped(d, fmt.STRP, 1),
        FormatError,
        FormatError,
        "strip 1 of 0-3 left out",
    ),
    Invalid(
        "missing-last-strip.kmc",
        STORED4,
        lambda d: dropped(d, fmt.STRP, 3),
        FormatError,
        FormatError,
        "strip 3 of 0-3 left out",
    ),
    Invalid(
        "extra-strip.kmc",
        STORED4,
        extra_strip,
        FormatError,
        FormatError,
        "a fifth strip (index 4); the header needs four",
    ),
    # §4 HEAD and §8 limits
    Invalid(
        "head-wrong-length.kmc",
        STORED3,
        lambda d: with_payload(d, fmt.HEAD, lambda p: p[:-1]),
        FormatError,
        FormatError,
        "HEAD is 17 bytes",
    ),
    Invalid("zero-width.kmc", STORED3, lambda d: with_header(d, width=0), FormatError, FormatError, "width 0"),
    Invalid("zero-height.kmc", STORED3, lambda d: with_header(d, height=0), FormatError, FormatError, "height 0"),
    Invalid(
        "width-over-limit.kmc",
        STORED3,
        lambda d: with_header(d, width=fmt.MAX_DIMENSION + 1),
        FormatError,
        FormatError,
        "width 2**24, over the 2**24 - 1 limit",
    ),
    Invalid(
        "too-many-pixels.kmc",
        STORED3,
        lambda d: with_header(d, width=fmt.MAX_DIMENSION, height=fmt.MAX_DIMENSION, rows_per_strip=1),
        FormatError,
        FormatError,
        "(2**24 - 1) x (2**24 - 1) pixels, over the format's 2**32 - 1: must fail before any allocation",
    ),
    Invalid(
        "over-default-pixel-limit.kmc",
        STORED4,
        lambda d: with_header(dropped(d, fmt.STRP, 3), width=16384, height=16385, rows_per_strip=8192),
        ImageTooLargeError,
        None,
        "16384 x 16385 pixels in 3 strips (the last of 4 dropped): within the format, over decode()'s "
        "default max_pixels (2**28); read_info has no pixel limit and never decodes the strips",
    ),
    Invalid(
        "strip-over-limit.kmc",
        STORED3,
        lambda d: with_header(d, width=fmt.MAX_DIMENSION, height=9, rows_per_strip=9),
        FormatError,
        FormatError,
        "one strip of 9 rows of 2**24 - 1 labels (under the pixel limit): over the 256 MiB strip limit",
    ),
    Invalid("zero-colors.kmc", STORED3, lambda d: with_header(d, colors=0), FormatError, FormatError, "palette size 0"),
    Invalid(
        "too-many-colors.kmc",
        STORED3,
        lambda d: with_header(d, colors=fmt.MAX_COLORS + 1),
        FormatError,
        FormatError,
        "palette size 65537",
    ),
    Invalid(
        "bad-layout.kmc", STORED3, lambda d: with_header(d, layout=5), FormatError, FormatError, "channel layout code 5"
    ),
    Invalid(
        "zero-rows-per-strip.kmc",
        STORED3,
        lambda d: with_header(d, rows_per_strip=0),
        FormatError,
        FormatError,
        "rows per strip 0",
    ),
    Invalid(
        "rows-per-strip-over-height.kmc",
        STORED3,
        lambda d: with_header(d, rows_per_strip=4),
        FormatError,
        FormatError,
        "rows per strip 4 in a 3-row image",
    ),
    Invalid(
        "unknown-method.kmc",
        STORED3,
        lambda d: with_strip(with_header(d, method=4), 0, bytes, method=4),
        UnsupportedFeatureError,
        UnsupportedFeatureError,
        "HEAD and the strip say label coding method 4 (3 is cm since 1.1)",
    ),
    Invalid(
        "unknown-strip-method.kmc",
        STORED3,
        lambda d: with_strip(with_header(d, method=fmt.METHOD_MIXED), 0, bytes, method=9),
        UnsupportedFeatureError,
        UnsupportedFeatureError,
        "HEAD says mixed (255), the strip says method 9",
    ),
    Invalid(
        "strip-method-255.kmc",
        STORED3,
        lambda d: with_strip(with_header(d, method=fmt.METHOD_MIXED), 0, bytes, method=fmt.METHOD_MIXED),
        FormatError,
        FormatError,
        "a strip says method 255, HEAD's mixed marker, which only HEAD may use",
    ),
    Invalid(
        "strip-method-mismatch.kmc",
        STORED3,
        lambda d: with_header(d, method=int(fmt.Method.DEFLATE)),
        FormatError,
        FormatError,
        "HEAD says deflate, the strip says stored",
    ),
    # §5 PALT, §6 STRP, §7 made
    Invalid(
        "palette-length-mismatch.kmc",
        STORED3,
        lambda d: with_payload(d, fmt.PALT, lambda p: p[:-1]),
        FormatError,
        FormatError,
        "PALT is 8 bytes; 3 colours x 3 channels need 9",
    ),
    Invalid(
        "made-wrong-length.kmc",
        META,
        lambda d: with_payload(d, fmt.MADE, lambda p: p + b"\0"),
        FormatError,
        FormatError,
        "the made chunk is 29 bytes",
    ),
    Invalid(
        "strip-too-short.kmc",
        STORED3,
        lambda d: with_payload(d, fmt.STRP, lambda p: p[:3]),
        FormatError,
        FormatError,
        "a STRP chunk of 3 bytes, shorter than the strip head",
    ),
    Invalid(
        "stored-strip-wrong-length.kmc",
        STORED3,
        lambda d: with_strip(d, 0, lambda s: s + b"\0"),
        FormatError,
        None,
        "the stored strip is 7 bytes; 3 rows of 2 bytes make 6",
    ),
    Invalid(
        "label-out-of-range.kmc",
        STORED3,
        lambda d: with_strip(d, 0, lambda s: bytes([s[0] | 0xC0]) + s[1:]),
        FormatError,
        None,
        "the first stored label is 3; the palette has 3 colours",
    ),
    Invalid(
        "nonzero-padding.kmc",
        STORED3,
        lambda d: with_strip(d, 0, lambda s: s[:1] + bytes([s[1] | 0x01]) + s[2:]),
        FormatError,
        None,
        "the last padding bit of the first stored row is 1",
    ),
    Invalid(
        "label-out-of-range-k1.kmc",
        "rgb-k1-stored",
        lambda d: with_strip(d, 0, lambda s: bytes([s[0] | 0x80]) + s[1:]),
        FormatError,
        None,
        "the first label is 1 in a 1-colour palette",
    ),
    Invalid(
        "deflate-label-out-of-range.kmc",
        DEFLATE_K3,
        lambda d: with_strip(d, 0, lambda s: recoded(s, lambda raw: set_bits(raw, 0, 0xC0))),
        FormatError,
        None,
        "the first label inside the deflate stream is 3; the palette has 3 colours",
    ),
    Invalid(
        "deflate-nonzero-padding.kmc",
        DEFLATE_K3,
        lambda d: with_strip(d, 0, lambda s: recoded(s, lambda raw: set_bits(raw, 3, 0x01))),
        FormatError,
        None,
        "a padding bit inside the deflate stream is 1",
    ),
    Invalid(
        "deflate-bomb.kmc",
        DEFLATE3,
        lambda d: with_strip(d, 0, lambda s: zlib.compress(bytes(2**20), 9)),
        FormatError,
        None,
        "strip 0 inflates to 1 MiB; the header implies 3 rows x 6 bytes = 18",
    ),
    Invalid(
        "deflate-short.kmc",
        DEFLATE3,
        lambda d: with_strip(d, 0, lambda s: zlib.compress(bytes(17), 9)),
        FormatError,
        None,
        "strip 0 inflates to 17 bytes; the header implies 18",
    ),
    Invalid(
        "deflate-trailing-bytes.kmc",
        DEFLATE3,
        lambda d: with_strip(d, 0, lambda s: s + b"\0"),
        FormatError,
        None,
        "a zero byte after strip 0's zlib stream",
    ),
    Invalid(
        "deflate-truncated-stream.kmc",
        DEFLATE3,
        lambda d: with_strip(d, 1, lambda s: s[:-5]),
        FormatError,
        None,
        "strip 1's zlib stream lacks its last 5 bytes (chunk length and CRC recomputed)",
    ),
    Invalid(
        "deflate-invalid-stream.kmc",
        DEFLATE3,
        lambda d: with_strip(d, 1, lambda s: s[:2] + b"\xff" + s[3:]),
        FormatError,
        None,
        "strip 1's zlib stream starts with block type 3 (reserved)",
    ),
    Invalid(
        "deflate-bad-adler32.kmc",
        DEFLATE3,
        lambda d: with_strip(d, 2, lambda s: flipped(s, len(s) - 1)),
        FormatError,
        None,
        "strip 2's Adler-32 is wrong (chunk CRC recomputed)",
    ),
    Invalid(
        "deflate-preset-dictionary.kmc",
        DEFLATE3,
        lambda d: with_strip(d, 0, lambda s: zdict_stream(zlib.decompress(s))),
        FormatError,
        None,
        "strip 0 is a zlib stream with FDICT = 1 (a preset dictionary), which the format forbids",
    ),
    Invalid(
        "deflate-raw-stream.kmc",
        DEFLATE3,
        lambda d: with_strip(d, 0, lambda s: raw_stream(zlib.decompress(s), -15)),
        FormatError,
        None,
        "strip 0 is raw deflate without the zlib header",
    ),
    Invalid(
        "deflate-gzip-stream.kmc",
        DEFLATE3,
        lambda d: with_strip(d, 0, lambda s: raw_stream(zlib.decompress(s), 31)),
        FormatError,
        None,
        "strip 0 is a gzip stream, not a zlib stream",
    ),
    Invalid(
        "cm-nonzero-first-byte.kmc",
        CM1,
        lambda d: with_strip(d, 0, lambda s: b"\x01" + s[1:]),
        FormatError,
        None,
        "the cm stream's first byte, always 0, is 1 (CRC recomputed)",
    ),
    Invalid(
        "cm-short-stream.kmc",
        CM1,
        lambda d: with_strip(d, 0, lambda s: s[:4]),
        TruncatedError,
        None,
        "the cm stream is 4 bytes, shorter than the coder's 5-byte start (CRC recomputed)",
    ),
    Invalid(
        "cm-truncated-stream.kmc",
        CM1,
        lambda d: with_strip(d, 0, lambda s: s[: len(s) // 2]),
        TruncatedError,
        None,
        "the cm stream is cut in half: the labels need more bytes (CRC recomputed)",
    ),
    Invalid(
        "cm-trailing-bytes.kmc",
        CM1,
        lambda d: with_strip(d, 0, lambda s: s + b"\0\0"),
        FormatError,
        None,
        "two bytes after the end of the cm stream (CRC recomputed)",
    ),
    Invalid(
        "cm-k1-nonempty.kmc",
        "cm-rgb-k1",
        lambda d: with_strip(d, 0, lambda s: s + b"\0"),
        FormatError,
        None,
        "a cm strip of a one-colour image must be empty; this one has a byte (CRC recomputed)",
    ),
    Invalid(
        "cmm-in-version-1.1.kmc",
        CMM1,
        lambda d: preamble(minor=1) + d[fmt.PREAMBLE_SIZE :],
        UnsupportedFeatureError,
        UnsupportedFeatureError,
        "a cmm strip (method 4) in a file that says version 1.1, where method 4 is not defined",
    ),
    Invalid(
        "cm2d-in-version-1.2.kmc",
        CM2D1,
        lambda d: preamble(minor=2) + d[fmt.PREAMBLE_SIZE :],
        UnsupportedFeatureError,
        UnsupportedFeatureError,
        "a cm2d strip (method 5) in a file that says version 1.2, where method 5 is not defined",
    ),
    Invalid(
        "cmx-in-version-1.3.kmc",
        CMX1,
        lambda d: preamble(minor=3) + d[fmt.PREAMBLE_SIZE :],
        UnsupportedFeatureError,
        UnsupportedFeatureError,
        "a cmx strip (method 6) in a file that says version 1.3, where method 6 is not defined",
    ),
    Invalid(
        "cmx-nonzero-first-byte.kmc",
        CMX1,
        lambda d: with_strip(d, 0, lambda s: b"\x01" + s[1:]),
        FormatError,
        None,
        "the cmx stream's first byte, always 0, is 1 (CRC recomputed)",
    ),
    Invalid(
        "cmx-truncated-stream.kmc",
        CMX1,
        lambda d: with_strip(d, 0, lambda s: s[: len(s) // 2]),
        TruncatedError,
        None,
        "the cmx stream is cut in half: the labels need more bytes (CRC recomputed)",
    ),
    Invalid(
        "cmx-trailing-bytes.kmc",
        CMX1,
        lambda d: with_strip(d, 0, lambda s: s + b"\0\0"),
        FormatError,
        None,
        "two bytes after the end of the cmx stream (CRC recomputed)",
    ),
    Invalid(
        "cm2d-nonzero-first-byte.kmc",
        CM2D1,
        lambda d: with_strip(d, 0, lambda s: b"\x01" + s[1:]),
        FormatError,
        None,
        "the cm2d stream's first byte, always 0, is 1 (CRC recomputed)",
    ),
    Invalid(
        "cm2d-truncated-stream.kmc",
        CM2D1,
        lambda d: with_strip(d, 0, lambda s: s[: len(s) // 2]),
        TruncatedError,
        None,
        "the cm2d stream is cut in half: the labels need more bytes (CRC recomputed)",
    ),
    Invalid(
        "cm2d-trailing-bytes.kmc",
        CM2D1,
        lambda d: with_strip(d, 0, lambda s: s + b"\0\0"),
        FormatError,
        None,
        "two bytes after the end of the cm2d stream (CRC recomputed)",
    ),
    Invalid(
        "cmm-nonzero-first-byte.kmc",
        CMM1,
        lambda d: with_strip(d, 0, lambda s: b"\x01" + s[1:]),
        FormatError,
        None,
        "the cmm stream's first byte, always 0, is 1 (CRC recomputed)",
    ),
    Invalid(
        "cmm-truncated-stream.kmc",
        CMM1,
        lambda d: with_strip(d, 0, lambda s: s[: len(s) // 2]),
        TruncatedError,
        None,
        "the cmm stream is cut in half: the labels need more bytes (CRC recomputed)",
    ),
    Invalid(
        "cmm-trailing-bytes.kmc",
        CMM1,
        lambda d: with_strip(d, 0, lambda s: s + b"\0\0"),
        FormatError,
        None,
        "two bytes after the end of the cmm stream (CRC recomputed)",
    ),
    Invalid(
        "lzma-truncated-stream.kmc",
        LZMA1,
        lambda d: with_strip(d, 0, lambda s: s[: len(s) // 2]),
        FormatError,
        None,
        "the LZMA stream is cut in half (chunk length and CRC recomputed)",
    ),
    Invalid(
        "lzma-bomb.kmc",
        LZMA1,
        lambda d: with_strip(d, 0, lambda s: lzma.compress(bytes(2**20), format=lzma.FORMAT_ALONE, filters=SMALL_LZMA)),
        FormatError,
        None,
        "the LZMA strip (4 KiB dictionary) decompresses to 1 MiB; the header implies 7 rows x 6 bytes = 42",
    ),
    Invalid(
        "lzma-huge-dictionary.kmc",
        LZMA1,
        lambda d: with_strip(d, 0, lambda s: s[:1] + b"\xff\xff\xff\xff" + s[5:]),
        FormatError,
        None,
        "the LZMA header asks for a 4 GiB dictionary, far over the 16 MiB a decoder must accept",
    ),
    Invalid(
        "lzma-size-mismatch.kmc",
        LZMA1,
        lambda d: with_strip(d, 0, lambda s: s[:5] + (43).to_bytes(8, "little") + s[13:]),
        FormatError,
        None,
        "the LZMA header declares 43 bytes of content; the header implies 7 rows x 6 bytes = 42",
    ),
    Invalid(
        "lzma-bad-properties.kmc",
        LZMA1,
        lambda d: with_strip(d, 0, lambda s: b"\xe1" + s[1:]),
        FormatError,
        None,
        "the LZMA properties byte is 225 (pb = 5), outside the format",
    ),
]


# ---------------------------------------------------------------------------
# Building and checking
# ---------------------------------------------------------------------------
def png(pixels: np.ndarray, mode: str) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels[:, :, 0] if mode == "L" else pixels, mode).save(buf, "PNG")
    return buf.getvalue()


def source_pixels(png_bytes: bytes) -> np.ndarray:
    """The encoder's view of a source image, fully transparent pixels collapsed to 0 as the quantizer does."""
    pixels = load_source(io.BytesIO(png_bytes)).array().copy()
    if pixels.shape[2] in (2, 4):
        pixels[pixels[:, :, -1] == 0] = 0
    return pixels


def raised(fn: Callable[[bytes], object], data: bytes) -> type[KmcError] | None:
    try:
        fn(data)
    except KmcError as exc:
        return type(exc)
    return None


def fail(msg: str) -> None:
    raise SystemExit(f"make_fixtures: {msg}")


def valid_entry(name: str, source: str, options: dict, data: bytes, description: str) -> tuple[dict, bytes]:
    """The manifest entry of a valid vector and its expected-pixels PNG."""
    info = kmcodec.read_info(data)
    pixels = kmcodec.decode(data)
    exact = info.unique_colors <= options["colors"]
    entry = {
        "file": f"valid/{name}.kmc",
        "description": description,
        "source": f"images/{source}",
        "options": options,
        "reencode": True,
        "expected": f"valid/{name}.png",
        "exact": exact,
        "info": {
            "width": info.width,
            "height": info.height,
            "mode": info.mode,
            "colors": info.colors,
            "bits_per_label": info.bits_per_label,
            "method": info.method,
            "strips": info.strips,
            "strip_methods": info.strip_methods,
            "chunks": [c["type"] for c in info.chunks],
        },
    }
    return entry, png(pixels, info.mode)


def build() -> dict[str, bytes]:
    """Every fixture file's bytes, by path relative to fixtures/."""
    files: dict[str, bytes] = {}
    sources = source_images()
    for name, data in sources.items():
        files[f"images/{name}"] = data

    vectors: dict[str, bytes] = {}
    manifest: dict = {
        "format_version": f"{fmt.VERSION_MAJOR}.{fmt.VERSION_MINOR}",
        "generator": "tools/make_fixtures.py",
        "valid": [],
        "invalid": [],
    }
    for v in VALID:
        data = kmcodec.encode(io.BytesIO(sources[v.source]), **v.options)
        entry, expected = valid_entry(v.name, v.source, v.options, data, v.description)
        if entry["exact"] and not np.array_equal(kmcodec.decode(data), source_pixels(sources[v.source])):
            fail(f"{v.name}: the source has at most k colours but does not round-trip exactly")
        vectors[v.name] = data
        manifest["valid"].append(entry)
        files[entry["file"]], files[entry["expected"]] = data, expected
    if manifest["valid"][[v.name for v in VALID].index("rgb-mixed-k16-auto-rps8")]["info"]["method"] != "mixed":
        fail("rgb-mixed-k16-auto-rps8 no longer mixes methods: change its source image")

    for d in DERIVED:
        base = next(v for v in VALID if v.name == d.base)
        data = d.make(vectors[base.name])
        entry, expected = valid_entry(d.name, base.source, base.options, data, d.description)
        entry["reencode"] = False
        entry["derived_from"] = f"valid/{base.name}.kmc"
        if expected != files[f"valid/{base.name}.png"]:
            fail(f"{d.name} does not decode to the pixels of {base.name}")
        manifest["valid"].append(entry)
        files[entry["file"]], files[entry["expected"]] = data, expected

    for inv in INVALID:
        data = inv.make(vectors[inv.base])
        got = raised(kmcodec.decode, data)
        if got is not inv.error:
            fail(f"{inv.name}: decode raises {got and got.__name__}, expected {inv.error.__name__}")
        got = raised(kmcodec.read_info, data)
        if got is not inv.read_info_error:
            want = inv.read_info_error and inv.read_info_error.__name__
            fail(f"{inv.name}: read_info raises {got and got.__name__}, expected {want}")
        manifest["invalid"].append(
            {
                "file": f"invalid/{inv.name}",
                "fault": inv.fault,
                "derived_from": f"valid/{inv.base}.kmc",
                "error": inv.error.__name__,
                "read_info_error": inv.read_info_error and inv.read_info_error.__name__,
            }
        )
        files[f"invalid/{inv.name}"] = data

    files["manifest.json"] = (json.dumps(manifest, indent=2) + "\n").encode()
    return files


def only_additions(changed: list[str], files: dict[str, bytes]) -> bool:
    """True if the only change is new entries in manifest.json: adding vectors pins nothing anew."""
    if changed != ["manifest.json"]:
        return False
    old = json.loads((FIXTURES / "manifest.json").read_bytes())
    new = json.loads(files["manifest.json"])
    if {k: v for k, v in old.items() if k not in ("valid", "invalid")} != {
        k: v for k, v in new.items() if k not in ("valid", "invalid")
    }:
        return False
    new_entries = {e["file"]: e for e in new["valid"] + new["invalid"]}
    return all(new_entries.get(e["file"]) == e for e in old["valid"] + old["invalid"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--check", action="store_true", help="write nothing; exit 1 if any fixture differs")
    group.add_argument("--overwrite", action="store_true", help="replace fixtures that differ (format changes only)")
    args = parser.parse_args(argv)

    files = build()
    missing = [p for p in files if not (FIXTURES / p).exists()]
    changed = [p for p in files if p not in missing and (FIXTURES / p).read_bytes() != files[p]]
    stale = sorted(
        str(p.relative_to(FIXTURES))
        for folder in ("images", "valid", "invalid")
        for p in (FIXTURES / folder).glob("*")
        if str(p.relative_to(FIXTURES)) not in files
    )
    for label, paths in (("missing", missing if args.check else []), ("differs", changed), ("stale", stale)):
        for p in paths:
            print(f"{label}: fixtures/{p}", file=sys.stderr)
    if stale:
        print("make_fixtures: stale files are not made by this script; delete them or add them here", file=sys.stderr)
    if args.check:
        return 1 if missing or changed or stale else 0
    if changed and not args.overwrite and not only_additions(changed, files):
        print(
            "make_fixtures: committed vectors would change; they pin the format. "
            "Rerun with --overwrite only together with a format version bump.",
            file=sys.stderr,
        )
        return 1
    for p in missing + changed:
        path = FIXTURES / p
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(files[p])
    print(f"make_fixtures: {len(files)} files, {len(missing)} written, {len(changed)} replaced")
    return 0


if __name__ == "__main__":
    sys.exit(main())
