"""The kmc command through click's CliRunner: exit codes, messages, files written or kept."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys

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
    with Image.open(tmp_path / "photo.png") as image:
        assert image.mode == "P"  # 16 colours: an indexed PNG
        decoded = np.asarray(image.convert("RGB"))
    assert np.array_equal(decoded, kmcodec.decode(kmc.read_bytes()))


def test_decode_format_by_extension(runner, photo, tmp_path):
    kmc = tmp_path / "photo.kmc"
    runner.invoke(cli, ["encode", str(photo), str(kmc), "-k", "4"])
    out = tmp_path / "out.bmp"
    assert runner.invoke(cli, ["decode", str(kmc), str(out)]).exit_code == 0
    with Image.open(out) as image:
        assert image.format == "BMP"


def test_decode_unknown_extension_is_a_usage_error(runner, photo, tmp_path):
    kmc = tmp_path / "photo.kmc"
    runner.invoke(cli, ["encode", str(photo), str(kmc), "-k", "4"])
    result = runner.invoke(cli, ["decode", str(kmc), str(tmp_path / "out.nosuchformat")])
    assert result.exit_code == 2
    assert not (tmp_path / "out.nosuchformat").exists()


@pytest.mark.parametrize("stdin", [False, True])
def test_decode_to_a_folder_names_the_file_to_write(runner, photo, tmp_path, stdin):
    kmc = tmp_path / "photo.kmc"
    runner.invoke(cli, ["encode", str(photo), str(kmc), "-k", "4"])
    folder = tmp_path / "out"
    folder.mkdir()
    args = ["decode", "-" if stdin else str(kmc), str(folder)]
    line = _usage_error(runner.invoke(cli, args, input=kmc.read_bytes() if stdin else None))
    named = folder / ("image.png" if stdin else "photo.png")
    assert line == f"Error: OUT {str(folder)!r} is a folder: name the image to write, e.g. {str(named)!r}"
    assert list(folder.iterdir()) == []


@pytest.mark.parametrize("written", [["--dither", "-0.1"], ["--dither=-0.1"], ["--dither", "-.5"]])
def test_a_negative_dither_strength_is_refused_as_a_value(runner, photo, tmp_path, written):
    """Not as an unknown option "-0", which is how click reads a "-" after an option whose value is optional."""
    shown = written[-1].removeprefix("--dither=")
    line = _usage_error(runner.invoke(cli, ["encode", str(photo), str(tmp_path / "o.kmc"), *written]))
    assert line == f"Error: --dither: {shown} is not a strength from 0 to 1"
    assert not (tmp_path / "o.kmc").exists()


def test_a_negative_number_after_the_end_of_options_is_left_alone(runner, tmp_path):
    result = runner.invoke(cli, ["encode", "--dither", "--", "-0.5.png", str(tmp_path / "o.kmc")])
    assert _one_error_line(result) == "kmc: error: cannot read '-0.5.png': No such file or directory"


@pytest.mark.parametrize("out", ["o.png", "o.bmp"])
def test_decode_over_max_pixels_names_the_option_that_allows_it(runner, photo, tmp_path, out):
    kmc = tmp_path / "photo.kmc"
    runner.invoke(cli, ["encode", str(photo), str(kmc), "-k", "4"])
    result = runner.invoke(cli, ["decode", str(kmc), str(tmp_path / out), "--max-pixels", "1000"])
    assert result.exit_code == 1
    assert _one_error_line(result) == (  # not max_pixels or kmcodec.MAX_IMAGE_PIXELS, the API's names
        "kmc: error: image of 40 x 30 = 1,200 pixels exceeds the limit of 1,000 "
        "(give --max-pixels N, or 0 for no limit, to allow it)"
    )
    assert not (tmp_path / out).exists()


def test_encode_over_max_pixels_is_refused_and_the_option_allows_it(runner, photo, tmp_path):
    out = tmp_path / "o.kmc"
    result = runner.invoke(cli, ["encode", str(photo), str(out), "--max-pixels", "1199"])
    assert result.exit_code == 1
    assert _one_error_line(result) == (
        f"kmc: error: image {str(photo)!r} of 40 x 30 = 1,200 pixels exceeds the limit of 1,199 "
        "(give --max-pixels N, or 0 for no limit, to allow it)"
    )
    assert not out.exists()
    assert runner.invoke(cli, ["encode", str(photo), str(out), "--max-pixels", "1200", "-q"]).exit_code == 0
    assert out.read_bytes() == kmcodec.encode(photo)


@pytest.mark.parametrize("shared", [[], ["--shared-palette"]])
def test_batch_over_max_pixels_names_the_option_in_its_workers_and_the_shared_fit(runner, photo, tmp_path, shared):
    """The limit is taken in this process and sent to the worker processes (spawned: they have their own default)."""
    result = runner.invoke(cli, ["encode", str(photo), "-o", str(tmp_path / "out"), "--max-pixels", "1199", *shared])
    assert result.exit_code == 1
    assert "= 1,200 pixels exceeds the limit of 1,199 (give --max-pixels N, or 0 for no limit, to allow it)" in (
        result.stderr
    )
    assert not (tmp_path / "out" / "photo.kmc").exists()
    result = runner.invoke(cli, ["encode", str(photo), "-o", str(tmp_path / "out"), "--max-pixels", "0", *shared])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "out" / "photo.kmc").exists()


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


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--rdo", "4", "--dither"], "--rdo moves pixels"),
        (["--rdo", "4", "--target-psnr", "30"], "--rdo moves pixels"),
        (["--target-psnr", "30", "--max-bytes", "1000"], "cannot be used together"),
        (["--palette", "ref.kmc", "--target-psnr", "30"], "--palette leaves no palette size"),
        (["--palette", "ref.kmc", "--max-bytes", "1000"], "--palette leaves no palette size"),
        (["--palette", "ref.kmc", "--shared-palette"], "exclude each other"),
        (["--shared-palette"], "--shared-palette is for a batch"),
        (["--scheduler", "local"], "--scheduler runs a batch"),
    ],
)
def test_encode_option_conflicts_are_usage_errors(runner, photo, tmp_path, args, needle):
    """Options that exclude each other are misuse of the command line, as bad option values are: exit 2."""
    ref = tmp_path / "ref.kmc"
    ref.write_bytes(kmcodec.encode(np.zeros((4, 4, 3), np.uint8), 2))
    out = tmp_path / "out.kmc"
    result = runner.invoke(cli, ["encode", str(photo), str(out), *[str(ref) if a == "ref.kmc" else a for a in args]])
    assert result.exit_code == 2
    assert needle in result.stderr.splitlines()[-1]
    assert not out.exists()


def test_inspect_human_and_json(runner, photo, tmp_path):
    kmc = tmp_path / "photo.kmc"
    runner.invoke(cli, ["encode", str(photo), str(kmc), "-k", "16", "--strip-rows", "7"])
    result = runner.invoke(cli, ["inspect", str(kmc)])
    assert result.exit_code == 0
    version = f"version {kmcodec.read_info(kmc).version}"  # 1.1 or 1.2, as auto's methods need
    for needle in (version, "40 x 30", "RGB", "STRP", "bits per pixel", "palette"):
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


# ---------------------------------------------------------------------------
# Batch encoding: kmc encode IN... -o DIR
# ---------------------------------------------------------------------------
def _image(path, seed: int, size=(20, 14)):
    """A small noisy RGB image at *path* (folders created), different for each seed."""
    rng = np.random.default_rng(seed)
    w, h = size
    y, x = np.mgrid[0:h, 0:w]
    img = np.stack([x * 9 + seed * 40, y * 12, (x + y) * 5], axis=-1) + rng.integers(0, 30, (h, w, 3))
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(path)
    return path


def _broken(path):
    """A PNG cut off half way: Pillow identifies it, then fails to load it."""
    whole = _image(path, 99, size=(64, 48)).read_bytes()
    path.write_bytes(whole[: len(whole) // 2])
    return path


def _tree(folder) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _error_lines(result) -> list[str]:
    assert "Traceback" not in result.output
    return result.stderr.strip().splitlines()


def test_batch_keeps_going_past_a_bad_file_and_lists_failures_at_the_end(runner, tmp_path):
    good = [_image(tmp_path / f"in/{name}.png", i) for i, name in enumerate("ab")]
    broken = _broken(tmp_path / "in/broken.png")
    missing = tmp_path / "in/missing.png"
    out = tmp_path / "out"
    args = ["encode", str(good[0]), str(broken), str(missing), str(good[1]), "-o", str(out), "-k", "8"]
    result = runner.invoke(cli, args)
    assert result.exit_code == 1, result.output
    errors = _error_lines(result)
    assert len(errors) == 2
    # One line each, naming the file once: as the single-file form says it.
    assert errors[0].startswith(f"kmc: error: cannot read image {str(broken)!r}: ") and "truncated" in errors[0]
    assert errors[1] == f"kmc: error: cannot read {str(missing)!r}: No such file or directory"
    for path, line in zip((broken, missing), errors, strict=True):
        assert line.count(path.name) == 1
        single = runner.invoke(cli, ["encode", str(path), str(tmp_path / "single.kmc")])
        assert _one_error_line(single) == line
    assert _tree(out).keys() == {"a.kmc", "b.kmc"}
    for src in good:
        data = (out / f"{src.stem}.kmc").read_bytes()
        assert kmcodec.decode(data).shape == (14, 20, 3)
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 3  # one per encoded file, then the summary
    assert lines[-1].startswith("2 files encoded, 2 failed: ")


def test_batch_output_equals_single_file_encoding(runner, tmp_path):
    src = _image(tmp_path / "photo.png", 3)
    single = tmp_path / "single.kmc"
    assert runner.invoke(cli, ["encode", str(src), str(single), "-k", "8", "--seed", "4"]).exit_code == 0
    result = runner.invoke(cli, ["encode", str(src), "-o", str(tmp_path / "out"), "-k", "8", "--seed", "4"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "out/photo.kmc").read_bytes() == single.read_bytes()


def test_batch_folder_takes_image_extensions_and_mirrors_subfolders_with_r(runner, tmp_path):
    src = tmp_path / "in"
    _image(src / "a.png", 1)
    _image(src / "sub/b.png", 2)
    _image(src / "sub/deeper/c.PNG", 3)
    _image(src / ".hidden/d.png", 4)
    _image(src / ".e.png", 5)
    (src / "notes.txt").write_text("not an image")
    (src / "old.kmc").write_bytes(b"not taken either")
    result = runner.invoke(cli, ["encode", str(src), "-o", str(tmp_path / "flat"), "-q"])
    assert result.exit_code == 0, result.output
    assert _tree(tmp_path / "flat").keys() == {"a.kmc"}
    result = runner.invoke(cli, ["encode", str(src), "-r", "-o", str(tmp_path / "deep"), "-q"])
    assert result.exit_code == 0, result.output
    assert _tree(tmp_path / "deep").keys() == {"a.kmc", "sub/b.kmc", "sub/deeper/c.kmc"}
    assert result.stdout == "" and result.stderr == ""


def test_batch_jobs_2_writes_the_same_bytes_as_jobs_1(runner, tmp_path):
    for i in range(5):
        _image(tmp_path / f"in/img{i}.png", i, size=(24 + i, 17))
    trees = []
    for jobs in ("1", "2", "0"):
        out = tmp_path / f"out{jobs}"
        result = runner.invoke(cli, ["encode", str(tmp_path / "in"), "-o", str(out), "--jobs", jobs, "-k", "6"])
        assert result.exit_code == 0, result.output
        assert result.stdout.strip().splitlines()[-1].startswith("5 files encoded: ")
        trees.append(_tree(out))
    assert len(trees[0]) == 5
    assert trees[0] == trees[1] == trees[2]


@pytest.mark.parametrize(
    ("names", "clash"),
    [
        (["in/a.png", "in/a.jpg"], ("a.jpg", "a.png")),  # one folder, two extensions
        (["in/a.png", "in/sub/a.png"], ("a.png", "sub/a.png")),  # two explicit files, one name
    ],
)
def test_batch_name_collision_is_an_error_before_any_work(runner, tmp_path, names, clash):
    paths = [_image(tmp_path / name, i) for i, name in enumerate(names)]
    _image(tmp_path / "in/b.png", 7)
    inputs = [str(tmp_path / "in")] if clash[0] == "a.jpg" else [str(p) for p in paths]
    out = tmp_path / "out"
    result = runner.invoke(cli, ["encode", *inputs, "-o", str(out)])
    assert result.exit_code == 1
    line = _one_error_line(result)
    assert "would both be written to" in line and "a.kmc" in line
    assert all(part in line for part in clash)
    assert not out.exists()


def test_batch_existing_outputs_fail_unless_force(runner, tmp_path):
    for i, name in enumerate("ab"):
        _image(tmp_path / f"in/{name}.png", i)
    out = tmp_path / "out"
    out.mkdir()
    (out / "a.kmc").write_bytes(b"precious")
    result = runner.invoke(cli, ["encode", str(tmp_path / "in"), "-o", str(out)])
    assert result.exit_code == 1
    errors = _error_lines(result)
    assert len(errors) == 1 and "exists" in errors[0] and "a.png" in errors[0]
    assert (out / "a.kmc").read_bytes() == b"precious"
    assert (out / "b.kmc").read_bytes().startswith(b"\x8bKMC")
    result = runner.invoke(cli, ["encode", str(tmp_path / "in"), "-o", str(out), "--force"])
    assert result.exit_code == 0, result.output
    assert (out / "a.kmc").read_bytes().startswith(b"\x8bKMC")


def test_batch_on_a_terminal_shows_only_the_bar_and_the_summary(runner, tmp_path, monkeypatch):
    monkeypatch.setattr("kmcodec.cli._stderr_is_tty", lambda: True)
    for i in range(3):
        _image(tmp_path / f"in/{i}.png", i)
    result = runner.invoke(cli, ["encode", str(tmp_path / "in"), "-o", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    (summary,) = result.stdout.strip().splitlines()
    assert summary.startswith("3 files encoded: ") and "bytes in" in summary and "x input" in summary
    assert summary.endswith(" s")


def test_batch_interrupted_exits_130_and_writes_nothing(runner, tmp_path, monkeypatch):
    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("kmcodec.batch.wait", interrupt)
    _image(tmp_path / "in/a.png", 1)
    result = runner.invoke(cli, ["encode", str(tmp_path / "in"), "-o", str(tmp_path / "out")])
    assert result.exit_code == 130
    assert _one_error_line(result) == "kmc: error: interrupted"
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "args",
    [
        ["encode", "in/a.png", "in/a.png", "x.kmc"],  # several inputs need -o
        ["encode", "in", "x.kmc"],  # a folder needs -o
        ["encode", "in/a.png", "in"],  # OUT is a folder
        ["encode", "-", "-o", "out"],  # standard input cannot join a batch
        ["encode", "in/a.png", "-o", "in/a.png"],  # DIR is a file
        ["encode", "in", "-o", "out", "--jobs", "-1"],
    ],
)
def test_batch_usage_errors_exit_2(runner, tmp_path, monkeypatch, args):
    monkeypatch.chdir(tmp_path)
    _image(tmp_path / "in/a.png", 1)
    assert runner.invoke(cli, args).exit_code == 2
    assert not (tmp_path / "out").exists() and not (tmp_path / "x.kmc").exists()


def test_batch_of_a_folder_without_images(runner, tmp_path):
    (tmp_path / "in/sub").mkdir(parents=True)
    _image(tmp_path / "in/sub/a.png", 1)
    result = runner.invoke(cli, ["encode", str(tmp_path / "in"), "-o", str(tmp_path / "out")])
    assert result.exit_code == 1
    assert "no image files" in _one_error_line(result) and "-r" in result.stderr


# ---------------------------------------------------------------------------
# Targets out of reach
# ---------------------------------------------------------------------------
def _digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _leftovers(folder) -> list[str]:
    """Temporary files an interrupted atomic write would leave."""
    return [p.name for p in folder.rglob(".kmc-*")]


def test_target_psnr_out_of_reach_is_one_line_and_writes_nothing(runner, photo, tmp_path):
    before = _digest(photo)
    out = tmp_path / "out.kmc"
    result = runner.invoke(cli, ["encode", str(photo), str(out), "-k", "4", "--target-psnr", "60"])
    assert result.exit_code == 1, result.output
    line = _one_error_line(result)
    assert line.startswith("kmc: error: even 4 colours, the most allowed, reach only ")
    assert line.endswith(" dB PSNR, short of the 60 dB target")
    assert result.stdout == ""
    assert not out.exists() and _leftovers(tmp_path) == []
    assert _digest(photo) == before


def test_target_psnr_in_reach_writes_the_api_bytes(runner, photo, tmp_path):
    out = tmp_path / "out.kmc"
    result = runner.invoke(cli, ["encode", str(photo), str(out), "-k", "64", "--target-psnr", "25"])
    assert result.exit_code == 0, result.output
    assert out.read_bytes() == kmcodec.encode(str(photo), 64, target_psnr=25)


def test_target_psnr_out_of_reach_in_a_batch_fails_that_file(runner, tmp_path):
    flat = tmp_path / "in/flat.png"
    flat.parent.mkdir()
    Image.new("RGB", (8, 8), (10, 200, 30)).save(flat)  # one colour: lossless, any target
    noisy = _image(tmp_path / "in/noisy.png", 1)
    out = tmp_path / "out"
    result = runner.invoke(cli, ["encode", str(flat), str(noisy), "-o", str(out), "-k", "4", "--target-psnr", "60"])
    assert result.exit_code == 1, result.output
    (line,) = _error_lines(result)
    assert line.startswith(f"kmc: error: {noisy}: even 4 colours, the most allowed, reach only ")
    assert _tree(out).keys() == {"flat.kmc"}
    assert result.stdout.strip().splitlines()[-1].startswith("1 file encoded, 1 failed: ")


# ---------------------------------------------------------------------------
# Outputs checked before any work: never an input, never misnamed, always writable
# ---------------------------------------------------------------------------
@pytest.fixture
def no_work(monkeypatch):
    """Make reading any pixel fail the test: the checks under test must come first."""

    def forbidden(*args, **kwargs):
        raise AssertionError("work started before the outputs were checked")

    for target in (
        "kmcodec.batch.encode_stream",
        "kmcodec.batch._in_workers",
        "kmcodec.codec.read_palette",
        "kmcodec.codec.shared_palette",
        "kmcodec.codec.open_strips",
        "kmcodec.codec.decode_image",
        "kmcodec.compare.compare_image",
        "kmcodec.report.require_matplotlib",
    ):
        monkeypatch.setattr(target, forbidden)


def _usage_error(result) -> str:
    """The last line of a usage error (exit 2), click's "Error: ..."."""
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith("Error: "), result.stderr
    return line


@pytest.mark.parametrize("how", ["same", "relative", "symlink", "hardlink"])
@pytest.mark.parametrize("force", [[], ["--force"]])
def test_encode_refuses_to_write_over_its_input(runner, photo, tmp_path, monkeypatch, no_work, how, force):
    monkeypatch.chdir(tmp_path)
    out = {"same": str(photo), "relative": f"./{photo.name}", "symlink": "link.png", "hardlink": "hard.png"}[how]
    if how == "symlink":
        (tmp_path / out).symlink_to(photo)
    elif how == "hardlink":
        (tmp_path / out).hardlink_to(photo)
    before = _digest(photo)
    result = runner.invoke(cli, ["encode", str(photo), out, *force])
    line = _usage_error(result)
    assert line == (
        f"Error: OUT {out!r} is the same file as IN {str(photo)!r}: writing it would destroy the input; "
        "name another OUT (--force does not allow this)"
    )
    assert _digest(photo) == before and _leftovers(tmp_path) == []


def test_encode_refuses_to_write_over_its_palette(runner, photo, tmp_path, no_work):
    ref = tmp_path / "ref.kmc"
    ref.write_bytes(kmcodec.encode(np.zeros((4, 4, 3), np.uint8), 2))
    before = _digest(ref)
    result = runner.invoke(cli, ["encode", str(photo), str(ref), "--palette", str(ref), "--force"])
    assert "is the same file as --palette" in _usage_error(result)
    assert _digest(ref) == before


@pytest.mark.parametrize("ext", [".png", ".jpg", ".JPEG", ".webp", ".gif", ".bmp", ".tif", ".tiff", ".avif", ".jxl"])
def test_encode_refuses_an_output_named_as_another_image_format(runner, photo, tmp_path, no_work, ext):
    out = tmp_path / f"photo2{ext}"
    line = _usage_error(runner.invoke(cli, ["encode", str(photo), str(out)]))
    assert line == (
        f"Error: OUT {str(out)!r} is named as a {ext} image, but kmc encode writes .kmc data, which no image "
        f"viewer opens: name it {str(tmp_path / 'photo2.kmc')!r}, or add --force to keep the name"
    )
    assert not out.exists() and _leftovers(tmp_path) == []


def test_encode_writes_a_misnamed_output_with_force(runner, photo, tmp_path):
    out = tmp_path / "photo2.qoi"
    result = runner.invoke(cli, ["encode", str(photo), str(out), "-k", "8", "--force"])
    assert result.exit_code == 0, result.output
    assert kmcodec.read_info(out.read_bytes()).colors <= 8


def _kmc(run: str, path, args=()) -> subprocess.CompletedProcess:
    """Run ``python -m kmcodec`` with *path* as standard input and appended to as standard output."""
    with open(path, "rb") as stdin, open(path, "ab") as stdout:
        return subprocess.run(
            [sys.executable, "-m", "kmcodec", *run.split(), *map(str, args)],
            stdin=stdin,
            stdout=stdout,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
        )


@pytest.mark.parametrize(
    ("run", "named"),
    [
        ("encode - -", "OUT - (standard output) is the same file as IN - (standard input)"),
        ("encode {photo} -", "OUT - (standard output) is the same file as IN '{photo}'"),
        ("decode - -", "OUT - (standard output) is the same file as IN - (standard input)"),
    ],
)
def test_standard_input_and_output_are_files_too(photo, run, named):
    """``kmc encode - - < x.png >> x.png`` would append .kmc bytes to the PNG it reads."""
    before = _digest(photo)
    result = _kmc(run.format(photo=photo), photo)
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith(f"Error: {named.format(photo=photo)}: ")
    assert _digest(photo) == before


def test_decode_refuses_a_kmc_output(runner, photo, tmp_path):
    kmc = tmp_path / "photo.kmc"
    assert runner.invoke(cli, ["encode", str(photo), str(kmc), "-k", "4", "-q"]).exit_code == 0
    before = _digest(kmc)
    out = tmp_path / "again.kmc"
    for force in ([], ["--force"]):
        line = _usage_error(runner.invoke(cli, ["decode", str(kmc), str(out), *force]))
        assert f"{str(out)!r} would be a .kmc file, but kmc decode writes an image: name it " in line
        assert "kmc encode" in line
    assert not out.exists() and _digest(kmc) == before and _leftovers(tmp_path) == []


def test_decode_refuses_to_write_over_its_input(runner, photo, tmp_path, no_work):
    kmc = tmp_path / "odd.png"  # .kmc bytes under a .png name: its default OUT is itself
    kmc.write_bytes(kmcodec.encode(np.zeros((4, 4, 3), np.uint8), 2))
    before = _digest(kmc)
    for args in ([str(kmc), "--force"], [str(kmc), str(kmc), "--force"]):
        assert "is the same file as IN" in _usage_error(runner.invoke(cli, ["decode", *args]))
    assert _digest(kmc) == before


def test_compare_html_checks_come_before_any_comparison(runner, photo, tmp_path, no_work):
    before = _digest(photo)
    line = _usage_error(runner.invoke(cli, ["compare", str(photo), "--html", str(photo), "--force"]))
    assert f"--html {str(photo)!r} is the same file as IMAGE {str(photo)!r}" in line
    line = _usage_error(runner.invoke(cli, ["compare", str(photo), "--html", str(tmp_path / "r.png")]))
    assert "is named as a .png image, but the report is HTML: name it " in line
    result = runner.invoke(cli, ["compare", str(photo), "--html", str(tmp_path / "missing/r.html")])
    assert result.exit_code == 1
    missing = str(tmp_path / "missing")
    assert (
        _one_error_line(result)
        == f"kmc: error: cannot write {missing + '/r.html'!r}: folder {missing!r} does not exist"
    )
    assert result.stdout == ""  # no table printed: no comparison ran
    assert _digest(photo) == before


@pytest.mark.parametrize("command", ["encode", "decode"])
@pytest.mark.parametrize("where", ["missing", "file"])
def test_an_output_folder_that_cannot_be_written_fails_at_once(runner, photo, tmp_path, no_work, command, where):
    folder = tmp_path / "nowhere"
    if where == "file":
        folder.write_bytes(b"a file, not a folder")
    out = folder / ("o.kmc" if command == "encode" else "o.png")
    src = photo if command == "encode" else tmp_path / "photo.kmc"
    if command == "decode":
        src.write_bytes(b"\x8bKMC not read")
    extra = ["-k", "256"] if command == "encode" else []
    result = runner.invoke(cli, [command, str(src), str(out), *extra])
    assert result.exit_code == 1, result.output
    why = f"folder {str(folder)!r} does not exist" if where == "missing" else f"{str(folder)!r} is not a folder"
    assert _one_error_line(result) == f"kmc: error: cannot write {str(out)!r}: {why}"
    assert _leftovers(tmp_path) == []


@pytest.mark.parametrize("simulated", [False, True])
def test_a_read_only_output_folder_fails_at_once(runner, photo, tmp_path, monkeypatch, no_work, simulated):
    folder = tmp_path / "ro"
    folder.mkdir(mode=0o555)
    if simulated:  # root may write anywhere but on a read-only mount, which access() reports the same way
        access = os.access
        monkeypatch.setattr(os, "access", lambda path, mode: access(path, mode) and str(path) != str(folder))
    elif os.geteuid() == 0:
        pytest.skip("root may write in any folder")
    result = runner.invoke(cli, ["encode", str(photo), str(folder / "o.kmc")])
    assert result.exit_code == 1
    assert _one_error_line(result).endswith(f": no permission to write in folder {str(folder)!r}")


def test_batch_creates_the_output_folder_and_its_parents(runner, tmp_path):
    src = _image(tmp_path / "in/a.png", 1)
    out = tmp_path / "new/deeper/out"
    result = runner.invoke(cli, ["encode", str(src), "-o", str(out), "-q"])
    assert result.exit_code == 0, result.output
    assert _tree(out).keys() == {"a.kmc"}


def test_batch_output_under_a_file_fails_before_any_work(runner, tmp_path, no_work):
    src = _image(tmp_path / "in/a.png", 1)
    result = runner.invoke(cli, ["encode", str(src), "-o", str(src / "out")])
    assert result.exit_code == 1
    assert (
        _one_error_line(result) == f"kmc: error: cannot write {str(src / 'out/a.kmc')!r}: {str(src)!r} is not a folder"
    )


def test_batch_subfolder_output_that_is_a_file_fails_before_any_work(runner, tmp_path, no_work):
    _image(tmp_path / "in/a.png", 1)
    _image(tmp_path / "in/sub/b.png", 2)
    out = tmp_path / "out"
    out.mkdir()
    (out / "sub").write_bytes(b"in the way")
    result = runner.invoke(cli, ["encode", str(tmp_path / "in"), "-r", "-o", str(out)])
    assert result.exit_code == 1
    assert _one_error_line(result).endswith(f"{str(out / 'sub')!r} is not a folder")
    assert _tree(out) == {"sub": b"in the way"}


@pytest.mark.parametrize("via", ["input", "palette"])
def test_batch_refuses_an_output_that_is_an_input(runner, tmp_path, no_work, via):
    folder = tmp_path / "in"
    png = _image(folder / "a.png", 1)
    if via == "input":
        named = folder / "b.kmc"  # an image whose name ends in .kmc: its output is itself
        named.write_bytes(png.read_bytes())
        args = [str(named)]
    else:
        named = folder / "a.kmc"  # a.png's output is the palette file
        named.write_bytes(kmcodec.encode(np.zeros((4, 4, 3), np.uint8), 2))
        args = [str(png), "--palette", str(named)]
    before = _digest(named)
    result = runner.invoke(cli, ["encode", *args, "-o", str(folder), "--force"])
    line = _usage_error(result)
    role = "IN" if via == "input" else "--palette"
    assert line.startswith(f"Error: the output {str(named)!r} is the same file as {role} {str(named)!r}: ")
    assert line.endswith("give another -o DIR (--force does not allow this)")
    assert _digest(named) == before


def test_a_bad_palette_file_is_named_once(runner, photo, tmp_path):
    missing = str(tmp_path / "missing.kmc")
    result = runner.invoke(cli, ["encode", str(photo), str(tmp_path / "o.kmc"), "--palette", missing])
    assert result.exit_code == 1
    assert _one_error_line(result) == f"kmc: error: --palette: cannot read {missing!r}: No such file or directory"
    result = runner.invoke(cli, ["encode", str(photo), str(tmp_path / "o.kmc"), "--palette", str(photo)])
    assert result.exit_code == 1
    assert _one_error_line(result).startswith(f"kmc: error: --palette {str(photo)!r}: not a .kmc file")


# ---------------------------------------------------------------------------
# Bad values read as a person would write them
# ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["encode", "a", "b", "-k", "abc"], "-k/--colors: 'abc' is not a whole number from 1 to 65536"),
        (["encode", "a", "b", "-k", "0"], "-k/--colors: 0 is not a whole number from 1 to 65536"),
        (["encode", "a", "b", "--colors=2.5"], "-k/--colors: 2.5 is not a whole number from 1 to 65536"),
        (["encode", "a", "b", "--effort", "4"], "--effort: 4 is not a whole number from 1 to 3"),
        (["encode", "a", "-o", "d", "-j", "-1"], "-j/--jobs: -1 is not a whole number, 0 or more"),
        (["encode", "a", "b", "--max-bytes", "1e3"], "--max-bytes: 1e3 is not a whole number, 1 or more"),
        (["encode", "a", "b", "--target-psnr", "0"], "--target-psnr: 0 is not a number above 0"),
        (["encode", "a", "b", "--target-psnr", "high"], "--target-psnr: 'high' is not a number above 0"),
        (["encode", "a", "b", "--rdo", "inf"], "--rdo: inf is not a finite number, 0 or more"),
        (["decode", "a", "--max-pixels", "-5"], "--max-pixels: -5 is not a whole number, 0 or more"),
        (["compare", "a", "-k", "16,x"], "-k/--colors: '16,x': palette sizes must be integers joined by commas"),
        (["encode", "a", "b", "--colorspace", "xyz"], "--colorspace: 'xyz' is not one of 'srgb', 'oklab', "),
        (["decode", "a.kmc", "a.nosuch"], "OUT: no image format Pillow can write has the extension '.nosuch'"),
    ],
)
def test_bad_values_name_the_option_once_and_say_what_it_takes(runner, args, message):
    line = _usage_error(runner.invoke(cli, args))
    assert line.startswith(f"Error: {message}")
    assert "Invalid value" not in line and "valid integer" not in line and "<=" not in line


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["encode"], "Error: Missing argument 'IN OUT | IN... -o DIR'."),
        (["decode"], "Error: Missing argument 'IN'."),
        (["encode", "a", "b", "-k"], "Error: Option '-k' requires an argument."),
    ],
)
def test_click_s_other_usage_messages_are_kept(runner, args, message):
    assert _usage_error(runner.invoke(cli, args)) == message


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes here")
def test_a_named_pipe_output_is_written_through_not_replaced(runner, photo, tmp_path):
    """A device or a FIFO is no file to destroy: written as "-" is, without --force, and left what it was."""
    import stat
    import threading

    fifo = tmp_path / "out.kmc"
    os.mkfifo(fifo)
    received = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_bytes()))
    reader.start()
    result = runner.invoke(cli, ["encode", str(photo), str(fifo), "-k", "8", "-q"])
    reader.join(timeout=60)
    assert result.exit_code == 0, result.output
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    assert received and received[0] == kmcodec.encode(photo, 8)
    assert _leftovers(tmp_path) == []


def test_force_keeps_a_linked_output_a_link_and_the_file_its_permissions(runner, photo, tmp_path):
    real = tmp_path / "real.kmc"
    real.write_bytes(b"old")
    real.chmod(0o600)
    link = tmp_path / "link.kmc"
    link.symlink_to(real)
    result = runner.invoke(cli, ["encode", str(photo), str(link), "-k", "8", "-q", "--force"])
    assert result.exit_code == 0, result.output
    assert link.is_symlink() and os.readlink(link) == str(real)
    assert real.read_bytes() == kmcodec.encode(photo, 8)
    assert real.stat().st_mode & 0o777 == 0o600


def test_a_pipe_closed_early_fails_even_with_unbuffered_standard_output(tmp_path):
    """With PYTHONUNBUFFERED, standard output is the raw file, whose write takes what the pipe holds: the
    rest must still be written (here: fail, the reader having gone), not dropped with exit 0."""
    noise = tmp_path / "noise.png"  # 256 colours, kept exactly (no fit): stored, 120,000 bytes, over a pipe's 64 KiB
    rng = np.random.default_rng(3)
    palette = rng.integers(0, 256, (256, 3), dtype=np.uint8)
    Image.fromarray(palette[rng.permutation(np.arange(300 * 400) % 256).reshape(300, 400)]).save(noise)
    child = subprocess.Popen(
        [sys.executable, "-m", "kmcodec", "encode", str(noise), "-", "-k", "256", "--method", "stored", "-q"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert len(child.stdout.read(10)) == 10
    child.stdout.close()  # the reader goes: what the encoder writes next fails
    errors = child.stderr.read().decode()
    assert child.wait(timeout=60) == 1, errors
    assert "Traceback" not in errors


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="no /dev/full here")
@pytest.mark.parametrize("command", ["encode {photo} - -k 8", "decode {kmc} -"])
def test_a_failed_write_to_standard_output_is_one_line(photo, tmp_path, command):
    kmc = tmp_path / "photo.kmc"
    kmc.write_bytes(kmcodec.encode(photo, 8))
    with open("/dev/full", "wb") as full:
        result = subprocess.run(
            [sys.executable, "-m", "kmcodec", *command.format(photo=photo, kmc=kmc).split()],
            stdout=full,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
        )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == ["kmc: error: cannot write standard output: No space left on device"]


#: A kmc that stops for a minute after its first write to the output, announcing it on standard error.
STALLED_KMC = """
import sys, time
from kmcodec import cli, png
write = png.PngWriter._write
def stalled(self, data):
    write(self, data)
    print("writing", file=sys.stderr, flush=True)
    time.sleep(60)
png.PngWriter._write = stalled
cli.main(sys.argv[1:])
"""


@pytest.mark.skipif(sys.platform == "win32", reason="no SIGTERM or SIGHUP here")
@pytest.mark.parametrize(("name", "words"), [("SIGTERM", "terminated"), ("SIGHUP", "hung up")])
def test_sigterm_and_sighup_remove_the_temporary_output(photo, tmp_path, name, words):
    """As Ctrl-C does: `kill`, `timeout` or a closed terminal leave no partial file."""
    import signal

    kmc, out = tmp_path / "photo.kmc", tmp_path / "photo-out.png"
    kmc.write_bytes(kmcodec.encode(photo, 8))
    child = subprocess.Popen(
        [sys.executable, "-c", STALLED_KMC, "decode", str(kmc), str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stderr.readline() == "writing\n"
        assert _leftovers(tmp_path), "the decode writes to a temporary file"
        signum = getattr(signal, name)
        child.send_signal(signum)
        _, errors = child.communicate(timeout=60)
    finally:
        child.kill()
    assert child.returncode == 128 + signum, errors
    assert errors.strip().splitlines() == [f"kmc: error: {words}"]
    assert not out.exists() and _leftovers(tmp_path) == []


def test_a_report_may_not_be_an_output_or_the_output_folder(runner, photo, tmp_path, no_work):
    out = tmp_path / "out"
    line = _usage_error(runner.invoke(cli, ["encode", str(photo), "-o", str(out), "--report", str(out / "photo.kmc")]))
    assert f"--report {str(out / 'photo.kmc')!r} is the output of IN {str(photo)!r}" in line
    line = _usage_error(runner.invoke(cli, ["encode", str(photo), "-o", str(out), "--report", str(out)]))
    assert f"--report {str(out)!r} is a folder" in line
    line = _usage_error(runner.invoke(cli, ["encode", str(photo), "-o", "-"]))
    assert "-o takes a folder, not '-'" in line
    assert not out.exists() and not (tmp_path / "-").exists()


@pytest.mark.parametrize("option", ["--target-psnr", "--dither", "--max-bytes"])
def test_nan_is_a_usage_error(runner, photo, tmp_path, option, no_work):
    line = _usage_error(runner.invoke(cli, ["encode", str(photo), str(tmp_path / "o.kmc"), f"{option}=nan"]))
    assert f"{option}: nan is not " in line


def test_decoding_an_image_that_is_not_kmc_says_so_not_that_its_default_output_is_itself(runner, photo):
    before = _digest(photo)
    result = runner.invoke(cli, ["decode", str(photo)])  # default OUT: photo.png, the input itself
    assert result.exit_code == 1
    assert _one_error_line(result) == "kmc: error: not a .kmc file (signature does not match)"
    assert _digest(photo) == before


@pytest.mark.parametrize("option", [["--jobs", "2"], ["-r"]])
def test_batch_options_without_a_batch_are_usage_errors(runner, photo, tmp_path, no_work, option):
    line = _usage_error(runner.invoke(cli, ["encode", str(photo), str(tmp_path / "o.kmc"), *option]))
    assert line == f"Error: {option[0]} is for a batch: give IN... -o DIR"
    assert not (tmp_path / "o.kmc").exists()
