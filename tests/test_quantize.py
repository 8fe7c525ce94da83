"""Colour counting of the quantizer (kmcodec.quantize.ColorCounts) and its seeding's response to signals."""

from __future__ import annotations

import _thread
import signal
import threading

import numpy as np
import pytest

import kmcodec
from kmcodec import _kernels, quantize


def _images() -> list[tuple[np.ndarray, bool]]:
    rng = np.random.default_rng(0)
    one_colour = np.zeros((400, 400, 3), np.uint8)  # 159,975 pixels of one colour: two 16-bit wraps
    one_colour[:5, :5] = 7
    halves = np.zeros((256, 512, 3), np.uint8)  # exactly 65,536 of each: a tally of 0 after one wrap
    halves[128:] = 1
    return [
        (one_colour, False),
        (halves, False),
        (rng.integers(0, 256, (300, 700, 3), dtype=np.uint8), False),
        (rng.integers(0, 3, (300, 700, 2), dtype=np.uint8), True),
        (rng.integers(0, 256, (300, 700, 1), dtype=np.uint8), False),
    ]


def _count(image: np.ndarray, has_alpha: bool, tally_pixels: int, monkeypatch) -> quantize.ColorCounts:
    monkeypatch.setattr(quantize, "TALLY_PIXELS", tally_pixels)
    height, width, channels = image.shape

    def blocks():
        return (image[top : top + 37] for top in range(0, height, 37))

    return quantize.ColorCounts.of(blocks, channels, has_alpha, height * width)


@pytest.mark.parametrize("case", range(5))
def test_one_pass_tallies_count_as_the_two_pass_bitmap(case, monkeypatch):
    image, has_alpha = _images()[case]
    two = _count(image, has_alpha, 1 << 62, monkeypatch)
    one = _count(image, has_alpha, 0, monkeypatch)
    np.testing.assert_array_equal(one.distinct, two.distinct)
    np.testing.assert_array_equal(one.counts, two.counts)
    assert one.counts.dtype == two.counts.dtype == np.uint32
    assert one.pixels == two.pixels == image.shape[0] * image.shape[1]
    # Counts from first principles: a key per pixel (transparent pixels as 0).
    flat = image.reshape(-1, image.shape[2])
    keys = np.zeros(len(flat), np.int64)
    for c in range(image.shape[2]):
        keys = keys << 8 | flat[:, c]
    if has_alpha:
        keys[flat[:, -1] == 0] = 0
    expected = np.unique(keys, return_counts=True)[1]
    np.testing.assert_array_equal(one.counts, expected)
    index = np.arange(len(one.distinct), dtype=np.uint32)
    np.testing.assert_array_equal(one.lookup(image, index), two.lookup(image, index))


def test_more_pixels_than_declared_are_refused(monkeypatch):
    monkeypatch.setattr(quantize, "TALLY_PIXELS", 0)
    monkeypatch.setattr(quantize, "SORT_PIXELS", 0)
    image = np.zeros((4, 4, 3), np.uint8)
    with pytest.raises(ValueError, match="more than the 8 pixels"):
        quantize.ColorCounts.of(lambda: [image], 3, False, 8)


@pytest.mark.parametrize("channels", [1, 2, 3])
def test_encode_bytes_do_not_depend_on_the_counting_pass(monkeypatch, channels):
    """A bitmap marked in two passes, tallied in one, or the keys sorted (small images): the same file."""
    image = np.random.default_rng(channels).integers(0, 256, (120, 90, channels), dtype=np.uint8)
    image[::7, ::5] = 0  # fully transparent pixels too, where there is alpha
    monkeypatch.setattr(quantize, "SORT_PIXELS", 0)
    monkeypatch.setattr(quantize, "TALLY_PIXELS", 1 << 62)
    two = kmcodec.encode(image, 16)
    monkeypatch.setattr(quantize, "TALLY_PIXELS", 0)
    assert kmcodec.encode(image, 16) == two
    monkeypatch.setattr(quantize, "SORT_PIXELS", 1 << 62)
    assert kmcodec.encode(image, 16) == two


@pytest.mark.parametrize("columns", [2, 5, 32])
@pytest.mark.parametrize("k", [3, 40, 300])
def test_nearest_is_exact_with_a_table_of_few_columns(k, columns, monkeypatch):
    # The table lists each centre's `columns` nearest; walks that run past them start again
    # along the axis.  Ties included (centres on a coarse grid, some repeated), the search
    # must give brute force's nearest (lowest index on ties) and distance.
    monkeypatch.setattr(quantize, "TABLE_COLUMNS", columns)
    rng = np.random.default_rng(k * 100 + columns)
    centres = np.floor(rng.random((k, 3)) * 16) * 16
    centres[k // 2] = centres[0]
    points = rng.integers(0, 256, (5000, 3)).astype(np.uint8)
    dist = ((points[:, None, :].astype(np.float64) - centres[None]) ** 2).sum(axis=2)
    for guess in (None, rng.integers(0, k, len(points)).astype(np.int32)):
        labels, best = quantize._nearest(points, centres, guess)
        np.testing.assert_array_equal(labels, dist.argmin(axis=1))
        np.testing.assert_array_equal(best, dist.min(axis=1))


@pytest.mark.parametrize("k", [1, 2, 33, 200])
def test_centre_table_is_the_start_of_a_stable_sort(k):
    rng = np.random.default_rng(k)
    centres = np.floor(rng.random((k, 3)) * 8) * 32  # many equal distances
    gaps = ((centres[:, None, :] - centres[None]) ** 2).sum(axis=2)
    ranked = np.argsort(gaps, axis=1, kind="stable")
    width = min(k, 32)
    table, table_dist = np.empty((k, width), np.int32), np.empty((k, width))
    quantize._split(k, quantize._kernels.quant_centre_table, centres, table, table_dist, grain=16)
    np.testing.assert_array_equal(table, ranked[:, :width])
    np.testing.assert_array_equal(table_dist, np.sqrt(np.take_along_axis(gaps, ranked, axis=1))[:, :width])


def _gradient_photo() -> np.ndarray:
    """A noisy colour gradient of 75,289 distinct colours: enough for the coarse levels at k = 256."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:240, 0:320]
    image = np.stack([x * 255 // 319, y * 255 // 239, (x + y) * 255 // 558], axis=-1)
    image += rng.integers(-12, 13, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


def test_exact_colours_are_refined_past_three_iterations(monkeypatch):
    image = _gradient_photo()
    counted = quantize.ColorCounts.of(lambda: [image], 3, False, image.shape[0] * image.shape[1])
    assert len(counted.distinct) > quantize.COARSE_ABOVE
    refine = quantize.REFINE_ITERATIONS
    fit = quantize.fit_palette(counted, 256)
    monkeypatch.setattr(quantize, "REFINE_ITERATIONS", 3)
    short = quantize.fit_palette(counted, 256)
    # The coarse levels are the same, so the difference is the exact level's
    # extra iterations: Lloyd never raises the error, and here 3 stop short.
    assert 3 < fit.iterations - short.iterations + 3 <= refine
    assert fit.mse < short.mse


class _Stop(Exception):
    pass


def test_seeding_stops_for_a_signal_in_the_main_thread():
    """A signal handler runs during a long k-means++ seeding (Ctrl-C need not wait seconds for it to end).

    The seeding polls Python's signal handlers while it works; one that raises stops it where it is,
    so the last centres are never written.  (Without the poll the kernel ran to the end first.)
    """
    rng = np.random.default_rng(1)
    points = rng.integers(0, 256, (100_000, 3), dtype=np.uint8)  # 2,000 centres: seconds of work
    weights = np.ones(len(points), np.uint32)
    k = 2000
    draws = rng.random((k - 1, 2 + int(np.log(k))))
    centres = np.full((k, 3), np.nan)

    def stop(signum, frame):
        raise _Stop

    previous = signal.signal(signal.SIGINT, stop)
    timer = threading.Timer(0.05, _thread.interrupt_main)
    try:
        timer.start()
        with pytest.raises(_Stop):
            _kernels.quant_plusplus(points, weights, 0, draws, centres)
    finally:
        timer.cancel()
        signal.signal(signal.SIGINT, previous)
    assert not np.isnan(centres[0]).any()
    assert np.isnan(centres[-1]).all()


@pytest.mark.parametrize("channels", [3, 4])  # counted in a bitmap of every key, and by sorting keys
def test_counts_past_uint32_are_scaled_down_alike(monkeypatch, channels):
    # A shared palette's set of frames can hold more than 2**32 pixels of one colour, past the uint32
    # counts the kernels read: every count is then divided by one whole number, rounding up.  Shown
    # with a small WEIGHT_MAX, so that the summing runs flush too.
    rng = np.random.default_rng(6)
    frames = [rng.integers(0, 4, (30, 40, channels), dtype=np.uint8) * 60 for _ in range(3)]
    for frame in frames:
        frame[:20] = 7  # 800 pixels of one colour a frame
    blocks = lambda: (b for frame in frames for b in (frame[:13], frame[13:]))  # noqa: E731
    exact = quantize.ColorCounts.of(blocks, channels, False)
    assert exact.counts.max() == 2400 and exact.pixels == 3600
    monkeypatch.setattr(quantize, "WEIGHT_MAX", 255 * 8)  # runs of 8 pixels; counts at most 2040
    scaled = quantize.ColorCounts.of(blocks, channels, False)
    divisor = -(-2400 // quantize.WEIGHT_MAX)
    assert divisor == 2
    assert np.array_equal(scaled.distinct, exact.distinct)
    assert np.array_equal(scaled.counts, (exact.counts.astype(np.uint64) + divisor - 1) // divisor)
    assert scaled.pixels == int(scaled.counts.sum())
