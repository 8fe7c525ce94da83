"""Decoding strip by strip: open_strips, the streaming PNG writer, decode_to_png and ``kmc decode`` to PNG."""

from __future__ import annotations

import io
import tracemalloc
import zlib

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

import kmcodec
from kmcodec import png, threads
from kmcodec.cli import cli
from kmcodec.codec import STRIPS_AHEAD_PER_WORKER

MODES = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}


def _image(height: int, width: int, channels: int, seed: int = 0) -> np.ndarray:
    """A gradient with noise: many colours, and rows that favour different PNG filters."""
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0:height, 0:width]
    planes = [xs * 7 + ys * 3, ys * 11 - xs, (xs * ys) % 256, 128 + xs - ys]
    img = np.stack(planes[:channels], -1) + rng.integers(0, 24, (height, width, channels))
    return (img % 256).astype(np.uint8)


def _png_pixels(data: bytes, mode: str) -> tuple[str, np.ndarray]:
    """(Pillow's mode for the PNG, its pixels as (H, W, C) in *mode*)."""
    with Image.open(io.BytesIO(data)) as image:
        assert image.format == "PNG"
        pixels = np.asarray(image.convert(mode))
        return image.mode, pixels.reshape(image.height, image.width, len(mode))


def _png_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    """(type, payload) of every chunk, each CRC checked."""
    assert data[:8] == png.SIGNATURE
    chunks, offset = [], 8
    while offset < len(data):
        length = int.from_bytes(data[offset : offset + 4], "big")
        kind, payload = data[offset + 4 : offset + 8], data[offset + 8 : offset + 8 + length]
        assert int.from_bytes(data[offset + 8 + length : offset + 12 + length], "big") == zlib.crc32(kind + payload)
        chunks.append((kind, payload))
        offset += 12 + length
    assert offset == len(data) and chunks[-1] == (b"IEND", b"")
    return chunks


# ---------------------------------------------------------------------------
# decode_to_png: the PNG holds exactly decode()'s pixels
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("channels", [1, 2, 3, 4])
@pytest.mark.parametrize("colors", [1, 2, 16, 17, 256, 300])
@pytest.mark.parametrize(("height", "width", "rows"), [(1, 1, 1), (37, 23, 5), (13, 1, 4), (1, 29, 1)])
def test_png_round_trip(channels, colors, height, width, rows):
    data = kmcodec.encode(_image(height, width, channels), colors, rows_per_strip=rows)
    expected = kmcodec.decode(data)
    out = io.BytesIO()
    assert kmcodec.decode_to_png(data, out) == len(out.getvalue())
    png_mode, pixels = _png_pixels(out.getvalue(), MODES[channels])
    np.testing.assert_array_equal(pixels, expected)
    indexed = channels >= 3 and kmcodec.read_info(data).colors <= 256
    assert png_mode == ("P" if indexed else MODES[channels])


def test_k_over_256_is_truecolour_and_uses_every_filter():
    data = kmcodec.encode(_image(64, 80, 3), 300, rows_per_strip=7)
    assert kmcodec.read_info(data).colors > 256
    out = io.BytesIO()
    kmcodec.decode_to_png(data, out)
    chunks = _png_chunks(out.getvalue())
    ihdr = chunks[0][1]
    assert ihdr[8:10] == bytes((8, png.TRUECOLOUR))
    raw = zlib.decompress(b"".join(p for t, p in chunks if t == b"IDAT"))
    filters = {raw[row * (1 + 80 * 3)] for row in range(64)}
    assert filters <= {0, 1, 2, 3, 4} and len(filters) >= 3, filters
    np.testing.assert_array_equal(_png_pixels(out.getvalue(), "RGB")[1], kmcodec.decode(data))


@pytest.mark.parametrize(("colors", "depth"), [(2, 1), (4, 2), (16, 4), (17, 8), (256, 8)])
def test_indexed_bit_depth_fits_the_palette(colors, depth):
    index = np.arange(256).reshape(16, 16) % colors
    image = np.zeros((16, 16, 3), np.uint8)
    image[..., 0] = index * (255 // max(colors - 1, 1))
    image[..., 1] = index  # exactly `colors` distinct colours
    data = kmcodec.encode(image, colors)
    assert kmcodec.read_info(data).colors == colors
    out = io.BytesIO()
    kmcodec.decode_to_png(data, out)
    chunks = dict(_png_chunks(out.getvalue()))
    assert chunks[b"IHDR"][8:10] == bytes((depth, png.INDEXED))
    assert len(chunks[b"PLTE"]) == 3 * colors and b"tRNS" not in chunks
    np.testing.assert_array_equal(_png_pixels(out.getvalue(), "RGB")[1], image)


def test_rgba_palette_alpha_goes_into_trns():
    image = np.zeros((4, 4, 4), np.uint8)
    image[:2] = (10, 20, 30, 128)
    image[2:] = (200, 100, 0, 255)
    data = kmcodec.encode(image, 4)
    out = io.BytesIO()
    kmcodec.decode_to_png(data, out)
    chunks = dict(_png_chunks(out.getvalue()))
    palette = kmcodec.read_info(data).palette
    alpha = bytes(p[3] for p in palette)
    assert chunks[b"tRNS"] == alpha.rstrip(b"\xff")
    np.testing.assert_array_equal(_png_pixels(out.getvalue(), "RGBA")[1], image)


def test_metadata_goes_into_iccp_exif_and_itxt():
    exif = Image.Exif()
    exif[0x010E] = "a description"  # ImageDescription
    image = Image.fromarray(_image(6, 5, 3))
    buf = io.BytesIO()
    image.save(buf, "PNG", icc_profile=b"\x00fake icc" * 5, exif=exif.tobytes())
    data = kmcodec.encode(Image.open(io.BytesIO(buf.getvalue())), 8)
    decoded = kmcodec.decode_image(data)
    out = io.BytesIO()
    kmcodec.decode_to_png(data, out)
    with Image.open(io.BytesIO(out.getvalue())) as streamed:
        assert streamed.info["icc_profile"] == decoded.info["icc_profile"]
        assert streamed.info["exif"] == decoded.info["exif"]
        assert streamed.getexif()[0x010E] == "a description"
    xmp = b'<x:xmpmeta xmlns:x="adobe:ns:meta/"/>'
    image.info["xmp"] = xmp
    out = io.BytesIO()
    kmcodec.decode_to_png(kmcodec.encode(image, 8), out)
    with Image.open(io.BytesIO(out.getvalue())) as streamed:
        assert streamed.info["XML:com.adobe.xmp"] == xmp.decode()


def test_sources_bytes_path_file_and_reader(tmp_path):
    data = kmcodec.encode(_image(30, 20, 3), 8, rows_per_strip=4)
    path = tmp_path / "x.kmc"
    path.write_bytes(data)
    outputs = set()
    for source in (data, bytearray(data), memoryview(data), path, str(path), io.BytesIO(data)):
        out = io.BytesIO()
        kmcodec.decode_to_png(source, out)
        outputs.add(out.getvalue())
    out = io.BytesIO()
    with kmcodec.open_strips(path) as reader:
        kmcodec.decode_to_png(reader, out)
    outputs.add(out.getvalue())
    assert len(outputs) == 1


# ---------------------------------------------------------------------------
# open_strips
# ---------------------------------------------------------------------------
def test_open_strips_yields_decode_strip_by_strip(tmp_path):
    data = kmcodec.encode(_image(50, 7, 4), 40, rows_per_strip=8)
    expected = kmcodec.decode(data)
    with kmcodec.open_strips(data) as reader:
        assert (reader.width, reader.height, reader.mode, reader.rows_per_strip) == (7, 50, "RGBA", 8)
        assert reader.palette.shape == (kmcodec.read_info(data).colors, 4)
        strips = list(reader)
    assert [top for top, _ in strips] == list(range(0, 50, 8))
    assert [s.shape for _, s in strips] == [(8, 7, 4)] * 6 + [(2, 7, 4)]
    np.testing.assert_array_equal(np.concatenate([s for _, s in strips]), expected)
    with kmcodec.open_strips(data) as reader:
        labels = np.concatenate([lab for _, lab in reader.labels()])
        np.testing.assert_array_equal(reader.palette[labels], expected)


def test_open_strips_closes_the_file_it_opened(tmp_path):
    path = tmp_path / "x.kmc"
    path.write_bytes(kmcodec.encode(_image(9, 9, 3), 4, rows_per_strip=2))
    reader = kmcodec.open_strips(path)
    assert not reader._file.closed
    next(iter(reader))
    reader.close()
    assert reader._file is None
    with kmcodec.open_strips(path) as reader:
        list(reader)
    fp = open(path, "rb")  # noqa: SIM115
    with kmcodec.open_strips(fp) as reader:
        list(reader)
    assert not fp.closed  # the caller's file stays open
    fp.close()


def test_a_reader_goes_through_its_file_once():
    reader = kmcodec.open_strips(kmcodec.encode(_image(9, 9, 3), 4, rows_per_strip=2))
    assert len(list(reader)) == 5
    with pytest.raises(kmcodec.ParameterError, match="once"):
        list(reader.labels())


class _Pipe(io.RawIOBase):
    """A file object that cannot seek, as standard input from a pipe."""

    def __init__(self, data: bytes) -> None:
        self._data = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        return self._data.readinto(buffer)


def test_a_pipe_is_read_whole_first():
    data = kmcodec.encode(_image(9, 9, 3), 4, rows_per_strip=2)
    with kmcodec.open_strips(_Pipe(data)) as reader:
        np.testing.assert_array_equal(np.concatenate([p for _, p in reader]), kmcodec.decode(data))


def test_a_missing_file_is_a_file_access_error(tmp_path):
    with pytest.raises(kmcodec.FileAccessError, match="cannot read"):
        kmcodec.open_strips(tmp_path / "nope.kmc")


@pytest.mark.parametrize("bad", [["x"], 12, None])
def test_bad_sources_are_parameter_errors(bad):
    with pytest.raises(kmcodec.ParameterError, match="bytes-like"):
        kmcodec.open_strips(bad)


def test_every_truncation_fails_with_a_kmc_error():
    data = kmcodec.encode(_image(12, 10, 3), 8, rows_per_strip=3)
    for size in range(len(data)):
        for source in (data[:size], io.BytesIO(data[:size])):
            with pytest.raises(kmcodec.KmcError):
                kmcodec.decode_to_png(source, io.BytesIO())


def test_damage_after_the_first_strip_raises_after_the_strips_before_it():
    data = bytearray(kmcodec.encode(_image(12, 10, 3), 8, rows_per_strip=3, method="stored"))
    data[-20] ^= 1  # inside the last strip: its CRC fails
    with pytest.raises(kmcodec.ChecksumError):
        kmcodec.decode(bytes(data))
    got = []
    with pytest.raises(kmcodec.ChecksumError), kmcodec.open_strips(bytes(data)) as reader:
        got.extend(top for top, _ in reader)
    assert got == [0, 3, 6]


# ---------------------------------------------------------------------------
# Files: atomic, bounded memory
# ---------------------------------------------------------------------------
def test_to_a_path_is_atomic(tmp_path):
    good = kmcodec.encode(_image(12, 10, 3), 8, rows_per_strip=3, method="stored")
    bad = bytearray(good)
    bad[-20] ^= 1
    out = tmp_path / "out.png"
    with pytest.raises(kmcodec.ChecksumError):
        kmcodec.decode_to_png(bytes(bad), out)
    assert list(tmp_path.iterdir()) == []  # no output, no temporary file
    kmcodec.decode_to_png(good, out)
    first = out.read_bytes()
    with pytest.raises(kmcodec.OutputExistsError):
        kmcodec.decode_to_png(good, out, overwrite=False)
    with pytest.raises(kmcodec.ChecksumError):
        kmcodec.decode_to_png(bytes(bad), out)
    assert out.read_bytes() == first and list(tmp_path.iterdir()) == [out]


def test_memory_is_bounded_by_strips_not_the_image(tmp_path):
    """A 3-megapixel RGB file (9.4 MB decoded) to a truecolour PNG, in strips of 32 rows (0.2 MB of pixels)."""
    width, height, rows = 2048, 1536, 32
    image = np.zeros((height, width, 3), np.uint8)
    image[..., 0] = np.arange(width) * 17 // width * 15
    image[..., 1] = (np.arange(height) * 17 // height * 15)[:, None]  # 289 colours: exact, truecolour PNG
    path = tmp_path / "big.kmc"
    path.write_bytes(kmcodec.encode(image, 300, rows_per_strip=rows, method="deflate"))
    assert kmcodec.read_info(path).colors == 289
    kmcodec.decode_to_png(path, tmp_path / "warm.png")  # thread pool, zlib, imports
    tracemalloc.start()
    try:
        kmcodec.decode_to_png(path, tmp_path / "big.png")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # The filter scratch, and a dozen strips' worth of labels, pixels and zlib input.
    budget = 24 * png.FILTER_BLOCK_BYTES + 12 * rows * width * 3
    assert peak < budget < width * height * 3 // 2, (peak, budget)
    np.testing.assert_array_equal(_png_pixels((tmp_path / "big.png").read_bytes(), "RGB")[1], image)


def test_pillow_load_decodes_strip_by_strip(tmp_path):
    """Image.open(...).load() fills Pillow's image a strip at a time: no second copy of the image."""
    width, height, rows = 2048, 1024, 32
    image = np.zeros((height, width, 3), np.uint8)
    image[..., 0] = np.arange(width) * 17 // width * 15
    image[..., 2] = (np.arange(height) * 7 // height * 30)[:, None]
    path = tmp_path / "big.kmc"
    path.write_bytes(kmcodec.encode(image, 200, rows_per_strip=rows, method="deflate"))
    Image.open(path).load()  # warm up
    with Image.open(path) as opened, threads.limited(2):  # the budget below counts strips per thread
        tracemalloc.start()  # Pillow's own image is malloc'ed in C, not traced; numpy and Python are
        try:
            opened.load()
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        np.testing.assert_array_equal(np.asarray(opened), image)
    # The strips in flight (STRIPS_AHEAD_PER_WORKER per thread, the one being copied and the one each
    # thread decodes), each its labels and pixels: a few strips, far from a second copy (a quarter of
    # the image, the bound before, was met by 1.53-1.59 MB of 1.57: a matter of thread timing).
    strips = 2 * (STRIPS_AHEAD_PER_WORKER + 1) + 2
    budget = strips * rows * width * (3 + 1)
    assert peak < budget < width * height * 3 // 2, (peak, budget)


# ---------------------------------------------------------------------------
# kmc decode
# ---------------------------------------------------------------------------
def test_kmc_decode_to_png_streams_and_matches_the_pillow_path(tmp_path):
    data = kmcodec.encode(_image(40, 30, 3), 500, rows_per_strip=6)
    src = tmp_path / "x.kmc"
    src.write_bytes(data)
    runner = CliRunner()
    result = runner.invoke(cli, ["decode", str(src), str(tmp_path / "x.png")])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"{tmp_path / 'x.png'}: 30 x 40 RGB, ")
    assert runner.invoke(cli, ["decode", str(src), str(tmp_path / "x.bmp")]).exit_code == 0
    streamed = np.asarray(Image.open(tmp_path / "x.png").convert("RGB"))
    np.testing.assert_array_equal(streamed, np.asarray(Image.open(tmp_path / "x.bmp")))
    result = runner.invoke(cli, ["decode", "-", "-"], input=data)
    assert result.exit_code == 0 and result.stdout_bytes == (tmp_path / "x.png").read_bytes()


def test_kmc_decode_of_a_file_damaged_late_leaves_nothing(tmp_path):
    data = bytearray(kmcodec.encode(_image(12, 10, 3), 8, rows_per_strip=3, method="stored"))
    data[-20] ^= 1
    src = tmp_path / "x.kmc"
    src.write_bytes(bytes(data))
    result = CliRunner().invoke(cli, ["decode", str(src), str(tmp_path / "x.png")])
    assert result.exit_code == 1
    assert result.stderr.startswith("kmc: error: corrupt .kmc file: CRC mismatch") and result.stderr.count("\n") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.kmc"]


def test_kmc_decode_interrupted_leaves_nothing(tmp_path, monkeypatch):
    src = tmp_path / "x.kmc"
    src.write_bytes(kmcodec.encode(_image(12, 10, 3), 8, rows_per_strip=3))

    def interrupt(self, rows):
        raise KeyboardInterrupt

    monkeypatch.setattr(png.PngWriter, "write", interrupt)
    result = CliRunner().invoke(cli, ["decode", str(src), str(tmp_path / "x.png")])
    assert result.exit_code == 130 and result.stderr.strip() == "kmc: error: interrupted"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.kmc"]


def test_png_writer_checks_its_row_count():
    writer = png.PngWriter(io.BytesIO(), 3, 2, png.GREY)
    writer.write(np.zeros((1, 3, 1), np.uint8))
    with pytest.raises(kmcodec.ParameterError, match="closed after 1 rows"):
        writer.close()
    with pytest.raises(kmcodec.ParameterError, match="3 rows written"):
        writer.write(np.zeros((2, 3, 1), np.uint8))
    with pytest.raises(kmcodec.ParameterError):
        png.PngWriter(io.BytesIO(), 3, 2, png.INDEXED, palette=np.zeros((300, 3), np.uint8))
