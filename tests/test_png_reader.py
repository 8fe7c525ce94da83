"""The streaming PNG reader the encoder uses for 8-bit greyscale and truecolour PNG files."""

from __future__ import annotations

import gc
import io
import itertools
import signal
import threading
import time
import warnings
import zlib

import numpy as np
import pytest
from PIL import Image

import kmcodec
from kmcodec import png
from kmcodec.inputs import load_source
from kmcodec.png import GREY, GREY_ALPHA, READER_THREAD, SIGNATURE, TRUECOLOUR, TRUECOLOUR_ALPHA, PngReader, _chunk

COLOUR_TYPES = {1: GREY, 2: GREY_ALPHA, 3: TRUECOLOUR, 4: TRUECOLOUR_ALPHA}
MODES = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}


def _pixels(h: int, w: int, channels: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    smooth = (np.add.outer(np.arange(h) * 7, np.arange(w) * 3)[:, :, None] + np.arange(channels) * 50) % 256
    noise = rng.integers(0, 24, size=(h, w, channels))
    return ((smooth + noise) % 256).astype(np.uint8)


def _filter_row(kind: int, row: np.ndarray, above: np.ndarray, bpp: int) -> bytes:
    """PNG §9.2 written the plain way, one byte at a time."""
    out = bytearray([kind])
    for i, x in enumerate(row.tolist()):
        a = row[i - bpp] if i >= bpp else 0
        b = above[i]
        c = above[i - bpp] if i >= bpp else 0
        a, b, c = int(a), int(b), int(c)
        if kind == 0:
            pred = 0
        elif kind == 1:
            pred = a
        elif kind == 2:
            pred = b
        elif kind == 3:
            pred = (a + b) // 2
        else:
            p = a + b - c
            pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
            pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
        out.append((x - pred) % 256)
    return bytes(out)


def _filtered(pixels: np.ndarray, filters=None) -> bytes:
    """The filtered rows of *pixels*, with the given filter type per row (cycling 0-4 by default)."""
    h, w, channels = pixels.shape
    raw = pixels.reshape(h, w * channels)
    above = np.zeros(w * channels, np.uint8)
    rows = []
    for y in range(h):
        kind = filters[y] if filters is not None else y % 5
        rows.append(_filter_row(kind, raw[y], above, channels))
        above = raw[y]
    return b"".join(rows)


def _png(pixels: np.ndarray, *, filters=None, chunks=(), idat_parts: int = 3, data: bytes | None = None) -> bytes:
    """A PNG of *pixels* (or of the zlib stream *data*, for the size of *pixels*) and extra chunks."""
    h, w, channels = pixels.shape
    if data is None:
        data = zlib.compress(_filtered(pixels, filters))
    cut = np.linspace(0, len(data), idat_parts + 1).astype(int)
    ihdr = w.to_bytes(4, "big") + h.to_bytes(4, "big") + bytes((8, COLOUR_TYPES[channels], 0, 0, 0))
    parts = [SIGNATURE, _chunk(b"IHDR", ihdr), *chunks]
    parts += [_chunk(b"IDAT", data[a:b]) for a, b in itertools.pairwise(cut)]
    return b"".join([*parts, _chunk(b"IEND", b"")])


def _read(data: bytes, rows: int) -> np.ndarray:
    reader = PngReader.open(io.BytesIO(data), "test.png")
    assert reader is not None
    return np.concatenate(list(reader.blocks(rows)))


@pytest.mark.parametrize("channels", [1, 2, 3, 4])
@pytest.mark.parametrize("rows", [1, 4, 100])
def test_every_filter_type_reads_as_pillow_reads_it(channels, rows):
    pixels = _pixels(13, 9, channels)
    data = _png(pixels)
    with Image.open(io.BytesIO(data)) as image:
        assert image.mode == MODES[channels]
        expected = np.asarray(image).reshape(pixels.shape)
    np.testing.assert_array_equal(expected, pixels)
    np.testing.assert_array_equal(_read(data, rows), pixels)


@pytest.mark.parametrize("channels", [1, 2, 3, 4])
def test_paeth_ties_go_to_a_then_b(channels):
    # Few levels: p is often as near to two or three of a, b, c (§9.4 picks a, then b).
    pixels = np.random.default_rng(channels).integers(0, 4, size=(12, 17, channels)).astype(np.uint8)
    pixels[5] = 255 - pixels[5]  # and far apart, so that differences cross zero
    np.testing.assert_array_equal(_read(_png(pixels, filters=[4] * 12), 5), pixels)


@pytest.mark.parametrize("channels", [1, 2, 3, 4])
def test_pillow_written_pngs_read_the_same(channels, tmp_path):
    pixels = _pixels(40, 33, channels, seed=3)
    path = tmp_path / "p.png"
    Image.fromarray(pixels[:, :, 0] if channels == 1 else pixels, MODES[channels]).save(path, optimize=True)
    with open(path, "rb") as fp:
        np.testing.assert_array_equal(np.concatenate(list(PngReader.open(fp, "p").blocks(7))), pixels)
    with open(path, "rb") as fp:  # without the inflating thread: the same blocks
        np.testing.assert_array_equal(np.concatenate(list(PngReader.open(fp, "p").blocks(7, ahead=False))), pixels)


@pytest.mark.parametrize("channels", [1, 3, 4])
def test_encoding_a_png_path_equals_encoding_pillows_image(channels, tmp_path):
    pixels = _pixels(31, 45, channels, seed=5)
    xmp = b'<x:xmpmeta xmlns:x="adobe:ns:meta/">streamed</x:xmpmeta>'
    exif = Image.Exif()
    exif[0x010E] = "described"  # ImageDescription; orientation absent
    itxt = b"XML:com.adobe.xmp\x00\x00\x00\x00\x00" + xmp
    icc = b"iCCP-profile-bytes" * 4
    iccp = b"ICC profile\x00\x00" + zlib.compress(icc)
    data = _png(pixels, chunks=[_chunk(b"iCCP", iccp), _chunk(b"eXIf", exif.tobytes()), _chunk(b"iTXt", itxt)])
    path = tmp_path / "m.png"
    path.write_bytes(data)
    with open(path, "rb") as fp:
        assert PngReader.open(fp, "m") is not None  # this file is streamed
    with Image.open(path) as image:
        image.load()
        via_pillow = kmcodec.encode(image, 16, seed=2)
    assert kmcodec.encode(path, 16, seed=2) == via_pillow
    assert kmcodec.encode(io.BytesIO(data), 16, seed=2) == via_pillow
    info = kmcodec.read_info(via_pillow)
    assert info.icc_profile and info.exif and info.xmp


def test_an_exif_orientation_leaves_the_file_to_pillow(tmp_path):
    pixels = _pixels(6, 10, 3)
    exif = Image.Exif()
    exif[0x0112] = 6
    data = _png(pixels, chunks=[_chunk(b"eXIf", exif.tobytes())])
    assert PngReader.open(io.BytesIO(data), "o") is None
    assert kmcodec.decode(kmcodec.encode(io.BytesIO(data), 256)).shape == (10, 6, 3)  # turned upright


@pytest.mark.parametrize(
    "kind",
    ["16-bit", "palette", "interlaced", "trns"],
)
def test_other_pngs_are_left_to_pillow(kind, tmp_path):
    path = tmp_path / "x.png"
    if kind == "16-bit":
        Image.fromarray(np.arange(60, dtype=np.uint16).reshape(6, 10) * 1000).save(path)
    elif kind == "palette":
        Image.fromarray(_pixels(6, 10, 3)).quantize(8).save(path)
    elif kind == "interlaced":
        ihdr = (10).to_bytes(4, "big") + (6).to_bytes(4, "big") + bytes((8, 2, 0, 0, 1))
        path.write_bytes(SIGNATURE + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", b"") + _chunk(b"IEND", b""))
    else:
        Image.fromarray(_pixels(6, 10, 3)).save(path, transparency=(1, 2, 3))
    with open(path, "rb") as fp:
        assert PngReader.open(fp, "x") is None
        assert fp.tell() > 0  # the caller rewinds; load_source does
    if kind != "interlaced":
        kmcodec.encode(path, 4)  # Pillow reads it


def test_a_png_file_is_closed_after_encoding(tmp_path):
    path = tmp_path / "c.png"
    path.write_bytes(_png(_pixels(5, 5, 3)))
    with warnings.catch_warnings():
        warnings.simplefilter("error", ResourceWarning)
        kmcodec.encode(path, 4)
        gc.collect()  # an unclosed file would warn (as an error) here


# ---------------------------------------------------------------------------
# Damage: only InputImageError, never more output than the rows asked for
# ---------------------------------------------------------------------------
def _damaged_error(data: bytes) -> type[BaseException] | None:
    try:
        kmcodec.encode(io.BytesIO(data), 4)
    except kmcodec.KmcError as exc:
        return type(exc)
    return None


def test_every_truncation_is_an_input_image_error():
    data = _png(_pixels(7, 6, 3))
    for cut in range(len(SIGNATURE), len(data) - 12):  # the last 12 bytes are IEND, which Pillow does not need
        assert _damaged_error(data[:cut]) is kmcodec.InputImageError, cut


def test_bad_crc_bad_filter_and_corrupt_zlib_are_input_image_errors():
    pixels = _pixels(7, 6, 3)
    data = bytearray(_png(pixels, idat_parts=1))
    idat = data.index(b"IDAT")
    flipped = bytearray(data)
    flipped[idat + 10] ^= 1
    assert _damaged_error(bytes(flipped)) is kmcodec.InputImageError
    bad_filter = _png(pixels, filters=[0, 1, 7, 0, 0, 0, 0])
    with pytest.raises(kmcodec.InputImageError, match="filter type 7"):
        kmcodec.encode(io.BytesIO(bad_filter), 4)
    rows = b"".join(b"\x00" + bytes(18) for _ in range(7))
    ihdr = (6).to_bytes(4, "big") + (7).to_bytes(4, "big") + bytes((8, 2, 0, 0, 0))
    garbage = zlib.compress(rows)[:5] + b"\xff" * 20
    bad_zlib = SIGNATURE + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", garbage) + _chunk(b"IEND", b"")
    with pytest.raises(kmcodec.InputImageError, match="broken PNG"):
        kmcodec.encode(io.BytesIO(bad_zlib), 4)


def test_a_decompression_bomb_is_inflated_only_as_far_as_the_rows():
    # 1 x 4 pixels declared, a zlib stream of 64 MiB of zeros: the reader stops after 4 rows.
    ihdr = (1).to_bytes(4, "big") + (4).to_bytes(4, "big") + bytes((8, 0, 0, 0, 0))
    bomb = zlib.compress(bytes(64 << 20), 9)
    data = SIGNATURE + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", bomb) + _chunk(b"IEND", b"")
    np.testing.assert_array_equal(_read(data, 4), np.zeros((4, 1, 1), np.uint8))


# ---------------------------------------------------------------------------
# The inflating thread: one block ahead, errors where they were, never left behind
# ---------------------------------------------------------------------------
def _reader_threads() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name == READER_THREAD]


def _blocks_then_error(data: bytes, rows: int) -> tuple[list[np.ndarray], str]:
    """The blocks read from *data* before its damage raised, and the message."""
    got = []
    with pytest.raises(kmcodec.InputImageError) as caught:
        for block in PngReader.open(io.BytesIO(data), "d.png").blocks(rows):
            got.append(block.copy())
    assert not _reader_threads()
    return got, str(caught.value)


def _damage(kind: str, pixels: np.ndarray) -> bytes:
    filtered = _filtered(pixels)
    if kind == "zlib":  # a valid stream for 33 rows (six blocks of 5, then 3 rows of the seventh), then garbage
        deflate = zlib.compressobj()
        part = deflate.compress(filtered[: 33 * (len(filtered) // len(pixels))]) + deflate.flush(zlib.Z_FULL_FLUSH)
        return _png(pixels, data=part + b"\xff" * 64, idat_parts=5)
    if kind == "filter":
        return _png(pixels, filters=[(y % 5) if y != 36 else 9 for y in range(len(pixels))])
    data = bytearray(_png(pixels, idat_parts=5))
    idat = [i for i in range(len(data)) if data[i : i + 4] == b"IDAT"]
    if kind == "crc":  # the CRC of the third IDAT chunk of five
        length = int.from_bytes(data[idat[2] - 4 : idat[2]], "big")
        data[idat[2] + 4 + length] ^= 0x40
    else:  # "short": the zlib stream ends in the fourth chunk, its last two empty
        data = bytearray(_png(pixels, data=zlib.compress(filtered)[: len(filtered) // 2], idat_parts=3))
        data[-12:-12] = _chunk(b"IDAT", b"") * 2
    return bytes(data)


@pytest.mark.parametrize("kind", ["zlib", "crc", "filter", "short"])
def test_damage_mid_stream_raises_at_the_block_it_spoils_as_without_the_thread(kind, monkeypatch):
    pixels = _pixels(60, 40, 3, seed=11)
    data = _damage(kind, pixels)
    got, message = _blocks_then_error(data, 5)
    assert 2 <= len(got) < 12, len(got)  # mid-stream, and the blocks before it are whole and right
    np.testing.assert_array_equal(np.concatenate(got), pixels[: 5 * len(got)])
    with monkeypatch.context() as patch:
        patch.setattr(png, "_ahead", iter)  # the same reading, all in this thread
        assert not _reader_threads()
        unthreaded, unthreaded_message = _blocks_then_error(data, 5)
    assert len(got) == len(unthreaded) and message == unthreaded_message
    expected = {
        "zlib": (6, "corrupt image data: Error -3 while decompressing data: invalid block type"),
        "crc": (None, "CRC mismatch in chunk 'IDAT'"),
        "filter": (7, "unknown filter type 9 in row 36"),
        "short": (None, "truncated image data"),
    }[kind]
    assert message.startswith("cannot read image 'd.png': broken PNG file (")
    assert message.endswith(expected[1] + ")")
    assert expected[0] in (None, len(got))


@pytest.mark.parametrize("how", ["close", "del", "exception", "reader.close", "source.close"])
def test_stopping_a_pass_early_stops_its_thread(how, tmp_path):
    pixels = _pixels(40, 9, 3)
    path = tmp_path / "t.png"
    path.write_bytes(_png(pixels))
    source = load_source(path)
    reader = source.pixels
    assert isinstance(reader, PngReader)
    passes = reader.blocks(4)
    np.testing.assert_array_equal(next(passes), pixels[:4])
    assert len(_reader_threads()) == 1  # inflating (or done with) the second block
    if how == "close":
        passes.close()
    elif how == "del":
        del passes
    elif how == "exception":
        with pytest.raises(KeyError):
            for _ in passes:
                raise KeyError
        del passes
    elif how == "reader.close":
        reader.close()
        assert list(passes) == []
    else:
        source.close()
    assert not _reader_threads()
    if how != "source.close":  # a new pass reads the whole image
        np.testing.assert_array_equal(np.concatenate(list(reader.blocks(7))), pixels)
    source.close()


def test_the_thread_makes_at_most_one_block_ahead():
    made = []

    def items():
        for i in range(10):
            made.append(i)
            yield i

    ahead = png._ahead(items())
    assert next(ahead) == 0
    time.sleep(0.2)
    assert made in ([0], [0, 1])
    assert list(ahead) == list(range(1, 10))
    assert not _reader_threads()


class _SlowFile(io.BytesIO):
    def read(self, size: int | None = -1) -> bytes:
        time.sleep(0.02)
        return super().read(size)


@pytest.mark.skipif(not hasattr(signal, "setitimer"), reason="needs signal.setitimer")
def test_keyboard_interrupt_while_waiting_for_a_block_stops_the_thread():
    reader = PngReader.open(_SlowFile(_png(_pixels(30, 20, 3), idat_parts=20)), "slow.png")
    assert reader is not None

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGALRM, interrupt)
    try:
        passes = reader.blocks(30)  # one block: some 20 slow reads
        signal.setitimer(signal.ITIMER_REAL, 0.1)
        with pytest.raises(KeyboardInterrupt):
            next(passes)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert not _reader_threads()


def test_the_read_benchmark_runs_both_ways(tmp_path, capsys):
    from toolmodules import load_tool

    path = tmp_path / "b.png"
    Image.fromarray(_pixels(30, 20, 3)).save(path)
    tool = load_tool("bench_png_read")
    times = tool.bench(str(path), 1, rows=7)
    assert sorted(times) == [(w, m) for w in ("blocks", "pass 1") for m in ("inline", "threaded")]
    assert png._ahead is not iter  # put back
    tool.main([str(path), "--repeat", "1"])
    assert capsys.readouterr().out.count("wall best") == 4
