#!/usr/bin/env python3
"""Write a folder of odd input images for ``kmc encode``: every mode and case the encoder must survive.

    python tools/make_odd_images.py /tmp/odd            # then: for f in /tmp/odd/*; do kmc encode "$f" ...; done

Each image is made from integer formulas (no randomness), small (a few KiB
at most), and listed in ``ODD_IMAGES`` with what the encoder should do with
it: ``"encodes"`` (exit 0), ``"refused"`` (exit 1, one line
``kmc: error: ...``) or ``"either"`` where the answer is the image
library's to give (a corrupt JPEG may decode with grey blocks).  Whatever
the answer, a traceback is never one (``tests/test_odd_images.py``).

The cases: 16-bit grey (PNG and big-endian TIFF), 16-bit RGB PNG, 32-bit
integer and float TIFFs (in range, out of range, NaN), CMYK JPEG and TIFF,
CIELAB TIFF, YCbCr TIFF, palette PNG with a tRNS chunk, PA, 1-bit, LA,
animated GIF and PNG, a GIF damaged after its first frame, multi-page TIFF, JPEGs with EXIF orientation 6 and 8,
1 x 1, 1 x N and N x 1, fully transparent RGBA, RGBA WebP, and broken
files: truncated and bad-CRC PNGs, a corrupt JPEG, a zero-byte file, text
named .png, PNGs whose IHDR declares 100000 x 100000 and 10000 x 10000
pixels (decompression bombs past and inside Pillow's warning limit), a GIF
whose screen declares 65535 x 65535, a PNG of width 0, a DDS of unknown pixel format, a JPEG with damaged
EXIF and a TIFF that claims 50000 samples per pixel.
"""

from __future__ import annotations

import dataclasses
import io
import struct
import sys
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, features


@dataclasses.dataclass(frozen=True)
class OddImage:
    name: str  # file name, extension included
    expect: str  # "encodes", "refused" or "either"
    what: str
    make: Callable[[Path], None]
    #: (width, height) of the encoded image when it differs from the file's (EXIF rotation)
    encoded_size: tuple[int, int] | None = None
    #: Why ``kmc encode`` does not yet print exactly what it should, if it does not
    known_issue: str | None = None


def _ramp(width: int, height: int, top: int) -> np.ndarray:
    ys, xs = np.mgrid[0:height, 0:width]
    return (xs * 7 + ys * 13) * top // (7 * max(width - 1, 1) + 13 * max(height - 1, 1))


def _rgb(width: int, height: int) -> np.ndarray:
    ys, xs = np.mgrid[0:height, 0:width]
    return np.stack([xs * 255 // max(width - 1, 1), ys * 255 // max(height - 1, 1), (xs + ys) * 20 % 256], -1).astype(
        np.uint8
    )


def _png_chunk(chunk_type: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + chunk_type + payload + struct.pack(">I", zlib.crc32(chunk_type + payload))


def _png_by_hand(width: int, height: int, bit_depth: int, color_type: int, raw: bytes) -> bytes:
    """A PNG written byte by byte, for what Pillow will not write (16-bit RGB, lying sizes)."""
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", zlib.compress(raw))
        + _png_chunk(b"IEND", b"")
    )


def _save(image: Image.Image, **options) -> Callable[[Path], None]:
    return lambda path: image.save(path, **options)


def _write(data: bytes) -> Callable[[Path], None]:
    return lambda path: path.write_bytes(data)


def _frames(mode: str) -> list[Image.Image]:
    base = _rgb(12, 8)
    return [Image.fromarray(np.roll(base, 3 * i, axis=1)).convert(mode) for i in range(4)]


def _exif_jpeg(orientation: int) -> Callable[[Path], None]:
    def make(path: Path) -> None:
        exif = Image.Exif()
        exif[0x0112] = orientation
        Image.fromarray(_rgb(9, 5)).save(path, "JPEG", exif=exif, quality=95)

    return make


def _rgb16_png() -> bytes:
    values = _ramp(10, 6, 65535)
    pixels = np.stack([values, values[::-1], values[:, ::-1]], -1).astype(">u2")
    raw = b"".join(b"\x00" + row.tobytes() for row in pixels)
    return _png_by_hand(10, 6, 16, 2, raw)


def _cut(make: Callable[[Path], None], keep: float) -> Callable[[Path], None]:
    def truncated(path: Path) -> None:
        make(path)
        data = path.read_bytes()
        path.write_bytes(data[: int(len(data) * keep)])

    return truncated


def _bad_crc_png(path: Path) -> None:
    buf = io.BytesIO()
    Image.fromarray(_rgb(8, 8)).save(buf, "PNG")
    data = bytearray(buf.getvalue())
    data[33 + 8 + 4] ^= 0xFF  # a byte of the first IDAT's data: its CRC no longer matches
    path.write_bytes(bytes(data))


def _corrupt_jpeg(path: Path) -> None:
    buf = io.BytesIO()
    Image.fromarray(_rgb(32, 32)).save(buf, "JPEG", quality=90)
    data = bytearray(buf.getvalue())
    sos = data.index(b"\xff\xda")
    for i in range(sos + 20, len(data) - 2, 7):  # scribble over the entropy-coded data
        data[i] = 0xFF if i % 2 else 0x00
    path.write_bytes(bytes(data))


def _corrupt_exif_jpeg(path: Path) -> None:
    """Orientation 6, but the EXIF's Make entry points past the end of the EXIF data."""
    exif = Image.Exif()
    exif[0x0112] = 6
    exif[0x010F] = "A maker name longer than four bytes"
    raw = bytearray(exif.tobytes())  # Exif\0\0, TIFF header (8), entry count (2), Make entry first
    raw[6 + 8 + 2 + 8 : 6 + 8 + 2 + 12] = (0x7FFF).to_bytes(4, "big")
    Image.fromarray(_rgb(9, 5)).save(path, "JPEG", exif=bytes(raw))


def _tiff_samples_per_pixel(path: Path) -> None:
    """A TIFF whose SamplesPerPixel (tag 277) is 50000."""
    buf = io.BytesIO()
    Image.fromarray(_rgb(4, 3)).save(buf, "TIFF")
    data = bytearray(buf.getvalue())
    ifd = struct.unpack_from("<I", data, 4)[0]
    for entry in range(ifd + 2, ifd + 2 + 12 * struct.unpack_from("<H", data, ifd)[0], 12):
        if struct.unpack_from("<H", data, entry)[0] == 277:
            struct.pack_into("<H", data, entry + 8, 50000)
    path.write_bytes(bytes(data))


def _gif_bad_second_frame(path: Path) -> None:
    """An animated GIF cut inside its second frame's image descriptor."""
    _animation("P")(path)
    data = path.read_bytes()
    second = data.index(b"\x21\xf9\x04", data.index(b"\x21\xf9\x04") + 1)  # frame 2's control extension
    path.write_bytes(data[: data.index(b"\x2c", second) + 3])


def _dds_unknown_format(path: Path) -> None:
    """A DDS file whose pixel format flags are 0 (no format Pillow knows)."""
    buf = io.BytesIO()
    Image.fromarray(_rgb(4, 4)).save(buf, "DDS")
    data = bytearray(buf.getvalue())
    data[80:84] = bytes(4)  # "DDS ", then the header; its pixel format's flags field
    path.write_bytes(bytes(data))


def _huge_gif_screen() -> bytes:
    """A GIF whose logical screen is 65535 x 65535 and whose one frame is 1 x 1."""
    header = b"GIF89a" + struct.pack("<HHBBB", 65535, 65535, 0x80, 0, 0) + b"\x00\x00\x00\xff\xff\xff"
    frame = b"\x2c" + struct.pack("<HHHHB", 0, 0, 1, 1, 0) + b"\x02\x02\x44\x01\x00"
    return header + frame + b"\x3b"


def _multipage_tiff(path: Path) -> None:
    pages = _frames("RGB")
    pages[0].save(path, "TIFF", save_all=True, append_images=pages[1:])


_int32 = np.array(_ramp(11, 7, 65535), dtype=np.int32)
_wide = np.array(_ramp(11, 7, 2**20), dtype=np.int32) - 5
_float = np.array(_ramp(11, 7, 1000), dtype=np.float32) / 1000
_float_nan = _float.copy()
_float_nan[2, 3] = np.nan
_lab = Image.merge(
    "LAB",
    [
        Image.fromarray(np.asarray(c, np.uint8))
        for c in (_ramp(10, 6, 255), np.full((6, 10), 150), np.full((6, 10), 100))
    ],
)
_palette = Image.fromarray(_rgb(9, 6)).quantize(8)
_palette.info["transparency"] = 0
_pa = Image.fromarray(_rgb(9, 6)).quantize(8).convert("PA")
_la = np.stack([_ramp(9, 5, 255), _ramp(9, 5, 255)[::-1]], -1).astype(np.uint8)
_rgba = np.dstack([_rgb(8, 8), _ramp(8, 8, 255).astype(np.uint8)])
_transparent = np.zeros((5, 7, 4), np.uint8)
_transparent[..., :3] = _rgb(7, 5)  # colour under alpha 0


def _animation(mode: str) -> Callable[[Path], None]:
    frames = _frames(mode)
    return lambda path: frames[0].save(path, save_all=True, append_images=frames[1:], duration=100, loop=0)


def _grey16(top: int, dtype: str) -> Callable[[Path], None]:
    return _save(Image.fromarray(_ramp(11, 7, top).astype(dtype)))


ODD_IMAGES = [
    OddImage("grey-16bit.png", "encodes", "I;16 PNG, 0..65535", _grey16(65535, "<u2")),
    OddImage("grey-16bit-be.tif", "encodes", "I;16B TIFF", _grey16(65535, ">u2")),
    OddImage("grey-16bit-low.png", "encodes", "I;16 PNG, values <= 255", _grey16(255, "<u2")),
    OddImage("rgb-16bit.png", "encodes", "48-bit RGB PNG (Pillow reads 8 bits)", _write(_rgb16_png())),
    OddImage("int32.tif", "encodes", "mode I TIFF, 0..65535", _save(Image.fromarray(_int32))),
    OddImage(
        "int32-wide.tif", "refused", "mode I TIFF, -5..2**20: no 8- or 16-bit range", _save(Image.fromarray(_wide))
    ),
    OddImage("float.tif", "encodes", "mode F TIFF, 0..1", _save(Image.fromarray(_float))),
    OddImage("float-wide.tif", "refused", "mode F TIFF, -5..2**20", _save(Image.fromarray(_wide.astype(np.float32)))),
    OddImage("float-nan.tif", "refused", "mode F TIFF with a NaN", _save(Image.fromarray(_float_nan))),
    OddImage("cmyk.jpg", "encodes", "CMYK JPEG", _save(Image.fromarray(_rgb(10, 6)).convert("CMYK"), quality=95)),
    OddImage("cmyk.tif", "encodes", "CMYK TIFF", _save(Image.fromarray(_rgb(10, 6)).convert("CMYK"))),
    OddImage("lab.tif", "encodes", "CIELAB TIFF (mode LAB)", _save(_lab)),
    OddImage("ycbcr.tif", "encodes", "YCbCr TIFF", _save(Image.fromarray(_rgb(10, 6)).convert("YCbCr"))),
    OddImage("palette-trns.png", "encodes", "P PNG with a tRNS chunk", _save(_palette)),
    OddImage("pa.tif", "encodes", "PA TIFF (palette with alpha)", _save(_pa)),
    OddImage("bilevel.png", "encodes", "1-bit PNG", _save(Image.fromarray(_la[..., 0]).convert("1"))),
    OddImage("la.png", "encodes", "LA PNG", _save(Image.fromarray(_la))),
    OddImage("animated.gif", "encodes", "GIF of 4 frames (the first is encoded)", _animation("P")),
    OddImage("animated.png", "encodes", "APNG of 4 frames (the first is encoded)", _animation("RGBA")),
    OddImage("animated-bad-frame.gif", "encodes", "GIF cut inside frame 2 (frame 1 is sound)", _gif_bad_second_frame),
    OddImage("multipage.tif", "encodes", "TIFF of 4 pages (the first is encoded)", _multipage_tiff),
    OddImage("exif-orientation-6.jpg", "encodes", "JPEG, EXIF orientation 6", _exif_jpeg(6), (5, 9)),
    OddImage("exif-orientation-8.jpg", "encodes", "JPEG, EXIF orientation 8", _exif_jpeg(8), (5, 9)),
    OddImage("one-pixel.png", "encodes", "1 x 1 RGB", _save(Image.new("RGB", (1, 1), (200, 10, 30)))),
    OddImage("one-column.png", "encodes", "1 x 17 RGB", _save(Image.fromarray(_rgb(1, 17)))),
    OddImage("one-row.png", "encodes", "17 x 1 RGB", _save(Image.fromarray(_rgb(17, 1)))),
    OddImage("transparent.png", "encodes", "RGBA, alpha 0 everywhere", _save(Image.fromarray(_transparent))),
    OddImage(
        "rgba.webp",
        "encodes" if features.check("webp") else "refused",
        "RGBA WebP, lossless",
        _save(Image.fromarray(_rgba), lossless=True),
    ),
    OddImage(
        "truncated.png", "refused", "a PNG cut in its image data", _cut(_save(Image.fromarray(_rgb(40, 40))), 0.6)
    ),
    OddImage("bad-crc.png", "refused", "a PNG whose IDAT CRC does not match", _bad_crc_png),
    OddImage("corrupt.jpg", "either", "a JPEG with scribbled entropy-coded data", _corrupt_jpeg),
    OddImage("truncated.jpg", "either", "a JPEG cut in half", _cut(_save(Image.fromarray(_rgb(40, 40))), 0.5)),
    OddImage("empty.png", "refused", "zero bytes", _write(b"")),
    OddImage("text.png", "refused", "a text file named .png", _write(b"this is not an image\n")),
    OddImage(
        "bomb-100000.png",
        "refused",
        "IHDR says 100000 x 100000, a few bytes of data",
        _write(_png_by_hand(100_000, 100_000, 8, 2, b"\x00" * 16)),
    ),
    OddImage(
        "bomb-10000.png",
        "refused",
        "IHDR says 10000 x 10000: past Pillow's bomb warning, inside its error limit",
        _write(_png_by_hand(10_000, 10_000, 8, 0, b"\x00" * 16)),
    ),
    OddImage("unknown-format.dds", "refused", "DDS with pixel format flags 0", _dds_unknown_format),
    OddImage("gif-huge-screen.gif", "refused", "GIF screen of 65535 x 65535", _write(_huge_gif_screen())),
    OddImage("zero-width.png", "refused", "IHDR says 0 x 5", _write(_png_by_hand(0, 5, 8, 0, b"\x00" * 5))),
    OddImage(
        "exif-corrupt.jpg",
        "encodes",
        "JPEG whose EXIF entry points past the EXIF's end (orientation then unreadable)",
        _corrupt_exif_jpeg,
    ),
    OddImage(
        "tiff-samples-per-pixel.tif",
        "refused",
        "TIFF with SamplesPerPixel 50000",
        _tiff_samples_per_pixel,
    ),
]


def make_odd_images(folder: Path | str) -> list[tuple[Path, OddImage]]:
    """Write every image of :data:`ODD_IMAGES` into *folder*; returns (path, case) pairs."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    made = []
    for case in ODD_IMAGES:
        path = folder / case.name
        case.make(path)
        made.append((path, case))
    return made


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1 or argv[0].startswith("-"):
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return 2
    for path, case in make_odd_images(argv[0]):
        print(f"{path}  {case.expect:8}  {case.what}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
