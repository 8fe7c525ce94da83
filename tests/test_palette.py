"""Given and shared palettes: encode(palette=...), shared_palette, read_palette, and the CLI's
--palette / --shared-palette."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

import kmcodec
from kmcodec.cli import cli


def _image(seed: int, shape=(23, 31, 3)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=shape, dtype=np.uint8)


def _nearest(pixels: np.ndarray, palette: np.ndarray) -> np.ndarray:
    """Brute-force nearest entry, ties to the lowest index."""
    d = ((pixels[:, :, None, :].astype(np.int64) - palette[None, None].astype(np.int64)) ** 2).sum(-1)
    return palette[np.argmin(d, axis=-1)]


def test_given_palette_is_kept_in_order_and_every_pixel_takes_its_nearest_entry():
    image = _image(1)
    palette = np.array([[250, 250, 250], [0, 0, 0], [200, 30, 30], [30, 200, 30], [0, 0, 0]], np.uint8)
    data = kmcodec.encode(image, palette=palette)
    assert kmcodec.read_palette(data).tolist() == palette.tolist()  # order, duplicates and all
    np.testing.assert_array_equal(kmcodec.decode(data), _nearest(image, palette))
    info = kmcodec.read_info(data)
    assert info.requested_colors == len(palette) and info.iterations == 0
    mse = ((image.astype(float) - _nearest(image, palette)) ** 2).mean()
    assert info.mse == pytest.approx(mse)


@pytest.mark.parametrize("colorspace", ["srgb", "oklab"])
def test_palette_of_an_encoded_file_reencodes_its_source_identically(colorspace):
    # a given palette maps in sRGB unless told otherwise: the same space reproduces the pixels
    image = _image(2)
    first = kmcodec.encode(image, colors=12, colorspace=colorspace)
    again = kmcodec.encode(image, palette=kmcodec.read_palette(first), colorspace=colorspace)
    np.testing.assert_array_equal(kmcodec.decode(again), kmcodec.decode(first))


def test_palette_is_used_for_images_with_alpha():
    image = _image(3, (9, 8, 4))
    image[0, :, 3] = 0
    palette = np.array([[0, 0, 0, 0], [255, 255, 255, 255], [10, 20, 30, 128]], np.uint8)
    pixels = kmcodec.decode(kmcodec.encode(image, palette=palette))
    assert (pixels[0] == 0).all()  # transparent pixels count as all zeros
    assert {tuple(p) for p in pixels.reshape(-1, 4)} <= {tuple(p) for p in palette}


@pytest.mark.parametrize(
    "palette",
    [
        np.zeros((4, 4), np.uint8),  # RGBA palette for an RGB image
        np.zeros((4, 3), np.int32),
        np.zeros((0, 3), np.uint8),
        np.zeros(3, np.uint8),
        np.zeros((65537, 3), np.uint8),
    ],
    ids=["channels", "dtype", "empty", "1-d", "too-many"],
)
def test_bad_palette_is_a_parameter_error(palette):
    with pytest.raises(kmcodec.ParameterError, match="palette"):
        kmcodec.encode(_image(4), palette=palette)


def test_shared_palette_fits_all_images_together():
    dark = np.zeros((8, 8, 3), np.uint8)
    light = np.full((8, 8, 3), 240, np.uint8)
    light[:4] = (240, 10, 10)
    palette = kmcodec.shared_palette([dark, light], colors=8)
    assert palette.tolist() == [[0, 0, 0], [240, 10, 10], [240, 240, 240]]
    for image in (dark, light):
        np.testing.assert_array_equal(kmcodec.decode(kmcodec.encode(image, palette=palette)), image)


def test_shared_palette_is_deterministic_and_reads_paths(tmp_path):
    paths = []
    for i in range(3):
        paths.append(tmp_path / f"{i}.png")
        Image.fromarray(_image(10 + i)).save(paths[-1])
    a = kmcodec.shared_palette(paths, colors=16, seed=5)
    b = kmcodec.shared_palette([str(p) for p in paths], colors=16, seed=5)
    assert a.shape == (16, 3) and a.tolist() == b.tolist()


def test_shared_palette_refuses_mixed_layouts_and_no_images():
    with pytest.raises(kmcodec.ParameterError, match="one layout"):
        kmcodec.shared_palette([_image(1), _image(2, (5, 5, 4))])
    with pytest.raises(kmcodec.ParameterError, match="at least one"):
        kmcodec.shared_palette([])
    with pytest.raises(kmcodec.ParameterError, match="colors"):
        kmcodec.shared_palette([_image(1)], colors=0)


# ---------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------
@pytest.fixture
def pngs(tmp_path):
    paths = []
    for i in range(3):
        paths.append(tmp_path / f"in{i}.png")
        Image.fromarray(_image(20 + i)).save(paths[-1])
    return paths


def test_cli_shared_palette_gives_every_output_the_same_palette(pngs, tmp_path):
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["encode", *map(str, pngs), "-o", str(out), "-k", "8", "--shared-palette", "-q"])
    assert result.exit_code == 0, result.output
    palettes = [kmcodec.read_palette(out / f"in{i}.kmc").tolist() for i in range(3)]
    assert palettes[0] == palettes[1] == palettes[2]
    # fitted for the eye, as kmc encode fits one image's palette: Oklab with L_r, masking on, mapped there
    eye = kmcodec.shared_palette(pngs, colors=8, colorspace="oklrab")
    assert palettes[0] == eye.tolist()
    assert (out / "in1.kmc").read_bytes() == kmcodec.encode(pngs[1], palette=eye, colorspace="oklrab")


@pytest.mark.parametrize(
    ("flags", "fit"),
    [
        (["--colorspace", "srgb"], {"colorspace": "srgb"}),  # the PSNR-first fit: no masking, mapped in sRGB
        (["--no-masking"], {"colorspace": "oklrab", "masking": False}),
        (["--colorspace", "srgb", "--masking"], {"colorspace": "srgb", "masking": True}),
    ],
)
def test_cli_shared_palette_follows_the_fit_options(pngs, tmp_path, flags, fit):
    out = tmp_path / "out"
    command = ["encode", *map(str, pngs), "-o", str(out), "-k", "8", "--shared-palette", "-q", *flags]
    result = CliRunner().invoke(cli, command)
    assert result.exit_code == 0, result.output
    palette = kmcodec.shared_palette(pngs, colors=8, **fit)
    assert kmcodec.read_palette(out / "in0.kmc").tolist() == palette.tolist()
    assert (out / "in0.kmc").read_bytes() == kmcodec.encode(pngs[0], palette=palette, colorspace=fit["colorspace"])


def test_cli_shared_palette_labels_as_one_file_would(tmp_path):
    # From 48 colours, kmc encode's fit for the eye takes RDO labels (--rdo 5); a shared fit does too,
    # except where the palette holds every colour of the set, which then stays lossless.
    rng = np.random.default_rng(9)
    y, x = np.mgrid[0:40, 0:41]
    paths = []
    for i in range(2):
        paths.append(tmp_path / f"f{i}.png")
        ramp = np.stack([x * 6, y * 6, (x + y) * 3 + 30 * i], axis=-1) + rng.integers(-9, 9, (40, 41, 3))
        Image.fromarray(np.clip(ramp, 0, 255).astype(np.uint8)).save(paths[-1])
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["encode", *map(str, paths), "-o", str(out), "-k", "64", "--shared-palette", "-q"])
    assert result.exit_code == 0, result.output
    palette = kmcodec.shared_palette(paths, colors=64, colorspace="oklrab")
    rdo = kmcodec.encode(paths[0], palette=palette, colorspace="oklrab", rdo=5.0)
    assert rdo != kmcodec.encode(paths[0], palette=palette, colorspace="oklrab")
    assert (out / "f0.kmc").read_bytes() == rdo
    exact = tmp_path / "exact"
    result = CliRunner().invoke(
        cli, ["encode", *map(str, paths), "-o", str(exact), "-k", "65536", "--shared-palette", "-q"]
    )
    assert result.exit_code == 0, result.output
    for path in paths:
        assert np.array_equal(kmcodec.decode((exact / f"{path.stem}.kmc").read_bytes()), np.asarray(Image.open(path)))


def test_cli_palette_reuses_a_files_palette(pngs, tmp_path):
    runner = CliRunner()
    ref = tmp_path / "ref.kmc"
    assert runner.invoke(cli, ["encode", str(pngs[0]), str(ref), "-k", "6", "-q"]).exit_code == 0
    out = tmp_path / "mapped.kmc"
    result = runner.invoke(cli, ["encode", str(pngs[1]), str(out), "--palette", str(ref), "-q"])
    assert result.exit_code == 0, result.output
    assert kmcodec.read_palette(out).tolist() == kmcodec.read_palette(ref).tolist()


def test_cli_palette_errors_are_one_line(pngs, tmp_path):
    runner = CliRunner()
    result = runner.invoke(cli, ["encode", str(pngs[0]), str(tmp_path / "x.kmc"), "--palette", str(pngs[1])])
    assert result.exit_code == 1
    assert result.output.startswith("kmc: error: --palette") and result.output.count("\n") == 1
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\nbroken")
    result = runner.invoke(cli, ["encode", str(pngs[0]), str(broken), "-o", str(tmp_path / "o"), "--shared-palette"])
    assert result.exit_code == 1 and "cannot fit a shared palette" in result.output
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())


@pytest.mark.parametrize(
    "extra",
    [["--shared-palette"], ["--palette", "ref.kmc", "--shared-palette", "-o", "d"]],
    ids=["shared-without-batch", "both"],
)
def test_cli_palette_usage_errors(pngs, tmp_path, extra):
    result = CliRunner().invoke(cli, ["encode", str(pngs[0]), str(tmp_path / "x.kmc"), *extra])
    assert result.exit_code == 2


@pytest.mark.parametrize("target", [["--target-psnr", "30"], ["--max-bytes", "5000"]], ids=["psnr", "bytes"])
def test_shared_palette_with_a_target_is_refused_before_any_work(pngs, tmp_path, target):
    """A shared palette fixes the size a target would search for: a usage error up front, not a failure per file."""
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["encode", *map(str, pngs), "-o", str(out), "--shared-palette", *target])
    assert result.exit_code == 2
    assert f"--shared-palette and {target[0]} exclude each other" in result.stderr.splitlines()[-1]
    assert not out.exists() or not any(out.iterdir())


def test_a_palette_of_other_channels_is_named_by_its_layout():
    with pytest.raises(kmcodec.ParameterError) as caught:
        kmcodec.encode(_image(4), palette=np.zeros((2, 1), np.uint8))
    assert str(caught.value) == "the palette is L (1 channel), the image RGB (3 channels): they must match"
