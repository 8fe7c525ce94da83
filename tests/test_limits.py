"""kmcodec.MAX_IMAGE_PIXELS: one caller-settable pixel limit for every decode path and the encoder's file input."""

from __future__ import annotations

import io

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

import kmcodec
from kmcodec import format as fmt
from kmcodec import limits
from kmcodec.cli import cli

IMAGE = np.arange(5 * 4 * 3, dtype=np.uint8).reshape(4, 5, 3) * 4  # 5 x 4 = 20 pixels


@pytest.fixture
def data() -> bytes:
    return kmcodec.encode(IMAGE, 8)


@pytest.fixture
def kmc_path(tmp_path, data):
    path = tmp_path / "x.kmc"
    path.write_bytes(data)
    return path


def _decoders(data: bytes, path) -> dict:
    """Every decode path, called without max_pixels."""
    return {
        "decode": lambda: kmcodec.decode(data),
        "decode_image": lambda: kmcodec.decode_image(data),
        "load": lambda: kmcodec.load(path),
        "open_strips": lambda: list(kmcodec.open_strips(path)),
        "decode_to_png": lambda: kmcodec.decode_to_png(data, io.BytesIO()),
        "Image.open": lambda: Image.open(path).load(),
    }


def test_the_default_is_2_28():
    assert kmcodec.MAX_IMAGE_PIXELS == fmt.DEFAULT_MAX_PIXELS == 2**28


def test_the_package_attribute_is_kept_in_limits(monkeypatch):
    """kmcodec.MAX_IMAGE_PIXELS reads and sets kmcodec.limits.MAX_IMAGE_PIXELS, where the decoders look."""
    monkeypatch.setattr(kmcodec, "MAX_IMAGE_PIXELS", 19)
    assert limits.MAX_IMAGE_PIXELS == limits.pixel_limit() == 19
    kmcodec.MAX_IMAGE_PIXELS = None
    assert limits.MAX_IMAGE_PIXELS is None and kmcodec.MAX_IMAGE_PIXELS is None
    assert "MAX_IMAGE_PIXELS" in dir(kmcodec)


def test_every_decode_path_reads_the_limit_at_call_time(monkeypatch, data, kmc_path):
    for name, call in _decoders(data, kmc_path).items():
        monkeypatch.setattr(kmcodec, "MAX_IMAGE_PIXELS", 19)
        with pytest.raises(kmcodec.ImageTooLargeError, match="limit of 19"):
            call()
        monkeypatch.setattr(kmcodec, "MAX_IMAGE_PIXELS", 20)  # exactly the image's 5 x 4
        call()
        monkeypatch.setattr(kmcodec, "MAX_IMAGE_PIXELS", None)
        call()
        assert name


def test_an_explicit_max_pixels_overrides_the_global(monkeypatch, data, kmc_path):
    monkeypatch.setattr(kmcodec, "MAX_IMAGE_PIXELS", 19)
    assert kmcodec.decode(data, max_pixels=20).shape == (4, 5, 3)
    assert kmcodec.decode(data, max_pixels=None).shape == (4, 5, 3)
    monkeypatch.setattr(kmcodec, "MAX_IMAGE_PIXELS", None)
    with pytest.raises(kmcodec.ImageTooLargeError):
        kmcodec.load(kmc_path, max_pixels=19)


@pytest.mark.parametrize("value", [0, -1, 1.5, "20", True])
def test_a_bad_global_is_a_parameter_error_naming_it(monkeypatch, data, value):
    monkeypatch.setattr(kmcodec, "MAX_IMAGE_PIXELS", value)
    with pytest.raises(kmcodec.ParameterError, match=r"kmcodec\.MAX_IMAGE_PIXELS"):
        kmcodec.decode(data)


def test_read_info_has_no_limit_unless_asked(monkeypatch, data):
    monkeypatch.setattr(kmcodec, "MAX_IMAGE_PIXELS", 1)
    assert kmcodec.read_info(data).width == 5  # it never decodes the pixels
    with pytest.raises(kmcodec.ImageTooLargeError):
        kmcodec.read_info(data, max_pixels=19)


def test_the_encoder_refuses_an_image_file_over_the_limit_before_decoding_it(monkeypatch, tmp_path):
    path = tmp_path / "in.png"
    Image.fromarray(IMAGE).save(path)
    monkeypatch.setattr(kmcodec, "MAX_IMAGE_PIXELS", 19)
    for source in (path, str(path), io.BytesIO(path.read_bytes())):
        with pytest.raises(kmcodec.ImageTooLargeError, match="limit of 19"):
            kmcodec.encode(source, 8)
    # Arrays and PIL images are already decoded by the caller: no limit.
    kmcodec.encode(IMAGE, 8)
    kmcodec.encode(Image.fromarray(IMAGE), 8)
    monkeypatch.setattr(kmcodec, "MAX_IMAGE_PIXELS", 20)
    kmcodec.encode(path, 8)


def test_kmc_encode_reports_the_limit_in_one_line(monkeypatch, tmp_path):
    path = tmp_path / "in.png"
    Image.fromarray(IMAGE).save(path)
    monkeypatch.setattr(kmcodec, "MAX_IMAGE_PIXELS", 19)
    result = CliRunner().invoke(cli, ["encode", str(path), str(tmp_path / "out.kmc")])
    assert result.exit_code == 1
    assert result.stderr.startswith("kmc: error: image ") and "limit of 19" in result.stderr
    assert not (tmp_path / "out.kmc").exists()


@pytest.mark.parametrize("out", ["out.png", "out.bmp"])
def test_kmc_decode_max_pixels(monkeypatch, tmp_path, kmc_path, out):
    runner = CliRunner()
    dst = tmp_path / out
    result = runner.invoke(cli, ["decode", str(kmc_path), str(dst), "--max-pixels", "19"])
    assert result.exit_code == 1 and "limit of 19" in result.stderr
    assert len(result.stderr.splitlines()) == 1 and not dst.exists()
    assert runner.invoke(cli, ["decode", str(kmc_path), str(dst), "--max-pixels", "20"]).exit_code == 0
    # Without the option the global decides; 0 lifts every limit but the format's.
    monkeypatch.setattr(kmcodec, "MAX_IMAGE_PIXELS", 19)
    result = runner.invoke(cli, ["decode", str(kmc_path), str(dst), "-f"])
    assert result.exit_code == 1 and "limit of 19" in result.stderr
    assert runner.invoke(cli, ["decode", str(kmc_path), str(dst), "-f", "--max-pixels", "0"]).exit_code == 0
    assert runner.invoke(cli, ["decode", str(kmc_path), str(dst), "--max-pixels", "-1"]).exit_code == 2


def test_limit_messages_name_what_the_call_takes_and_group_thousands(monkeypatch, tmp_path):
    wide = np.zeros((30, 40, 3), np.uint8)  # 1,200 pixels
    path = tmp_path / "in.png"
    Image.fromarray(wide).save(path)
    monkeypatch.setattr(kmcodec, "MAX_IMAGE_PIXELS", 1000)
    with pytest.raises(kmcodec.ImageTooLargeError) as encoding:
        kmcodec.encode(path)
    expected = "= 1,200 pixels exceeds the limit of 1,000 (raise max_pixels or kmcodec.MAX_IMAGE_PIXELS to allow it)"
    assert str(encoding.value).endswith(expected)  # encode takes max_pixels, as the decode functions do
    assert kmcodec.encode(path, max_pixels=1200) == kmcodec.encode(wide)
    with pytest.raises(kmcodec.ImageTooLargeError, match="limit of 1,199 "):
        kmcodec.encode(path, max_pixels=1199)
    assert kmcodec.encode(path, max_pixels=None) == kmcodec.encode(wide)
    with pytest.raises(kmcodec.ParameterError, match="max_pixels must be a positive integer or None, not 0"):
        kmcodec.encode(path, max_pixels=0)
    with pytest.raises(kmcodec.ImageTooLargeError) as decoding:
        kmcodec.decode(kmcodec.encode(wide), max_pixels=1000)
    assert "= 1,200 pixels exceeds the limit of 1,000 (raise max_pixels or" in str(decoding.value)
