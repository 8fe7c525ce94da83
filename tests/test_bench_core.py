"""tools/bench_core.py: its table rows and ratios, the tiled test image, and one real run of a child."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from PIL import Image
from toolmodules import load_tool


@pytest.fixture(scope="module")
def bench():
    return load_tool("bench_core")


def test_row_gives_medians_bests_and_the_ratio_this_over_baseline(bench):
    runs = {"this": [{"wall": 1.0}, {"wall": 3.0}, {"wall": 2.0}], "baseline": [{"wall": 4.0}, {"wall": 8.0}]}
    row = bench._row("x", runs, "wall", "s")
    assert row == "| x | 2.000 (1.000) s | 6.000 (4.000) s | 0.33 |"
    assert bench._row("x", {"this": [{"wall": 1.0}]}, "wall", "s") == "| x | 1.000 (1.000) s |"


def test_tiled_mirrors_the_photo_to_the_size_asked(bench, tmp_path):
    rng = np.random.default_rng(0)
    photo = rng.integers(0, 256, (5, 7, 3), dtype=np.uint8)
    Image.fromarray(photo).save(tmp_path / "p.png")
    bench.tiled(tmp_path / "p.png", tmp_path / "t.png", width=30, height=12)
    out = np.asarray(Image.open(tmp_path / "t.png"))
    assert out.shape == (12, 30, 3)
    assert (out[:5, :7] == photo).all()
    assert (out[:5, 7:14] == photo[:, ::-1]).all()
    assert (out[5:10, :7] == photo[::-1]).all()


def test_side_runs_a_child_and_measures_it(bench, tmp_path):
    side = bench.Side("this", sys.executable, keep_pythonpath=True)
    run = side.run(["-c", "print(sum(range(10)))"], tmp_path)
    assert run["out"].strip() == "45"
    assert run["wall"] > 0 and run["rss_mib"] > 1
    with pytest.raises(SystemExit, match="exit 3"):
        side.run(["-c", "raise SystemExit(3)"], tmp_path)
