"""The cm label coder (kmcodec.cm, spec/kmc-method-cm.md): round trips, pinned bytes, hostile streams."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from cm_reference import spec_decode, spec_decode_raw, spec_encode

from kmcodec import _kernels as kernels
from kmcodec.cm import decode_labels, decode_pixels, encode_labels, max_coded_size
from kmcodec.errors import FormatError, ParameterError, TruncatedError
from kmcodec.labels import (
    MATCH_PROBE_ALWAYS,
    MATCH_PROBE_MIN,
    MATCH_PROBE_MIN_2D,
    MATCH_PROBE_ROW_STEP,
    MATCH_PROBE_SMALL,
    match_may_pay,
)

SHAPES = [(1, 1), (1, 2), (2, 1), (1, 37), (37, 1), (2, 2), (3, 5), (17, 13), (40, 61)]
COLORS = [1, 2, 3, 16, 17, 256, 4096]
#: The kernels' models: methods cm, cmm, cm2d and cmx.
MODELS = pytest.mark.parametrize(
    "model",
    [kernels.CM_MODEL_CM, kernels.CM_MODEL_CMM, kernels.CM_MODEL_CM2D, kernels.CM_MODEL_CMX],
    ids=["cm", "cmm", "cm2d", "cmx"],
)


def _kw(model: int) -> dict:
    """encode_labels' and decode_labels' keywords for a model."""
    return {
        "match": model == kernels.CM_MODEL_CMM,
        "twod": model == kernels.CM_MODEL_CM2D,
        "mix": model == kernels.CM_MODEL_CMX,
    }


def _dtype(colors: int) -> type:
    return np.uint8 if colors <= 256 else np.uint16


def _smooth(shape: tuple[int, int], colors: int, seed: int) -> np.ndarray:
    """Labels like a quantized photo: flat regions, edges, some noise."""
    rng = np.random.default_rng(seed)
    h, w = shape
    y, x = np.mgrid[0:h, 0:w]
    field = np.sin(x / 7.0 + seed) + np.cos(y / 5.0) + 0.3 * rng.standard_normal(shape)
    field = (field - field.min()) / (np.ptp(field) + 1e-9)
    return np.minimum((field * colors).astype(np.int64), colors - 1).astype(_dtype(colors))


def _random(shape: tuple[int, int], colors: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, colors, shape).astype(_dtype(colors))


def _tiled(shape: tuple[int, int], colors: int, seed: int) -> np.ndarray:
    """Labels like text or a user interface: a few glyphs repeated on a flat background, some noise."""
    rng = np.random.default_rng(seed)
    h, w = shape
    glyphs = rng.integers(0, colors, (6, 5, 4))
    glyphs[rng.random(glyphs.shape) < 0.4] = 0
    out = np.zeros((h, w), np.int64)
    for top in range(0, h - 4, 7):
        for left in range(int(rng.integers(0, 3)), w - 3, 5):
            out[top : top + 5, left : left + 4] = glyphs[rng.integers(0, len(glyphs))]
    noise = rng.random(shape) < 0.01
    out[noise] = rng.integers(0, colors, int(noise.sum()))
    return out.astype(_dtype(colors))


def _round_trip(labels: np.ndarray, colors: int, match: bool = False, twod: bool = False, mix: bool = False) -> bytes:
    data = encode_labels(labels, colors, match=match, twod=twod, mix=mix)
    out = decode_labels(data, *labels.shape, colors, match=match, twod=twod, mix=mix)
    assert out.dtype == _dtype(colors)
    assert out.shape == labels.shape
    np.testing.assert_array_equal(out, labels)
    assert len(data) <= max_coded_size(*labels.shape, colors, match, twod, mix)
    return data


# ---------------------------------------------------------------------------
# The encoder's guess whether cmm may pay
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("colors", [16, 256])
def test_match_probe_says_yes_where_cmm_wins_and_no_on_photo_like_maps(colors):
    tiled = _tiled((300, 400), colors, 1)
    smooth = _smooth((300, 400), colors, 1)
    assert tiled.size >= MATCH_PROBE_ALWAYS
    assert len(encode_labels(tiled, colors, match=True)) < len(encode_labels(tiled, colors))
    assert match_may_pay(tiled)
    assert len(encode_labels(smooth, colors, match=True)) >= len(encode_labels(smooth, colors))
    assert not match_may_pay(smooth)
    assert not match_may_pay(_random((300, 400), colors, 1))


def test_auto_search_at_effort_2_tries_cmm_cm2d_and_cmx_where_the_probe_says_so():
    from kmcodec.format import Method
    from kmcodec.labels import EFFORT_METHODS, charged, code_strip, encode_strip

    tiled, smooth = _tiled((300, 400), 16, 1), _smooth((300, 400), 16, 1)
    coded = {
        Method.CMM: encode_labels(tiled, 16, match=True),
        Method.CM2D: encode_labels(tiled, 16, twod=True),
        Method.CMX: encode_labels(tiled, 16, mix=True),
    }
    best = min(coded, key=lambda m: (len(coded[m]), m))
    assert code_strip(tiled, 16, EFFORT_METHODS[2], True) == (best, coded[best])
    text = _glyph_lines((300, 400), 16, 1, jitter=1)  # a monospaced font: repeats frequent enough for cm2d and cmx
    assert code_strip(text, 16, EFFORT_METHODS[2], True) == (Method.CMX, encode_labels(text, 16, mix=True))
    # repeats, but too rare for cm2d on a large strip: the smaller of cm and cmm
    sparse = _glyph_lines((300, 900), 16, 1)
    assert sparse.size >= MATCH_PROBE_SMALL and match_may_pay(sparse)
    plain = {m: encode_strip(sparse, 16, m) for m in (Method.CM, Method.CMM)}
    assert code_strip(sparse, 16, EFFORT_METHODS[2], True) == min(plain.items(), key=lambda mb: (len(mb[1]), mb[0]))
    # the probe says no: the search is effort 1's, stored and cm, without deflate and LZMA
    assert code_strip(smooth, 16, EFFORT_METHODS[2], True) == code_strip(smooth, 16, EFFORT_METHODS[1], False)
    # no probe: every method tried; cmx, which mixes in wider contexts, is the smallest even on this smooth
    # map, but by less than its charge for decoding slower (labels.SLOW_METHOD_CHARGE), so cm wins
    sizes = {m: len(encode_strip(smooth, 16, m)) for m in (Method.CM, Method.CMM, Method.CM2D, Method.CMX)}
    assert min(sizes, key=sizes.get) == Method.CMX and charged(Method.CMX, sizes[Method.CMX]) > sizes[Method.CM]
    assert code_strip(smooth, 16, EFFORT_METHODS[2], False)[0] == Method.CM
    # repeats of a noise tile: the probe says yes, and LZMA, tried after the level-1 deflate, wins
    tiles = np.tile(np.random.default_rng(0).integers(0, 256, (64, 64)).astype(np.uint8), (5, 6))
    assert code_strip(tiles, 256, EFFORT_METHODS[2], True)[0] == Method.LZMA


def test_auto_search_at_effort_2_codes_only_cmm_cm2d_and_cmx_where_the_probe_fires(monkeypatch):
    from kmcodec import cm, labels
    from kmcodec.format import Method
    from kmcodec.labels import EFFORT_METHODS, code_strip

    tiled = _tiled((300, 400), 16, 1)
    assert match_may_pay(tiled)
    tried = []
    encode_strip = labels.encode_strip
    monkeypatch.setattr(labels, "encode_strip", lambda *a, **kw: tried.append(a[2]) or encode_strip(*a, **kw))
    code_strip(tiled, 16, EFFORT_METHODS[2], True)
    assert Method.CM not in tried and {Method.CMM, Method.CM2D, Method.CMX} <= set(tried)
    assert tried[0] == Method.CMX  # the likely winner first: its size is the others' budget
    tried.clear()
    code_strip(_smooth((300, 400), 16, 1), 16, EFFORT_METHODS[2], True)  # photo-like: the probe keeps cm
    assert Method.CMX not in tried and Method.CM2D not in tried
    tried.clear()
    code_strip(tiled, 16, EFFORT_METHODS[3], False)  # effort 3 tries every method
    assert set(tried) == set(Method) - {Method.STORED}
    tried.clear()
    small = tiled[:100, :100]  # below the probe's size: cm and cmm
    code_strip(small, 16, EFFORT_METHODS[2], True)
    assert {Method.CM, Method.CMM} <= set(tried) and not {Method.CM2D, Method.CMX} & set(tried)
    # repeats too rare for cm2d (but enough for cmm): a large strip tries cm and cmm, a small one every method
    sparse = _glyph_lines((300, 900), 16, 1)
    hits, seen = cm.match_counts(sparse, MATCH_PROBE_ROW_STEP)
    assert MATCH_PROBE_MIN * seen <= hits < MATCH_PROBE_MIN_2D * seen
    for strip, twod in ((sparse, False), (sparse[:, :400], True)):
        assert (strip.size < MATCH_PROBE_SMALL) == twod
        tried.clear()
        code_strip(strip, 16, EFFORT_METHODS[2], True)
        assert {Method.CM, Method.CMM} <= set(tried)
        assert ({Method.CM2D, Method.CMX} <= set(tried)) == twod
        assert bool({Method.CM2D, Method.CMX} & set(tried)) == twod


@MODELS
def test_a_budget_gives_the_same_bytes_or_none(model):
    labels = _smooth((200, 300), 64, 3)
    full = encode_labels(labels, 64, **_kw(model))
    assert encode_labels(labels, 64, **_kw(model), limit=len(full)) == full
    assert encode_labels(labels, 64, **_kw(model), limit=10 * len(full)) == full
    assert encode_labels(labels, 64, **_kw(model), limit=len(full) - 1) is None
    assert encode_labels(labels, 64, **_kw(model), limit=0) is None
    assert encode_labels(labels[:0], 64, **_kw(model), limit=0) == b""
    assert encode_labels(labels[:0], 64, **_kw(model), limit=-1) is None
    with pytest.raises(ParameterError, match="limit"):
        encode_labels(labels, 64, **_kw(model), limit=1.5)


def test_match_probe_always_says_yes_on_small_strips():
    small = _smooth((100, 100), 16, 2)
    assert small.size < MATCH_PROBE_ALWAYS
    assert match_may_pay(small)


def test_match_probe_counts_only_long_matches_off_w():
    # a row pattern repeated with period 9 along every row: long matches, most labels differ from W
    row = np.tile(np.array([0, 1, 2, 3, 4, 5, 6, 7, 8], np.uint8), 40)[:355]
    labels = np.stack([np.roll(row, y) for y in range(200)])
    hits, seen = kernels.cm_match_probe(labels, 1)
    assert 0 < hits <= seen <= 198 * 352
    assert hits > 0.8 * seen
    # a map with no repeats at all: nothing to count
    noise = np.random.default_rng(0).integers(0, 256, (200, 355)).astype(np.uint8)
    hits, seen = kernels.cm_match_probe(noise, 1)
    assert hits == 0 and seen > 0.9 * 198 * 352


# ---------------------------------------------------------------------------
# Round trips
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("colors", COLORS)
@pytest.mark.parametrize("shape", SHAPES)
def test_round_trip_random_and_smooth(shape, colors):
    _round_trip(_random(shape, colors, 1), colors)
    _round_trip(_smooth(shape, colors, 2), colors)


@pytest.mark.parametrize("colors", COLORS)
@pytest.mark.parametrize("shape", SHAPES)
def test_match_round_trip_random_smooth_and_tiled(shape, colors):
    for labels in (_random(shape, colors, 1), _smooth(shape, colors, 2), _tiled(shape, colors, 3)):
        _round_trip(labels, colors, match=True)


@pytest.mark.parametrize("colors", COLORS)
@pytest.mark.parametrize("shape", SHAPES)
def test_twod_round_trip_random_smooth_and_tiled(shape, colors):
    for labels in (_random(shape, colors, 1), _smooth(shape, colors, 2), _tiled(shape, colors, 3)):
        _round_trip(labels, colors, twod=True)


def _glyph_lines(shape: tuple[int, int], colors: int, seed: int, jitter: int = 3) -> np.ndarray:
    """Labels like text: lines of glyphs, each glyph drawn from a small set, spaced 6 + 0 ..= jitter - 1 apart."""
    rng = np.random.default_rng(seed)
    h, w = shape
    glyphs = rng.integers(1, colors, (12, 9, 6))
    glyphs[rng.random(glyphs.shape) < 0.5] = 0
    out = np.zeros((h, w), np.int64)
    for top in range(1, h - 9, 11):
        left = int(rng.integers(0, 4))
        while left + 6 < w:
            out[top : top + 9, left : left + 6] = glyphs[rng.integers(0, len(glyphs))]
            left += 6 + int(rng.integers(0, jitter))
    return out.astype(_dtype(colors))


@pytest.mark.parametrize("colors", [16, 256])
def test_twod_model_finds_glyph_repeats(colors):
    """On lines of glyphs cm2d is smaller than cmm and cm; on a smooth map it costs cm little."""
    text = _glyph_lines((200, 300), colors, 4)
    twod = len(_round_trip(text, colors, twod=True))
    assert twod < len(_round_trip(text, colors, match=True))
    assert twod < 0.8 * len(_round_trip(text, colors))
    smooth = _smooth((200, 300), colors, 5)
    assert len(_round_trip(smooth, colors, twod=True)) < 1.1 * len(_round_trip(smooth, colors))


def test_match_and_twod_are_two_methods():
    with pytest.raises(ParameterError, match="one of them"):
        encode_labels(_tiled((9, 9), 16, 1), 16, match=True, twod=True)
    with pytest.raises(ParameterError, match="one of them"):
        decode_labels(b"\0" * 5, 9, 9, 16, match=True, twod=True)
    with pytest.raises(ParameterError, match="one of them"):
        encode_labels(_tiled((9, 9), 16, 1), 16, match=True, mix=True)
    with pytest.raises(ValueError, match="model"):
        kernels.cm_decode(np.zeros((5, 6), np.uint16), 16, b"\0" * 5, 4)


#: Method cmx's round trips: odd sizes, and palettes on both sides of each change of its tables
#: (pair-keyed B up to 64, escape rows on pairs up to 32, the 2^20 cap on escape rows from 1024).
MIX_SHAPES = [(1, 1), (1, 37), (37, 1), (2, 3), (3, 3), (17, 5), (5, 17), (40, 61)]
MIX_COLORS = [2, 3, 16, 17, 256, 300, 65536]


@pytest.mark.parametrize("colors", MIX_COLORS)
@pytest.mark.parametrize("shape", MIX_SHAPES)
def test_mix_round_trip_random_smooth_and_text(shape, colors):
    for labels in (_random(shape, colors, 1), _smooth(shape, colors, 2), _glyph_lines(shape, colors, 3, jitter=1)):
        _round_trip(labels, colors, mix=True)


@pytest.mark.parametrize("colors", [16, 256])
def test_mix_model_is_smaller_than_cm2d_on_glyphs(colors):
    """cmx mixes cm2d's counters with wider contexts: smaller on text, and near cm2d on a smooth map."""
    text = _glyph_lines((200, 300), colors, 4)
    assert len(_round_trip(text, colors, mix=True)) < 0.95 * len(_round_trip(text, colors, twod=True))
    smooth = _smooth((200, 300), colors, 5)
    assert len(_round_trip(smooth, colors, mix=True)) < 1.05 * len(_round_trip(smooth, colors, twod=True))


def test_mix_implies_the_twod_model():
    text = _glyph_lines((30, 40), 16, 6)
    assert encode_labels(text, 16, mix=True) == encode_labels(text, 16, twod=True, mix=True)
    assert encode_labels(text, 16, mix=True) != encode_labels(text, 16, twod=True)


def test_a_file_with_cmx_strips_is_version_1_4_and_one_without_keeps_its_version():
    import kmcodec
    from kmcodec.format import METHOD_MINOR, PREAMBLE_SIZE, Method

    image = np.repeat(np.repeat(_glyph_lines((40, 60), 4, 7, jitter=1), 3, axis=0), 2, axis=1)
    rgb = np.stack([image * 60, image * 20, 255 - image * 50], axis=-1).astype(np.uint8)
    data = kmcodec.encode(rgb, colors=4, method="cmx", rows_per_strip=50)
    assert data[8:10] == bytes([1, METHOD_MINOR[Method.CMX]]) == b"\x01\x04"
    assert kmcodec.read_info(data).strip_methods == ["cmx"] * 3
    np.testing.assert_array_equal(kmcodec.decode(data), rgb)
    for method, minor in (("cm2d", 3), ("cmm", 2), ("cm", 1), ("stored", 0)):
        assert kmcodec.encode(rgb, colors=4, method=method, rows_per_strip=50)[8 : PREAMBLE_SIZE - 2] == bytes(
            [1, minor]
        )


@pytest.mark.parametrize("colors", [16, 256])
def test_match_model_finds_repeats(colors):
    """On repeated many-coloured glyphs cmm is clearly smaller than cm; on a smooth map it costs little."""
    tiled = _tiled((200, 300), colors, 4)
    assert len(_round_trip(tiled, colors, match=True)) < 0.8 * len(_round_trip(tiled, colors))
    smooth = _smooth((200, 300), colors, 5)
    assert len(_round_trip(smooth, colors, match=True)) < 1.1 * len(_round_trip(smooth, colors))


@pytest.mark.parametrize("colors", [2, 17, 256, 65536])
def test_round_trip_uses_the_largest_labels(colors):
    labels = np.full((9, 11), colors - 1, dtype=_dtype(colors))
    labels[::2, ::3] = 0
    labels[4, :] = colors // 2
    _round_trip(labels, colors)


def test_round_trip_65536_colors_all_distinct():
    labels = np.random.default_rng(3).permutation(65536).reshape(256, 256).astype(np.uint16)
    _round_trip(labels, 65536)


def test_round_trip_larger_photo_like_map():
    _round_trip(_smooth((300, 257), 64, 5), 64)


@MODELS
@pytest.mark.parametrize(("colors", "channels"), [(1, 3), (2, 1), (16, 3), (256, 4), (300, 2)])
def test_decode_pixels_is_the_palette_lookup_of_decode_labels(colors, channels, model):
    labels = _smooth((13, 17), colors, 30)
    data = encode_labels(labels, colors, **_kw(model))
    palette = np.random.default_rng(colors).integers(0, 256, (colors, channels)).astype(np.uint8)
    image = np.zeros((20, 17, channels), np.uint8)
    decode_pixels(data, 13, 17, colors, palette, image[3:16], **_kw(model))
    np.testing.assert_array_equal(image[3:16], palette[decode_labels(data, 13, 17, colors, **_kw(model))])
    assert not image[:3].any() and not image[16:].any()
    with pytest.raises(ParameterError):
        decode_pixels(data, 13, 17, colors, palette, image[:12], **_kw(model))


def test_one_colour_and_empty_maps_code_to_nothing():
    assert encode_labels(np.zeros((5, 7), np.uint8), 1) == b""
    np.testing.assert_array_equal(decode_labels(b"", 5, 7, 1), np.zeros((5, 7), np.uint8))
    assert encode_labels(np.zeros((0, 7), np.uint8), 16) == b""
    assert decode_labels(b"", 0, 7, 16).shape == (0, 7)


@MODELS
def test_encoder_that_runs_out_of_room_says_so(model):
    labels = _random((30, 40), 256, 16)
    padded = np.zeros((32, 43), np.uint16)
    padded[2:, 2:42] = labels
    assert kernels.cm_encode(padded, 256, np.empty(100, np.uint8), model) == -1
    out = np.empty(max_coded_size(30, 40, 256, **_kw(model)), np.uint8)
    size = kernels.cm_encode(padded, 256, out, model)
    assert out[:size].tobytes() == encode_labels(labels, 256, **_kw(model))


def test_uniform_map_is_tiny():
    data = _round_trip(np.full((200, 300), 5, np.uint8), 16)
    assert len(data) < 40


def test_accepts_non_contiguous_input_and_any_bytes_like():
    labels = _smooth((30, 40), 16, 4)
    data = encode_labels(labels[:, ::2], 16)
    assert data == encode_labels(np.ascontiguousarray(labels[:, ::2]), 16)
    for wrapped in (bytearray(data), memoryview(data)):
        np.testing.assert_array_equal(decode_labels(wrapped, 30, 20, 16), labels[:, ::2])


# ---------------------------------------------------------------------------
# Determinism and pinned bytes (the worked example of the spec, §7)
# ---------------------------------------------------------------------------
@MODELS
def test_encoding_is_deterministic(model):
    labels = _smooth((50, 70), 256, 6)
    assert encode_labels(labels, 256, **_kw(model)) == encode_labels(labels.copy(), 256, **_kw(model))


EXAMPLE = np.array([[0, 0, 1], [0, 1, 1]], dtype=np.uint8)


def test_spec_example_bytes():
    assert encode_labels(EXAMPLE, 2).hex() == "0061b2109a00"


@pytest.mark.parametrize(
    ("colors", "seed", "digest"),
    [
        (16, 7, "b5949286334dbdaa"),
        (256, 8, "9b108f1715e42107"),
        (4096, 9, "011a76455d5f3610"),
    ],
)
def test_pinned_streams(colors, seed, digest):
    data = encode_labels(_smooth((64, 96), colors, seed), colors)
    assert hashlib.sha256(data).hexdigest()[:16] == digest


@pytest.mark.parametrize(
    ("colors", "seed", "digest"),
    [
        (16, 7, "ce76d53998ab3efb"),
        (256, 8, "2df23bf5e69787aa"),
        (4096, 9, "2d70711187de33d1"),
    ],
)
def test_pinned_match_streams(colors, seed, digest):
    data = encode_labels(_tiled((64, 96), colors, seed), colors, match=True)
    assert hashlib.sha256(data).hexdigest()[:16] == digest


@pytest.mark.parametrize(
    ("colors", "seed", "digest"),
    [
        (16, 7, "c062d6993562cb32"),
        (256, 8, "3a76a019c3febd0a"),
        (4096, 9, "aef6275253d1313e"),
    ],
)
def test_pinned_twod_streams(colors, seed, digest):
    data = encode_labels(_glyph_lines((64, 96), colors, seed), colors, twod=True)
    assert hashlib.sha256(data).hexdigest()[:16] == digest


@pytest.mark.parametrize(
    ("colors", "seed", "digest"),
    [
        (16, 7, "0ca26c4da1e4f3ce"),
        (256, 8, "ab0ad895d018b26b"),
        (4096, 9, "907d4849ad8e5b03"),
    ],
)
def test_pinned_mix_streams(colors, seed, digest):
    """cmx's bytes (§11) as this kernel first wrote them: the 64 x 96 strips use 2^13 slots of table X."""
    data = encode_labels(_glyph_lines((64, 96), colors, seed), colors, mix=True)
    assert hashlib.sha256(data).hexdigest()[:16] == digest


# ---------------------------------------------------------------------------
# The plain-Python implementation of tests/cm_reference.py gives the same bytes
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("colors", [2, 3, 16, 17, 33, 64, 65, 256, 300, 4096, 65536])
@pytest.mark.parametrize("shape", [(1, 1), (1, 6), (6, 1), (9, 11), (21, 17)])
def test_the_spec_alone_gives_the_same_bytes(shape, colors):
    for labels in (_random(shape, colors, 20), _smooth(shape, colors, 21)):
        data = encode_labels(labels, colors)
        assert spec_encode(labels, colors) == data
        np.testing.assert_array_equal(spec_decode(data, *shape, colors), labels)


@pytest.mark.parametrize("colors", [2, 3, 16, 17, 64, 256, 300, 65536])
@pytest.mark.parametrize("shape", [(1, 1), (1, 6), (6, 1), (9, 11), (31, 40)])
def test_the_spec_alone_gives_the_same_match_bytes(shape, colors):
    for labels in (_random(shape, colors, 20), _smooth(shape, colors, 21), _tiled(shape, colors, 22)):
        data = encode_labels(labels, colors, match=True)
        assert spec_encode(labels, colors, match=True) == data
        np.testing.assert_array_equal(spec_decode(data, *shape, colors, match=True), labels)


@pytest.mark.parametrize("colors", [2, 3, 16, 17, 64, 256, 300, 65536])
@pytest.mark.parametrize("shape", [(1, 1), (1, 6), (6, 1), (2, 3), (9, 11), (40, 33)])
def test_the_spec_alone_gives_the_same_twod_bytes(shape, colors):
    for labels in (_random(shape, colors, 20), _smooth(shape, colors, 21), _glyph_lines(shape, colors, 22)):
        data = encode_labels(labels, colors, twod=True)
        assert spec_encode(labels, colors, twod=True) == data
        np.testing.assert_array_equal(spec_decode(data, *shape, colors, twod=True), labels)


@pytest.mark.parametrize("colors", [2, 3, 17, 256, 4096])
@MODELS
def test_garbage_decodes_as_the_spec_says(colors, model):
    """Corrupt bytes too: same labels, same bytes consumed, same final code as the spec's decoder (§2.1)."""
    rng = np.random.default_rng(colors + 2)
    for size in (5, 9, 40, 300):
        for head in (b"\0", b"\0", b"\xff", b"\0\xff\xff\xff\xff"):  # the last starts with code = range
            garbage = head + bytes(rng.integers(0, 256, size, dtype=np.uint8))
            labels, used, value = spec_decode_raw(garbage, 7, 9, colors, **_kw(model))
            padded = np.zeros((9, 12), np.uint16)
            got_used, got_value = kernels.cm_decode(padded, colors, np.frombuffer(garbage, np.uint8), model)
            if used > len(garbage):  # truncated: the kernel may stop as soon as it knows (§6)
                assert got_used > len(garbage)
                continue
            assert (got_used, got_value) == (used, value)
            np.testing.assert_array_equal(padded[2:, 2:11], labels)


def test_spec_example_decodes_by_the_spec():
    np.testing.assert_array_equal(spec_decode(bytes.fromhex("0061b2109a00"), 2, 3, 2), EXAMPLE)


# ---------------------------------------------------------------------------
# Hostile streams: only FormatError, always the right size, always valid labels
# ---------------------------------------------------------------------------
def _decode_or_format_error(data: bytes, h: int, w: int, colors: int, model: int = 0) -> None:
    try:
        out = decode_labels(data, h, w, colors, **_kw(model))
    except FormatError:
        return
    assert out.shape == (h, w)
    assert out.dtype == _dtype(colors)
    assert out.size == 0 or int(out.max()) < colors


@MODELS
@pytest.mark.parametrize("colors", [3, 16, 17, 256, 4096])
def test_truncation_at_many_offsets_is_an_error(colors, model):
    labels = _smooth((20, 23), colors, 10)
    data = encode_labels(labels, colors, **_kw(model))
    # 4096 colours: every third offset and the last 32 (each decode sets up 4096-entry tables; 3 x 3.7 s for all).
    cuts = range(len(data)) if colors <= 256 else sorted({*range(0, len(data), 3), *range(len(data) - 32, len(data))})
    for cut in cuts:
        with pytest.raises(FormatError):
            decode_labels(data[:cut], 20, 23, colors, **_kw(model))


@MODELS
def test_decoder_stops_when_the_bytes_run_out(model):
    """A short stream for a big strip ends at once (§6), not after decoding every label from zeros."""
    data = np.frombuffer(b"\0" + bytes(range(7, 200)), np.uint8)
    padded = np.zeros((5 + 2, 400_000 + 3), np.uint16)
    used, _ = kernels.cm_decode(padded, 300, data, model)
    assert len(data) < used <= len(data) + 2
    with pytest.raises(TruncatedError):
        decode_labels(data.tobytes(), 5, 400_000, 300, **_kw(model))


def test_short_stream_is_truncated_error():
    data = encode_labels(_smooth((20, 23), 16, 11), 16)
    with pytest.raises(TruncatedError):
        decode_labels(data[:-1], 20, 23, 16)
    with pytest.raises(TruncatedError):
        decode_labels(data[:3], 20, 23, 16)


def test_trailing_bytes_are_an_error():
    data = encode_labels(_smooth((20, 23), 16, 12), 16)
    for tail in (b"\0", b"\x01", b"\0" * 9):
        with pytest.raises(FormatError, match="left after"):
            decode_labels(data + tail, 20, 23, 16)


def test_nonzero_first_byte_is_an_error():
    data = bytearray(encode_labels(_smooth((8, 8), 16, 13), 16))
    data[0] = 1
    with pytest.raises(FormatError, match="first byte"):
        decode_labels(bytes(data), 8, 8, 16)


def test_data_where_nothing_is_coded_is_an_error():
    with pytest.raises(FormatError):
        decode_labels(b"\0", 4, 4, 1)
    with pytest.raises(FormatError):
        decode_labels(b"\0\0\0\0\0", 0, 4, 16)


@MODELS
@pytest.mark.parametrize("colors", [2, 3, 17, 256, 4096, 65536])
def test_byte_flips_give_format_error_or_valid_labels(colors, model):
    rng = np.random.default_rng(colors)
    labels = _tiled((24, 31), colors, 14) if model else _smooth((24, 31), colors, 14)
    data = encode_labels(labels, colors, **_kw(model))
    for _ in range(150):
        corrupt = bytearray(data)
        for _ in range(int(rng.integers(1, 4))):
            corrupt[int(rng.integers(len(corrupt)))] ^= int(rng.integers(1, 256))
        _decode_or_format_error(bytes(corrupt), 24, 31, colors, model)


@MODELS
@pytest.mark.parametrize("colors", [2, 5, 16, 100, 256, 1000, 65536])
def test_garbage_gives_format_error_or_valid_labels(colors, model):
    rng = np.random.default_rng(colors + 1)
    for size in (0, 1, 4, 5, 6, 17, 200, 5000):
        for _ in range(5):
            garbage = bytes(rng.integers(0, 256, size, dtype=np.uint8))
            _decode_or_format_error(garbage, 19, 27, colors, model)
            _decode_or_format_error(b"\0" + garbage, 19, 27, colors, model)


def test_garbage_never_decodes_past_the_palette():
    """For non-powers of two the escape code cannot spell a label >= colors (§5.4)."""
    rng = np.random.default_rng(15)
    hits = 0
    for colors in (3, 5, 17, 100, 300):
        for _ in range(40):
            garbage = b"\0" + bytes(rng.integers(0, 256, 64, dtype=np.uint8))
            padded = np.zeros((16 + 2, 16 + 3), np.uint16)
            kernels.cm_decode(padded, colors, np.frombuffer(garbage, np.uint8), False)
            assert int(padded[2:, 2:18].max()) < colors
            hits += 1
    assert hits == 200


# ---------------------------------------------------------------------------
# Misuse
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("colors", [0, -1, 65537, 2.0, True, "16", None])
def test_bad_colors(colors):
    with pytest.raises(ParameterError):
        encode_labels(np.zeros((2, 2), np.uint8), colors)
    with pytest.raises(ParameterError):
        decode_labels(b"", 2, 2, colors)


def test_label_not_below_colors():
    labels = np.zeros((3, 3), np.uint8)
    labels[1, 1] = 16
    with pytest.raises(ParameterError, match="16"):
        encode_labels(labels, 16)


@pytest.mark.parametrize(
    "labels", [np.zeros((2, 2), np.int32), np.zeros(4, np.uint8), [[0, 1]], np.zeros((1, 2, 3), np.uint8)]
)
def test_bad_label_arrays(labels):
    with pytest.raises(ParameterError):
        encode_labels(labels, 16)


@pytest.mark.parametrize(("h", "w"), [(-1, 3), (3, -1), (2.0, 3), (1 << 15, 1 << 14)])
def test_bad_sizes(h, w):
    with pytest.raises(ParameterError):
        decode_labels(b"\0" * 8, h, w, 16)


def test_kernels_refuse_arrays_they_would_read_or_write_past():
    """The compiled kernels check what they are given (kmcodec.cm checks first, with better messages)."""
    padded, out = np.zeros((5, 6), np.uint16), np.empty(100, np.uint8)
    for bad_padded in (np.zeros((1, 6), np.uint16), np.zeros((5, 2), np.uint16), np.zeros((5, 6), np.uint8)):
        with pytest.raises(ValueError):
            kernels.cm_encode(bad_padded, 16, out, False)
    with pytest.raises(ValueError):
        kernels.cm_encode(np.zeros((5, 12), np.uint16)[:, ::2], 16, out, False)  # not contiguous
    for colors in (0, 1, 65537):
        with pytest.raises(ValueError):
            kernels.cm_encode(padded, colors, out, False)
        with pytest.raises(ValueError):
            kernels.cm_decode(padded, colors, b"\0" * 5, False)
    padded[3, 3] = 40  # above the palette: the escape rows of a small palette would be out of their table
    with pytest.raises(ValueError, match="below k"):
        kernels.cm_encode(padded, 3, out, True)
    with pytest.raises(ValueError):
        kernels.cm_encode(np.zeros((5, 6), np.uint16), 16, b"\0" * 100, False)  # read-only output
    assert kernels.cm_encode(np.zeros((5, 6), np.uint16), 16, np.empty(0, np.uint8), False) == -1
    with pytest.raises(ValueError, match="below"):
        kernels.cm_palette(padded, np.zeros((16, 3), np.uint8), np.zeros((3, 3, 3), np.uint8))
    with pytest.raises(ValueError):
        kernels.cm_palette(np.zeros((5, 6), np.uint16), np.zeros((16, 3), np.uint8), np.zeros((3, 4, 3), np.uint8))
    for step in (0, -1):
        with pytest.raises(ValueError):
            kernels.cm_match_probe(np.zeros((5, 5), np.uint8), step)
    assert kernels.cm_match_probe(np.zeros((5, 5), np.uint16), 1 << 62) == (0, 0)


def test_messages_count_one_in_the_singular():
    with pytest.raises(ParameterError, match=r"the palette has 1 colour$"):
        encode_labels(np.ones((2, 2), np.uint8), 1)
    with pytest.raises(FormatError, match=r": 1 byte where nothing is coded"):
        decode_labels(b"\x00", 2, 2, 1)
    with pytest.raises(FormatError, match=r": 1 byte left after the last label"):
        decode_labels(encode_labels(np.array([[0, 1], [1, 0]], np.uint8), 2) + b"\x00", 2, 2, 2)
