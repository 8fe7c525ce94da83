"""Colour spaces of the quantizer: the Oklab conversions, encode(colorspace=...) and kmc encode --colorspace."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

import kmcodec
from kmcodec import colorspace, metrics
from kmcodec.cli import cli
from kmcodec.colorspace import COLORSPACES, Space, check_colorspace
from kmcodec.options import EncodeOptions
from kmcodec.quantize import ColorCounts, apply_palette, fit_palette

OKLAB_SPACES = [name for name in COLORSPACES if name != "srgb"]
#: The spaces that map colours to entries by Oklab distance ("oklab-srgb" only fits in Oklab first;
#: "oklrab" by Oklab with L_r for L).
OKLAB_MAPPING = ["oklab", "oklab-linear", "oklrab"]


def _photo_like(height: int = 24, width: int = 30, channels: int = 3, seed: int = 2) -> np.ndarray:
    """Gradients plus noise: hundreds of distinct colours; alpha (if any) a ramp that reaches 0."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    planes = [x * 255 / width, y * 255 / height, (x + y) * 127 / (width + height) + 60]
    img = np.stack(planes, axis=-1) + rng.normal(0, 6, (height, width, 3))
    img = np.clip(np.rint(img), 0, 255).astype(np.uint8)
    if channels in (1, 2):
        img = img[:, :, :1]
    if channels in (2, 4):
        alpha = np.clip(x * 300 // width - 20, 0, 255).astype(np.uint8)
        img = np.dstack([img, alpha])
    return img


# ---------------------------------------------------------------------------
# Conversions
# ---------------------------------------------------------------------------
def test_oklab_of_reference_colours():
    # Values from Ottosson's Oklab post (white, black) and the sRGB primaries as commonly tabulated.
    points = Space(3, False).points(np.array([[255, 255, 255], [0, 0, 0], [255, 0, 0], [0, 0, 255]], np.uint8))
    assert points[0] == pytest.approx([1.0, 0.0, 0.0], abs=1e-6)
    assert points[1].tolist() == [0.0, 0.0, 0.0]
    assert points[2] == pytest.approx([0.62796, 0.22486, 0.12585], abs=1e-5)
    assert points[3] == pytest.approx([0.45201, -0.03246, -0.31153], abs=1e-5)


def test_toe_is_ottossons_lr_and_its_inverse_undoes_it():
    lightness = np.linspace(0.0, 1.0, 10_001)
    lr = colorspace.toe(lightness)
    assert lr[0] == 0.0 and lr[-1] == pytest.approx(1.0, abs=1e-15)
    assert (np.diff(lr) > 0).all()
    assert np.abs(colorspace.toe_inverse(lr) - lightness).max() < 1e-14
    # Ottosson's closed form (k1 = 0.206, k2 = 0.03): darks shrink, mid-tones stay near L.
    k3 = 1.206 / 1.03
    t = k3 * 0.2 - 0.206
    assert colorspace.toe(np.array([0.2]))[0] == pytest.approx(0.5 * (t + np.sqrt(t * t + 4 * 0.03 * k3 * 0.2)))
    assert colorspace.toe(np.array([0.2]))[0] < 0.2 * 0.8
    assert colorspace.toe(np.array([0.7]))[0] == pytest.approx(0.7, abs=0.05)


def test_oklrab_is_oklab_with_lr_for_lightness():
    colours = _photo_like().reshape(-1, 3)
    oklab, oklrab = Space(3, False).points(colours), Space(3, False, toe=True).points(colours)
    assert (oklrab[:, 1:] == oklab[:, 1:]).all()
    assert (oklrab[:, 0] == colorspace.toe(oklab[:, 0])).all()
    for channels in (1, 2, 3, 4):  # back to the same uint8 colours, every layout
        space = Space(channels, channels in (2, 4), toe=True)
        img = _photo_like(channels=channels).reshape(-1, channels)
        assert (space.to_srgb8(space.points(img)) == img).all()


def test_oklrab_spends_fewer_entries_on_shadows_than_oklab():
    # Every grey once: Oklab's cube root spreads the darks widest; L_r narrows them, as L* does.
    greys = np.arange(256, dtype=np.uint8).reshape(16, 16, 1)
    counted = ColorCounts.of(lambda: [greys], 1, False)
    for k in (8, 16):
        oklab, oklrab = (fit_palette(counted, k, colorspace=space).palette.ravel() for space in ("oklab", "oklrab"))
        assert oklrab[0] > oklab[0] and oklrab[1] > oklab[1], (oklab, oklrab)  # the darkest two entries rise


def test_linear_table_is_the_srgb_transfer_function():
    v = np.arange(256) / 255
    expected = np.where(v <= 0.04045, v / 12.92, ((v + 0.055) / 1.055) ** 2.4)
    assert np.abs(colorspace.LINEAR - expected).max() < 1e-15
    assert colorspace.linear_to_srgb8(colorspace.LINEAR).tolist() == list(range(256))


def test_cbrt_is_the_cube_root_and_keeps_zero():
    x = np.concatenate([[0.0, 1.0, 8.0, 1e-300], np.random.default_rng(0).random(10_000)])
    y = colorspace.cbrt(x)
    assert y[:3].tolist() == [0.0, 1.0, 2.0]
    assert np.abs(y[1:] - np.cbrt(x[1:])).max() <= 4e-16 * np.cbrt(x[1:]).max()


@pytest.mark.parametrize("channels", [1, 2, 3, 4])
def test_every_colour_survives_the_round_trip_through_oklab(channels):
    if channels <= 2:
        grid = np.stack(np.meshgrid(np.arange(256), np.arange(0, 256, 15), indexing="ij"), -1).reshape(-1, 2)
    else:
        axes = [np.arange(0, 256, 5), np.arange(0, 256, 3), np.arange(256), np.arange(1, 256, 127)][:channels]
        grid = np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, channels)
    colors = np.ascontiguousarray(grid[:, :channels]).astype(np.uint8)
    space = Space(channels, channels in (2, 4))
    assert (space.to_srgb8(space.points(colors)) == colors).all()


@pytest.mark.parametrize("channels", [1, 2, 3, 4])
def test_points_converted_in_blocks_are_the_whole_arrays_values(channels, monkeypatch):
    colors = np.random.default_rng(channels).integers(0, 256, (1000, channels), dtype=np.uint8)
    space = Space(channels, channels in (2, 4))
    whole = space.from_linear(space.linear(colors))
    monkeypatch.setattr(colorspace, "POINTS_BLOCK", 7)  # 142 full blocks and a short one
    assert space.points(colors).tobytes() == whole.tobytes()


@pytest.mark.parametrize("value", ["lab", "SRGB", "", 1, b"oklab"])
def test_bad_colorspace_is_a_parameter_error(value):
    with pytest.raises(kmcodec.ParameterError, match="colorspace must be one of srgb, oklab"):
        check_colorspace(value)
    with pytest.raises(ValueError, match="colorspace"):
        kmcodec.encode(_photo_like(), 4, colorspace=value)
    with pytest.raises(kmcodec.ParameterError, match="colorspace"):
        kmcodec.shared_palette([_photo_like()], 4, colorspace=value)


def test_the_default_fits_in_oklrab_for_the_eye_dithered_or_not_and_in_srgb_where_psnr_decides():
    assert EncodeOptions().fit_colorspace == EncodeOptions(max_bytes=10**6).fit_colorspace == "oklrab"
    assert EncodeOptions(dither=1.0).fit_colorspace == "oklrab"
    assert EncodeOptions(target_psnr=30).fit_colorspace == "srgb"
    assert EncodeOptions(palette=np.zeros((2, 3), np.uint8)).fit_colorspace == "srgb"
    for space in COLORSPACES:  # a space given is the space used, whatever else is asked
        assert EncodeOptions(colorspace=space, dither=1.0).fit_colorspace == space
        assert EncodeOptions(colorspace=space).fit_colorspace == space
    img = _photo_like()
    assert kmcodec.encode(img, 12) == kmcodec.encode(img, 12, colorspace="oklrab")
    assert kmcodec.encode(img, 12) != kmcodec.encode(img, 12, colorspace="oklab")
    assert kmcodec.encode(img, 12, dither=1.0) == kmcodec.encode(img, 12, dither=1.0, colorspace="oklrab")
    assert kmcodec.encode(img, 12, dither=1.0) != kmcodec.encode(img, 12, dither=1.0, colorspace="srgb")
    assert kmcodec.encode(img, 12, target_psnr=20.0) == kmcodec.encode(img, 12, target_psnr=20.0, colorspace="srgb")


def test_shared_palette_without_a_colorspace_fits_in_srgb():
    images = [_photo_like(seed=3), _photo_like(seed=4)]
    assert (kmcodec.shared_palette(images, 8, colorspace=None) == kmcodec.shared_palette(images, 8)).all()


# ---------------------------------------------------------------------------
# Encoding
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("space", OKLAB_SPACES)
@pytest.mark.parametrize("channels", [1, 2, 3, 4])
@pytest.mark.parametrize("k", [1, 2, 3, 16, 17, 256])
def test_oklab_round_trip(space, channels, k):
    img = _photo_like(channels=channels)
    data = kmcodec.encode(img, k, colorspace=space)
    assert kmcodec.encode(img, k, colorspace=space) == data  # byte-identical again
    out = kmcodec.decode(data).reshape(img.shape)
    info = kmcodec.read_info(data)
    assert info.colors <= k
    # The recorded error is the sRGB error of what decodes (transparent pixels decode as zeros).
    expected = img.copy()
    if channels in (2, 4):
        expected[img[:, :, -1] == 0] = 0
    assert info.mse == pytest.approx(metrics.mse(expected, out), rel=1e-9, abs=1e-12)
    if channels in (2, 4) and k >= 2:  # transparency keeps its exact entry
        assert (out[img[:, :, -1] == 0] == 0).all()


@pytest.mark.parametrize("space", OKLAB_SPACES)
def test_oklab_with_few_colours_is_lossless(space):
    img = _photo_like()
    img = (img // 64) * 64  # at most 4 levels per channel
    unique = len(np.unique(img.reshape(-1, 3), axis=0))
    data = kmcodec.encode(img, unique, colorspace=space)
    assert (kmcodec.decode(data) == img).all()
    assert kmcodec.read_info(data).mse == 0.0


def test_oklab_trades_srgb_error_for_oklab_error():
    """Each space's fit is the better one by its own measure (the point of choosing a space)."""
    img = _photo_like(48, 64, seed=5)
    counted = ColorCounts.of(lambda: [img], 3, False)
    space = Space(3, False)
    points = space.points(counted.distinct)

    def oklab_error(fit):
        diff = points - space.points(fit.palette)[fit.mapping]
        return float(((diff * diff).sum(axis=1) * counted.counts).sum())

    srgb, oklab = fit_palette(counted, 12, colorspace="srgb"), fit_palette(counted, 12, colorspace="oklab")
    assert srgb.mse < oklab.mse
    assert oklab_error(oklab) < oklab_error(srgb)
    # Started from the Oklab fit, sRGB Lloyd iterations only lower the sRGB error.
    assert fit_palette(counted, 12, colorspace="oklab-srgb").mse < oklab.mse


def test_given_palette_maps_by_the_colour_spaces_distance():
    # 140,195,75 is nearer 112,116,170 in sRGB (16,050 vs 35,154) but nearer 11,162,207 in Oklab.
    colour = np.array([[[140, 195, 75]]], np.uint8)
    palette = np.array([[112, 116, 170], [11, 162, 207]], np.uint8)
    counted = ColorCounts.of(lambda: [colour], 3, False)
    assert apply_palette(counted, palette).mapping.tolist() == [0]
    assert apply_palette(counted, palette, colorspace="oklab-srgb").mapping.tolist() == [0]
    for space in OKLAB_MAPPING:
        assert apply_palette(counted, palette, colorspace=space).mapping.tolist() == [1]
        data = kmcodec.encode(colour, palette=palette, colorspace=space)
        assert kmcodec.decode(data).tolist() == [[[11, 162, 207]]]


def test_oklab_target_psnr_is_measured_in_srgb():
    img = _photo_like(32, 40)
    data = kmcodec.encode(img, 64, target_psnr=24.0, colorspace="oklab")
    assert metrics.psnr(img, kmcodec.decode(data)) >= 24.0
    assert kmcodec.read_info(data).colors < 64


def test_shared_palette_in_oklab_differs_from_srgb():
    images = [_photo_like(seed=3), _photo_like(seed=4)]
    oklab = kmcodec.shared_palette(images, 8, colorspace="oklab")
    assert oklab.shape == (8, 3)
    assert (kmcodec.shared_palette(images, 8, colorspace="oklab") == oklab).all()
    assert not np.array_equal(oklab, kmcodec.shared_palette(images, 8))


# ---------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------
@pytest.fixture
def photo_png(tmp_path):
    path = tmp_path / "photo.png"
    Image.fromarray(_photo_like()).save(path)
    return path


def test_cli_colorspace(photo_png, tmp_path):
    out = tmp_path / "out.kmc"
    result = CliRunner().invoke(cli, ["encode", str(photo_png), str(out), "-k", "16", "--colorspace", "oklab"])
    assert result.exit_code == 0, result.output
    assert out.read_bytes() == kmcodec.encode(photo_png, 16, colorspace="oklab")


def test_cli_bad_colorspace_is_a_usage_error(photo_png, tmp_path):
    # like -k, --dither and --rdo: a bad option value is a usage error (exit 2) naming the choices
    out = tmp_path / "out.kmc"
    result = CliRunner().invoke(cli, ["encode", str(photo_png), str(out), "--colorspace", "lab"])
    assert result.exit_code == 2
    assert "Error: --colorspace: 'lab' is not one of" in result.output
    assert all(name in result.output for name in COLORSPACES)
    assert "Traceback" not in result.output
    assert not out.exists()


def test_cli_shared_palette_batch_in_oklab(tmp_path):
    sources = tmp_path / "in"
    sources.mkdir()
    images = [_photo_like(seed=3), _photo_like(seed=4)]
    for i, img in enumerate(images):
        Image.fromarray(img).save(sources / f"{i}.png")
    args = ["encode", str(sources), "-o", str(tmp_path / "out"), "-k", "8", "--shared-palette", "-q"]
    result = CliRunner().invoke(cli, [*args, "--colorspace", "oklab"])
    assert result.exit_code == 0, result.output
    palette = kmcodec.shared_palette(images, 8, colorspace="oklab")
    for i, img in enumerate(images):
        data = (tmp_path / "out" / f"{i}.kmc").read_bytes()
        assert data == kmcodec.encode(img, palette=palette, colorspace="oklab")
