"""A small run of tools/bench_quality.py with the methods every install has (kmcodec and Pillow)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from PIL import Image
from toolmodules import load_tool

METHODS = "kmcodec,kmcodec_dither,pillow_mediancut,pillow_fastoctree"


@pytest.fixture(scope="module")
def bench():
    return load_tool("bench_quality")


@pytest.fixture
def folder(tmp_path):
    rng = np.random.default_rng(3)
    y, x = np.mgrid[0:24, 0:30]
    for i in range(2):
        img = np.stack([x * 8, y * 10, (x + y) * 4 + 40 * i], axis=-1) + rng.integers(0, 12, (24, 30, 3))
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(tmp_path / f"img{i}.png")
    return tmp_path


def test_run_measures_every_method_and_merges(bench, folder, tmp_path, capsys):
    out = tmp_path / "run.json"
    bench.main([str(folder), "--k", "4,8", "--methods", METHODS, "--no-oxipng", "--json", str(out)])
    text = capsys.readouterr().out
    assert "## Paired comparisons" in text and "kmcodec dithered vs kmcodec" in text
    doc = json.loads(out.read_text())
    assert [(r["image"], r["k"]) for r in doc["records"]] == [
        ("img0.png", 4),
        ("img0.png", 8),
        ("img1.png", 4),
        ("img1.png", 8),
    ]
    for record in doc["records"]:
        assert set(record["methods"]) == set(METHODS.split(","))
        for result in record["methods"].values():
            assert result["colors"] <= record["k"]
            assert math.isfinite(result["psnr"]) and result["ciede2000"] > 0 and 0 < result["ssim"] < 1
            assert result["kmc_bytes"] > 0 and result["png8_bytes"] > 0
    rows = {(row["k"], row["method"]): row for row in doc["summary"]}
    assert rows[(8, "kmcodec")]["images"] == 2
    # k-means beats median cut on these smooth images, and more colours help.
    assert rows[(8, "kmcodec")]["psnr"] > rows[(8, "pillow_mediancut")]["psnr"]
    assert rows[(8, "kmcodec")]["psnr"] > rows[(4, "kmcodec")]["psnr"]

    merged = tmp_path / "merged.json"
    bench.main(["--merge", str(out), str(out), "--json", str(merged)])
    again = json.loads(merged.read_text())
    assert len(again["records"]) == 8
    assert {(r["k"], r["method"]): r["images"] for r in again["summary"]}[(8, "kmcodec")] == 4
    assert again["summary"][0]["psnr"] == doc["summary"][0]["psnr"]


def test_png8_bytes_of_a_palette_image(bench):
    img = np.zeros((16, 16, 3), np.uint8)
    img[:, 8:] = (200, 10, 10)
    size = bench.png8_bytes(img, None, oxipng=False)
    assert 0 < size < 200
    assert bench.png8_bytes(img, b"x" * 10, oxipng=False) == 10  # a smaller own file wins
    c = np.arange(16 * 20)
    many = np.stack([c % 256, c // 256, c % 7], axis=-1).astype(np.uint8).reshape(16, 20, 3)  # 320 colours
    assert bench.png8_bytes(many, None, oxipng=False) is None
