"""tools/bench_shared.py on one small photo: the frames it makes and the ways it codes them."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from toolmodules import load_tool

from kmcodec import metrics

pytestmark = pytest.mark.skipif(not metrics.ssimulacra2_available(), reason=metrics.SSIMULACRA2_MISSING)


def test_frames_pan_from_corner_to_corner():
    bench = load_tool("bench_shared")
    rgb = np.arange(40 * 60 * 3, dtype=np.uint32).reshape(40, 60, 3).astype(np.uint8)
    frames = bench.frames_of(rgb, 3)
    assert [f.shape for f in frames] == [(30, 45, 3)] * 3
    assert np.array_equal(frames[0], rgb[:30, :45])
    assert np.array_equal(frames[1], rgb[5:35, 7:52])
    assert np.array_equal(frames[2], rgb[10:, 15:])


def test_every_way_is_scored(tmp_path):
    bench = load_tool("bench_shared")
    rng = np.random.default_rng(4)
    y, x = np.mgrid[0:48, 0:64]
    photo = np.stack([x * 4, y * 5, (x + y) * 2], axis=-1) + rng.integers(0, 20, (48, 64, 3))
    Image.fromarray(np.clip(photo, 0, 255).astype(np.uint8)).save(tmp_path / "p.png")
    record = bench.photo_scores(tmp_path / "p.png", ks=(8,), count=2)
    ways = record["k"]["8"]
    assert list(ways) == list(bench.WAYS)
    assert all(w["bytes"] > 0 and -100 < w["ssimulacra2"] <= 100 for w in ways.values())
    assert ways["shared (eye)"] != ways["shared (srgb)"]
    text = bench.report([record])
    assert text.count("| 8 |") == 3
