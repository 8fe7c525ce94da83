"""tools/bench_seeds.py on two small images, with Pillow's median cut standing in for pngquant."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from toolmodules import load_tool

from kmcodec import metrics, quantize

pytestmark = pytest.mark.skipif(not metrics.ssimulacra2_available(), reason=metrics.SSIMULACRA2_MISSING)


def median_cut(rgb, k, dither):
    quantized = Image.fromarray(rgb).quantize(k, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    return np.asarray(quantized.convert("RGB"))


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    bench = load_tool("bench_seeds")
    folder = tmp_path_factory.mktemp("seeds")
    rng = np.random.default_rng(5)
    y, x = np.mgrid[0:48, 0:64]
    paths = []
    for i in range(2):
        img = np.stack([x * 4, y * 5, (x + y) * 2 + 60 * i], axis=-1) + rng.integers(0, 30, (48, 64, 3))
        paths.append(folder / f"img{i}.png")
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(paths[-1])
    return bench, [bench.image_scores(p, 4, 2, [1, 3], False, peer=median_cut) for p in paths]


def test_scores_every_variant_and_seed(records):
    _, recs = records
    assert [sorted(r["ours"]) for r in recs] == [["1/0", "1/1", "3/0", "3/1"]] * 2
    assert quantize.STARTS == 3  # the knob is put back


def test_summary_is_ours_minus_the_peer(records):
    bench, recs = records
    summary = bench.summarize(recs, margin=0.0)
    for variant in ("1", "3"):
        for seed in (0, 1):
            diffs = {r["image"]: r["ours"][f"{variant}/{seed}"][0] - r["peer"] for r in recs}
            s = summary[variant][seed]
            assert s["median"] == pytest.approx(float(np.median(list(diffs.values()))))
            assert s["worst"] == min(diffs.values())
            assert s["worst_image"] == min(diffs, key=diffs.get)
            assert s["below"] == sorted(i for i, d in diffs.items() if d < 0)
            assert s["bytes"] == sum(r["ours"][f"{variant}/{seed}"][1] for r in recs)
    text = bench.report(summary, 4, False, margin=0.0)
    assert "## STARTS = 1" in text
    assert "## STARTS = 3" in text
    assert "Over 2 seeds" in text
