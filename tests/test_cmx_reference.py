"""Method 6, cmx (spec/kmc-method-cm.md §11), as tests/cm_reference.py implements it: its tables, round trips,
and the same bytes from kmcodec's kernel."""

from __future__ import annotations

import math

import numpy as np
import pytest
from cm_reference import SQ, STRETCH, spec_decode, spec_decode_raw, spec_encode, spec_model, squash
from test_cm import _dtype, _random  # the label maps test_cm checks the other methods on

from kmcodec.cm import decode_labels, encode_labels


def _glyphs(shape: tuple[int, int], colors: int, seed: int) -> np.ndarray:
    """Labels like text: a few 4 x 3 glyphs repeated 4 apart on a background of 0, so that §10's offsets find them."""
    rng = np.random.default_rng(seed)
    h, w = shape
    glyphs = rng.integers(1, colors, (3, 4, 3))
    glyphs[rng.random(glyphs.shape) < 0.4] = 0
    out = np.zeros((h, w), np.int64)
    for top in range(1, h - 3, 5):
        for left in range(1, w - 2, 4):
            out[top : top + 4, left : left + 3] = glyphs[rng.integers(0, len(glyphs))]
    return out.astype(_dtype(colors))


class _Recorder:
    """A coder that codes nothing and keeps every decision's (P, bit)."""

    def __init__(self) -> None:
        self.decisions: list[tuple[int, int]] = []

    def code(self, prob: int, bit: int) -> int:
        self.decisions.append((prob, bit))
        return bit


# ---------------------------------------------------------------------------
# §11.1's tables and §11.3's arithmetic, as the spec states them
# ---------------------------------------------------------------------------
def test_squash_points_are_the_rounded_logistic():
    assert len(SQ) == 33
    assert [round(4096 / (1 + math.exp(-d / 256))) for d in range(-2048, 2049, 128)] == SQ


def test_squash_at_a_few_points():
    assert [squash(d) for d in (-5000, -2048, -2047, -1, 0, 1, 2, 128, 1983, 1984, 2047, 5000)] == [
        1, 1, 1, 2044, 2048, 2052, 2056, 2550, 4094, 4095, 4095, 4095
    ]  # fmt: skip
    assert squash(64) == (2048 * 64 + 2550 * 64 + 64) >> 7 == 2299  # halfway between SQ[16] and SQ[17]
    assert squash(-1) == (SQ[15] * 1 + SQ[16] * 127 + 64) >> 7  # j = 15, f = 127: the floor for negative d


def test_stretch_is_the_least_d_whose_squash_reaches_p():
    assert len(STRETCH) == 4096
    assert STRETCH[0] == STRETCH[1] == -2047
    assert STRETCH[2045:2049] == [0, 0, 0, 0] and STRETCH[2044] == -1 and STRETCH[2049] == 1
    assert STRETCH[4095] == 1984  # so §11.1's last loop assigns nothing
    assert min(STRETCH) == -2047 and max(STRETCH) == 1984
    assert all(squash(STRETCH[p]) >= p and squash(STRETCH[p] - 1) < p for p in range(2, 4096))


def test_first_mixed_decisions_by_hand():
    """The strip 0 1 0 (k = 2): flat F[3] hit, F[3] miss, escape (set 16, fresh: P 2048), F[10] miss, escape.

    The first escape's bit 1 teaches set 16's bias weight (256 * (4096 - 2048) * 64) >> 16 = 512; the second
    escape sees fresh a, b and c (other rows and slot; stretched 0) and PD[517], which the first escape raised
    but whose weight is still 0, so dot = (512 * 256) >> 16 = 2 and P = squash(2) = 2056.
    """
    coder = _Recorder()
    spec_model(coder, [[0, 1, 0]], 1, 3, 2, mix=True)
    assert coder.decisions == [(2048, 1), (3413, 0), (2048, 1), (2048, 0), (2056, 0)]


# ---------------------------------------------------------------------------
# The reference decodes what it encodes, reading exactly its bytes (§2.1, §6)
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("colors", [2, 3, 16, 17, 256, 300, 65536])
@pytest.mark.parametrize("shape", [(1, 1), (1, 37), (37, 1), (2, 3), (3, 3), (17, 5)])
def test_reference_round_trip_reads_every_byte_and_ends_at_code_0(shape, colors):
    for labels in (_random(shape, colors, 1), _glyphs(shape, colors, 2)):
        data = spec_encode(labels, colors, mix=True)
        assert data[0] == 0 and len(data) >= 5
        out, used, value = spec_decode_raw(data, *shape, colors, mix=True)
        assert (used, value) == (len(data), 0)
        np.testing.assert_array_equal(out, labels)


def test_mixer_changes_the_bytes_but_not_the_walk():
    """Same labels, other probabilities: cmx's bytes are not cm2d's, and a glyph page codes smaller."""
    labels = _glyphs((30, 40), 16, 3)
    cmx, cm2d = spec_encode(labels, 16, mix=True), spec_encode(labels, 16, twod=True)
    assert cmx != cm2d and len(cmx) < len(cm2d)
    assert spec_encode(labels, 16, twod=True, mix=True) == cmx  # mix implies twod


# ---------------------------------------------------------------------------
# kmcodec's kernel (model CMX) gives the reference's bytes
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("colors", [2, 3, 16, 17, 256, 300, 65536])
@pytest.mark.parametrize("shape", [(1, 1), (1, 6), (6, 1), (2, 3), (9, 11), (17, 5)])
def test_the_spec_alone_gives_the_same_cmx_bytes(shape, colors):
    for labels in (_random(shape, colors, 20), _glyphs(shape, colors, 21)):
        data = encode_labels(labels, colors, mix=True)
        assert spec_encode(labels, colors, mix=True) == data
        np.testing.assert_array_equal(decode_labels(data, *shape, colors, mix=True), labels)
        np.testing.assert_array_equal(spec_decode(data, *shape, colors, mix=True), labels)


@pytest.mark.parametrize(("shape", "colors"), [((64, 64), 17), ((65, 64), 16)])
def test_the_spec_alone_gives_the_same_cmx_bytes_around_xb_12(shape, colors):
    """X has 2^12 counters up to 4096 labels and 2^13 from 4097 (§11.1's xb)."""
    labels = _glyphs(shape, colors, 22)
    assert spec_encode(labels, colors, mix=True) == encode_labels(labels, colors, mix=True)
