"""tools/cmx_lab.c, built with its few variants (cmx_lab.FEW): each decodes what it encoded; "null" is method cm and
"2d-null" method cm2d to the byte, and "2d-mix+wide+pd-flat" writes as many bytes as method cmx, whose model it is."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from toolmodules import load_tool

from kmcodec.cm import encode_labels

pytestmark = pytest.mark.skipif(shutil.which("cc") is None, reason="needs a C compiler (cc)")


@pytest.fixture(scope="module")
def lab():
    module = load_tool("cmx_lab")
    return module, module.build(few=True)


def _labels(k: int) -> np.ndarray:
    """Blocks of a few labels with noise: flat runs, candidates and escapes all occur."""
    rng = np.random.default_rng(k)
    blocks = np.kron(rng.integers(0, k, (12, 10)), np.ones((6, 7), np.int64))
    noise = rng.random(blocks.shape) < 0.2
    return np.where(noise, rng.integers(0, k, blocks.shape), blocks)


@pytest.mark.parametrize("k", [2, 16, 300])
def test_every_variant_decodes_exactly_and_the_nulls_are_their_methods(lab, k):
    module, library = lab
    (padded,) = module.strips(_labels(k))
    h, w = padded.shape[0] - 2, padded.shape[1] - 3
    xb = (h * w - 1).bit_length()  # spec §11.1's table size for this strip (12 ..= 20)
    assert 12 < xb < 20
    for name in module.FEW:
        result = np.zeros(6)
        status = library.lab_run(padded.ctypes.data, h, w, k, module.VARIANTS[name], 64, 6, xb, 1, result.ctypes.data)
        assert status == 0 and result[4] == 1, name
        if name in ("null", "2d-null"):
            assert result[5] == 1, name  # the lab's walk with its base method's probabilities writes its bytes
        else:  # method cmx's model, at its learning rate and table size
            assert result[1] == len(encode_labels(_labels(k).astype(np.uint16), k, mix=True)), name
    assert result[0] > 0
