"""kmc compare and kmcodec.compare: the figures, the --json schema and the self-contained --html page."""

from __future__ import annotations

import base64
import io
import json
import math
import re
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

import kmcodec
from kmcodec.cli import cli
from kmcodec.compare import compare_image, parse_ks, visible
from kmcodec.errors import ParameterError
from kmcodec.inputs import load_source

metrics = pytest.importorskip("kmcodec.metrics", reason="kmcodec.metrics is not merged yet")
ciede2000, psnr = metrics.ciede2000, metrics.psnr

IMAGES = Path(__file__).resolve().parent.parent / "fixtures" / "images"
#: One fixture per layout: RGB, L, LA, RGBA (with fully transparent pixels), and 391 colours for k > 256.
LAYOUTS = ["demo.png", "gray-13x9-l.png", "gray-alpha-9x5-la.png", "rgba-10x6-transparent.png"]


def _source_pixels(path) -> np.ndarray:
    with load_source(path) as source:
        return source.array()


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.mark.parametrize("name", LAYOUTS)
def test_rows_measure_the_kmc_file_and_a_png8_of_the_same_image(name):
    path = IMAGES / name
    result = compare_image(path, [3, 16], seed=5)
    pixels = _source_pixels(path)
    assert (result.width, result.height) == (pixels.shape[1], pixels.shape[0])
    assert result.input_bytes == path.stat().st_size
    with Image.open(io.BytesIO(result.png)) as png:
        assert np.array_equal(np.asarray(png).reshape(pixels.shape), pixels)
    for row, k in zip(result.rows, [3, 16], strict=True):
        assert row.k == k
        assert row.kmc == kmcodec.encode(pixels, k, seed=5)  # what `encode` writes for these pixels
        assert row.kmc_bytes == len(row.kmc) and row.colors == kmcodec.read_info(row.kmc).colors <= k
        decoded = kmcodec.decode(row.kmc)
        assert row.psnr == psnr(visible(pixels), decoded)
        assert row.ciede2000 == ciede2000(visible(pixels), decoded)
        if min(pixels.shape[:2]) >= 8:
            assert row.ssimulacra2 == metrics.ssimulacra2(visible(pixels), decoded)
        else:  # SSIMULACRA2's first scale needs 8 x 8
            assert row.ssimulacra2 is None
        assert row.encode_seconds > 0 and row.decode_seconds > 0
        with Image.open(io.BytesIO(row.png8)) as png8:
            assert png8.mode == "P" and row.png8_bytes == len(row.png8)
            mode = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}[decoded.shape[2]]
            back = np.asarray(png8.convert(mode)).reshape(decoded.shape)
        assert np.array_equal(back, decoded)


def test_lossless_when_k_covers_the_colours_and_no_png8_past_256():
    result = compare_image(IMAGES / "many-23x17-rgb.png", [8, 1000])
    few, many = result.rows
    assert few.psnr < 40 and few.png8 is not None
    assert many.colors == 391 and math.isinf(many.psnr) and many.ciede2000 == 0.0
    assert many.png8 is None and many.png8_bytes is None
    data = many.to_dict(result.input_bytes, result.png_bytes)
    assert data["psnr"] is None and data["lossless"] is True and data["kmc_to_png8"] is None


@pytest.mark.parametrize("text", ["", "16,x", "0,16", "65537", "16;64"])
def test_parse_ks_rejects(text):
    with pytest.raises(ParameterError):
        parse_ks(text)


def test_cli_prints_one_table_per_image(runner):
    images = [str(IMAGES / "demo.png"), str(IMAGES / "gray-13x9-l.png")]
    result = runner.invoke(cli, ["compare", *images, "-k", "64,4"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert len(lines) == 2 * 4  # per image: heading, column names, k = 4, k = 64
    assert lines[0].startswith(f"{images[0]}: 64 x 48 RGB, 720 bytes; truecolor PNG ")
    assert lines[4].startswith(f"{images[1]}: 13 x 9 L, ")
    assert [line.split()[0] for line in (lines[2], lines[3])] == ["4", "64"]


def test_cli_json_schema(runner):
    images = [str(IMAGES / "rgba-10x6-transparent.png"), str(IMAGES / "demo.png")]
    result = runner.invoke(cli, ["compare", *images, "-k", "16,256", "--json", "--seed", "3"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout, parse_constant=lambda c: pytest.fail(f"not JSON: {c}"))
    assert doc.keys() == {"kmcodec", "ks", "seed", "method", "effort", "colorspace", "masking", "rdo", "images"}
    assert (doc["kmcodec"], doc["ks"], doc["seed"], doc["method"]) == (kmcodec.__version__, [16, 256], 3, "auto")
    # the fit the defaults resolve to; rdo's default depends on k, so it is named, not resolved
    assert (doc["colorspace"], doc["masking"], doc["rdo"]) == ("oklrab", True, "default")
    assert [entry["image"] for entry in doc["images"]] == images
    image_keys = {"image", "width", "height", "mode", "input_bytes", "png_bytes", "rows"}
    row_keys = {
        *("k", "colors", "kmc_bytes", "png8_bytes", "kmc_to_input", "kmc_to_png", "kmc_to_png8"),
        *("psnr", "lossless", "ciede2000", "ssimulacra2", "encode_seconds", "decode_seconds"),
    }
    for entry in doc["images"]:
        assert entry.keys() == image_keys
        assert [row["k"] for row in entry["rows"]] == [16, 256]
        for row in entry["rows"]:
            assert row.keys() == row_keys
            assert row["kmc_to_input"] == row["kmc_bytes"] / entry["input_bytes"]
            assert row["kmc_to_png8"] == row["kmc_bytes"] / row["png8_bytes"]
            assert row["lossless"] == (row["psnr"] is None)
    rgba, demo = doc["images"]
    assert rgba["mode"] == "RGBA" and rgba["rows"][1]["lossless"] and rgba["rows"][1]["colors"] < 256
    assert demo["rows"][0]["psnr"] < demo["rows"][1]["psnr"]
    assert demo["rows"][0]["ssimulacra2"] < demo["rows"][1]["ssimulacra2"] <= 100
    assert [row["ssimulacra2"] for row in rgba["rows"]] == [None, None]  # 10 x 6: too small to measure


def test_cli_table_shows_ssimulacra2_and_says_when_it_is_not_measured(runner):
    demo, small = str(IMAGES / "demo.png"), str(IMAGES / "rgba-10x6-transparent.png")
    result = runner.invoke(cli, ["compare", demo, small, "-k", "8"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[1].split()[-5] == "SSIMU2"  # then "enc s", "dec s"
    expected = compare_image(IMAGES / "demo.png", [8]).rows[0].ssimulacra2
    assert lines[2].split()[-3] == f"{expected:.2f}"
    assert lines[5].split()[-3] == "-"
    assert lines[6] == "  SSIMU2 not measured: SSIMULACRA2 needs at least 8 x 8 pixels"


def test_cli_without_ssimulacra2_still_compares_and_says_how_to_install_it(runner, monkeypatch):
    monkeypatch.setitem(sys.modules, "ssimulacra2", None)  # import ssimulacra2 now raises ImportError
    image = str(IMAGES / "demo.png")
    result = runner.invoke(cli, ["compare", image, "-k", "8"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[2].split()[-3] == "-"
    assert lines[3] == "  SSIMU2 not measured: SSIMULACRA2 needs the ssimulacra2 package: pip install 'kmcodec[report]'"
    result = runner.invoke(cli, ["compare", image, "-k", "8", "--json"])
    assert json.loads(result.stdout)["images"][0]["rows"][0]["ssimulacra2"] is None


def test_no_ssimulacra2_skips_it_and_says_so(runner):
    image = str(IMAGES / "demo.png")
    result = runner.invoke(cli, ["compare", image, "-k", "8", "--no-ssimulacra2"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[2].split()[-3] == "-"
    assert lines[3] == "  SSIMU2 not measured: not asked for (--no-ssimulacra2)"
    comparison = compare_image(IMAGES / "demo.png", [8], perceptual=False)
    assert comparison.rows[0].ssimulacra2 is None and comparison.ssimulacra2_note == "not asked for (--no-ssimulacra2)"
    assert compare_image(IMAGES / "demo.png", [8]).ssimulacra2_note is None


@pytest.mark.parametrize("rdo", [None, 0.0, 20.0])
def test_rdo_is_the_one_encode_uses(runner, rdo):
    """The default trades labels for bits from 48 colours; --rdo 0 gives the nearest entries."""
    pixels = _source_pixels(IMAGES / "demo.png")
    row = compare_image(IMAGES / "demo.png", [48], rdo=rdo, perceptual=False).rows[0]
    assert row.kmc == kmcodec.encode(pixels, 48, rdo=rdo)
    args = [] if rdo is None else ["--rdo", str(rdo)]
    result = runner.invoke(cli, ["compare", str(IMAGES / "demo.png"), "-k", "48", "--json", "--no-ssimulacra2", *args])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["rdo"] == ("default" if rdo is None else rdo)
    assert doc["images"][0]["rows"][0]["kmc_bytes"] == len(row.kmc)


def test_colorspace_is_the_one_encode_uses():
    pixels = _source_pixels(IMAGES / "demo.png")
    rows = compare_image(pixels, [8], colorspace="srgb").rows
    assert rows[0].kmc == kmcodec.encode(pixels, 8, colorspace="srgb")
    default = compare_image(pixels, [8]).rows[0].kmc
    assert default == kmcodec.encode(pixels, 8)
    assert rows[0].kmc != default  # the default, oklrab with masking, fits another palette


def test_cli_colorspace_reaches_encode_and_the_json(runner):
    image = IMAGES / "demo.png"
    result = runner.invoke(cli, ["compare", str(image), "-k", "8", "--colorspace", "oklab-linear", "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["colorspace"] == "oklab-linear"
    expected = kmcodec.encode(_source_pixels(image), 8, colorspace="oklab-linear")
    assert doc["images"][0]["rows"][0]["kmc_bytes"] == len(expected)


def test_cli_bad_colorspace_fails_as_encode_does(runner, tmp_path):
    image = str(IMAGES / "demo.png")
    result = runner.invoke(cli, ["compare", image, "--colorspace", "lab"])
    encoded = runner.invoke(cli, ["encode", image, str(tmp_path / "x.kmc"), "--colorspace", "lab"])
    assert result.exit_code == encoded.exit_code != 0
    assert result.stderr.splitlines()[-1] == encoded.stderr.splitlines()[-1]  # the message, after any usage lines
    assert "'lab' is not one of 'srgb', 'oklab'" in result.stderr and result.stdout == ""


def _sources(page: str) -> list[str]:
    return re.findall(r'\bsrc="([^"]*)"', page)


def test_cli_html_is_one_self_contained_page(runner, tmp_path):
    pytest.importorskip("matplotlib")
    images = [str(IMAGES / "demo.png"), str(IMAGES / "gray-alpha-9x5-la.png")]
    out = tmp_path / "report.html"
    result = runner.invoke(cli, ["compare", *images, "-k", "4,16", "--html", str(out)])
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[-1] == f"{out}: HTML report, {out.stat().st_size:,} bytes"
    page = out.read_text(encoding="utf-8")
    assert list(tmp_path.iterdir()) == [out]
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    assert 'src="http' not in page and "<script" not in page.lower() and "<link" not in page.lower()
    assert "url(" not in page and "@import" not in page
    sources = _sources(page)
    # demo: original + 2 decoded, their 3 zoomed crops, the plot; the 9 x 5 LA image is its own crop
    assert len(sources) == (3 + 3 + 1) + (3 + 1)
    assert all(src.startswith(("data:image/png;base64,", "data:image/svg+xml;base64,")) for src in sources)
    assert sum(src.startswith("data:image/svg+xml") for src in sources) == 2
    assert page.count("<section>") == 2 and page.count('class="sw"') == 2 * (4 + 16)  # swatches
    assert page.count("<th>SSIMULACRA2</th>") == 2
    assert page.count("SSIMULACRA2 not measured: SSIMULACRA2 needs at least 8 x 8 pixels") == 1  # the 9 x 5 image
    # the demo's zoomed crops: its 48 x 48 window with the most detail, each pixel a 6 x 6 block
    crops = [base64.b64decode(src.split(",", 1)[1]) for src in sources[3:6]]
    pixels = [_source_pixels(IMAGES / "demo.png")] + [
        kmcodec.decode(kmcodec.encode(IMAGES / "demo.png", k, metadata=False)) for k in (4, 16)
    ]
    left, top = map(int, re.search(r"48 &times; 48 pixels at \((\d+), (\d+)\), enlarged 6&times;", page).groups())
    for data, full in zip(crops, pixels, strict=True):
        with Image.open(io.BytesIO(data)) as im:
            zoomed = np.asarray(im.convert("RGB"))
        assert zoomed.shape == (288, 288, 3)
        window = full[top : top + 48, left : left + 48]
        assert np.array_equal(zoomed, window.repeat(6, axis=0).repeat(6, axis=1))


def test_cli_html_is_not_overwritten_without_force(runner, tmp_path):
    pytest.importorskip("matplotlib")
    out = tmp_path / "report.html"
    out.write_text("keep me")
    args = ["compare", str(IMAGES / "three-colors-5x3-rgb.png"), "-k", "2", "--html", str(out)]
    result = runner.invoke(cli, args)
    assert result.exit_code == 1
    assert result.stderr == f"kmc: error: {str(out)!r} exists (use --force to overwrite)\n"
    assert result.stdout == "" and out.read_text() == "keep me"
    result = runner.invoke(cli, [*args, "--force"])
    assert result.exit_code == 0, result.output
    assert out.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")


def test_cli_html_without_matplotlib_is_one_line_before_any_work(runner, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    out = tmp_path / "report.html"
    result = runner.invoke(cli, ["compare", str(IMAGES / "demo.png"), "--html", str(out)])
    assert result.exit_code == 1
    assert result.stderr == "kmc: error: --html needs matplotlib for its plot: pip install 'kmcodec[report]'\n"
    assert result.stdout == "" and not out.exists()


def test_cli_broken_image_is_one_line_and_writes_nothing(runner, tmp_path):
    broken = tmp_path / "broken.png"
    broken.write_bytes((IMAGES / "demo.png").read_bytes()[:300])
    out = tmp_path / "report.html"
    result = runner.invoke(cli, ["compare", str(broken), "--html", str(out), "--json"])
    assert result.exit_code == 1
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"kmc: error: cannot read image {str(broken)!r}")
    assert not out.exists()


@pytest.mark.parametrize("args", [["-k", "16,abc"], ["-k", "0"], ["--method", "zip"], []])
def test_cli_usage_errors_exit_2(runner, args):
    images = [str(IMAGES / "demo.png")] if args else []
    result = runner.invoke(cli, ["compare", *images, *args])
    assert result.exit_code == 2
