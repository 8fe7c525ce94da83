"""tools/bench_quality.py --curves (tools/quality_curves.py) on a tiny image, with a stand-in pngquant."""

from __future__ import annotations

import json
import math
import os
import stat
import sys
import textwrap

import numpy as np
import pytest
from PIL import Image
from toolmodules import load_tool

#: Quantizes as pngquant's command line asks, with Pillow: the tool's plumbing, not pngquant's quality.
FAKE_PNGQUANT = """\
import sys
from PIL import Image

args = sys.argv[1:]
out = args[args.index("--output") + 1]
k, src = int(args[args.index("--") - 1]), args[args.index("--") + 1]
dither = Image.Dither.NONE if "--nofs" in args else Image.Dither.FLOYDSTEINBERG
Image.open(src).convert("RGB").quantize(k, dither=dither).save(out)
"""


@pytest.fixture(scope="module")
def bench():
    return load_tool("bench_quality")


@pytest.fixture
def curves(bench):
    return sys.modules["quality_curves"]


@pytest.fixture
def fake_pngquant(tmp_path, monkeypatch):
    folder = tmp_path / "bin"
    folder.mkdir()
    script = folder / "pngquant"
    script.write_text(f"#!{sys.executable}\n" + textwrap.dedent(FAKE_PNGQUANT))
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{folder}{os.pathsep}{os.environ['PATH']}")
    return script


def test_bd_rate_of_scaled_and_shifted_curves(curves):
    ours = [(1000, 20.0), (1500, 40.0), (2600, 55.0), (4000, 70.0)]
    assert curves.bd_rate(ours, ours) == 0.0
    assert curves.bd_rate(ours, [(2 * r, q) for r, q in ours]) == pytest.approx(-50.0)
    assert curves.bd_rate([(2 * r, q) for r, q in ours], ours) == pytest.approx(100.0)
    assert curves.bd_rate(ours[::-1], [(2 * r, q) for r, q in ours]) == pytest.approx(-50.0)  # any order
    # Only the shared quality range counts (log bytes linear in quality, so any part of it interpolates alike).
    line = [(1000 * 2 ** (q / 20), q) for q in (20.0, 40.0, 55.0, 70.0)]
    assert curves.bd_rate(line, [(3 * r, q) for r, q in line[1:3]]) == pytest.approx(-200 / 3)
    assert curves.bd_rate(ours, [(10, 80.0), (20, 90.0)]) is None  # no shared quality
    assert curves.bd_rate(ours[:1], ours) is None


def test_frontier_drops_points_beaten_on_bytes_and_quality(curves):
    points = [(100, 10.0), (200, 30.0), (250, 25.0), (300, 30.0), (300, 35.0), (400, 50.0)]
    assert curves._frontier(points) == [(100, 10.0), (200, 30.0), (300, 35.0), (400, 50.0)]


def test_curves_run_on_a_tiny_image(bench, curves, fake_pngquant, tmp_path, capsys):
    y, x = np.mgrid[0:40, 0:48]
    rgb = np.stack([x * 5, y * 6, (x + y) * 3], axis=-1) + np.random.default_rng(2).integers(0, 20, (40, 48, 3))
    folder = tmp_path / "images"
    folder.mkdir()
    Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8)).save(folder / "tiny.png")
    out = tmp_path / "curves.json"
    bench.main([str(folder), "--curves", "--k", "4,8,16", "--no-oxipng", "--json", str(out)])
    text = capsys.readouterr().out
    assert "## BD-rate: bytes at equal quality" in text and "## Issue 18 targets" in text

    doc = json.loads(out.read_text())
    assert [(r["image"], r["k"]) for r in doc["records"]] == [("tiny.png", 4), ("tiny.png", 8), ("tiny.png", 16)]
    for record in doc["records"]:
        assert set(record["curves"]) == set(curves.CURVES)
        for name, point in record["curves"].items():
            assert point["bytes"] > 0 and point["colors"] <= record["k"], name
            assert point["ssimulacra2"] < 100 and math.isfinite(point["psnr"]), name
        points = record["curves"]
        for name in ("pngquant", "pngquant_nofs"):  # the WebP curve: the same pixels, other bytes
            webp = points[f"{name}_webp"]
            assert (webp["ssimulacra2"], webp["psnr"]) == (points[name]["ssimulacra2"], points[name]["psnr"])
        assert points["kmc"]["bytes"] < points["kmc_dither"]["bytes"]  # dithering costs bytes
    by_k = {r["k"]: r["curves"]["kmc"] for r in doc["records"]}
    assert by_k[4]["ssimulacra2"] < by_k[16]["ssimulacra2"] and by_k[4]["psnr"] < by_k[16]["psnr"]

    summary = doc["summary"]
    assert {(r["ours"], r["theirs"], r["metric"]) for r in summary["bd_rate"]} == {
        (ours, theirs, metric) for ours, theirs in curves.BD_PAIRS for metric in ("ssimulacra2", "psnr")
    }
    kmc_vs_dither = next(r for r in summary["bd_rate"] if r["theirs"] == "kmc_dither" and r["metric"] == "psnr")
    assert kmc_vs_dither["images"] == 1 and kmc_vs_dither["median"] < 0  # by PSNR, plain is cheaper
    # At k = 16 (of 16, 64, 256): dithered and undithered; at every k: undithered; and two BD-rates.
    assert len(doc["targets"]) == 1 + 3 + 2 and all(line.startswith(("met: ", "MISSED: ")) for line in doc["targets"])
    merged = tmp_path / "merged.json"
    bench.main(["--curves", "--merge", str(out), "--json", str(merged)])
    assert json.loads(merged.read_text())["summary"] == summary
