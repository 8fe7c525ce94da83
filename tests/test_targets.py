"""Quality targets: encode(target_psnr=...) and encode(max_bytes=...), and their CLI options."""

from __future__ import annotations

import functools

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

import kmcodec
from kmcodec.cli import cli
from kmcodec.quantize import ColorCounts, fit_palette, fit_to_psnr, psnr_mse


def _photo_like(height: int = 32, width: int = 40, seed: int = 1) -> np.ndarray:
    """Smooth gradients plus noise: many distinct colours, PSNR rising gradually with k."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    img = np.stack([x * 255 / width, y * 255 / height, (x + y) * 127 / (width + height) + 60], axis=-1)
    img += rng.normal(0, 4, img.shape)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


PHOTO = _photo_like()
COUNTED = ColorCounts.of(lambda: [PHOTO], 3, False)


@functools.cache
def _mse(k: int) -> float:
    """fit_palette's MSE at k (PSNR 12.3 dB at 1 to 30.2 dB at 64): the brute-force scan the search is checked against.

    Fitted when a test first asks, once per process, not at import: every xdist worker imports
    every test module, whichever tests it is given.
    """
    return fit_palette(COUNTED, k).mse


def _smallest_k(target: float) -> int:
    """The smallest k up to 64 whose fit reaches *target* dB PSNR, by brute force from k = 1."""
    return next(k for k in range(1, 65) if _mse(k) <= psnr_mse(target))


def _psnr(mse: float) -> float:
    return float("inf") if mse == 0 else 10 * np.log10(255**2 / mse)


@pytest.mark.parametrize("target", [15.0, 21.5, 25.0, 28.0, 29.5])
def test_target_psnr_finds_a_locally_smallest_k(target):
    data = kmcodec.encode(PHOTO, 64, target_psnr=target)
    info = kmcodec.read_info(data)
    k = info.colors
    assert info.psnr >= target
    assert info.mse == pytest.approx(_mse(k))
    # The guarantee: k reaches the target and k - 1 does not.
    assert k == 1 or _mse(k - 1) > psnr_mse(target)
    # Against the brute-force scan: never below the true smallest, and within 10 % of it here.
    smallest = _smallest_k(target)
    assert smallest <= k <= 1.1 * smallest


def test_target_psnr_file_equals_plain_encode_at_the_k_found():
    data = kmcodec.encode(PHOTO, 64, target_psnr=28.0)
    k = kmcodec.read_info(data).colors
    plain = kmcodec.encode(PHOTO, k, colorspace="srgb")  # a PSNR target fits PSNR-first: sRGB, no masking
    assert kmcodec.decode(data).tobytes() == kmcodec.decode(plain).tobytes()
    assert kmcodec.read_info(data).requested_colors == 64  # the cap, not k
    assert kmcodec.read_info(plain).requested_colors == k


def test_fit_to_psnr_is_deterministic_and_matches_fit_palette():
    first = fit_to_psnr(COUNTED, 27.0, 65536, seed=5)
    again = fit_to_psnr(COUNTED, 27.0, 65536, seed=5)
    direct = fit_palette(COUNTED, len(first.palette), seed=5)
    assert np.array_equal(first.palette, again.palette)
    assert np.array_equal(first.palette, direct.palette)
    assert np.array_equal(first.mapping, direct.mapping)
    assert kmcodec.encode(PHOTO, target_psnr=27.0, seed=5) == kmcodec.encode(PHOTO, target_psnr=27.0, seed=5)


def test_target_psnr_is_capped_by_colors():
    target = _psnr(_mse(6)) - 0.01  # 6 colours just reach it, 5 do not
    info = kmcodec.read_info(kmcodec.encode(PHOTO, 6, target_psnr=target))
    assert info.colors == 6
    assert info.mse == pytest.approx(_mse(6))


@pytest.mark.parametrize(("cap", "best"), [(6, "19.74"), (1, "12.28")])
def test_target_psnr_out_of_reach_raises_target_error(cap, best):
    """As max_bytes does: the best PSNR the cap allows, floored (19.7486 shows as 19.74, never as the target)."""
    assert f"{_psnr(_mse(cap)):.3f}".startswith(best)
    colours = "1 colour, the most allowed, reaches" if cap == 1 else f"{cap} colours, the most allowed, reach"
    with pytest.raises(kmcodec.TargetError) as caught:
        kmcodec.encode(PHOTO, cap, target_psnr=60.0)
    assert str(caught.value) == f"even {colours} only {best} dB PSNR, short of the 60 dB target"


def test_target_psnr_missed_by_a_hair_is_not_shown_as_reached():
    target = _psnr(_mse(6)) + 0.001
    with pytest.raises(kmcodec.TargetError, match=r"only 19\.74 dB PSNR, short of the 19\.7496 dB target"):
        kmcodec.encode(PHOTO, 6, target_psnr=target)


@pytest.mark.parametrize("target", [10.0, 60.0, float("inf")])
def test_few_colours_are_lossless_without_search(target):
    img = PHOTO // 64 * 64  # at most 64 distinct colours
    unique = len(np.unique(img.reshape(-1, 3), axis=0))
    data = kmcodec.encode(img, target_psnr=target)
    assert kmcodec.read_info(data).colors == unique
    assert np.array_equal(kmcodec.decode(data), img)


def test_many_colours_under_the_cap_are_searched_not_kept():
    # 1280 distinct colours, cap 65536: exact would reach any target, but a much smaller k does.
    info = kmcodec.read_info(kmcodec.encode(PHOTO, target_psnr=21.5))
    assert info.colors == _smallest_k(21.5)
    exact = kmcodec.read_info(kmcodec.encode(PHOTO, target_psnr=float("inf")))
    assert exact.colors == len(COUNTED.distinct)
    assert exact.mse == 0


def test_few_colours_over_the_cap_are_searched():
    img = PHOTO // 64 * 64  # 25 distinct colours
    info = kmcodec.read_info(kmcodec.encode(img, 4, target_psnr=18.0))
    assert 1 < info.colors <= 4
    assert 18.0 <= info.psnr < float("inf")
    with pytest.raises(kmcodec.TargetError, match="even 4 colours"):
        kmcodec.encode(img, 4, target_psnr=60.0)


def test_inf_target_on_more_colours_than_the_cap_is_out_of_reach():
    with pytest.raises(kmcodec.TargetError, match=r"reach only 28\.14 dB PSNR, not lossless, which needs all 1,280"):
        kmcodec.encode(PHOTO, 40, target_psnr=float("inf"))


def test_target_psnr_with_alpha():
    rgba = np.dstack([PHOTO, np.where(PHOTO[:, :, :1] > 128, 255, 0).astype(np.uint8)])
    info = kmcodec.read_info(kmcodec.encode(rgba, target_psnr=25.0))
    assert info.psnr >= 25.0


# ---------------------------------------------------------------------------
# max_bytes
# ---------------------------------------------------------------------------
@functools.cache
def _size(k: int) -> int:
    """The length of PHOTO's file at k, encoded when a test first asks, once per process."""
    return len(kmcodec.encode(PHOTO, k))


@pytest.mark.parametrize(
    "limit",
    [lambda: _size(3), lambda: _size(20) + 1, lambda: (_size(40) + _size(41)) // 2],
    ids=["size-at-3", "size-at-20-plus-1", "between-40-and-41"],
)
def test_max_bytes_fits_and_the_next_k_does_not(limit):
    limit = limit()
    data = kmcodec.encode(PHOTO, 48, max_bytes=limit)
    k = kmcodec.read_info(data).colors
    assert len(data) <= limit
    assert len(data) == _size(k)  # the file of a plain encode at k, but for the cap in MADE
    assert np.array_equal(kmcodec.decode(data), kmcodec.decode(kmcodec.encode(PHOTO, k)))
    assert k == 48 or _size(k + 1) > limit


def test_max_bytes_keeps_few_colours_lossless():
    img = PHOTO // 64 * 64
    data = kmcodec.encode(img, max_bytes=10**6)
    assert np.array_equal(kmcodec.decode(data), img)


def test_max_bytes_below_one_colour_raises_target_error():
    with pytest.raises(kmcodec.TargetError, match="1-colour"):
        kmcodec.encode(PHOTO, max_bytes=_size(1) - 1)
    assert issubclass(kmcodec.TargetError, kmcodec.KmcError)


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"target_psnr": 30.0, "max_bytes": 1000}, "not both"),
        ({"target_psnr": 0}, "target_psnr"),
        ({"target_psnr": -3.0}, "target_psnr"),
        ({"target_psnr": float("nan")}, "target_psnr"),
        ({"target_psnr": "30"}, "target_psnr"),
        ({"target_psnr": True}, "target_psnr"),
        ({"max_bytes": 0}, "max_bytes"),
        ({"max_bytes": 1.5}, "max_bytes"),
        ({"max_bytes": True}, "max_bytes"),
    ],
)
def test_bad_targets_raise_parameter_error(options, match):
    with pytest.raises(kmcodec.ParameterError, match=match):
        kmcodec.encode(PHOTO, **options)


def test_colors_none_is_the_default():
    assert kmcodec.encode(PHOTO, None) == kmcodec.encode(PHOTO) == kmcodec.encode(PHOTO, 64)


# ---------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------
@pytest.fixture
def photo_png(tmp_path):
    path = tmp_path / "photo.png"
    Image.fromarray(PHOTO).save(path)
    return path


def test_cli_target_psnr_with_k_as_cap(tmp_path, photo_png):
    out = tmp_path / "out.kmc"
    result = CliRunner().invoke(cli, ["encode", str(photo_png), str(out), "--target-psnr", "25", "-k", "64"])
    assert result.exit_code == 0, result.output
    info = kmcodec.read_info(out.read_bytes())
    assert info.psnr >= 25.0
    assert info.colors == _smallest_k(25.0)
    assert f"{info.colors} colours" in result.output


def test_cli_max_bytes(tmp_path, photo_png):
    out = tmp_path / "out.kmc"
    result = CliRunner().invoke(cli, ["encode", str(photo_png), str(out), "--max-bytes", str(_size(20))])
    assert result.exit_code == 0, result.output
    assert len(out.read_bytes()) <= _size(20)


def test_cli_max_bytes_too_small_is_one_line_error(tmp_path, photo_png):
    out = tmp_path / "out.kmc"
    result = CliRunner().invoke(cli, ["encode", str(photo_png), str(out), "--max-bytes", "10"])
    assert result.exit_code == 1
    assert result.output.startswith("kmc: error: even a 1-colour palette")
    assert result.output.count("\n") == 1
    assert not out.exists()


@pytest.mark.parametrize(
    "args", [["--target-psnr", "30", "--max-bytes", "1000"], ["--target-psnr", "0"], ["--max-bytes", "0"]]
)
def test_cli_bad_targets_are_usage_errors(tmp_path, photo_png, args):
    result = CliRunner().invoke(cli, ["encode", str(photo_png), str(tmp_path / "out.kmc"), *args])
    assert result.exit_code == 2


def test_pillow_save_takes_target_psnr(tmp_path):
    path = tmp_path / "x.kmc"
    Image.fromarray(PHOTO).save(path, colors=64, target_psnr=25.0)
    info = kmcodec.read_info(path)
    assert info.psnr >= 25.0
    assert info.colors == _smallest_k(25.0)


def test_pillow_save_of_a_target_out_of_reach_raises_and_leaves_no_file(tmp_path):
    path = tmp_path / "x.kmc"
    with pytest.raises(kmcodec.TargetError, match="even 6 colours"):
        Image.fromarray(PHOTO).save(path, colors=6, target_psnr=60.0)
    assert not path.exists()
