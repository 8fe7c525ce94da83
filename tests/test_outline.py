"""container.read_outline: the cheap check that a .kmc file was written whole (a batch skips such outputs)."""

from __future__ import annotations

import io

import numpy as np
import pytest

import kmcodec
from kmcodec.container import read_outline
from kmcodec.errors import FormatError


def test_read_outline_takes_a_whole_file_only():
    data = kmcodec.encode(np.arange(300, dtype=np.uint8).reshape(10, 10, 3), 4, rows_per_strip=3)
    assert read_outline(io.BytesIO(data), max_pixels=None).header.width == 10
    for cut in (1, 11, 12, 40, len(data) // 2, len(data) - 12, len(data) - 1):
        with pytest.raises(FormatError):
            read_outline(io.BytesIO(data[:cut]), max_pixels=None)
    with pytest.raises(FormatError):
        read_outline(io.BytesIO(data + b"\0"), max_pixels=None)
