"""kmcodec.metrics against published data, independent computations and its own contract."""

from __future__ import annotations

import io
import math
import sys

import numpy as np
import pytest

import kmcodec
from kmcodec import metrics

# Sharma, Wu and Dalal, "The CIEDE2000 color-difference formula: implementation notes,
# supplementary test data, and mathematical observations", Color Res. Appl. 30 (2005),
# Table 1: L1 a1 b1, L2 a2 b2, and the published difference (4 decimals).
SHARMA_TABLE_1 = [
    (50.0000, 2.6772, -79.7751, 50.0000, 0.0000, -82.7485, 2.0425),
    (50.0000, 3.1571, -77.2803, 50.0000, 0.0000, -82.7485, 2.8615),
    (50.0000, 2.8361, -74.0200, 50.0000, 0.0000, -82.7485, 3.4412),
    (50.0000, -1.3802, -84.2814, 50.0000, 0.0000, -82.7485, 1.0000),
    (50.0000, -1.1848, -84.8006, 50.0000, 0.0000, -82.7485, 1.0000),
    (50.0000, -0.9009, -85.5211, 50.0000, 0.0000, -82.7485, 1.0000),
    (50.0000, 0.0000, 0.0000, 50.0000, -1.0000, 2.0000, 2.3669),
    (50.0000, -1.0000, 2.0000, 50.0000, 0.0000, 0.0000, 2.3669),
    (50.0000, 2.4900, -0.0010, 50.0000, -2.4900, 0.0009, 7.1792),
    (50.0000, 2.4900, -0.0010, 50.0000, -2.4900, 0.0010, 7.1792),
    (50.0000, 2.4900, -0.0010, 50.0000, -2.4900, 0.0011, 7.2195),
    (50.0000, 2.4900, -0.0010, 50.0000, -2.4900, 0.0012, 7.2195),
    (50.0000, -0.0010, 2.4900, 50.0000, 0.0009, -2.4900, 4.8045),
    (50.0000, -0.0010, 2.4900, 50.0000, 0.0010, -2.4900, 4.8045),
    (50.0000, -0.0010, 2.4900, 50.0000, 0.0011, -2.4900, 4.7461),
    (50.0000, 2.5000, 0.0000, 50.0000, 0.0000, -2.5000, 4.3065),
    (50.0000, 2.5000, 0.0000, 73.0000, 25.0000, -18.0000, 27.1492),
    (50.0000, 2.5000, 0.0000, 61.0000, -5.0000, 29.0000, 22.8977),
    (50.0000, 2.5000, 0.0000, 56.0000, -27.0000, -3.0000, 31.9030),
    (50.0000, 2.5000, 0.0000, 58.0000, 24.0000, 15.0000, 19.4535),
    (50.0000, 2.5000, 0.0000, 50.0000, 3.1736, 0.5854, 1.0000),
    (50.0000, 2.5000, 0.0000, 50.0000, 3.2972, 0.0000, 1.0000),
    (50.0000, 2.5000, 0.0000, 50.0000, 1.8634, 0.5757, 1.0000),
    (50.0000, 2.5000, 0.0000, 50.0000, 3.2592, 0.3350, 1.0000),
    (60.2574, -34.0099, 36.2677, 60.4626, -34.1751, 39.4387, 1.2644),
    (63.0109, -31.0961, -5.8663, 62.8187, -29.7946, -4.0864, 1.2630),
    (61.2901, 3.7196, -5.3901, 61.4292, 2.2480, -4.9620, 1.8731),
    (35.0831, -44.1164, 3.7933, 35.0232, -40.0716, 1.5901, 1.8645),
    (22.7233, 20.0904, -46.6940, 23.0331, 14.9730, -42.5619, 2.0373),
    (36.4612, 47.8580, 18.3852, 36.2715, 50.5065, 21.2231, 1.4146),
    (90.8027, -2.0831, 1.4410, 91.1528, -1.6435, 0.0447, 1.4441),
    (90.9257, -0.5406, -0.9208, 88.6381, -0.8985, -0.7239, 1.5381),
    (6.7747, -0.2908, -2.4247, 5.8714, -0.0985, -2.2286, 0.6377),
    (2.0776, 0.0795, -1.1350, 0.9033, -0.0636, -0.5514, 0.9082),
]

RNG = np.random.default_rng(1)
PHOTO = RNG.integers(0, 256, (40, 37, 3), dtype=np.uint8)
NOISY = np.clip(PHOTO.astype(int) + RNG.integers(-20, 21, PHOTO.shape), 0, 255).astype(np.uint8)


def _smooth(h: int, w: int, channels: int) -> np.ndarray:
    """A smooth colourful image: SSIM and CIEDE2000 behave as on photos."""
    y, x = np.mgrid[0:h, 0:w]
    planes = [127 + 120 * np.sin(x / (7 + 3 * c) + y / (11 + c)) for c in range(channels)]
    return np.rint(np.stack(planes, axis=-1)).astype(np.uint8)


# ---------------------------------------------------------------------------
# CIEDE2000
# ---------------------------------------------------------------------------
def test_sharma_table_has_34_pairs():
    assert len(SHARMA_TABLE_1) == 34


@pytest.mark.parametrize("row", SHARMA_TABLE_1, ids=[f"pair{i}" for i in range(1, 35)])
def test_delta_e_2000_matches_sharma_table_1(row):
    lab1, lab2, expected = row[:3], row[3:6], row[6]
    assert abs(float(metrics.delta_e_2000(lab1, lab2)) - expected) < 1e-4
    # The formula is symmetric, and exact on the published values in both orders.
    assert abs(float(metrics.delta_e_2000(lab2, lab1)) - expected) < 1e-4


def test_delta_e_2000_vectorised_equals_one_by_one():
    table = np.array(SHARMA_TABLE_1)
    together = metrics.delta_e_2000(table[:, :3], table[:, 3:6])
    one_by_one = [float(metrics.delta_e_2000(r[:3], r[3:6])) for r in table]
    assert together.shape == (34,)
    np.testing.assert_allclose(together, one_by_one, rtol=0, atol=1e-12)
    np.testing.assert_allclose(together, table[:, 6], rtol=0, atol=1e-4)


def test_srgb_to_lab_known_colours():
    # White and black, and the sRGB primaries' CIELAB (D65) as commonly tabulated.
    rgb = np.array([[255, 255, 255], [0, 0, 0], [255, 0, 0], [0, 255, 0], [0, 0, 255]], np.uint8)
    expected = [[100, 0, 0], [0, 0, 0], [53.24, 80.09, 67.20], [87.73, -86.18, 83.18], [32.30, 79.19, -107.86]]
    np.testing.assert_allclose(metrics.srgb_to_lab(rgb), expected, atol=0.01)


def test_srgb_to_lab_greys_have_no_chroma():
    grey = np.repeat(np.arange(256, dtype=np.uint8)[:, None], 3, axis=1)
    lab = metrics.srgb_to_lab(grey)
    assert np.abs(lab[:, 1:]).max() < 1e-9
    assert np.all(np.diff(lab[:, 0]) > 0)


def test_ciede2000_is_the_mean_of_per_pixel_differences():
    expected = metrics.delta_e_2000(metrics.srgb_to_lab(PHOTO), metrics.srgb_to_lab(NOISY)).mean()
    assert metrics.ciede2000(PHOTO, NOISY) == pytest.approx(expected, rel=1e-12)
    assert metrics.ciede2000(PHOTO, PHOTO) == 0.0


def test_ciede2000_blocks_do_not_change_the_result(monkeypatch):
    whole = metrics.ciede2000(PHOTO, NOISY)
    monkeypatch.setattr(metrics, "BLOCK_PIXELS", 100)  # 2-3 rows a block
    assert metrics.ciede2000(PHOTO, NOISY) == pytest.approx(whole, rel=1e-12)


def test_ciede2000_grey_is_grey_rgb_and_alpha_is_ignored():
    grey_a, grey_b = PHOTO[:, :, 0], NOISY[:, :, 0]
    as_rgb = metrics.ciede2000(np.dstack([grey_a] * 3), np.dstack([grey_b] * 3))
    assert metrics.ciede2000(grey_a, grey_b) == pytest.approx(as_rgb, rel=1e-12)
    assert metrics.ciede2000(grey_a[:, :, None], grey_b[:, :, None]) == pytest.approx(as_rgb, rel=1e-12)
    alpha1 = np.zeros_like(grey_a)
    alpha2 = np.full_like(grey_a, 255)
    la = metrics.ciede2000(np.dstack([grey_a, alpha1]), np.dstack([grey_b, alpha2]))
    assert la == pytest.approx(as_rgb, rel=1e-12)
    rgba = metrics.ciede2000(np.dstack([PHOTO, alpha1]), np.dstack([NOISY, alpha2]))
    assert rgba == pytest.approx(metrics.ciede2000(PHOTO, NOISY), rel=1e-12)


# ---------------------------------------------------------------------------
# MSE and PSNR
# ---------------------------------------------------------------------------
def test_mse_and_psnr_against_a_direct_computation():
    expected = np.mean((PHOTO.astype(float) - NOISY) ** 2)
    assert metrics.mse(PHOTO, NOISY) == pytest.approx(expected, rel=1e-12)
    assert metrics.psnr(PHOTO, NOISY) == pytest.approx(10 * math.log10(255**2 / expected), rel=1e-12)


def test_mse_counts_alpha_and_blocks_do_not_matter(monkeypatch):
    a = np.zeros((3, 5, 4), np.uint8)
    b = a.copy()
    b[..., 3] = 2  # only alpha differs
    assert metrics.mse(a, b) == 1.0
    whole = metrics.mse(PHOTO, NOISY)
    monkeypatch.setattr(metrics, "BLOCK_PIXELS", 50)
    assert metrics.mse(PHOTO, NOISY) == whole


def test_psnr_of_equal_images_is_inf_and_of_extremes_is_0():
    assert metrics.psnr(PHOTO, PHOTO) == math.inf
    assert metrics.mse(PHOTO, PHOTO) == 0.0
    black, white = np.zeros((2, 3), np.uint8), np.full((2, 3), 255, np.uint8)
    assert metrics.psnr(black, white) == 0.0


def test_mse_agrees_with_the_encoders_made_chunk():
    img = _smooth(30, 41, 3)
    data = kmcodec.encode(img, 12)
    assert metrics.mse(img, kmcodec.decode(data)) == pytest.approx(kmcodec.read_info(data).mse, rel=1e-9)


# ---------------------------------------------------------------------------
# SSIM
# ---------------------------------------------------------------------------
def test_ssim_of_equal_images_is_1():
    for img in (PHOTO, PHOTO[:, :, 0], _smooth(11, 11, 3), _smooth(20, 30, 1)):
        assert metrics.ssim(img, img) == pytest.approx(1.0, abs=1e-12)


def test_ssim_falls_with_the_noise_and_is_symmetric():
    img = _smooth(48, 50, 3)
    scores = []
    for amplitude in (2, 8, 32):
        noise = np.random.default_rng(amplitude).integers(-amplitude, amplitude + 1, img.shape)
        noisy = np.clip(img.astype(int) + noise, 0, 255).astype(np.uint8)
        scores.append(metrics.ssim(img, noisy))
        assert metrics.ssim(noisy, img) == pytest.approx(scores[-1], rel=1e-12)
    assert 1 > scores[0] > scores[1] > scores[2]


def test_ssim_blocks_do_not_change_the_result(monkeypatch):
    img = _smooth(60, 33, 3)
    whole = metrics.ssim(img, NOISY[:, :33].repeat(2, axis=0)[:60])
    monkeypatch.setattr(metrics, "BLOCK_PIXELS", 33 * 14)  # 4 new rows a block
    assert metrics.ssim(img, NOISY[:, :33].repeat(2, axis=0)[:60]) == pytest.approx(whole, rel=1e-12)


def test_ssim_is_the_mean_of_the_colour_channels():
    img, other = _smooth(30, 30, 4), PHOTO[:30, :30]
    per_channel = [metrics.ssim(img[:, :, c], other[:, :, c]) for c in range(3)]
    other4 = np.dstack([other, np.zeros((30, 30), np.uint8)])
    assert metrics.ssim(img, other4) == pytest.approx(np.mean(per_channel), rel=1e-12)


@pytest.mark.parametrize("shape", [(11, 11), (40, 37, 3), (64, 23, 3), (33, 50)])
def test_ssim_matches_scikit_image(shape):
    structural_similarity = pytest.importorskip("skimage.metrics").structural_similarity
    rng = np.random.default_rng(sum(shape))
    a = _smooth(shape[0], shape[1], 3)[..., : shape[2] if len(shape) == 3 else 1].reshape(shape)
    b = np.clip(a.astype(int) + rng.integers(-30, 31, shape), 0, 255).astype(np.uint8)
    expected = structural_similarity(
        a,
        b,
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
        data_range=255,
        channel_axis=-1 if len(shape) == 3 else None,
    )
    assert metrics.ssim(a, b) == pytest.approx(expected, abs=1e-9)


def test_ssim_needs_11_by_11():
    with pytest.raises(kmcodec.ParameterError, match="11 x 11"):
        metrics.ssim(PHOTO[:10], NOISY[:10])


# ---------------------------------------------------------------------------
# SSIMULACRA2 (the ssimulacra2 package, which the test extra installs: these run, never skip)
# ---------------------------------------------------------------------------
def test_ssimulacra2_is_installed_for_the_tests():
    assert metrics.ssimulacra2_available()


def test_ssimulacra2_of_equal_images_is_100():
    image = _smooth(48, 64, 3)
    assert metrics.ssimulacra2(image, image) == 100.0


def test_ssimulacra2_falls_as_the_damage_grows():
    # The package's own scale: 100 for identical images, far lower (below 0) for heavy damage.
    image = _smooth(64, 80, 3)
    rng = np.random.default_rng(5)
    scores = []
    for sigma in (2, 8, 32):
        noisy = np.clip(image + rng.normal(0, sigma, image.shape), 0, 255).astype(np.uint8)
        scores.append(metrics.ssimulacra2(image, noisy))
    assert 100 > scores[0] > scores[1] > scores[2]
    assert scores[0] > 70 and scores[2] < 30
    banded = image // 64 * 64 + 32  # 4 levels a channel
    assert metrics.ssimulacra2(image, banded) < 30


def test_ssimulacra2_is_the_packages_score():
    from PIL import Image
    from ssimulacra2 import compute_ssimulacra2

    image, noisy = _smooth(40, 56, 3), np.clip(_smooth(40, 56, 3).astype(int) + 9, 0, 255).astype(np.uint8)
    files = []
    for pixels in (image, noisy):
        buf = io.BytesIO()
        Image.fromarray(pixels).save(buf, format="PNG")
        buf.seek(0)
        files.append(buf)
    assert metrics.ssimulacra2(image, noisy) == compute_ssimulacra2(*files)


def test_ssimulacra2_grey_is_grey_rgb_and_alpha_is_ignored():
    grey = _smooth(32, 32, 1)
    darker = grey // 2
    as_rgb = metrics.ssimulacra2(grey.repeat(3, axis=2), darker.repeat(3, axis=2))
    assert metrics.ssimulacra2(grey[:, :, 0], darker[:, :, 0]) == as_rgb
    rgb, other = _smooth(32, 32, 3), _smooth(32, 32, 3) // 2
    alpha = np.arange(32 * 32, dtype=np.uint8).reshape(32, 32, 1)
    with_alpha = metrics.ssimulacra2(np.dstack([rgb, alpha]), np.dstack([other, 255 - alpha]))
    assert with_alpha == metrics.ssimulacra2(rgb, other)


def test_ssimulacra2_needs_8_by_8():
    with pytest.raises(kmcodec.ParameterError, match="8 x 8"):
        metrics.ssimulacra2(PHOTO[:7], NOISY[:7])


def test_ssimulacra2_without_the_package_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "ssimulacra2", None)  # import ssimulacra2 now raises ImportError
    assert not metrics.ssimulacra2_available()
    with pytest.raises(metrics.MetricError, match=r"pip install 'kmcodec\[report\]'") as info:
        metrics.ssimulacra2(PHOTO, NOISY)
    assert isinstance(info.value, kmcodec.KmcError)


# ---------------------------------------------------------------------------
# Argument checks
# ---------------------------------------------------------------------------
FUNCTIONS = [metrics.mse, metrics.psnr, metrics.ciede2000, metrics.ssim, metrics.ssimulacra2]


@pytest.mark.parametrize("fn", FUNCTIONS)
@pytest.mark.parametrize(
    ("a", "b", "match"),
    [
        (PHOTO, PHOTO[:-1], "shape"),
        (PHOTO, PHOTO[:, :, :2], "shape"),
        (PHOTO, PHOTO.astype(np.uint16), "uint8"),
        (PHOTO.astype(np.float32), PHOTO, "uint8"),
        (PHOTO.tolist(), PHOTO, "numpy array"),
        (PHOTO[:, :, :1].repeat(5, axis=2), PHOTO[:, :, :1].repeat(5, axis=2), r"\(H, W, C\)"),
        (PHOTO[0, 0], PHOTO[0, 0], r"\(H, W, C\)"),
        (PHOTO[:0], PHOTO[:0], "empty"),
    ],
)
def test_bad_arguments_raise_parameter_error(fn, a, b, match):
    with pytest.raises(kmcodec.ParameterError, match=match):
        fn(a, b)
