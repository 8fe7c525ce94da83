"""The Pillow plugin, through Pillow's own API: open, load, save, registrations, errors.

``import kmcodec`` registers it.  ``Image.open`` reads a file up to its first
strip; ``load()`` decodes.  Files without the signature are not ours
(``UnidentifiedImageError``); damaged .kmc files raise their ``KmcError``.
"""

from __future__ import annotations

import io
import json
import tracemalloc
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, UnidentifiedImageError

import kmcodec
from kmcodec import codec
from kmcodec import format as fmt

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
MANIFEST = json.loads((FIXTURES / "manifest.json").read_text(encoding="utf-8"))
VALID = [e for e in MANIFEST["valid"] if e["file"].endswith(".kmc")]
INVALID = MANIFEST["invalid"]

#: 7 x 5 RGB with 12 distinct colours: round-trips exactly at k >= 12.
IMAGE = (np.arange(7 * 5 * 3, dtype=np.uint8).reshape(5, 7, 3) % 12) * 20


def _name(entry: dict) -> str:
    return Path(entry["file"]).stem


def _chunk(chunk_type: bytes, payload: bytes) -> bytes:
    head = len(payload).to_bytes(4, "big") + chunk_type
    return head + payload + zlib.crc32(head + payload).to_bytes(4, "big")


def _chunks(data: bytes) -> list[tuple[bytes, int, int]]:
    """(type, offset, payload length) of each chunk of a well-framed file."""
    found, offset = [], fmt.PREAMBLE_SIZE
    while offset < len(data):
        length = int.from_bytes(data[offset : offset + 4], "big")
        found.append((data[offset + 4 : offset + 8], offset, length))
        offset += 12 + length
    return found


def _as_hwc(image: Image.Image) -> np.ndarray:
    pixels = np.asarray(image)
    return pixels[:, :, None] if pixels.ndim == 2 else pixels


@pytest.fixture
def kmc_path(tmp_path) -> Path:
    path = tmp_path / "image.kmc"
    path.write_bytes(kmcodec.encode(IMAGE, 16, method="deflate", rows_per_strip=2))
    return path


class _ReadTracker(io.BytesIO):
    """A BytesIO that remembers the furthest offset read."""

    furthest = 0

    def read(self, size: int | None = -1) -> bytes:
        data = super().read(size)
        self.furthest = max(self.furthest, self.tell())
        return data


# ---------------------------------------------------------------------------
# Registration
# ---------------------------------------------------------------------------
def test_import_kmcodec_registers_format_extension_and_mime_type():
    assert Image.registered_extensions()[".kmc"] == "KMC"
    assert Image.MIME["KMC"] == "image/x-kmc"
    assert "KMC" in Image.OPEN and "KMC" in Image.SAVE


# ---------------------------------------------------------------------------
# Opening is lazy
# ---------------------------------------------------------------------------
def test_open_reports_format_size_and_mode(kmc_path):
    with Image.open(kmc_path) as im:
        assert (im.format, im.size, im.mode) == ("KMC", (7, 5), "RGB")
        assert im.get_format_mimetype() == "image/x-kmc"
        assert im.format_description


def test_open_reads_no_further_than_the_first_strip_head(kmc_path, monkeypatch):
    data = kmc_path.read_bytes()
    first_strip = next(offset for chunk_type, offset, _ in _chunks(data) if chunk_type == fmt.STRP)
    decoded_strips = []

    def counting(decoder):
        def count(*args):
            decoded_strips.append(args)
            return decoder(*args)

        return count

    for name in ("decode_strip", "decode_strip_into"):  # labels, or pixels straight from the kernel
        monkeypatch.setattr(codec, name, counting(getattr(codec, name)))
    fp = _ReadTracker(data)
    im = Image.open(fp)
    assert im.size == (7, 5)
    assert fp.furthest <= first_strip + 8 < len(data)
    assert not decoded_strips
    im.load()
    assert len(decoded_strips) == 3  # rows_per_strip=2 over 5 rows
    assert fp.furthest == len(data)


def test_damaged_strip_behind_a_valid_crc_opens_and_fails_on_load(kmc_path):
    """The strips are neither read nor decoded by Image.open, only by load()."""
    data = kmc_path.read_bytes()
    _, offset, length = next(c for c in _chunks(data) if c[0] == fmt.STRP)
    strip_head = data[offset + 8 : offset + 8 + fmt.STRIP_HEAD_SIZE]
    damaged = _chunk(fmt.STRP, strip_head + b"not a deflate stream")
    data = data[:offset] + damaged + data[offset + 12 + length :]
    kmc_path.write_bytes(data)
    with Image.open(kmc_path) as im:
        assert (im.format, im.size, im.mode) == ("KMC", (7, 5), "RGB")
        with pytest.raises(kmcodec.FormatError):
            im.load()


def test_metadata_before_the_strips_is_in_info():
    path = FIXTURES / "valid/rgb-metadata-k4-deflate.kmc"
    expected = kmcodec.decode_image(path.read_bytes()).info
    with Image.open(path) as im:
        for key in ("icc_profile", "exif", "xmp"):
            assert im.info[key] == expected[key]
        assert im.info["exif"].startswith(b"Exif\x00\x00")
        assert im.getexif()  # Pillow parses it
    with Image.open(FIXTURES / "valid/rgb-no-metadata-k4-deflate.kmc") as im:
        assert not {"icc_profile", "exif", "xmp"} & im.info.keys()


# ---------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("entry", VALID, ids=_name)
def test_load_gives_the_pixels_of_kmcodec_decode(entry):
    path = FIXTURES / entry["file"]
    with Image.open(path) as im:
        assert im.mode == entry["info"]["mode"]
        assert im.size == (entry["info"]["width"], entry["info"]["height"])
        np.testing.assert_array_equal(_as_hwc(im), kmcodec.decode(path.read_bytes()))


def test_load_closes_the_file_it_opened(kmc_path):
    im = Image.open(kmc_path)
    fp = im.fp
    im.load()
    assert fp.closed and im.fp is None
    assert im.getpixel((0, 0)) == tuple(int(v) for v in IMAGE[0, 0])


def test_thumbnail_and_convert(kmc_path):
    with Image.open(kmc_path) as im:
        im.thumbnail((4, 4))
        assert im.size == (4, 3) and im.mode == "RGB"
    with Image.open(kmc_path) as im:
        grey = im.convert("L")
        assert grey.size == (7, 5)
        np.testing.assert_array_equal(np.asarray(grey), np.asarray(Image.fromarray(IMAGE).convert("L")))
        assert im.convert("RGBA").getpixel((6, 4))[3] == 255


def test_verify_checks_every_crc_without_decoding(kmc_path):
    with Image.open(kmc_path) as im:
        im.verify()
    with Image.open(FIXTURES / "invalid/bad-strip-crc.kmc") as im, pytest.raises(kmcodec.ChecksumError):
        im.verify()
    with Image.open(FIXTURES / "invalid/label-out-of-range.kmc") as im:
        im.verify()  # a fault inside a strip's labels needs load()
    with Image.open(kmc_path) as im:
        im.load()
        with pytest.raises(RuntimeError):
            im.verify()


def test_load_after_verify_asks_to_reopen_and_reopening_loads(kmc_path):
    with Image.open(kmc_path) as im:
        im.verify()
        with pytest.raises(kmcodec.ParameterError, match="open the image again"):
            im.load()
    with Image.open(kmc_path) as im:
        np.testing.assert_array_equal(np.asarray(im), kmcodec.load(kmc_path))


# ---------------------------------------------------------------------------
# Saving
# ---------------------------------------------------------------------------
def test_save_all_saves_one_frame_and_refuses_more(tmp_path):
    path = tmp_path / "out.kmc"
    Image.fromarray(IMAGE).save(path, save_all=True, colors=16)
    assert path.read_bytes() == kmcodec.encode(IMAGE, 16)
    frames = [Image.fromarray(IMAGE), Image.fromarray(255 - IMAGE)]
    gif = tmp_path / "two.gif"
    frames[0].save(gif, save_all=True, append_images=frames[1:])
    with Image.open(gif) as animated:
        for call in (
            lambda: frames[0].save(tmp_path / "a.kmc", append_images=frames[1:]),
            lambda: frames[0].save(tmp_path / "b.kmc", save_all=True, append_images=frames[1:]),
            lambda: animated.save(tmp_path / "c.kmc", save_all=True),
        ):
            with pytest.raises(kmcodec.ParameterError, match="holds one image"):
                call()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.kmc", "two.gif"]


def test_save_by_extension_round_trip(tmp_path):
    path = tmp_path / "out.kmc"
    Image.fromarray(IMAGE).save(path, colors=16)
    assert path.read_bytes().startswith(fmt.SIGNATURE)
    with Image.open(path) as im:
        assert (im.format, im.mode) == ("KMC", "RGB")
        np.testing.assert_array_equal(np.asarray(im), IMAGE)  # 12 colours fit in 16


def test_save_to_a_file_object_passes_the_encode_options():
    buf = io.BytesIO()
    Image.fromarray(IMAGE).save(buf, format="KMC", colors=4, seed=7, method="lzma", rows_per_strip=2)
    assert buf.getvalue() == kmcodec.encode(IMAGE, 4, seed=7, method="lzma", rows_per_strip=2)
    info = kmcodec.read_info(buf.getvalue())
    assert (info.colors, info.seed, info.method, info.rows_per_strip) == (4, 7, "lzma", 2)


@pytest.mark.parametrize(
    "options",
    [
        {"effort": 3},
        {"dither": 0.5},
        {"colorspace": "srgb"},
        {"rdo": 5.0},
        {"palette": np.array([[0, 0, 0], [255, 9, 9]], np.uint8)},
    ],
)
def test_save_passes_every_encode_option(options):
    # A smooth gradient with noise: every option above changes its bytes.
    rng = np.random.default_rng(3)
    ramp = np.linspace(0, 255, 40)[None, :, None] * np.ones((30, 1, 3))
    image = np.clip(ramp + rng.normal(0, 12, (30, 40, 3)), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="KMC", colors=4, **options)
    assert buf.getvalue() == kmcodec.encode(image, 4, **options)
    assert buf.getvalue() != kmcodec.encode(image, 4) or "effort" in options  # the option reached the encoder


def test_save_defaults_to_kmcodec_defaults():
    buf = io.BytesIO()
    Image.fromarray(IMAGE).save(buf, format="KMC")
    assert buf.getvalue() == kmcodec.encode(IMAGE)


@pytest.mark.parametrize("mode", ["L", "LA", "RGBA", "P", "1"])
def test_save_and_reopen_other_modes(mode):
    image = Image.fromarray(IMAGE).convert(mode)
    buf = io.BytesIO()
    image.save(buf, format="KMC", colors=256)
    buf.seek(0)
    with Image.open(buf) as im:
        assert im.mode == {"P": "RGB", "1": "L"}.get(mode, mode)
        np.testing.assert_array_equal(np.asarray(im), np.asarray(image.convert(im.mode)))


def test_save_carries_metadata_and_takes_replacements():
    source = kmcodec.decode_image((FIXTURES / "valid/rgb-metadata-k4-deflate.kmc").read_bytes())
    buf = io.BytesIO()
    source.save(buf, format="KMC", colors=4)
    carried = kmcodec.decode_image(buf.getvalue()).info
    assert all(carried[key] == source.info[key] for key in ("icc_profile", "exif", "xmp"))
    exif = Image.Exif()
    exif[0x010E] = "replaced"
    buf = io.BytesIO()
    source.save(buf, format="KMC", colors=4, icc_profile=b"another profile", exif=exif, xmp=b"")
    replaced = kmcodec.decode_image(buf.getvalue())
    assert replaced.info["icc_profile"] == b"another profile"
    assert replaced.getexif()[0x010E] == "replaced"
    assert "xmp" not in replaced.info
    assert source.info["icc_profile"] != b"another profile"  # the caller's image is untouched
    buf = io.BytesIO()
    source.save(buf, format="KMC", colors=4, metadata=False)
    assert not {"icc_profile", "exif", "xmp"} & kmcodec.decode_image(buf.getvalue()).info.keys()


def test_save_with_a_bad_option_raises_parameter_error_and_leaves_no_file(tmp_path):
    path = tmp_path / "out.kmc"
    with pytest.raises(kmcodec.ParameterError):
        Image.fromarray(IMAGE).save(path, colors=0)
    with pytest.raises(kmcodec.ParameterError):
        Image.fromarray(IMAGE).save(path, method="zip")
    assert not path.exists()


def test_a_kmc_image_saves_to_png(kmc_path, tmp_path):
    with Image.open(kmc_path) as im:
        im.save(tmp_path / "out.png")
    with Image.open(tmp_path / "out.png") as png:
        assert png.format == "PNG"
        np.testing.assert_array_equal(np.asarray(png), IMAGE)


# ---------------------------------------------------------------------------
# Other formats and damaged files
# ---------------------------------------------------------------------------
def test_other_formats_still_open():
    with Image.open(FIXTURES / "images/demo.png") as im:
        assert im.format == "PNG"
        im.load()
    with pytest.raises(UnidentifiedImageError):
        Image.open(io.BytesIO(b"neither kmc nor any other image format"))


@pytest.mark.parametrize("entry", INVALID, ids=_name)
def test_invalid_vectors(entry, monkeypatch):
    """No signature: not ours.  Otherwise the vector's own error, at open or, for strip damage, at load."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)  # over-default-pixel-limit: see the bomb test
    path = FIXTURES / entry["file"]
    if not path.read_bytes().startswith(fmt.SIGNATURE):
        with pytest.raises(UnidentifiedImageError):
            Image.open(path)
        return
    if entry["error"] == "ImageTooLargeError":  # over kmcodec.MAX_IMAGE_PIXELS: refused on open
        with pytest.raises(kmcodec.ImageTooLargeError):
            Image.open(path)
        return
    if entry["read_info_error"] is None:  # the fault is in strip data: the file opens
        with Image.open(path) as im, pytest.raises(kmcodec.FormatError):
            im.load()
        return
    expected = getattr(kmcodec, entry["error"])
    with pytest.raises(kmcodec.KmcError) as caught, Image.open(path) as im:
        im.load()
    assert type(caught.value) is expected, str(caught.value)


def test_every_truncation_is_unidentified_or_truncated(kmc_path):
    data = kmc_path.read_bytes()
    for size in range(len(data)):
        fp = io.BytesIO(data[:size])
        if size < len(fmt.SIGNATURE):
            with pytest.raises(UnidentifiedImageError):
                Image.open(fp)
        else:
            with pytest.raises(kmcodec.TruncatedError):
                Image.open(fp).load()


def _start_of_file(width: int, height: int) -> bytes:
    """The preamble and a valid HEAD for an RGB image of one colour, one row per strip."""
    version = fmt.SIGNATURE + b"\x01\x00"
    preamble = version + (zlib.crc32(version) & 0xFFFF).to_bytes(2, "big")
    header = {"width": width, "height": height, "colors": 1, "rows_per_strip": 1, "layout": 3, "method": 0}
    return preamble + _chunk(fmt.HEAD, fmt.Header.build(header))


def test_decompression_bomb_check_runs_on_open_before_any_strip(monkeypatch):
    """A tiny file claiming 20000 x 20000 pixels: kmcodec's limit applies on open, then Pillow's."""
    # One empty strip, which only load() would look inside.
    data = _start_of_file(20000, 20000) + _chunk(fmt.PALT, b"\x00\x00\x00") + _chunk(fmt.STRP, b"")
    with pytest.raises(kmcodec.ImageTooLargeError) as raised:
        Image.open(io.BytesIO(data))  # over kmcodec's 2**28
    assert str(raised.value) == (  # Image.open takes no max_pixels: the message does not send the caller there
        "image of 20000 x 20000 = 400,000,000 pixels exceeds the limit of 268,435,456 (raise "
        "kmcodec.MAX_IMAGE_PIXELS, and Pillow's Image.MAX_IMAGE_PIXELS, to allow it)"
    )
    monkeypatch.setattr(kmcodec, "MAX_IMAGE_PIXELS", None)
    with pytest.raises(Image.DecompressionBombError):
        Image.open(io.BytesIO(data))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 20000 * 20000)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert Image.open(io.BytesIO(data)).size == (20000, 20000)
    monkeypatch.setattr(kmcodec, "MAX_IMAGE_PIXELS", 20000 * 20000 - 1)
    with pytest.raises(kmcodec.ImageTooLargeError):
        Image.open(io.BytesIO(data))
    monkeypatch.setattr(kmcodec, "MAX_IMAGE_PIXELS", 20000 * 20000)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 20000 * 20000 // 2 + 1)
    with pytest.warns(Image.DecompressionBombWarning):
        Image.open(io.BytesIO(data))


def test_a_lying_chunk_length_forces_no_large_read(tmp_path):
    """From a real file, read(n) allocates n bytes up front: the length is checked against the file first."""
    path = tmp_path / "lying.kmc"
    path.write_bytes(_start_of_file(4, 4) + fmt.MAX_CHUNK_LENGTH.to_bytes(4, "big") + b"iccp" + bytes(64))
    tracemalloc.start()
    try:
        with pytest.raises(kmcodec.TruncatedError):
            Image.open(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20
