"""Rate-distortion-optimised labels: encode(rdo=...), kmc encode --rdo, and the labeller itself."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from click.testing import CliRunner
from cm_reference import spec_ideal_bits
from PIL import Image

import kmcodec
from kmcodec import rdo
from kmcodec.cli import cli
from kmcodec.cm import encode_labels
from kmcodec.errors import ParameterError
from kmcodec.rdo import LOOKAHEAD_BITS, _cost_table, _log2_fixed, model_bits, rdo_labels


def _noisy_flat(h: int = 64, w: int = 96, seed: int = 0) -> np.ndarray:
    """Four flat colour patches with noise of sigma 6: the nearest entry flickers inside each patch."""
    rng = np.random.default_rng(seed)
    base = np.zeros((h, w, 3), np.float64)
    base[: h // 2, : w // 2] = (60, 90, 120)
    base[: h // 2, w // 2 :] = (200, 180, 40)
    base[h // 2 :, : w // 2] = (30, 160, 70)
    base[h // 2 :, w // 2 :] = (150, 150, 150)
    return np.clip(base + rng.normal(0, 6, base.shape), 0, 255).astype(np.uint8)


def _mse(data: bytes, image: np.ndarray) -> float:
    out = kmcodec.decode(data).astype(np.float64)
    return float(((out - image) ** 2).mean())


def _nearest(image: np.ndarray, palette: np.ndarray) -> np.ndarray:
    d = ((image[:, :, None, :].astype(np.int64) - palette[None, None].astype(np.int64)) ** 2).sum(axis=-1)
    return d.argmin(axis=-1).astype(np.uint8)  # argmin keeps the lowest index on ties


def _error(image: np.ndarray, palette: np.ndarray, labels: np.ndarray) -> np.ndarray:
    return ((image.astype(np.int64) - palette[labels].astype(np.int64)) ** 2).sum(axis=-1)


# ---------------------------------------------------------------------------
# Options
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("value", [-1, -0.001, float("nan"), float("inf"), True, "1", 1j])
def test_bad_rdo_raises_parameter_error(value):
    with pytest.raises(ParameterError, match="rdo"):
        kmcodec.encode(_noisy_flat(8, 8), 4, rdo=value)


@pytest.mark.parametrize("options", [{"dither": 0.5}, {"target_psnr": 30.0}])
def test_rdo_refuses_dither_and_target_psnr(options):
    with pytest.raises(ParameterError, match="not rdo with"):
        kmcodec.encode(_noisy_flat(8, 8), 4, rdo=10, **options)


@pytest.mark.parametrize("off", [0, 0.0, None])
def test_rdo_off_gives_exactly_the_plain_bytes(off):
    """Below 48 colours the default (None) is off too."""
    image = _noisy_flat()
    assert kmcodec.encode(image, 16, rdo=off) == kmcodec.encode(image, 16)


@pytest.mark.parametrize(
    ("colors", "options", "default_lambda"),
    [
        (48, {}, 5),
        (64, {}, 5),
        (64, {"masking": False}, 5),
        (64, {"colorspace": "oklab"}, 5),
        (64, {"colorspace": "oklrab"}, 5),
        (47, {}, 0),
        (64, {"colorspace": "srgb"}, 0),
        (64, {"colorspace": "oklab-linear"}, 0),
        (64, {"colorspace": "oklab-srgb"}, 0),
        (64, {"dither": 1.0}, None),
        (64, {"target_psnr": 20.0}, None),
    ],
)
def test_the_default_is_rdo_5_from_48_colours_in_the_default_fit(colors, options, default_lambda):
    """rdo=None gives exactly rdo=5's bytes in the Oklab fit for the eye from 48 colours up, rdo=0's elsewhere;
    with dither or a PSNR target, where rdo may not be given, the default is off."""
    image = _noisy_flat(96, 128, seed=5)
    default = kmcodec.encode(image, colors, **options)
    assert kmcodec.read_info(default).unique_colors > colors  # lossy: the default may apply
    if default_lambda is None:
        with pytest.raises(ParameterError):
            kmcodec.encode(image, colors, rdo=5, **options)
        assert kmcodec.EncodeOptions(colors=colors, **options).rdo_for(colors, exact=False) == 0
        return
    assert default == kmcodec.encode(image, colors, rdo=default_lambda, **options)
    assert (default == kmcodec.encode(image, colors, rdo=0, **options)) == (default_lambda == 0)


def test_the_default_keeps_an_exact_palette_lossless():
    image = _noisy_flat(40, 40)[:, :, :1].repeat(3, axis=2) // 4 * 4  # at most 64 greys
    assert len(np.unique(image.reshape(-1, 3), axis=0)) <= 64
    data = kmcodec.encode(image, 64)
    assert kmcodec.decode(data).tobytes() == image.tobytes()
    assert kmcodec.EncodeOptions(colors=64).rdo_for(64, exact=True) == 0
    assert kmcodec.EncodeOptions(colors=64).rdo_for(64, exact=False) == 5
    assert kmcodec.EncodeOptions(colors=64, rdo=2).rdo_for(64, exact=True) == 2


def test_rdo_is_deterministic_and_does_not_depend_on_threads(monkeypatch):
    image = _noisy_flat(96, 80, seed=3)
    first = kmcodec.encode(image, 16, rdo=40, rows_per_strip=16)
    assert kmcodec.encode(image, 16, rdo=40, rows_per_strip=16) == first
    monkeypatch.setattr("os.cpu_count", lambda: 1)
    assert kmcodec.encode(image, 16, rdo=40, rows_per_strip=16) == first


# ---------------------------------------------------------------------------
# What it does
# ---------------------------------------------------------------------------
def test_rdo_on_noisy_flat_areas_saves_bytes_for_bounded_error():
    image = _noisy_flat()
    plain = kmcodec.encode(image, 16)
    smaller = kmcodec.encode(image, 16, rdo=20)
    assert len(smaller) < 0.92 * len(plain)
    plain_mse, rdo_mse = _mse(plain, image), _mse(smaller, image)
    assert rdo_mse > plain_mse  # it did trade error for bytes
    assert 10 * np.log10(plain_mse / rdo_mse) > -1.0  # at most 1 dB lower PSNR
    # The same palette, and the MADE chunk's error is that of the labels chosen.
    assert kmcodec.read_info(smaller).palette == kmcodec.read_info(plain).palette
    assert kmcodec.read_info(smaller).mse == pytest.approx(rdo_mse, rel=1e-12)


def _colour_ramp() -> np.ndarray:
    rng = np.random.default_rng(1)
    y, x = np.mgrid[0:96, 0:128]
    image = np.stack([x * 2, y * 2 + 20, x + y], axis=2) + rng.normal(0, 6, (96, 128, 3))
    return image.clip(0, 255).astype(np.uint8)


def test_rdo_measures_error_where_the_fit_mapped_the_pixels():
    """With the default fit (mapped in Oklab) a tiny lambda keeps the plain file's pixels.

    Measured in sRGB, as before, it moved about a tenth of them to their
    sRGB-nearest entry at any lambda (9.7 % here), a loss of about 3.5
    SSIMULACRA2 points on photos; in Oklab units only pixels at an equal
    distance from two entries (ties, which bits then break) move.
    """
    image = _colour_ramp()
    plain = kmcodec.decode(kmcodec.encode(image, 16))
    tiny = kmcodec.decode(kmcodec.encode(image, 16, rdo=0.001))
    assert np.mean(np.any(plain != tiny, axis=2)) < 0.03
    # the PSNR-first fit maps in sRGB and keeps sRGB error
    plain_srgb = kmcodec.decode(kmcodec.encode(image, 16, colorspace="srgb"))
    tiny_srgb = kmcodec.decode(kmcodec.encode(image, 16, colorspace="srgb", rdo=0.001))
    assert np.mean(np.any(plain_srgb != tiny_srgb, axis=2)) < 0.03


def test_oklab_rdo_reports_the_srgb_error_of_its_labels():
    image = _colour_ramp()
    data = kmcodec.encode(image, 16, rdo=20)
    assert kmcodec.read_info(data).mse == pytest.approx(_mse(data, image), rel=1e-12)
    assert len(data) < len(kmcodec.encode(image, 16))


@pytest.mark.parametrize("channels", [1, 2, 3, 4])
def test_squared_error_in_pieces_is_the_whole_strips(channels, monkeypatch):
    rng = np.random.default_rng(channels)
    block = rng.integers(0, 256, (13, 17, channels), dtype=np.uint8)
    block[::3, ::2, -1] = 0  # with alpha: transparent pixels count as zeros
    palette = rng.integers(0, 256, (300, channels), dtype=np.uint8)
    labels = rng.integers(0, 300, (13, 17)).astype(np.uint16)
    has_alpha = channels in (2, 4)
    pixels = block.astype(np.int64)
    if has_alpha:
        pixels[block[:, :, -1] == 0] = 0
    expected = int(((palette[labels].astype(np.int64) - pixels) ** 2).sum())
    monkeypatch.setattr(rdo, "ERROR_PIXELS", 10)  # 22 pieces and a short one
    assert rdo.squared_error(block, labels, palette, has_alpha=has_alpha) == expected


def test_a_weight_multiplies_a_pixels_error_in_its_choice():
    image = _noisy_flat(48, 64, seed=9)
    palette = kmcodec.read_palette(kmcodec.encode(image, 12, colorspace="srgb"))
    nearest = _nearest(image, palette)
    plain, error = rdo_labels(image, nearest, palette, 40.0, has_alpha=False)
    # twice the error and twice lambda: every choice's cost doubled, exactly in floating point
    doubled, doubled_error = rdo_labels(
        image, nearest, palette, 80.0, has_alpha=False, weight=np.full(nearest.shape, 2, np.uint8)
    )
    assert np.array_equal(plain, doubled) and error == doubled_error  # the error returned is the plain one
    # where the error counts 9 times the labels stay nearer than where it counts once
    weight = np.ones(nearest.shape, np.uint8)
    weight[:, 32:] = 9
    labels, _ = rdo_labels(image, nearest, palette, 40.0, has_alpha=False, weight=weight)
    moved = labels != nearest
    assert moved[:, :32].mean() > 3 * moved[:, 32:].mean() and moved[:, :32].mean() > 0.1
    with pytest.raises(ValueError, match="weight must be"):
        rdo_labels(image, nearest, palette, 40.0, has_alpha=False, weight=weight[:, :10])


def test_larger_lambda_gives_fewer_bytes():
    image = _noisy_flat(seed=5)
    sizes = [len(kmcodec.encode(image, 32, rdo=lam)) for lam in (0, 10, 100, 1000)]
    assert sizes == sorted(sizes, reverse=True) and sizes[0] > sizes[-1]


def test_labels_are_the_nearest_or_a_neighbour_and_the_error_bounded():
    image = _noisy_flat(40, 50, seed=7)
    palette = kmcodec.read_palette(kmcodec.encode(image, 12))
    nearest = _nearest(image, palette)
    lam = 80.0
    labels, error = rdo_labels(image, nearest, palette, lam, has_alpha=False)
    pixel_error = _error(image, palette, labels)
    assert error == int(pixel_error.sum())
    # Interior pixels take their nearest entry or the label of W, N, NW or NE.
    inner = labels[1:, 1:-1]
    allowed = (
        (inner == nearest[1:, 1:-1])
        | (inner == labels[1:, :-2])
        | (inner == labels[:-1, 1:-1])
        | (inner == labels[:-1, :-2])
        | (inner == labels[:-1, 2:])
    )
    assert allowed.all()
    # error + lambda x bits is no more than the nearest entry's: a decision costs at
    # most 12 bits, a label at most 4 candidate decisions and 4 escape bits (k = 12),
    # plus the look-ahead bits for two neighbours.
    bound = lam * (12 * (4 + 4) + 2 * LOOKAHEAD_BITS)
    assert (pixel_error <= _error(image, palette, nearest) + bound).all()


def test_tiny_lambda_keeps_the_nearest_error():
    image = _noisy_flat(30, 40, seed=2)
    palette = kmcodec.read_palette(kmcodec.encode(image, 24))
    nearest = _nearest(image, palette)
    labels, error = rdo_labels(image, nearest, palette, 1e-9, has_alpha=False)
    assert error == int(_error(image, palette, nearest).sum())
    assert (_error(image, palette, labels) == _error(image, palette, nearest)).all()


@pytest.mark.parametrize("mode", ["L", "LA", "RGBA"])
def test_rdo_roundtrips_other_layouts(mode):
    rgb = _noisy_flat(32, 40, seed=4)
    image = np.asarray(Image.fromarray(rgb).convert(mode if mode != "LA" else "L"))
    if mode in ("LA", "RGBA"):
        if mode == "LA":
            image = np.stack([image, np.full(image.shape, 255, np.uint8)], axis=-1)
        image = image.copy()
        image[:8, :, -1] = 0  # a transparent band, and some half-transparent pixels
        image[8:12, :, -1] = 128
    data = kmcodec.encode(image, 8, rdo=200)
    out = kmcodec.decode(data)
    assert out.shape[:2] == image.shape[:2]
    if mode in ("LA", "RGBA"):
        clear = image[:, :, -1] == 0
        assert (out[clear] == 0).all()  # transparent pixels keep the transparent entry
        assert (out[~clear][:, -1] > 0).all()  # and no opaque pixel moves to it


def test_rdo_with_a_given_palette_and_one_colour():
    image = _noisy_flat(20, 30)
    palette = kmcodec.read_palette(kmcodec.encode(image, 6))
    data = kmcodec.encode(image, rdo=30, palette=palette)
    assert kmcodec.read_info(data).palette == [tuple(p) for p in palette.tolist()]
    one = kmcodec.encode(image, 1, rdo=30)
    assert kmcodec.read_info(one).colors == 1
    assert kmcodec.encode(image, 4, rdo=30, max_bytes=10_000)  # max_bytes measures the rdo files


def _ramp(h: int, w: int, channels: int, seed: int) -> np.ndarray:
    """Colour ramps with noise of sigma 5 (the fourth channel a ramp too)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    base = np.stack([x * 255 / w, y * 255 / h, (x + y) * 127 / (h + w) + 64, 255 - x * 255 / w][:channels], -1)
    return np.clip(base + rng.normal(0, 5, base.shape), 0, 255).astype(np.uint8)


@pytest.mark.parametrize(
    ("colors", "channels", "lam", "digest"),
    [
        (2, 3, 40.0, "672d50c9626d5e42"),
        (12, 3, 10.0, "c1865240ec50ad96"),
        (40, 3, 40.0, "dfbe73d815ede4e1"),
        (100, 3, 2.0, "282a7457ed692801"),
        (300, 3, 40.0, "c44ba3a8722c85f9"),
        (24, 4, 10.0, "ea7b4f0fb97b8a23"),
    ],
)
def test_pinned_labels(colors, channels, lam, digest):
    """The labels chosen stay the same through refactors of the kernel (pair rows, k <= 32; single rows; uint16)."""
    image = _ramp(40, 56, channels, colors)
    rng = np.random.default_rng(colors)
    palette = image.reshape(-1, channels)[rng.choice(40 * 56, colors, replace=False)]
    if channels == 4:
        image[:6, :, 3] = 0
        palette[0] = 0
    d = ((image[:, :, None, :].astype(np.int64) - palette[None, None].astype(np.int64)) ** 2).sum(axis=-1)
    nearest = d.argmin(axis=-1).astype(np.uint16 if colors > 256 else np.uint8)
    if channels == 4:
        nearest[image[:, :, 3] == 0] = 0
    labels, error = rdo_labels(image, nearest, palette, lam, has_alpha=channels == 4)
    assert (labels != nearest).any()
    assert hashlib.sha256(labels.tobytes() + str(error).encode()).hexdigest()[:16] == digest


def _label_map(kind: str, colors: int, shape: tuple[int, int] = (96, 128)) -> np.ndarray:
    """Synthetic label maps: smooth (a quantized ramp), random, tiled (a repeated tile), blocks (with 5 % noise)."""
    rng = np.random.default_rng(colors)
    h, w = shape
    if kind == "smooth":
        y, x = np.mgrid[0:h, 0:w]
        field = (0.6 * x / w + 0.4 * y / h) * (colors - 1) + rng.normal(0, 0.6, shape)
        labels = np.clip(np.rint(field), 0, colors - 1)
    elif kind == "random":
        labels = rng.integers(0, colors, shape)
    elif kind == "tiled":
        labels = np.tile(rng.integers(0, colors, (8, 12)), (h // 8 + 1, w // 12 + 1))[:h, :w]
    else:
        labels = np.repeat(np.repeat(rng.integers(0, colors, (h // 8 + 1, w // 8 + 1)), 8, 0), 8, 1)[:h, :w]
        labels = np.where(rng.random(shape) < 0.05, rng.integers(0, colors, shape), labels)
    return labels.astype(np.uint16 if colors > 256 else np.uint8)


# k = 2 and 16: escape rows on pairs of labels, candidate table B on (W, N);
# 64: single-label rows, B on (W, N); 256, 1000: neither (1000 in uint16, rows masked).
@pytest.mark.parametrize("colors", [2, 16, 64, 256, 1000])
@pytest.mark.parametrize("kind", ["smooth", "random", "tiled", "blocks"])
def test_the_labellers_model_prices_a_map_as_the_cm_coder_codes_it(kind, colors):
    """The labeller's estimate is the coder's length, less the range coder's own bytes.

    The coder's length is the ideal code length of its decisions (which the
    labeller sums) plus the range coder's own bytes: its first byte (the initial
    cache) and four flushed ones, less 0 to 1 byte the last range still
    holds, i.e. 4 to 5 bytes; its 12-bit range arithmetic moves that by a
    few hundredths of a byte on these maps.  One more byte either way is
    the margin.  This ties the estimate to real bytes; a drift worth less
    than a byte a map (a context bit that matters on row 0 only) passes it,
    and is caught by the exact comparison with the plain-Python model below.
    """
    labels = _label_map(kind, colors)
    estimate = model_bits(labels, colors) / 8
    coded = len(encode_labels(labels, colors))
    assert 3.0 <= coded - estimate <= 6.0, (coded, estimate)


# Colours on both sides of each threshold of the model: escape rows on pairs of
# labels up to 32 colours, candidate table B on (W, N) up to 64, escape rows
# masked above 1024; non-powers of two skip escape bits.
@pytest.fixture(scope="module")
def cost_table() -> np.ndarray:
    """rdo's cost table, built once for the module: each build is 4095 logarithms in Python, 0.1 s."""
    return _cost_table()


@pytest.mark.parametrize("colors", [2, 3, 16, 17, 33, 64, 65, 256, 1000, 2049])
@pytest.mark.parametrize("kind", ["smooth", "random", "tiled", "blocks"])
@pytest.mark.parametrize("shape", [(1, 37), (9, 1), (23, 29)])
def test_the_labellers_model_prices_every_decision_as_the_spec_model(kind, colors, shape, cost_table):
    """The labeller's pricing with the cm model is exactly the plain-Python model's of tests/cm_reference.py.

    Both sum -log2 p, from the same cost table, over the decisions method cm
    codes, the plain-Python model holding the labels as the coder does
    (tests/test_cm.py holds it to the coder's bytes).  Each cost is a
    multiple of 2**-24 below 13 and the sums stay far below 2**29, so
    float64 adds them exactly, in any order: the totals must be equal, and
    any decision priced with another probability (a context, a counter or
    a table that differs) changes them.  Row 0, the first columns and the
    edges (where the §5.1 virtual labels live) are a large share of these
    small maps.
    """
    labels = _label_map(kind, colors, shape)
    assert model_bits(labels, colors) == spec_ideal_bits(labels, colors, cost_table)


def test_kernel_refuses_inputs_it_would_read_past(cost_table):
    """rdo_labels' kernel checks shapes, alpha, the cost table and the nearest entries against the palette."""
    from kmcodec import _kernels

    pix, palette, near, cost = (
        np.zeros((4, 5, 3), np.uint8),
        np.zeros((2, 3), np.uint8),
        np.zeros((4, 5), np.uint8),
        cost_table,
    )
    assert _kernels.rdo_labels(pix, palette, near, 1.0, -1, cost, 2.0, np.zeros((4, 5), np.uint8)) == 0
    bad = [
        (pix, palette, near, 1.0, 3, cost, 2.0, np.zeros((4, 5), np.uint8)),  # alpha past the channels
        (pix, palette, near, 1.0, -2, cost, 2.0, np.zeros((4, 5), np.uint8)),
        (pix, palette, near, 1.0, -1, cost[:100], 2.0, np.zeros((4, 5), np.uint8)),
        (pix, palette, near, 1.0, -1, cost, 2.0, np.zeros((4, 5), np.uint16)),  # out unlike near
        (pix, palette, near, 1.0, -1, cost, 2.0, np.zeros((4, 4), np.uint8)),
        (pix, palette, near + 2, 1.0, -1, cost, 2.0, np.zeros((4, 5), np.uint8)),  # an entry past the palette
        (pix, np.zeros((2, 4), np.uint8), near, 1.0, -1, cost, 2.0, np.zeros((4, 5), np.uint8)),
        (pix, np.zeros((0, 3), np.uint8), near, 1.0, -1, cost, 2.0, np.zeros((4, 5), np.uint8)),
    ]
    for args in bad:
        with pytest.raises(ValueError):
            _kernels.rdo_labels(*args)


def test_cost_table_is_exact_at_powers_of_two_and_decreasing():
    assert _log2_fixed(1) == 0 and _log2_fixed(4096) == 12 << 24
    cost = _cost_table()
    assert cost[2048] == 1.0 and cost[1024] == 2.0 and cost[1] == 12.0
    assert (np.diff(cost[1:]) < 0).all()
    assert cost[3] == pytest.approx(12 - np.log2(3), abs=1e-6)


# ---------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------
@pytest.fixture
def png(tmp_path):
    path = tmp_path / "flat.png"
    Image.fromarray(_noisy_flat(40, 48)).save(path)
    return path


@pytest.mark.parametrize("value", ["-1", "inf", "nan", "x"])
def test_cli_bad_rdo_is_a_usage_error(png, tmp_path, value):
    """Like a bad -k, --dither or --target-psnr: misuse of the command line exits 2."""
    result = CliRunner().invoke(cli, ["encode", str(png), str(tmp_path / "out.kmc"), f"--rdo={value}"])
    assert result.exit_code == 2
    shown = "'x'" if value == "x" else value
    assert result.stderr.splitlines()[-1] == f"Error: --rdo: {shown} is not a finite number, 0 or more"
    assert not (tmp_path / "out.kmc").exists()


def test_cli_rdo_writes_the_api_bytes(png, tmp_path):
    out = tmp_path / "out.kmc"
    result = CliRunner().invoke(cli, ["encode", str(png), str(out), "-k", "16", "--rdo", "40"])
    assert result.exit_code == 0, result.output
    assert out.read_bytes() == kmcodec.encode(str(png), 16, rdo=40)
    assert out.read_bytes() != kmcodec.encode(str(png), 16)


def test_cli_rdo_with_dither_is_a_usage_error(png, tmp_path):
    result = CliRunner().invoke(cli, ["encode", str(png), str(tmp_path / "o.kmc"), "--rdo", "4", "--dither"])
    assert result.exit_code == 2
    assert "--rdo" in result.stderr


def test_rdo_with_more_than_256_colours_roundtrips():
    image = _noisy_flat(48, 64, seed=9)
    data = kmcodec.encode(image, 300, rdo=10)
    info = kmcodec.read_info(data)
    assert info.colors > 256 and info.bits_per_label > 8
    assert info.mse == pytest.approx(_mse(data, image), rel=1e-12)
    assert len(data) < len(kmcodec.encode(image, 300))


def test_cli_shared_palette_batch_with_rdo(tmp_path):
    inputs = []
    for seed in (1, 2):
        path = tmp_path / f"in{seed}.png"
        Image.fromarray(_noisy_flat(24, 32, seed=seed)).save(path)
        inputs.append(str(path))
    out = tmp_path / "out"
    args = ["encode", *inputs, "-o", str(out), "--shared-palette", "-k", "8", "--rdo", "30", "-q"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    palette = kmcodec.shared_palette(inputs, 8, colorspace="oklrab")  # the batch fits for the eye
    for path in inputs:
        name = path.rsplit("/", 1)[1].replace(".png", ".kmc")
        assert (out / name).read_bytes() == kmcodec.encode(path, palette=palette, colorspace="oklrab", rdo=30)
