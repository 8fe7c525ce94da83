"""Odd input images through ``kmc encode``: exit 0, or exit 1 with one line; never a traceback.

The images come from ``tools/make_odd_images.py``, which says for each what
should happen.  What a user would see on stderr includes Pillow's warnings
and log records, which pytest captures before they reach the CliRunner's
stderr; they are counted here as extra lines.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import numpy as np
import pytest
from _pytest.logging import LogCaptureHandler
from click.testing import CliRunner
from PIL import Image
from toolmodules import load_tool

import kmcodec
from kmcodec.cli import cli

odd = load_tool("make_odd_images")


@pytest.fixture(scope="module")
def odd_paths(tmp_path_factory) -> dict[str, Path]:
    return {case.name: path for path, case in odd.make_odd_images(tmp_path_factory.mktemp("odd"))}


def _cases() -> list:
    return [
        pytest.param(case, id=case.name, marks=[pytest.mark.xfail(strict=True, reason=case.known_issue)])
        if case.known_issue
        else pytest.param(case, id=case.name)
        for case in odd.ODD_IMAGES
    ]


def _encode(src: Path, dst: Path, caplog) -> tuple[object, list[str]]:
    """Run ``kmc encode SRC DST -k 16``; returns the result and what else would reach stderr."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.resetwarnings()  # the interpreter's defaults, not pytest's
        warnings.simplefilter("default")
        for category in (DeprecationWarning, PendingDeprecationWarning, ImportWarning, ResourceWarning):
            warnings.simplefilter("ignore", category)
        with caplog.at_level(logging.WARNING):
            result = CliRunner().invoke(cli, ["encode", str(src), str(dst), "-k", "16"])
    noise = [f"warning: {w.message}" for w in caught]
    noise += [f"log: {r.getMessage()}" for r in caplog.records if r.levelno >= logging.WARNING and _to_stderr(r)]
    return result, noise


def _to_stderr(record: logging.LogRecord) -> bool:
    """Would *record* be printed outside pytest? (pytest hooks its capture into every logger.)

    It is printed unless the loggers it passes through, up to the first that
    does not propagate, have only NullHandlers; with no handler at all it
    reaches logging's last-resort handler, which writes to stderr.
    """
    logger: logging.Logger | None = logging.getLogger(record.name)
    while logger is not None:
        handlers = [h for h in logger.handlers if not isinstance(h, LogCaptureHandler)]
        if any(not isinstance(h, logging.NullHandler) for h in handlers):
            return True
        if handlers or not logger.propagate:
            return False
        logger = logger.parent
    return True


@pytest.mark.parametrize("case", _cases())
def test_kmc_encode_odd_image(case, odd_paths, tmp_path, caplog):
    dst = tmp_path / "out.kmc"
    result, noise = _encode(odd_paths[case.name], dst, caplog)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exc_info
    assert "Traceback" not in result.output
    assert not noise, noise
    if result.exit_code == 0:
        assert case.expect in ("encodes", "either"), result.output
        assert result.stderr == ""
        data = dst.read_bytes()
        info = kmcodec.read_info(data)
        assert kmcodec.decode(data).shape == (info.height, info.width, len(info.mode))
        if case.encoded_size:
            assert (info.width, info.height) == case.encoded_size
    else:
        assert case.expect in ("refused", "either"), result.stderr
        assert result.exit_code == 1, result.output
        lines = result.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith("kmc: error: "), result.stderr
        assert not dst.exists()
        assert list(tmp_path.iterdir()) == []  # no temporary file left either


def test_animations_encode_their_first_frame(odd_paths):
    for name in ("animated.gif", "animated.png", "multipage.tif"):
        with Image.open(odd_paths[name]) as image:
            first = np.asarray(image.convert("RGB"))
            image.seek(1)
            second = np.asarray(image.convert("RGB"))
        pixels = kmcodec.decode(kmcodec.encode(odd_paths[name], colors=256))[..., :3]
        assert not (first == second).all()
        np.testing.assert_array_equal(pixels, first, err_msg=name)  # 96 pixels, 256 colours: exact


def test_exif_orientations_6_and_8_turn_opposite_ways(odd_paths):
    six = kmcodec.decode(kmcodec.encode(odd_paths["exif-orientation-6.jpg"], colors=256))
    eight = kmcodec.decode(kmcodec.encode(odd_paths["exif-orientation-8.jpg"], colors=256))
    assert six.shape == eight.shape == (9, 5, 3)
    assert abs(six.astype(int) - eight[::-1, ::-1].astype(int)).mean() < 4  # 180 degrees apart


def test_the_script_writes_a_folder(tmp_path, capsys):
    assert odd.main([str(tmp_path / "odd")]) == 0
    assert len(list((tmp_path / "odd").iterdir())) == len(odd.ODD_IMAGES)
    assert odd.main([]) == 2
