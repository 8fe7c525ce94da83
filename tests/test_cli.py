"""The kmc command through click's CliRunner: exit codes, messages, files written or kept."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

import kmcodec
from kmcodec.cli import cli


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture
def photo(tmp_path):
    """A 40 x 30 RGB image with many colours, saved as PNG."""
    rng = np.random.default_rng(1)
    y, x = np.mgrid[0:30, 0:40]
    img = np.stack([x * 6, y * 8, (x + y) * 3], axis=-1) + rng.integers(0, 20, (30, 40, 3))
    path = tmp_path / "photo.png"
    Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(path)
    return path


def _one_error_line(result) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("kmc: error: "), result.stderr
    assert "Traceback" not in result.output
    return lines[0]


def test_encode_prints_one_line_with_the_numbers(runner, photo, tmp_path):
    out = tmp_path / "photo.kmc"
    result = runner.invoke(cli, ["encode", str(photo), str(out), "-k", "16"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1
    data = out.read_bytes()
    assert f"{len(data):,} bytes" in lines[0]
    assert "bpp" in lines[0] and "x input" in lines[0] and "PSNR" in lines[0]
    assert kmcodec.read_info(data).colors <= 16


def test_encode_keeps_existing_output_without_force(runner, photo, tmp_path):
    out = tmp_path / "photo.kmc"
    out.write_bytes(b"precious")
    result = runner.invoke(cli, ["encode", str(photo), str(out)])
    assert result.exit_code == 1
    assert "exists" in _one_error_line(result)
    assert out.read_bytes() == b"precious"
    result = runner.invoke(cli, ["encode", str(photo), str(out), "--force"])
    assert result.exit_code == 0
    assert out.read_bytes().startswith(b"\x8bKMC")


def test_encode_is_deterministic_and_seeded(runner, photo, tmp_path):
    outs = []
    for name, seed in (("a", "0"), ("b", "0"), ("c", "5")):
        out = tmp_path / f"{name}.kmc"
        assert runner.invoke(cli, ["encode", str(photo), str(out), "-k", "8", "--seed", seed]).exit_code == 0
        outs.append(out.read_bytes())
    assert outs[0] == outs[1]
    assert kmcodec.read_info(outs[2]).seed == 5


@pytest.mark.parametrize("method", ["stored", "deflate", "lzma"])
def test_encode_method_option(runner, photo, tmp_path, method):
    out = tmp_path / "m.kmc"
    assert runner.invoke(cli, ["encode", str(photo), str(out), "--method", method, "-q"]).exit_code == 0
    assert kmcodec.read_info(str(out)).method == method


def test_decode_default_output_and_pixels(runner, photo, tmp_path):
    kmc = tmp_path / "photo.kmc"
    assert runner.invoke(cli, ["encode", str(photo), str(kmc), "-k", "16"]).exit_code == 0
    (tmp_path / "photo.png").unlink()
    result = runner.invoke(cli, ["decode", str(kmc)])
    assert result.exit_code == 0, result.output
    decoded = np.asarray(Image.open(tmp_path / "photo.png"))
    assert np.array_equal(decoded, kmcodec.decode(kmc.read_bytes()))


def test_decode_format_by_extension(runner, photo, tmp_path):
    kmc = tmp_path / "photo.kmc"
    runner.invoke(cli, ["encode", str(photo), str(kmc), "-k", "4"])
    out = tmp_path / "out.bmp"
    assert runner.invoke(cli, ["decode", str(kmc), str(out)]).exit_code == 0
    assert Image.open(out).format == "BMP"


def test_decode_unknown_extension_is_a_usage_error(runner, photo, tmp_path):
    kmc = tmp_path / "photo.kmc"
    runner.invoke(cli, ["encode", str(photo), str(kmc), "-k", "4"])
    result = runner.invoke(cli, ["decode", str(kmc), str(tmp_path / "out.nosuchformat")])
    assert result.exit_code == 2
    assert not (tmp_path / "out.nosuchformat").exists()


def test_decode_keeps_existing_output(runner, photo, tmp_path):
    kmc = tmp_path / "photo.kmc"
    runner.invoke(cli, ["encode", str(photo), str(kmc), "-k", "4"])
    result = runner.invoke(cli, ["decode", str(kmc)])  # photo.png exists
    assert result.exit_code == 1
    assert "exists" in _one_error_line(result)


def test_stdin_and_stdout(runner, photo, tmp_path):
    result = runner.invoke(cli, ["encode", "-", "-", "-k", "8"], input=photo.read_bytes())
    assert result.exit_code == 0
    data = result.stdout_bytes
    assert kmcodec.read_info(data).colors <= 8
    assert "bytes" in result.stderr  # the summary goes to stderr when stdout carries the file
    result = runner.invoke(cli, ["decode", "-", "-"], input=data)
    assert result.exit_code == 0
    assert result.stdout_bytes.startswith(b"\x89PNG")


def test_corrupt_input_one_line_and_no_output(runner, photo, tmp_path):
    kmc = tmp_path / "photo.kmc"
    runner.invoke(cli, ["encode", str(photo), str(kmc), "-k", "8"])
    data = bytearray(kmc.read_bytes())
    data[len(data) // 2] ^= 0x10
    bad = tmp_path / "bad.kmc"
    bad.write_bytes(bytes(data))
    out = tmp_path / "bad.png"
    result = runner.invoke(cli, ["decode", str(bad), str(out)])
    assert result.exit_code == 1
    assert "CRC" in _one_error_line(result)
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".kmc-")] == []


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["decode", "missing.kmc", "x.png"], "cannot read"),
        (["encode", "missing.png", "x.kmc"], "cannot read"),
        (["inspect", "missing.kmc"], "cannot read"),
    ],
)
def test_missing_files(runner, tmp_path, monkeypatch, args, needle):
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(cli, args)
    assert result.exit_code == 1
    assert needle in _one_error_line(result)


def test_encode_of_a_non_image(runner, tmp_path):
    src = tmp_path / "notes.txt"
    src.write_text("not an image")
    result = runner.invoke(cli, ["encode", str(src), str(tmp_path / "x.kmc")])
    assert result.exit_code == 1
    assert "notes.txt" in _one_error_line(result)
    assert not (tmp_path / "x.kmc").exists()


@pytest.mark.parametrize("args", [["encode", "a", "b", "-k", "0"], ["encode", "a"], ["nosuchverb"], ["--bogus"]])
def test_usage_errors_exit_2(runner, args):
    assert runner.invoke(cli, args).exit_code == 2


def test_inspect_human_and_json(runner, photo, tmp_path):
    kmc = tmp_path / "photo.kmc"
    runner.invoke(cli, ["encode", str(photo), str(kmc), "-k", "16", "--strip-rows", "7"])
    result = runner.invoke(cli, ["inspect", str(kmc)])
    assert result.exit_code == 0
    for needle in ("version 1.0", "40 x 30", "RGB", "STRP", "bits per pixel", "palette"):
        assert needle in result.stdout
    result = runner.invoke(cli, ["inspect", "--json", str(kmc)])
    assert result.exit_code == 0
    info = json.loads(result.stdout)
    for key in ("version", "width", "height", "mode", "colors", "bits_per_label", "method", "chunks", "file_bytes"):
        assert key in info
    assert (info["width"], info["height"], info["mode"]) == (40, 30, "RGB")
    assert info["file_bytes"] == kmc.stat().st_size
    assert [c["type"] for c in info["chunks"]].count("STRP") == 5  # ceil(30 / 7)
    assert info["chunks"][0]["type"] == "HEAD" and info["chunks"][-1]["type"] == "DONE"


def test_version(runner):
    result = runner.invoke(cli, ["--version"])
    assert result.exit_code == 0
    assert result.stdout.strip() == f"kmc {kmcodec.__version__}"
