"""Encode then decode: odd sizes, every layout and method, k from 1 to 65536, Pillow inputs."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image, ImageOps, PngImagePlugin

import kmcodec
from kmcodec import format as fmt
from kmcodec.colorspace import Space
from kmcodec.defaults import RDO_FROM_COLORS
from kmcodec.format import Method
from kmcodec.labels import charged, decode_strip, encode_strip, encode_strip_best, pack_rows, unpack_rows

METHODS = ("stored", "deflate", "lzma", "auto")
SIZES = [(1, 1), (1, 37), (29, 1), (7, 5), (33, 17), (100, 3)]  # (width, height)
KS = [1, 2, 3, 16, 17, 255, 256]


def _collapsed(image: np.ndarray) -> np.ndarray:
    """What the encoder keeps: fully transparent pixels become 0 in every channel."""
    out = image.copy()
    if out.shape[2] in (2, 4):
        out[out[:, :, -1] == 0] = 0
    return out


def _distinct(image: np.ndarray) -> np.ndarray:
    return np.unique(image.reshape(-1, image.shape[2]), axis=0)


def _random_image(rng: np.random.Generator, width: int, height: int, channels: int) -> np.ndarray:
    """Many colours; with alpha, about a tenth of the pixels fully transparent (with colour behind)."""
    image = rng.integers(0, 256, (height, width, channels), dtype=np.uint8)
    if channels in (2, 4):
        image[rng.random((height, width)) < 0.1, -1] = 0
    return image


def _image_with_colors(rng: np.random.Generator, width: int, height: int, channels: int, n: int) -> np.ndarray:
    """Exactly min(n, width * height) distinct colours, none fully transparent."""
    n = min(n, width * height)
    keys = rng.choice(1 << (8 * channels), size=n, replace=False)
    colors = np.stack([(keys >> (8 * (channels - 1 - c))) & 0xFF for c in range(channels)], axis=1)
    if channels in (2, 4):
        colors[:, -1] |= 1
    colors = np.unique(colors.astype(np.uint8), axis=0)
    labels = np.concatenate([np.arange(len(colors)), rng.integers(0, len(colors), width * height - len(colors))])
    return colors[rng.permutation(labels)].reshape(height, width, channels)


def _check_nearest(source: np.ndarray, decoded: np.ndarray, palette: np.ndarray) -> None:
    """Every pixel took a palette entry at the least squared distance from its colour in Oklab with L_r, where
    the default encode fits and maps (test_colorspace checks the resolution of the default)."""
    channels = source.shape[2]
    space = Space(channels, channels in (2, 4), toe=True)
    src = space.points(source.reshape(-1, channels))
    dec = space.points(decoded.reshape(-1, channels))
    pal = space.points(palette)
    for start in range(0, len(src), 256):
        block = src[start : start + 256]
        best = np.min(((block[:, None, :] - pal[None, :, :]) ** 2).sum(axis=2), axis=1)
        chosen = ((block - dec[start : start + 256]) ** 2).sum(axis=1)
        np.testing.assert_allclose(chosen, best, rtol=1e-9, atol=1e-15)


def _fixed_method(*indices: int) -> str:
    """One of stored, deflate and lzma, in rotation over the sum of a case's parameter indices.

    Each method is then run on every value of each parameter, and on every
    pair of values of two parameters, across the cases: encoding every case
    with all three refitted the same palette three more times.
    """
    return METHODS[sum(indices) % 3]


def _round_trip(image: np.ndarray, k: int, method: str, rows_per_strip: int | None = 3) -> tuple[np.ndarray, object]:
    """Encode with *method* and with auto: both must decode to the same pixels. Returns (pixels, info of auto)."""
    decoded = {}
    for name in (method, "auto"):
        data = kmcodec.encode(image, k, method=name, rows_per_strip=rows_per_strip)
        info = kmcodec.read_info(data)
        if name != "auto":
            assert info.method == name
            assert set(info.strip_methods) == {name}
        assert info.strips == -(-image.shape[0] // info.rows_per_strip)
        decoded[name] = kmcodec.decode(data)
    np.testing.assert_array_equal(decoded["auto"], decoded[method], err_msg=method)
    return decoded["auto"], info


@pytest.mark.parametrize("k", KS)
@pytest.mark.parametrize("channels", [1, 2, 3, 4], ids=["L", "LA", "RGB", "RGBA"])
@pytest.mark.parametrize("size", SIZES, ids=[f"{w}x{h}" for w, h in SIZES])
def test_round_trip_with_more_colours_than_k(size, channels, k):
    width, height = size
    image = _random_image(np.random.default_rng([width, height, channels, k]), width, height, channels)
    source = _collapsed(image)
    n_unique = len(_distinct(source))
    pixels, info = _round_trip(image, k, _fixed_method(SIZES.index(size), channels, KS.index(k)))

    assert pixels.shape == image.shape and pixels.dtype == np.uint8
    assert info.mode == ("L", "LA", "RGB", "RGBA")[channels - 1]
    assert (info.width, info.height) == (width, height)
    palette = np.array(info.palette, dtype=np.uint8).reshape(-1, channels)
    assert len(palette) <= k
    assert len(palette) <= n_unique
    assert info.bits_per_label == max(1, (len(palette) - 1).bit_length())
    assert len(_distinct(pixels)) <= len(palette)
    assert {tuple(p) for p in _distinct(pixels)} <= {tuple(p) for p in palette}
    assert info.requested_colors == k and info.unique_colors == n_unique
    if n_unique <= k:
        np.testing.assert_array_equal(pixels, source)
        assert info.iterations == 0 and info.mse == 0
    else:
        # From RDO_FROM_COLORS up the default labels are RDO's, which may take a neighbour's entry: the
        # nearest mapping is checked on the same fit with rdo=0 (RDO keeps the palette).
        nearest = pixels if k < RDO_FROM_COLORS else kmcodec.decode(kmcodec.encode(image, k, rdo=0))
        _check_nearest(source, nearest.reshape(source.shape), palette)
        actual = float(np.mean((source.astype(np.float64) - pixels) ** 2))
        assert info.mse == pytest.approx(actual, rel=1e-9, abs=1e-12)
        assert info.iterations >= 1


@pytest.mark.parametrize("k", KS)
@pytest.mark.parametrize("channels", [1, 2, 3, 4], ids=["L", "LA", "RGB", "RGBA"])
@pytest.mark.parametrize("size", [(7, 5), (33, 17), (100, 3)], ids=["7x5", "33x17", "100x3"])
def test_round_trip_with_at_most_k_colours_is_bit_exact(size, channels, k):
    width, height = size
    rng = np.random.default_rng([width, height, channels, k, 1])
    for i, n in enumerate({1, max(1, k // 2), k}):
        if channels == 1 and n > 256:
            continue
        image = _image_with_colors(rng, width, height, channels, n)
        pixels, info = _round_trip(image, k, _fixed_method(SIZES.index(size), channels, KS.index(k), i))
        np.testing.assert_array_equal(pixels, image)
        assert info.colors == len(_distinct(image))


def test_transparent_pixels_collapse_but_keep_their_own_entry():
    image = np.zeros((4, 6, 4), np.uint8)
    image[..., :3] = np.arange(24, dtype=np.uint8).reshape(4, 6, 1) * 10
    image[..., 3] = 255
    image[0] = (200, 100, 50, 0)  # a transparent row, colour behind it
    pixels = kmcodec.decode(kmcodec.encode(image, 2))
    np.testing.assert_array_equal(pixels[0], 0)
    assert (pixels[1:, :, 3] == 255).all()


# ---------------------------------------------------------------------------
# Large palettes: 12- and 16-bit labels
# ---------------------------------------------------------------------------
def test_k4096_with_more_colours_is_lossy_and_nearest():
    image = np.random.default_rng(4096).integers(0, 256, (50, 82, 3), dtype=np.uint8)  # 4100 colours
    data = kmcodec.encode(image, 4096, rdo=0)  # nearest labels (the default would be RDO's from 48 colours up)
    info = kmcodec.read_info(data)
    assert info.unique_colors == 4100
    assert 4000 < info.colors <= 4096
    assert info.bits_per_label == 12
    palette = np.array(info.palette, dtype=np.uint8)
    pixels = kmcodec.decode(data)
    _check_nearest(image, pixels, palette)
    assert len(_distinct(pixels)) <= 4096


@pytest.mark.parametrize("method", METHODS)
def test_k4096_with_at_most_k_colours_is_bit_exact(method):
    image = _image_with_colors(np.random.default_rng(12), 64, 64, 3, 4000)
    data = kmcodec.encode(image, 4096, method=method, rows_per_strip=21)
    assert kmcodec.read_info(data).bits_per_label == 12
    np.testing.assert_array_equal(kmcodec.decode(data), image)


@pytest.mark.parametrize("method", METHODS)
def test_sixteen_bit_labels_round_trip(method):
    """40960 distinct colours and k = 65536: 16-bit labels, exact."""
    ys, xs = np.mgrid[0:160, 0:256]
    image = np.stack([xs, ys, (xs * 7 + ys * 13) % 256], axis=-1).astype(np.uint8)
    data = kmcodec.encode(image, fmt.MAX_COLORS, method=method, rows_per_strip=64)
    info = kmcodec.read_info(data)
    assert info.colors == 40960 and info.bits_per_label == 16
    np.testing.assert_array_equal(kmcodec.decode(data), image)


# ---------------------------------------------------------------------------
# Determinism
# ---------------------------------------------------------------------------
def test_same_seed_gives_the_same_bytes():
    image = _random_image(np.random.default_rng(3), 33, 17, 3)
    for seed in (0, 5, 2**64 - 1):
        first = kmcodec.encode(image, 16, seed=seed)
        assert kmcodec.encode(image.copy(), 16, seed=seed) == first
        assert kmcodec.read_info(first).seed == seed


def test_different_seeds_may_give_different_palettes():
    image = _random_image(np.random.default_rng(4), 33, 17, 3)
    files = {seed: kmcodec.encode(image, 8, seed=seed) for seed in range(8)}
    assert len(set(files.values())) > 1  # the seed is used
    for data in files.values():
        assert kmcodec.read_info(data).colors <= 8


def test_the_input_is_not_modified():
    image = _random_image(np.random.default_rng(5), 7, 5, 4)
    before = image.copy()
    kmcodec.encode(image, 3)
    np.testing.assert_array_equal(image, before)


# ---------------------------------------------------------------------------
# Label coding (spec §6)
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("bits", range(1, 17))
def test_pack_rows_round_trip_for_every_width(bits):
    rng = np.random.default_rng(bits)
    dtype = np.uint8 if bits <= 8 else np.uint16
    for height, width in ((1, 1), (3, 7), (2, 33)):
        labels = rng.integers(0, 1 << bits, (height, width)).astype(dtype)
        packed = pack_rows(labels, bits)
        assert len(packed) == height * fmt.row_bytes(width, bits)
        out = unpack_rows(packed, height, width, bits)
        assert out.dtype == dtype and out.shape == (height, width)
        np.testing.assert_array_equal(out, labels)


def test_pack_rows_is_msb_first_with_zero_padding():
    # 3-bit labels 1, 2, 3, 4, 5: 001 010 011 100 101 + one padding bit
    assert pack_rows(np.array([[1, 2, 3, 4, 5]], np.uint8), 3) == bytes([0b00101001, 0b11001010])
    assert pack_rows(np.array([[1, 2]], np.uint16), 16) == b"\x00\x01\x00\x02"
    # the whole-fields-per-byte path of 1, 2 and 4 bits, uint8 and uint16 labels
    for dtype in (np.uint8, np.uint16):
        assert pack_rows(np.array([[1, 2, 3]], dtype), 4) == bytes([0x12, 0x30])
        assert pack_rows(np.array([[1, 2, 3, 0, 1]], dtype), 2) == bytes([0b01101100, 0b01000000])
        assert pack_rows(np.array([[1, 0, 1, 1, 0, 0, 0, 1, 1]], dtype), 1) == bytes([0b10110001, 0b10000000])
        assert pack_rows(np.zeros((2, 0), dtype), 4) == b""


@pytest.mark.parametrize("colors", [1, 2, 64, 65536])
def test_encode_strip_best_is_the_smallest_lowest_id_on_ties(colors):
    # stored is sized without packing and cm/cmm stop at the best size so far:
    # the choice must be the same as coding every method in full, in any order
    # (sizes compared as charged: cmx must be 5 % smaller to win)
    rng = np.random.default_rng(colors)
    dtype = np.uint8 if colors <= 256 else np.uint16
    rows = np.tile(np.arange(13) % colors, (40, 1))  # cm beats stored: budgets are in play
    maps = (rng.integers(0, colors, (9, 13)), np.zeros((9, 13)), np.zeros((1, 1)), rows)
    for labels in (m.astype(dtype) for m in maps):
        for methods in (tuple(Method), tuple(reversed(Method)), (Method.CM, Method.STORED), (Method.STORED,)):
            coded = [(m, encode_strip(labels, colors, m)) for m in methods]
            expected = min(coded, key=lambda c: (charged(c[0], len(c[1])), c[0]))
            assert encode_strip_best(labels, colors, methods) == expected


@pytest.mark.parametrize("bits", range(1, 16))
def test_pack_rows_matches_the_bit_string_definition(bits, monkeypatch):
    # Small blocks, so the row-block path of the straddling widths runs more than once.
    monkeypatch.setattr("kmcodec.labels.UNPACK_BLOCK_LABELS", 16)
    rng = np.random.default_rng(100 + bits)
    labels = rng.integers(0, 1 << bits, (9, 13)).astype(np.uint8 if bits <= 8 else np.uint16)
    expected = b""
    for row in labels:
        text = "".join(format(int(label), f"0{bits}b") for label in row)
        text += "0" * (-len(text) % 8)
        expected += bytes(int(text[i : i + 8], 2) for i in range(0, len(text), 8))
    assert pack_rows(labels, bits) == expected


@pytest.mark.parametrize("colors", [1, 2, 3, 16, 17, 255, 256, 257, 4096, 65536])
@pytest.mark.parametrize("method", list(Method))
def test_strip_coding_round_trip_and_label_dtype(colors, method):
    rng = np.random.default_rng(colors)
    height, width = 3, 11
    dtype = np.uint8 if colors <= 256 else np.uint16
    labels = rng.integers(0, colors, (height, width)).astype(dtype)
    labels[0, 0] = colors - 1
    bits = fmt.bits_per_label(colors)
    coded = encode_strip(labels, colors, method)
    out = decode_strip(memoryview(coded), method, height, width, colors)
    assert out.shape == (height, width)
    assert out.dtype == (np.uint8 if bits <= 8 else np.uint16)
    np.testing.assert_array_equal(out, labels)


# ---------------------------------------------------------------------------
# Pillow inputs
# ---------------------------------------------------------------------------
def _pil(mode: str, size: tuple[int, int] = (9, 5)) -> Image.Image:
    rng = np.random.default_rng(len(mode))
    width, height = size
    if mode == "1":
        return Image.fromarray(rng.random((height, width)) < 0.5)
    if mode == "I;16":
        return Image.fromarray(rng.integers(0, 65536, (height, width)).astype(np.uint16))
    bands = len(Image.new(mode, (1, 1)).getbands())
    return Image.frombytes(mode, size, rng.integers(0, 256, width * height * bands, dtype=np.uint8).tobytes())


def _palette_image(transparency: bool) -> Image.Image:
    image = Image.new("P", (8, 3))
    image.putpalette([0, 0, 0, 250, 10, 10, 10, 250, 10, 10, 10, 250])
    image.putdata([(x + y) % 4 for y in range(3) for x in range(8)])
    if transparency:
        image.info["transparency"] = 2
    return image


@pytest.mark.parametrize(
    ("image", "mode"),
    [
        (_pil("1"), "L"),
        (_pil("L"), "L"),
        (_pil("LA"), "LA"),
        (_pil("RGB"), "RGB"),
        (_pil("RGBA"), "RGBA"),
        (_pil("CMYK"), "RGB"),
        (_palette_image(transparency=False), "RGB"),
        (_palette_image(transparency=True), "RGBA"),
    ],
    ids=["1", "L", "LA", "RGB", "RGBA", "CMYK", "P", "P-transparency"],
)
def test_pil_modes_map_to_the_nearest_layout(image, mode):
    data = kmcodec.encode(image, 256)
    decoded = kmcodec.decode_image(data)
    assert decoded.mode == mode
    expected = np.asarray(image.convert(mode))
    expected = expected[:, :, None] if expected.ndim == 2 else expected
    pixels = kmcodec.decode(data)
    np.testing.assert_array_equal(pixels, _collapsed(expected))
    assert kmcodec.read_info(data).colors == len(_distinct(_collapsed(expected)))


def test_palette_image_with_rgba_palette_keeps_alpha():
    image = Image.new("P", (4, 2))
    image.putpalette([10, 20, 30, 255, 40, 50, 60, 128], rawmode="RGBA")
    image.putdata([0, 1, 1, 0, 1, 0, 0, 1])
    pixels = kmcodec.decode(kmcodec.encode(image, 4))
    assert pixels.shape == (2, 4, 4)
    assert {tuple(p) for p in pixels.reshape(-1, 4)} == {(10, 20, 30, 255), (40, 50, 60, 128)}


def test_sixteen_bit_grey_is_scaled_to_eight_bits():
    values = np.array([[0, 257, 65535, 1000, 32768]], dtype=np.uint16)
    pixels = kmcodec.decode(kmcodec.encode(Image.fromarray(values), 256))
    np.testing.assert_array_equal(pixels[:, :, 0], [[0, 1, 255, 4, 128]])
    small = np.array([[0, 17, 255]], dtype=np.uint16)  # within 0..255: kept as they are
    np.testing.assert_array_equal(kmcodec.decode(kmcodec.encode(Image.fromarray(small), 256))[:, :, 0], small)


def test_sixteen_bit_grey_from_random_pil_image():
    image = _pil("I;16")
    pixels = kmcodec.decode(kmcodec.encode(image, 256))
    expected = np.rint(np.asarray(image).astype(np.float64) * 255 / 65535).astype(np.uint8)
    assert pixels.shape == (5, 9, 1)
    np.testing.assert_array_equal(pixels[:, :, 0], expected)


def _saved(image: Image.Image, fmt_name: str = "PNG", **options) -> Image.Image:
    buf = io.BytesIO()
    image.save(buf, fmt_name, **options)
    buf.seek(0)
    return Image.open(buf)


@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_exif_orientation_is_applied(orientation):
    rng = np.random.default_rng(orientation)
    stored = Image.fromarray(rng.integers(0, 256, (4, 7, 3), dtype=np.uint8))  # 7 wide, 4 high
    exif = Image.Exif()
    exif[0x0112] = orientation
    source = _saved(stored, exif=exif)
    pixels = kmcodec.decode(kmcodec.encode(source, 256))
    upright = np.asarray(ImageOps.exif_transpose(_saved(stored, exif=exif)))
    assert pixels.shape == ((4, 7, 3) if orientation == 3 else (7, 4, 3))
    np.testing.assert_array_equal(pixels, upright)


def test_icc_exif_and_xmp_reach_decode_image():
    icc = b"\x00\x00\x00\x80not really an ICC profile, but bytes to carry" + bytes(range(40))
    exif = Image.Exif()
    exif[0x010E] = "a description"
    exif[0x0131] = "kmcodec tests"
    source = _saved(Image.new("RGB", (5, 3), (9, 8, 7)), icc_profile=icc, exif=exif)
    data = kmcodec.encode(source, 4)
    info = kmcodec.read_info(data)
    assert info.icc_profile and info.exif and not info.xmp
    image = kmcodec.decode_image(data)
    assert image.info["icc_profile"] == icc
    assert image.info["exif"].startswith(b"Exif\x00\x00")
    carried = image.getexif()
    assert carried[0x010E] == "a description" and carried[0x0131] == "kmcodec tests"
    plain = kmcodec.decode_image(kmcodec.encode(source, 4, metadata=False))
    assert "icc_profile" not in plain.info and "exif" not in plain.info
    assert not kmcodec.read_info(kmcodec.encode(source, 4, metadata=False)).icc_profile


def test_exif_from_jpeg_loses_its_app1_prefix_in_the_file():
    exif = Image.Exif()
    exif[0x010E] = "from a jpeg"
    source = _saved(Image.new("RGB", (8, 8), (200, 30, 30)), "JPEG", exif=exif, quality=95)
    assert source.info["exif"].startswith(b"Exif\x00\x00")
    data = kmcodec.encode(source, 4)
    offset = next(c["offset"] for c in kmcodec.read_info(data).chunks if c["type"] == "exif")
    assert data[offset + 8 : offset + 10] in (b"II", b"MM")  # a TIFF structure, no Exif\0\0 (§7)
    assert kmcodec.decode_image(data).getexif()[0x010E] == "from a jpeg"


def test_xmp_is_carried():
    xmp = '<x:xmpmeta xmlns:x="adobe:ns:meta/">kmcodec</x:xmpmeta>'
    text = PngImagePlugin.PngInfo()
    text.add_itxt("XML:com.adobe.xmp", xmp)
    data = kmcodec.encode(_saved(Image.new("L", (3, 3), 7), pnginfo=text), 2)
    assert kmcodec.decode_image(data).info["xmp"] == xmp.encode()
