"""tools/bench_labels.py: the whole-decode timing's statistics and a tiny run of it."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from toolmodules import load_tool


@pytest.fixture(scope="module")
def bench():
    return load_tool("bench_labels")


def test_ratio_stats_pairs_runs_by_round(bench):
    stats = bench.ratio_stats([2.0, 9.0, 3.0, 4.0], [1.0, 3.0, 2.0, 1.0])
    assert stats["best"] == 2.0  # min 2 / min 1
    assert stats["median"] == pytest.approx(2.5)  # of 2, 3, 1.5, 4
    assert stats["q1"] == pytest.approx(1.875)
    assert stats["q3"] == pytest.approx(3.25)
    one = bench.ratio_stats([3.0], [2.0])
    assert one == {"best": 1.5, "median": 1.5, "q1": 1.5, "q3": 1.5}


def test_paired_runs_alternate_order(bench):
    calls = []
    times = bench.paired_runs({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, 3)
    assert calls == ["a", "b", "b", "a", "a", "b"]
    assert all(len(times[n][clock]) == 3 for n in "ab" for clock in ("wall", "cpu"))
    assert all(t >= 0 for n in "ab" for clock in ("wall", "cpu") for t in times[n][clock])


def test_whole_decode_tiny(bench, tmp_path):
    rng = np.random.default_rng(5)
    y, x = np.mgrid[0:40, 0:50]
    img = np.stack([x * 5, y * 6, (x + y) * 2], axis=-1) + rng.integers(0, 20, (40, 50, 3))
    path = tmp_path / "photo.png"
    Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(path)
    args = bench.parse_args([str(tmp_path), "--whole-mpx", "0.004", "--whole-repeat", "2", "--whole-k", "16,3"])
    rows = bench.whole_decode(path, args.whole_ks, args)
    assert [r["k"] for r in rows] == [16, 3]
    for r in rows:
        assert r["width"] * r["height"] == pytest.approx(4000, rel=0.05)
        assert len(r["runs"]["kmc"]["wall"]) == len(r["runs"]["png"]["cpu"]) == 2
        assert r["wall"]["best"] > 0 and r["cpu"]["median"] > 0
        assert set(r["labels"]) == {"cm", "cmm", "cm2d", "cmx", "search"}
        assert r["labels"]["cm"]["methods"] == ["cm"]
        assert r["labels"]["search"]["bytes"] <= r["labels"]["cm"]["bytes"]
    assert rows[0]["limit"] == 1.0 and rows[1]["limit"] is None
    text = "\n".join(bench.whole_report(rows, args))
    assert "| 16 | auto, effort 2 |" in text
    assert "(<= 1)" in text
