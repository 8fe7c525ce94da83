"""Dithering: the kernel against a plain reference, and encode(dither=...) / kmc encode --dither."""

from __future__ import annotations

import math

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

import kmcodec
from kmcodec import metrics
from kmcodec.cli import cli
from kmcodec.dither import CARRY_AT_FULL, dither

RNG = np.random.default_rng(7)


def _gradient(h: int = 24, w: int = 33) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w]
    img = np.stack([x * 7, y * 10, (x + y) * 4], axis=-1) + RNG.integers(0, 9, (h, w, 3))
    return np.clip(img, 0, 255).astype(np.uint8)


def _reference(image: np.ndarray, palette: np.ndarray, strength: float, has_alpha: bool = False) -> np.ndarray:
    """The documented algorithm, one pixel at a time in plain Python.

    Fixed point with 20 fraction bits; the error a pixel takes is clamped to 1.5 x the
    (lower) median distance between palette neighbours, then scaled by its weight in the
    dither map (:func:`_reference_weights`).
    """
    h, w, channels = image.shape
    p = palette.astype(np.int64)
    d2 = ((p[:, None] - p[None]) ** 2).sum(axis=-1)
    nearest = np.array([min((x for x in row if x > 0), default=-1) for row in d2])
    spacing = np.sort(nearest[nearest > 0])
    limit = math.isqrt(int(spacing[(len(spacing) - 1) // 2]) << 40) * 3 // 2 if len(spacing) else 1 << 62
    median = math.isqrt(int(spacing[(len(spacing) - 1) // 2])) if len(spacing) else None
    weights = None if median is None else _reference_weights(image, median, has_alpha)
    steps = round(strength * CARRY_AT_FULL)  # in 256ths: strength 1 passes 218 / 256
    pal = palette.astype(np.int64)
    carry = np.zeros((h + 1, w + 2, channels), dtype=np.int64)  # error arriving at (y, x + 1)
    labels = np.zeros((h, w), dtype=np.int64)
    for y in range(h):
        step = 1 if y % 2 == 0 else -1
        for x in range(w) if step == 1 else range(w - 1, -1, -1):
            if has_alpha and image[y, x, -1] == 0:
                labels[y, x] = int(np.argmin(((pal - 0) ** 2).sum(axis=1)))
                continue
            carried = np.clip(carry[y, x + 1], -limit, limit)
            take = 256 if weights is None else weights[y][x] + (weights[y][x] >> 7)
            if take < 256:
                carried = (carried >> 8) * take
            wanted = np.clip((image[y, x].astype(np.int64) << 20) + carried, 0, 255 << 20)
            target = (wanted + (1 << 19)) >> 20
            d = ((pal - target) ** 2).sum(axis=1)
            i = int(np.argmin(d))  # argmin keeps the first of equal minima: the lowest index
            labels[y, x] = i
            err = ((wanted - (pal[i] << 20)) * steps) >> 8
            carry[y, x + 1 + step] += (err * 7) >> 4
            carry[y + 1, x + 1 - step] += (err * 3) >> 4
            carry[y + 1, x + 1] += (err * 5) >> 4
            carry[y + 1, x + 1 + step] += err >> 4
    return labels


def _reference_weights(image: np.ndarray, spacing: int, has_alpha: bool) -> list[list[int]]:
    """The documented dither map, one pixel at a time: 255 where smooth, less at edges and texture.

    A pixel's activity is its largest absolute second difference over the colour
    channels, along the row (left and right neighbours, the edge pixel repeated) and up
    the column (the two pixels above, the top row repeated); the weight falls linearly
    from 255 at spacing / 2 to 0 at 2 x spacing, then takes the least of itself and its
    left and right neighbours.
    """
    h, w, channels = image.shape
    colour = image[:, :, : channels - 1] if has_alpha else image
    px = colour.astype(int).tolist()
    full, none = spacing // 2, max(2 * spacing, spacing // 2 + 1)
    raw = []
    for y in range(h):
        row = []
        for x in range(w):
            c, left, right = px[y][x], px[y][max(x - 1, 0)], px[y][min(x + 1, w - 1)]
            up, up2 = px[max(y - 1, 0)][x], px[max(y - 2, 0)][x]
            activity = max(
                max(abs(a + b - 2 * m), abs(u2 + m - 2 * u))
                for a, b, m, u, u2 in zip(left, right, c, up, up2, strict=True)
            )
            row.append(min(max((none - activity) * 255 // (none - full), 0), 255))
        raw.append(row)
    return [[min(raw[y][max(x - 1, 0) : x + 2]) for x in range(w)] for y in range(h)]


def _nearest(image: np.ndarray, palette: np.ndarray) -> np.ndarray:
    d = ((image[:, :, None, :].astype(np.int64) - palette[None, None].astype(np.int64)) ** 2).sum(axis=-1)
    return np.argmin(d, axis=-1)


# ---------------------------------------------------------------------------
# The kernel
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("channels", [1, 2, 3, 4])
@pytest.mark.parametrize("strength", [0.0, 0.3, 1.0])
def test_kernel_matches_the_plain_reference(channels, strength):
    rng = np.random.default_rng(channels * 10 + int(strength * 10))
    image = rng.integers(0, 256, (9, 13, channels), dtype=np.uint8)
    for k in (1, 2, 5, 40):
        palette = rng.integers(0, 256, (k, channels), dtype=np.uint8)
        expected = _reference(image, palette, strength)
        np.testing.assert_array_equal(dither(image, palette, strength), expected)


def test_a_full_dither_map_is_plain_floyd_steinberg_and_an_empty_one_the_nearest_entry():
    from kmcodec import _kernels

    image = RNG.integers(0, 256, (11, 14, 3), dtype=np.uint8)
    palette = RNG.integers(0, 256, (9, 3), dtype=np.uint8)

    def run(weights):
        labels, carry = np.empty((11, 14), np.uint8), np.zeros((16, 3), np.int64)
        sse = _kernels.dither_block(image, palette, 256, 1 << 40, -1, labels, carry, 0, weights)
        return labels, sse, carry

    plain, full, empty = run(None), run(np.full((11, 14), 255, np.uint8)), run(np.zeros((11, 14), np.uint8))
    assert all(np.array_equal(a, b) for a, b in zip(plain, full, strict=True))
    np.testing.assert_array_equal(empty[0], _nearest(image, palette))
    with pytest.raises(ValueError, match=r"weights must be \(H, W\)"):
        run(np.zeros((11, 13), np.uint8))


def test_the_dither_map_withholds_dither_at_edges_and_in_texture():
    from kmcodec.dither import dither_weights

    y, x = np.mgrid[0:16, 0:40]
    ramp = np.dstack([x * 3 + y, x * 3 + y, x * 3 + y]).astype(np.int16)  # a gradient: banding, dither it all
    assert (dither_weights(ramp, ramp[:0], 20) == 255).all()
    edge = ramp.copy()
    edge[:, 20:] += 80  # a step: no dither on either side of it
    weights = dither_weights(edge, edge[:0], 20)
    assert (weights[:, 18:22] == 0).all() and (weights[:, :17] == 255).all() and (weights[:, 23:] == 255).all()
    noise = ramp + np.random.default_rng(1).integers(-30, 31, ramp.shape).astype(np.int16)  # texture
    assert dither_weights(noise, noise[:0], 20).mean() < 128


def test_ties_go_to_the_lowest_index():
    # 100 is as far from 90 as from 110, in either palette order; duplicates too.
    image = np.full((3, 4, 1), 100, np.uint8)
    for palette, expected in (([[110], [90]], 0), ([[90], [110]], 0), ([[50], [90], [110], [90]], 1)):
        labels = dither(image, np.array(palette, np.uint8), 0.0)
        assert (labels == expected).all()
    palette = np.array([[7, 0, 0], [5, 2, 0], [3, 3, 3], [3, 3, 3]], np.uint8)  # ties across channels
    image = RNG.integers(0, 8, (6, 6, 3), dtype=np.uint8)
    np.testing.assert_array_equal(dither(image, palette, 0.0), _reference(image, palette, 0.0))
    np.testing.assert_array_equal(dither(image, palette, 1.0), _reference(image, palette, 1.0))


def test_strength_0_is_the_nearest_colour_of_every_pixel():
    image = _gradient()
    palette = RNG.integers(0, 256, (37, 3), dtype=np.uint8)
    np.testing.assert_array_equal(dither(image, palette, 0.0), _nearest(image, palette))


def test_dithering_keeps_the_local_mean():
    grey = np.full((32, 32), 100, np.uint8)
    palette = np.array([[0], [255]], np.uint8)
    assert palette[dither(grey, palette, 0.0)].mean() == 0
    assert abs(palette[dither(grey, palette, 1.0)].mean() - 100) < 3
    half = palette[dither(grey, palette, 0.5)].mean()
    assert 0 < half < 100


def test_large_palettes_give_uint16_labels():
    image = RNG.integers(0, 256, (10, 12, 3), dtype=np.uint8)
    palette = np.unique(RNG.integers(0, 256, (400, 3), dtype=np.uint8), axis=0)
    labels = dither(image, palette, 1.0)
    assert labels.dtype == np.uint16 and int(labels.max()) < len(palette)
    np.testing.assert_array_equal(labels, _reference(image, palette, 1.0))
    assert dither(image, palette[:256], 1.0).dtype == np.uint8


def test_transparent_pixels_take_the_zero_entry_and_pass_no_error():
    image = np.dstack([_gradient(), np.full((24, 33), 255, np.uint8)])
    image[5:15, 4:20, 3] = 0  # a transparent hole with colour left in it
    palette = np.vstack([np.zeros((1, 4), np.uint8), RNG.integers(1, 256, (6, 4), dtype=np.uint8)])
    palette[1:, 3] = 255
    labels = dither(image, palette, 1.0, has_alpha=True)
    assert (labels[5:15, 4:20] == 0).all()
    np.testing.assert_array_equal(labels, _reference(image, palette, 1.0, has_alpha=True))


def test_empty_images_give_empty_labels():
    assert dither(np.zeros((0, 5, 3), np.uint8), np.zeros((2, 3), np.uint8)).shape == (0, 5)


@pytest.mark.parametrize("strength", [-0.1, 1.01, float("nan"), float("inf"), True, "0.5", None, 1j])
def test_bad_strength_raises_parameter_error(strength):
    with pytest.raises(kmcodec.ParameterError, match="strength"):
        dither(_gradient(), np.zeros((2, 3), np.uint8), strength)


@pytest.mark.parametrize(
    ("image", "palette"),
    [
        (_gradient().astype(np.int16), np.zeros((2, 3), np.uint8)),
        (_gradient()[0, 0], np.zeros((2, 3), np.uint8)),
        (_gradient(), np.zeros((2, 4), np.uint8)),
        (_gradient(), np.zeros((0, 3), np.uint8)),
        (_gradient(), np.zeros((2, 3), np.int32)),
        (_gradient(), [[0, 0, 0]]),
    ],
)
def test_bad_image_or_palette_raises_parameter_error(image, palette):
    with pytest.raises(kmcodec.ParameterError):
        dither(image, palette)


# ---------------------------------------------------------------------------
# encode(dither=...)
# ---------------------------------------------------------------------------
def test_encode_dither_in_srgb_roundtrips_and_stores_the_dithered_mse():
    image = _gradient()
    data = kmcodec.encode(image, 8, dither=1.0, colorspace="srgb")
    info = kmcodec.read_info(data)
    out = kmcodec.decode(data)
    palette = np.array(info.palette, np.uint8)
    np.testing.assert_array_equal(out, palette[dither(image, palette, 1.0)])
    assert info.mse == pytest.approx(metrics.mse(image, out), rel=1e-12)
    plain = kmcodec.read_info(kmcodec.encode(image, 8, colorspace="srgb"))
    assert info.palette == plain.palette  # the same palette, only the labels change
    assert info.mse > plain.mse  # dithering trades pixel error for smoother averages


def test_encode_dither_by_default_diffuses_oklab_error_over_the_default_fit():
    """The default --dither: the palette of the plain default fit (Oklab with L_r + masking), each pixel's units
    (as the RDO labeller measures them) diffused over the entries' units; the MADE chunk's error is sRGB's."""
    from kmcodec.colorspace import space_of
    from kmcodec.rdo import oklab_units

    image = _gradient()
    data = kmcodec.encode(image, 8, dither=1.0)
    info = kmcodec.read_info(data)
    palette = np.array(info.palette, np.uint8)
    assert info.palette == kmcodec.read_info(kmcodec.encode(image, 8)).palette
    space = space_of("oklrab", 3, False)
    units = oklab_units(image.reshape(-1, 3), space).reshape(image.shape)
    out = kmcodec.decode(data)
    np.testing.assert_array_equal(out, palette[dither(units, oklab_units(palette, space), 1.0)])
    assert (out != palette[dither(image, palette, 1.0)]).any()  # not sRGB's diffusion
    assert info.mse == pytest.approx(metrics.mse(image, out), rel=1e-12)


def test_encode_dither_is_deterministic():
    image = _gradient()
    first = kmcodec.encode(image, 12, dither=0.75)
    assert kmcodec.encode(image, 12, dither=0.75) == first
    assert kmcodec.encode(image, 12, dither=0.5) != first


def test_encode_dither_0_is_plain_encoding():
    image = _gradient()
    assert kmcodec.encode(image, 10, dither=0.0) == kmcodec.encode(image, 10)
    assert kmcodec.encode(image, 10, dither=0) == kmcodec.encode(image, 10)


def test_encode_dither_leaves_exact_images_exact():
    image = _gradient()[:, :, :1].repeat(3, axis=2) // 64 * 64  # 4 colours
    data = kmcodec.encode(image, 16, dither=1.0)
    assert (kmcodec.decode(data) == image).all()
    assert data == kmcodec.encode(image, 16)


@pytest.mark.parametrize("mode", ["L", "LA", "RGBA"])
def test_encode_dither_other_layouts(mode):
    image = Image.fromarray(_gradient()).convert(mode)
    if mode in ("LA", "RGBA"):
        alpha = np.full((24, 33), 255, np.uint8)
        alpha[:8, :8] = 0
        image.putalpha(Image.fromarray(alpha))
    data = kmcodec.encode(image, 6, dither=1.0)
    out = kmcodec.decode(data)
    source = np.asarray(image).reshape(out.shape).copy()
    if mode != "L":
        source[source[:, :, -1] == 0] = 0
        assert (out[:8, :8] == 0).all()
    assert kmcodec.read_info(data).mse == pytest.approx(metrics.mse(source, out), rel=1e-12)


@pytest.mark.parametrize("value", [-0.5, 1.5, float("nan"), True, "1", None])
def test_encode_bad_dither_raises_parameter_error(value):
    with pytest.raises(kmcodec.ParameterError, match="dither"):
        kmcodec.encode(_gradient(), 8, dither=value)


# ---------------------------------------------------------------------------
# kmc encode --dither
# ---------------------------------------------------------------------------
@pytest.fixture
def png(tmp_path):
    path = tmp_path / "in.png"
    Image.fromarray(_gradient()).save(path)
    return path


@pytest.mark.parametrize(
    ("args", "strength"),
    [
        (["-k", "8", "IN", "OUT"], 0.0),
        (["-k", "8", "IN", "OUT", "--dither"], 1.0),  # without a value it comes after IN OUT
        (["-k", "8", "--dither", "0.25", "IN", "OUT"], 0.25),
        (["--dither=0.6", "-k", "8", "IN", "OUT"], 0.6),
    ],
)
def test_cli_dither_option(png, tmp_path, args, strength):
    out = tmp_path / "out.kmc"
    paths = {"IN": str(png), "OUT": str(out)}
    result = CliRunner().invoke(cli, ["encode", *(paths.get(a, a) for a in args)])
    assert result.exit_code == 0, result.output
    assert out.read_bytes() == kmcodec.encode(_gradient_png(png), 8, dither=strength)


def _gradient_png(path):
    with Image.open(path) as im:
        return np.asarray(im)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--dither", "1.5"], "Error: --dither: 1.5 is not a strength from 0 to 1"),
        (["--dither=2"], "Error: --dither: 2 is not a strength from 0 to 1"),
        (["--dither", "lots"], "--dither=STRENGTH"),
    ],
)
def test_cli_bad_dither_is_a_usage_error(png, tmp_path, args, message):
    result = CliRunner().invoke(cli, ["encode", *args, str(png), str(tmp_path / "out.kmc")])
    assert result.exit_code == 2
    assert message in result.stderr
    assert not (tmp_path / "out.kmc").exists()


def test_cli_dither_swallowing_the_input_says_how_to_write_it(png, tmp_path):
    result = CliRunner().invoke(cli, ["encode", "--dither", str(png), str(tmp_path / "out.kmc")])
    assert result.exit_code == 2
    assert "put --dither after IN OUT" in result.stderr


def test_cli_nan_dither_is_a_usage_error(png, tmp_path):
    result = CliRunner().invoke(cli, ["encode", "--dither", "nan", str(png), str(tmp_path / "out.kmc")])
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines()[-1] == "Error: --dither: nan is not a strength from 0 to 1"
    assert not (tmp_path / "out.kmc").exists()


def test_nearest_other_entry_against_brute_force():
    from kmcodec.dither import nearest_other

    rng = np.random.default_rng(5)
    for k, channels in ((1, 3), (2, 1), (7, 3), (60, 4), (300, 3)):
        palette = rng.integers(0, 256, (k, channels), dtype=np.uint8)
        palette[k // 2] = palette[0]  # a duplicate is not a neighbour
        order = np.argsort(palette[:, 0], kind="stable").astype(np.int64)
        p = palette.astype(np.int64)
        d2 = ((p[:, None] - p[None]) ** 2).sum(axis=-1)
        expected = [min((x for x in row if x > 0), default=-1) for row in d2]
        np.testing.assert_array_equal(nearest_other(palette, order), expected)


@pytest.mark.parametrize("cuts", [[1], [5, 6], [2, 9, 10, 17], [23]])
def test_ditherer_in_blocks_equals_the_whole_image(cuts):
    from kmcodec.dither import Ditherer

    image = np.dstack([_gradient(), np.full((24, 33), 255, np.uint8)])
    image[3:9, 10:20, 3] = 0
    palette = np.vstack([np.zeros((1, 4), np.uint8), RNG.integers(0, 256, (9, 4), dtype=np.uint8)])
    whole = dither(image, palette, 0.8, has_alpha=True)
    ditherer = Ditherer(palette, 0.8, 33, has_alpha=True)
    blocks = [ditherer(image[a:b]) for a, b in zip([0, *cuts], [*cuts, 24], strict=True)]
    np.testing.assert_array_equal(np.vstack(blocks), whole)
    out = palette[whole].astype(int)
    source = image.astype(int)
    source[source[:, :, 3] == 0] = 0
    assert ditherer.squared_error == ((out - source) ** 2).sum()
