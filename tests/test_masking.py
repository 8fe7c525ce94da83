"""Masking weights (kmcodec.masking) and the palette fitted to them (encode(masking=True))."""

from __future__ import annotations

import io

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

import kmcodec
from kmcodec import _kernels, masking, quantize
from kmcodec.cli import cli
from kmcodec.options import EncodeOptions
from kmcodec.quantize import ColorCounts


def _reference(image: np.ndarray) -> np.ndarray:
    """The module docstring's definition, written out pixel by pixel (small images only)."""
    h, w = image.shape[:2]
    rgb = image.astype(np.int64)
    y = rgb[..., 0] + 2 * rgb[..., 1] + rgb[..., 2] if image.shape[2] >= 3 else 4 * rgb[..., 0]

    def at(r, c):  # edge rows and columns repeated outwards
        return y[min(max(r, 0), h - 1), min(max(c, 0), w - 1)]

    out = np.zeros((h, w), np.uint8)
    for r in range(h):
        for c in range(w):
            activity = sum(
                abs(4 * at(i, j) - at(i - 1, j) - at(i + 1, j) - at(i, j - 1) - at(i, j + 1))
                for i in range(r - 2, r + 3)
                for j in range(c - 2, c + 3)
            )
            out[r, c] = 1 + masking.SPAN * masking.SCALE // (masking.SCALE + activity)
    return out


def _half_smooth(h: int = 64, w: int = 96, seed: int = 0) -> np.ndarray:
    """A smooth gradient on the left, noise on the right."""
    rng = np.random.default_rng(seed)
    img = np.zeros((h, w, 3), np.uint8)
    ramp = np.linspace(0, 255, h, dtype=np.float64)[:, None]
    img[:, : w // 2] = np.stack([ramp, ramp * 0.6, 255 - ramp], axis=-1).astype(np.uint8)
    img[:, w // 2 :] = rng.integers(0, 256, (h, w - w // 2, 3), dtype=np.uint8)
    return img


@pytest.mark.parametrize("shape", [(1, 1, 3), (1, 9, 3), (9, 1, 3), (6, 7, 3), (8, 5, 1), (7, 6, 4)])
def test_weights_follow_the_definition(shape):
    rng = np.random.default_rng(sum(shape))
    image = rng.integers(0, 256, shape, dtype=np.uint8)
    image[: shape[0] // 2] //= 64  # some smooth rows too
    assert np.array_equal(masking.weights(image), _reference(image))


def test_flat_areas_weigh_most_and_noise_least():
    assert (masking.weights(np.full((8, 8, 3), 77, np.uint8)) == 1 + masking.SPAN).all()
    noise = np.random.default_rng(1).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    assert masking.weights(noise).max() == 1


@pytest.mark.parametrize("rows", [1, 2, 3, 4, 7, 64])
@pytest.mark.parametrize("height", [1, 2, 5, 13])
def test_block_weights_are_the_whole_images_whatever_the_blocks(rows, height):
    image = _half_smooth(height, 11, seed=rows)
    blocks = [image[i : i + rows] for i in range(0, height, rows)]
    pairs = list(masking.block_weights(iter(blocks)))
    assert [b is a for (b, _), a in zip(pairs, blocks, strict=True)] == [True] * len(blocks)
    assert np.array_equal(np.concatenate([w for _, w in pairs]), masking.weights(image))


def test_block_weights_of_no_blocks_is_nothing():
    assert list(masking.block_weights([])) == []


@pytest.mark.parametrize("channels", [1, 3, 4])
def test_colour_weights_sum_each_colours_pixel_weights(channels):
    image = (
        _half_smooth(40, 30)[..., :channels]
        if channels < 4
        else np.dstack([_half_smooth(40, 30), np.full((40, 30), 255, np.uint8)])
    )
    image = np.ascontiguousarray(image)
    blocks = lambda: (image[i : i + 7] for i in range(0, 40, 7))  # noqa: E731
    plain = ColorCounts.of(blocks, channels, channels == 4)
    weighted = ColorCounts.of(blocks, channels, channels == 4, masking=True)
    assert plain.weights is None
    assert np.array_equal(weighted.counts, plain.counts)
    index = weighted.lookup(image, np.arange(len(weighted.counts), dtype=np.int32))
    expected = np.bincount(index.ravel(), masking.weights(image).ravel(), len(weighted.counts))
    assert np.array_equal(weighted.weights, expected.astype(np.uint32))


def _weights_by_colour(counted: ColorCounts, images: list[np.ndarray]) -> np.ndarray:
    """Each colour of *counted*'s masking weights summed, every image weighed alone (no shared edge rows)."""
    total = np.zeros(len(counted.counts), np.uint64)
    for image in images:
        index = counted.lookup(image, np.arange(len(counted.counts), dtype=np.int32))
        total += np.bincount(index.ravel(), masking.weights(image).ravel(), len(total)).astype(np.uint64)
    return total


def test_several_images_are_weighed_each_alone():
    # The smooth image's last rows beside the noisy one's first would weigh less if seen as one image.
    flat, busy = _half_smooth(30, 40)[:, :20].copy(), _half_smooth(30, 40, seed=2)[:, 20:].copy()
    images = [flat, busy, flat]
    blocks = lambda: (b for image in images for b in (image[:11], image[11:]))  # noqa: E731
    weighed = lambda: (p for image in images for p in masking.block_weights([image[:11], image[11:]]))  # noqa: E731
    counted = ColorCounts.of(blocks, 3, False, weighed=weighed)
    assert np.array_equal(counted.weights, _weights_by_colour(counted, images).astype(np.uint32))
    as_one = ColorCounts.of(blocks, 3, False, masking=True)
    assert not np.array_equal(as_one.weights, counted.weights)


def test_weights_past_uint32_are_scaled_down_alike(monkeypatch):
    # A colour's weights summed past what the kernels read (WEIGHT_MAX): every sum is divided by one
    # whole number, rounding up.  Shown with a small WEIGHT_MAX, so that the runs flush too.
    images = [_half_smooth(64, 48, seed=s) for s in range(3)]
    for image in images:
        image[:32, :24] = (10, 20, 30)  # 2,304 flat pixels of one colour, weight 9 (beside their edge)
    blocks = lambda: (b for image in images for b in (image[:40], image[40:]))  # noqa: E731
    weighed = lambda: (p for image in images for p in masking.block_weights([image[:40], image[40:]]))  # noqa: E731
    exact = ColorCounts.of(blocks, 3, False, weighed=weighed).weights.astype(np.uint64)
    assert np.array_equal(exact, _weights_by_colour(ColorCounts.of(blocks, 3, False), images))
    monkeypatch.setattr(quantize, "WEIGHT_MAX", 255 * 64)  # runs of 64 pixels
    divisor = -(-int(exact.max()) // quantize.WEIGHT_MAX)
    assert divisor > 1
    scaled = ColorCounts.of(blocks, 3, False, weighed=weighed).weights
    assert scaled.max() <= quantize.WEIGHT_MAX
    assert np.array_equal(scaled, (exact + divisor - 1) // divisor)


def test_a_shared_palette_is_fitted_to_masking_weights(tmp_path):
    images = [_half_smooth(seed=s) for s in range(2)]
    masked = kmcodec.shared_palette(images, 8, colorspace="oklab")
    assert masked.tolist() == kmcodec.shared_palette(images, 8, colorspace="oklab", masking=True).tolist()
    assert masked.tolist() != kmcodec.shared_palette(images, 8, colorspace="oklab", masking=False).tolist()
    # sRGB is the PSNR-first fit: unmasked unless asked
    plain = kmcodec.shared_palette(images, 8)
    assert plain.tolist() == kmcodec.shared_palette(images, 8, colorspace="srgb", masking=False).tolist()
    assert plain.tolist() != kmcodec.shared_palette(images, 8, masking=True).tolist()


def test_the_weighted_count_kernel_checks_its_weights():
    counted = ColorCounts.of(lambda: [np.zeros((2, 2, 3), np.uint8)], 3, False)
    pixels = np.zeros((4, 3), np.uint8)
    with pytest.raises(ValueError, match="weights must have one entry per pixel"):
        _kernels.quant_count(
            pixels, False, 8, counted._bitmap, counted._ranks, np.zeros(1, np.uint32), np.ones(3, np.uint8)
        )


def test_masking_spends_the_palette_on_the_smooth_half():
    image = _half_smooth()
    smooth = (slice(None), slice(0, 48))

    def smooth_error(**options):
        out = kmcodec.decode(kmcodec.encode(image, 8, **options)).astype(np.int64)
        return ((out[smooth] - image[smooth]) ** 2).mean()

    assert smooth_error(masking=True) < 0.8 * smooth_error(masking=False)
    assert smooth_error() == smooth_error(masking=True)  # on by default


def test_masking_is_the_same_bytes_from_a_file_and_an_array_in_strips():
    image = _half_smooth(50, 40)
    png = io.BytesIO()
    Image.fromarray(image).save(png, format="PNG")
    from_array = kmcodec.encode(image, 16, masking=True, rows_per_strip=3)
    assert kmcodec.encode(io.BytesIO(png.getvalue()), 16, masking=True, rows_per_strip=3) == from_array
    assert kmcodec.encode(image, 16, masking=True, rows_per_strip=3) == from_array  # deterministic
    assert from_array != kmcodec.encode(image, 16, rows_per_strip=3, masking=False)


def test_masking_leaves_the_reported_mse_the_plain_one():
    image = _half_smooth()
    data = kmcodec.encode(image, 8, masking=True)
    out = kmcodec.decode(data).astype(np.float64)
    assert kmcodec.read_info(data).mse == pytest.approx(((out - image) ** 2).mean())


def test_masking_with_a_given_palette_is_refused(tmp_path):
    palette = np.zeros((2, 3), np.uint8)
    with pytest.raises(kmcodec.ParameterError, match="not masking with palette"):
        kmcodec.encode(_half_smooth(), palette=palette, masking=True)
    src = tmp_path / "a.png"
    Image.fromarray(_half_smooth()).save(src)
    assert CliRunner().invoke(cli, ["encode", str(src), str(tmp_path / "p.kmc"), "-k", "4"]).exit_code == 0
    result = CliRunner().invoke(
        cli, ["encode", str(src), str(tmp_path / "b.kmc"), "--palette", str(tmp_path / "p.kmc"), "--masking"]
    )
    assert result.exit_code == 2
    assert "not --masking with --palette" in result.output
    assert not (tmp_path / "b.kmc").exists()


def test_the_masking_flag_reaches_the_encoder(tmp_path):
    src = tmp_path / "a.png"
    Image.fromarray(_half_smooth()).save(src)
    for name, flags in (("m.kmc", ["--masking"]), ("n.kmc", [])):
        result = CliRunner().invoke(cli, ["encode", str(src), str(tmp_path / name), "-k", "8", "-q", *flags])
        assert result.exit_code == 0, result.output
    assert (tmp_path / "m.kmc").read_bytes() == kmcodec.encode(_half_smooth(), 8, masking=True)
    assert (tmp_path / "n.kmc").read_bytes() == kmcodec.encode(_half_smooth(), 8)


def test_compare_measures_the_masked_encoding(tmp_path):
    src = tmp_path / "a.png"
    Image.fromarray(_half_smooth()).save(src)
    result = CliRunner().invoke(cli, ["compare", str(src), "-k", "8", "--json", "--masking"])
    assert result.exit_code == 0, result.output
    document = __import__("json").loads(result.output)
    assert document["masking"] is True
    assert document["images"][0]["rows"][0]["kmc_bytes"] == len(kmcodec.encode(_half_smooth(), 8, masking=True))


def test_masking_by_default_is_on_for_the_eye_and_off_where_psnr_decides():
    assert EncodeOptions().masked and EncodeOptions(max_bytes=10**6).masked and EncodeOptions(dither=1.0).masked
    assert not EncodeOptions(target_psnr=30).masked and not EncodeOptions(dither=1.0, colorspace="srgb").masked
    assert not EncodeOptions(palette=np.zeros((2, 3), np.uint8)).masked
    assert EncodeOptions(target_psnr=30, masking=True).masked and EncodeOptions(dither=0.5, masking=True).masked
    assert not EncodeOptions(masking=False).masked
    # sRGB given is the PSNR-first fit; the other spaces keep masking for the eye
    assert not EncodeOptions(colorspace="srgb").masked and EncodeOptions(colorspace="srgb", masking=True).masked
    assert all(EncodeOptions(colorspace=space).masked for space in ("oklab", "oklab-linear", "oklab-srgb", "oklrab"))


def test_colorspace_srgb_is_the_psnr_first_fit(tmp_path):
    src = tmp_path / "a.png"
    Image.fromarray(_half_smooth()).save(src)
    flags = ["-k", "8", "-q", "--colorspace", "srgb"]
    result = CliRunner().invoke(cli, ["encode", str(src), str(tmp_path / "n.kmc"), *flags])
    assert result.exit_code == 0, result.output
    plain = kmcodec.encode(_half_smooth(), 8, colorspace="srgb", masking=False)
    assert (tmp_path / "n.kmc").read_bytes() == plain
    default, unmasked = kmcodec.encode(_half_smooth(), 8), kmcodec.encode(_half_smooth(), 8, masking=False)
    assert kmcodec.read_info(plain).mse < kmcodec.read_info(default).mse
    assert kmcodec.read_info(plain).mse < kmcodec.read_info(unmasked).mse  # Oklab without masking
