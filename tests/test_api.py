"""The public API's contract: argument checks, error classes, files, limits, KmcInfo."""

from __future__ import annotations

import io
import json
import math

import numpy as np
import pytest
from PIL import Image

import kmcodec
from kmcodec import format as fmt

IMAGE = np.arange(5 * 4 * 3, dtype=np.uint8).reshape(4, 5, 3) * 4  # 5 x 4, 20 colours


@pytest.fixture
def data() -> bytes:
    return kmcodec.encode(IMAGE, 8)


@pytest.fixture
def png_path(tmp_path):
    path = tmp_path / "in.png"
    Image.fromarray(IMAGE).save(path)
    return path


# ---------------------------------------------------------------------------
# Error classes
# ---------------------------------------------------------------------------
def test_every_error_is_a_kmc_error_and_a_value_error():
    classes = [getattr(kmcodec, name) for name in kmcodec.__all__ if name.endswith("Error")]
    assert kmcodec.FileAccessError in classes and kmcodec.OutputExistsError in classes
    for cls in classes:
        assert issubclass(cls, kmcodec.KmcError) and issubclass(cls, ValueError)
    for cls in (
        kmcodec.ChecksumError,
        kmcodec.TruncatedError,
        kmcodec.UnsupportedVersionError,
        kmcodec.UnsupportedFeatureError,
    ):
        assert issubclass(cls, kmcodec.FormatError)
    for cls in (kmcodec.ParameterError, kmcodec.InputImageError, kmcodec.ImageTooLargeError):
        assert not issubclass(cls, kmcodec.FormatError)


# ---------------------------------------------------------------------------
# encode() arguments
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("colors", [0, -1, 65537, 2.5, 16.0, True, False, "16", [16]])
def test_bad_colors_raise_parameter_error(colors):
    with pytest.raises(kmcodec.ParameterError, match="colors"):
        kmcodec.encode(IMAGE, colors)


@pytest.mark.parametrize("colors", [1, 65536, np.int64(7), np.uint8(3)])
def test_colors_limits_are_accepted(colors):
    assert kmcodec.read_info(kmcodec.encode(IMAGE, colors)).colors == min(int(colors), 20)


@pytest.mark.parametrize("seed", [-1, 2**64, 1.0, True, "0", None])
def test_bad_seed_raises_parameter_error(seed):
    with pytest.raises(kmcodec.ParameterError, match="seed"):
        kmcodec.encode(IMAGE, 4, seed=seed)


def test_seed_limits_are_accepted():
    for seed in (0, 2**64 - 1, np.uint64(2**64 - 1)):
        assert kmcodec.read_info(kmcodec.encode(IMAGE, 4, seed=seed)).seed == int(seed)


@pytest.mark.parametrize("method", ["fast", "", "STORED", "zlib", None, 0, ["lzma"], ("stored",)])
def test_unknown_method_raises_parameter_error(method):
    with pytest.raises(kmcodec.ParameterError, match="method"):
        kmcodec.encode(IMAGE, 4, method=method)


@pytest.mark.parametrize("rows", [0, -3, 2.0, True, "4"])
def test_bad_rows_per_strip_raise_parameter_error(rows):
    with pytest.raises(kmcodec.ParameterError, match="rows_per_strip"):
        kmcodec.encode(IMAGE, 4, rows_per_strip=rows)


def test_rows_per_strip_is_capped_to_the_height():
    info = kmcodec.read_info(kmcodec.encode(IMAGE, 4, rows_per_strip=1000))
    assert (info.rows_per_strip, info.strips) == (4, 1)
    info = kmcodec.read_info(kmcodec.encode(IMAGE, 4, rows_per_strip=3))
    assert (info.rows_per_strip, info.strips) == (3, 2)


@pytest.mark.parametrize("dtype", [np.uint16, np.int8, np.int64, np.float32, np.float64, bool])
def test_bad_array_dtype_raises_parameter_error(dtype):
    with pytest.raises(kmcodec.ParameterError, match="dtype"):
        kmcodec.encode(np.zeros((4, 5, 3), dtype=dtype), 4)


@pytest.mark.parametrize("shape", [(5,), (4, 5, 5), (4, 5, 0), (2, 4, 5, 3), ()])
def test_bad_array_shape_raises_parameter_error(shape):
    with pytest.raises(kmcodec.ParameterError, match="shape"):
        kmcodec.encode(np.zeros(shape, dtype=np.uint8), 4)


@pytest.mark.parametrize("shape", [(0, 5, 3), (4, 0), (0, 0, 1)])
def test_empty_array_raises_input_image_error(shape):
    with pytest.raises(kmcodec.InputImageError, match="empty"):
        kmcodec.encode(np.zeros(shape, dtype=np.uint8), 4)


@pytest.mark.parametrize("image", [42, None, b"\x89PNG\r\n\x1a\n", [[0, 1], [2, 3]], 1.5])
def test_unsupported_image_type_raises_parameter_error(image):
    with pytest.raises(kmcodec.ParameterError, match="image must be"):
        kmcodec.encode(image, 4)


@pytest.mark.parametrize("shape", [(4, 5), (4, 5, 1), (4, 5, 2), (4, 5, 3), (4, 5, 4)])
def test_array_shapes_map_to_layouts(shape):
    image = (np.arange(math.prod(shape)) % 251).astype(np.uint8).reshape(shape)
    pixels = kmcodec.decode(kmcodec.encode(image, 256))
    np.testing.assert_array_equal(pixels, image.reshape(4, 5, -1))


def test_non_contiguous_array_is_accepted():
    big = np.arange(8 * 10 * 3, dtype=np.uint8).reshape(8, 10, 3)
    view = big[::2, ::2]
    np.testing.assert_array_equal(kmcodec.decode(kmcodec.encode(view, 256)), view)


def test_image_over_the_format_limits_raises_image_too_large():
    with pytest.raises(kmcodec.ImageTooLargeError):
        kmcodec.encode(np.zeros((1, fmt.MAX_DIMENSION + 1), np.uint8), 2)


# ---------------------------------------------------------------------------
# Unreadable input files
# ---------------------------------------------------------------------------
def test_missing_input_file_raises_input_image_error(tmp_path):
    with pytest.raises(kmcodec.InputImageError, match="no such file"):
        kmcodec.encode(tmp_path / "missing.png", 4)
    with pytest.raises(kmcodec.InputImageError):
        kmcodec.encode(str(tmp_path / "missing.png"), 4)


def test_directory_as_input_raises_input_image_error(tmp_path):
    with pytest.raises(kmcodec.InputImageError):
        kmcodec.encode(tmp_path, 4)


@pytest.mark.parametrize("content", [b"", b"hello, not an image\n", b"\x89PNG\r\n\x1a\n\x00\x00"])
def test_non_image_file_raises_input_image_error(tmp_path, content):
    path = tmp_path / "in.png"
    path.write_bytes(content)
    with pytest.raises(kmcodec.InputImageError):
        kmcodec.encode(path, 4)
    with pytest.raises(kmcodec.InputImageError):
        kmcodec.encode(io.BytesIO(content), 4)


def test_truncated_png_raises_input_image_error(tmp_path):
    whole = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (30, 40, 3), dtype=np.uint8)).save(whole, "PNG")
    cut = tmp_path / "cut.png"
    cut.write_bytes(whole.getvalue()[: len(whole.getvalue()) // 2])
    with pytest.raises(kmcodec.InputImageError):
        kmcodec.encode(cut, 4)


def test_path_file_object_and_pil_image_give_the_same_file(png_path):
    from_path = kmcodec.encode(png_path, 8)
    assert kmcodec.encode(str(png_path), 8) == from_path
    with open(png_path, "rb") as f:
        assert kmcodec.encode(f, 8) == from_path
    with Image.open(png_path) as image:
        assert kmcodec.encode(image, 8) == from_path
    assert kmcodec.encode(IMAGE, 8) == from_path


# ---------------------------------------------------------------------------
# save, load, read_info
# ---------------------------------------------------------------------------
def test_save_load_round_trip(tmp_path, png_path):
    out = tmp_path / "out.kmc"
    written = kmcodec.save(out, png_path, 8, method="deflate", seed=3)
    assert written == out.stat().st_size
    assert out.read_bytes() == kmcodec.encode(png_path, 8, method="deflate", seed=3)
    np.testing.assert_array_equal(kmcodec.load(out), kmcodec.decode(out.read_bytes()))
    np.testing.assert_array_equal(kmcodec.load(str(out)), kmcodec.load(out))
    info = kmcodec.read_info(out)
    assert (info.method, info.seed, info.requested_colors) == ("deflate", 3, 8)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.png", "out.kmc"]  # no temporary files left


def test_save_replaces_an_existing_file(tmp_path):
    out = tmp_path / "out.kmc"
    out.write_bytes(b"old contents")
    kmcodec.save(out, IMAGE, 2)
    assert kmcodec.read_info(out).colors == 2


def test_save_into_a_missing_folder_raises_file_access_error(tmp_path):
    with pytest.raises(kmcodec.FileAccessError):
        kmcodec.save(tmp_path / "no" / "such" / "out.kmc", IMAGE, 2)
    assert list(tmp_path.iterdir()) == []


def test_load_and_read_info_of_a_missing_file_raise_file_access_error(tmp_path):
    with pytest.raises(kmcodec.FileAccessError):
        kmcodec.load(tmp_path / "missing.kmc")
    with pytest.raises(kmcodec.FileAccessError):
        kmcodec.read_info(tmp_path / "missing.kmc")


def test_read_info_on_bytes_and_paths(tmp_path, data):
    path = tmp_path / "x.kmc"
    path.write_bytes(data)
    info = kmcodec.read_info(data)
    assert kmcodec.read_info(path) == info == kmcodec.read_info(str(path))
    assert kmcodec.read_info(bytearray(data)) == info == kmcodec.read_info(memoryview(data))
    assert (info.width, info.height, info.mode, info.version) == (5, 4, "RGB", "1.0")
    assert info.colors == 8 == len(info.palette)
    assert info.requested_colors == 8 and info.unique_colors == 20
    assert [c["type"] for c in info.chunks] == ["HEAD", "made", "PALT", "STRP", "DONE"]


def test_read_info_of_non_bytes_raises_parameter_error():
    with pytest.raises(kmcodec.ParameterError):
        kmcodec.read_info(12345)


def test_kmc_info_derived_values_and_dict(data):
    info = kmcodec.read_info(data)
    assert info.bits_per_pixel == pytest.approx(len(data) * 8 / 20)
    assert info.raw_bytes == 60
    assert info.psnr == pytest.approx(10 * math.log10(255**2 / info.mse))
    d = json.loads(json.dumps(info.to_dict()))
    assert d["width"] == 5 and d["palette"][0] == list(info.palette[0])
    exact = kmcodec.read_info(kmcodec.encode(IMAGE, 256))
    assert exact.mse == 0 and exact.psnr == math.inf
    assert exact.to_dict()["psnr"] is None  # JSON has no infinity


@pytest.mark.parametrize(("channels", "mode"), [(1, "L"), (2, "LA"), (3, "RGB"), (4, "RGBA")])
def test_decode_image_mode_follows_the_layout(channels, mode):
    image = np.full((3, 2, channels), 200, np.uint8)
    decoded = kmcodec.decode_image(kmcodec.encode(image, 2))
    assert decoded.mode == mode and decoded.size == (2, 3)
    assert np.asarray(decoded).reshape(3, 2, channels).tolist() == image.tolist()


# ---------------------------------------------------------------------------
# max_pixels
# ---------------------------------------------------------------------------
def test_max_pixels_limit_raises_image_too_large(tmp_path, data):
    path = tmp_path / "x.kmc"
    path.write_bytes(data)
    for call in (
        lambda limit: kmcodec.decode(data, max_pixels=limit),
        lambda limit: kmcodec.decode_image(data, max_pixels=limit),
        lambda limit: kmcodec.load(path, max_pixels=limit),
        lambda limit: kmcodec.read_info(data, max_pixels=limit),
    ):
        with pytest.raises(kmcodec.ImageTooLargeError, match="max_pixels"):
            call(19)
        call(20)  # exactly the image's 5 x 4 pixels
        call(None)


@pytest.mark.parametrize("limit", [0, -1, 1.5, "20", True])
def test_bad_max_pixels_raises_parameter_error(data, limit):
    with pytest.raises(kmcodec.ParameterError, match="max_pixels"):
        kmcodec.decode(data, max_pixels=limit)


def test_default_max_pixels_is_documented_value():
    assert fmt.DEFAULT_MAX_PIXELS == 2**28


# ---------------------------------------------------------------------------
# An output path that is the input: refused before any work, the input intact
# ---------------------------------------------------------------------------
def test_save_to_the_image_it_reads_raises_parameter_error_and_keeps_it(tmp_path, png_path):
    before = png_path.read_bytes()
    link = tmp_path / "link.png"
    link.symlink_to(png_path)
    for path, image in [(png_path, png_path), (str(png_path), str(png_path)), (link, png_path)]:
        with pytest.raises(kmcodec.ParameterError, match="same file as the input"):
            kmcodec.save(path, image, 8)
    with open(png_path, "rb") as f, pytest.raises(kmcodec.ParameterError, match="same file"):
        kmcodec.save(png_path, f, 8)
    assert png_path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.png", "link.png"]  # no temporary file


def test_decode_to_png_onto_its_source_raises_parameter_error_and_keeps_it(tmp_path, data):
    path = tmp_path / "in.kmc"
    path.write_bytes(data)
    with pytest.raises(kmcodec.ParameterError, match="same file as the input"):
        kmcodec.decode_to_png(path, path)
    with open(path, "rb") as f, pytest.raises(kmcodec.ParameterError, match="same file"):
        kmcodec.decode_to_png(f, str(path))
    with kmcodec.open_strips(path) as reader, pytest.raises(kmcodec.ParameterError, match="same file"):
        kmcodec.decode_to_png(reader, path, overwrite=True)
    assert path.read_bytes() == data
    assert [p.name for p in tmp_path.iterdir()] == ["in.kmc"]


# ---------------------------------------------------------------------------
# Arguments of the wrong kind: ParameterError, never a bare TypeError or ValueError
# ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("call", "needle"),
    [
        (lambda: kmcodec.load(b"abc\x00def"), "kmcodec.decode"),
        (lambda: kmcodec.load(bytearray(b"\x8bKMC")), "kmcodec.decode"),
        (lambda: kmcodec.load("abc\x00def"), "NUL"),
        (lambda: kmcodec.load(3), "str or os.PathLike"),
        (lambda: kmcodec.read_info("a\x00b"), "NUL"),
        (lambda: kmcodec.read_palette("a\x00b"), "NUL"),
        (lambda: kmcodec.open_strips("a\x00b"), "NUL"),
        (lambda: kmcodec.open_strips(io.StringIO("abc")), "text stream"),
        (lambda: kmcodec.decode_to_png("a\x00b", io.BytesIO()), "NUL"),
        (lambda: kmcodec.save("out\x00.kmc", IMAGE), "NUL"),
        (lambda: kmcodec.save(5, IMAGE), "str or os.PathLike"),
        (lambda: kmcodec.encode(io.StringIO("abc")), "text stream"),
        (lambda: kmcodec.encode_with(IMAGE, {"colors": 4}), "EncodeOptions"),
        (lambda: kmcodec.shared_palette("photo.png"), "one image; pass a list"),
        (lambda: kmcodec.shared_palette(b"photo.png"), "one image; pass a list"),
        (lambda: kmcodec.shared_palette(IMAGE), "one image; pass a list"),
        (lambda: kmcodec.shared_palette(Image.fromarray(IMAGE)), "one image; pass a list"),
        (lambda: kmcodec.shared_palette(5), "list of images, not int"),
    ],
)
def test_arguments_of_the_wrong_kind_raise_parameter_error(call, needle):
    with pytest.raises(kmcodec.ParameterError, match=needle):
        call()


@pytest.mark.parametrize("dest", [io.StringIO(), 5], ids=["text", "int"])
def test_decode_to_png_to_a_text_stream_or_non_file_raises_parameter_error(data, dest):
    with pytest.raises(kmcodec.ParameterError, match="binary file"):
        kmcodec.decode_to_png(data, dest)


def test_decode_to_png_to_a_path_with_nul_raises_parameter_error_and_writes_nothing(tmp_path, data, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(kmcodec.ParameterError, match="NUL"):
        kmcodec.decode_to_png(data, "out\x00.png")
    assert list(tmp_path.iterdir()) == []


def test_shared_palette_takes_a_stack_of_images_as_a_4d_array():
    stack = np.stack([IMAGE, 255 - IMAGE])
    assert kmcodec.shared_palette(stack, 8).tolist() == kmcodec.shared_palette(list(stack), 8).tolist()
