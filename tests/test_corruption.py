"""Damaged files: truncation, byte and bit flips, hostile payloads behind valid CRCs.

Whatever the damage, only KmcError subclasses may escape the decoder, and
damage that no CRC can miss must be reported.
"""

from __future__ import annotations

import pathlib
import pickle
import tracemalloc
import zlib
from pathlib import Path

import numpy as np
import pytest

import kmcodec
from kmcodec import format as fmt

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"

#: Small vectors covering each method, several strips and metadata chunks.
SMALL = [
    "rgb-3colors-k3-stored",
    "rgb-k16-deflate-rps3",
    "rgb-k16-lzma",
    "la-k3-stored",
    "rgb-metadata-k4-deflate",
]


def _vector(name: str) -> bytes:
    return (FIXTURES / "valid" / f"{name}.kmc").read_bytes()


def _decode_outcome(data: bytes) -> type[kmcodec.KmcError] | None:
    """The error class decode raises on *data*, or None if it decodes; anything else propagates."""
    try:
        pixels = kmcodec.decode(data)
    except kmcodec.KmcError as exc:
        return type(exc)
    assert pixels.dtype == np.uint8 and pixels.ndim == 3
    return None


def _chunk_spans(data: bytes) -> list[tuple[int, int]]:
    """(offset, payload length) of each chunk of a valid file."""
    spans = []
    offset = fmt.PREAMBLE_SIZE
    while offset < len(data):
        length = int.from_bytes(data[offset : offset + 4], "big")
        spans.append((offset, length))
        offset += 12 + length
    assert offset == len(data)
    return spans


# ---------------------------------------------------------------------------
# Truncation and trailing data (spec §9.2)
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("name", SMALL)
def test_every_proper_prefix_is_truncated(name):
    data = _vector(name)
    wrong = {}
    for cut in range(len(data)):
        got = _decode_outcome(data[:cut])
        if got is not kmcodec.TruncatedError:
            wrong[cut] = got
    assert not wrong, f"cuts not reported as TruncatedError: {wrong}"


@pytest.mark.parametrize("name", SMALL)
def test_trailing_bytes_are_rejected(name):
    data = _vector(name)
    for extra in (b"\x00", b"\xff", data[-12:], b"\x00\x00\x00\x00IEND"):
        assert _decode_outcome(data + extra) is kmcodec.FormatError


# ---------------------------------------------------------------------------
# Bit and byte flips without CRC repair: all detected (spec §9.3)
# ---------------------------------------------------------------------------
def _allowed_for_flip(data: bytes) -> list[tuple[type, ...]]:
    """For each byte offset, the error classes §9.3 allows for a single-bit flip there."""
    allowed: list[tuple[type, ...]] = [(kmcodec.FormatError,)] * 8 + [(kmcodec.ChecksumError,)] * 4
    for _, length in _chunk_spans(data):
        allowed += [(kmcodec.FormatError, kmcodec.TruncatedError, kmcodec.ChecksumError)] * 4  # length
        allowed += [(kmcodec.FormatError, kmcodec.ChecksumError)] * 4  # type
        allowed += [(kmcodec.ChecksumError,)] * (length + 4)  # payload, CRC
    assert len(allowed) == len(data)
    return allowed


@pytest.mark.parametrize("name", SMALL)
def test_every_single_bit_flip_is_detected(name):
    data = _vector(name)
    allowed = _allowed_for_flip(data)
    undetected, misreported = [], []
    for offset in range(len(data)):
        for bit in range(8):
            damaged = bytearray(data)
            damaged[offset] ^= 1 << bit
            got = _decode_outcome(bytes(damaged))
            if got is None:
                undetected.append((offset, bit))
            elif got not in allowed[offset]:
                misreported.append((offset, bit, got.__name__))
    assert not undetected, f"single-bit flips that decode without error (offset, bit): {undetected}"
    assert not misreported, f"flips reported with a class §9.3 does not allow: {misreported}"


@pytest.mark.parametrize("name", SMALL)
def test_random_byte_damage_raises_only_kmc_errors(name):
    """Seeded random damage of 1 to 4 bytes; every case must be refused with a KmcError."""
    data = _vector(name)
    rng = np.random.default_rng(20261126)
    undetected = []
    for trial in range(600):
        damaged = bytearray(data)
        for _ in range(int(rng.integers(1, 5))):
            damaged[int(rng.integers(len(data)))] ^= int(rng.integers(1, 256))
        if bytes(damaged) != data and _decode_outcome(bytes(damaged)) is None:
            undetected.append(trial)
    assert not undetected, f"damaged copies that decoded: trials {undetected}"


# ---------------------------------------------------------------------------
# Hostile payloads behind valid CRCs: the parser and strip decoders see them
# ---------------------------------------------------------------------------
def _with_crcs_fixed(data: bytearray) -> bytes:
    for offset, length in _chunk_spans(bytes(data)):
        end = offset + 8 + length
        data[end : end + 4] = zlib.crc32(data[offset:end]).to_bytes(4, "big")
    return bytes(data)


@pytest.mark.parametrize("name", SMALL)
def test_payload_damage_behind_valid_crcs_raises_only_kmc_errors(name):
    """Flip bytes inside payloads (never length fields) and recompute the CRCs.

    The decoder then meets lying headers, palettes, strip heads and
    compressed streams; it must either decode to an image of the header's
    size or raise a KmcError (anything else fails the test by propagating).
    """
    data = _vector(name)
    spans = _chunk_spans(data)
    payload_bytes = [i for offset, length in spans for i in range(offset + 8, offset + 8 + length)]
    rng = np.random.default_rng(7)
    outcomes: dict[str, int] = {}
    for _ in range(500):
        damaged = bytearray(data)
        for _ in range(int(rng.integers(1, 4))):
            damaged[payload_bytes[int(rng.integers(len(payload_bytes)))]] ^= int(rng.integers(1, 256))
        damaged_bytes = _with_crcs_fixed(damaged)
        got = _decode_outcome(damaged_bytes)
        if got is None:
            info = kmcodec.read_info(damaged_bytes)
            pixels = kmcodec.decode(damaged_bytes)
            assert pixels.shape == (info.height, info.width, len(info.mode))
        outcomes[got.__name__ if got else "decoded"] = outcomes.get(got.__name__ if got else "decoded", 0) + 1
    assert sum(outcomes.values()) == 500
    assert outcomes.get("FormatError", 0) > 0  # the damage did reach the checks past the CRCs


def test_a_declared_lzma_dictionary_does_not_size_the_decoders_memory():
    """Every strip of an LZMA vector declaring the largest dictionary (16 MiB) allowed: same pixels, little memory.

    liblzma allocates the dictionary a header declares; the decoder hands it
    one no larger than the strip's content, so a small hostile file cannot
    make each decoding thread hold 16 MiB (a fuzz finding: 64.2 MiB traced).
    """
    data = _vector("rgb-k16-lzma")
    damaged = bytearray(data)
    strips = 0
    for offset, _length in _chunk_spans(data):
        if data[offset + 4 : offset + 8] == fmt.STRP:
            header = offset + 8 + 5  # after the strip head: the LZMA-alone header
            assert data[header] == 0x5D and int.from_bytes(data[header + 1 : header + 5], "little") <= 2**16
            damaged[header + 1 : header + 5] = (2**24).to_bytes(4, "little")
            strips += 1
    assert strips >= 1
    expected = kmcodec.decode(data)  # and the decoder's first-use imports are behind us
    tracemalloc.start()
    try:
        pixels = kmcodec.decode(_with_crcs_fixed(damaged))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert np.array_equal(pixels, expected)
    assert peak < 2**20, f"traced peak {peak / 2**20:.1f} MiB"


@pytest.mark.parametrize("name", ["rgb-3colors-k3-stored", "rgb-k16-deflate-rps3", "rgb-k16-lzma"])
def test_every_strip_bit_flip_behind_a_valid_crc_is_handled(name):
    """Exhaustive single-bit flips of the strip payloads, CRCs recomputed: a KmcError or a valid image."""
    data = _vector(name)
    for offset, length in _chunk_spans(data):
        if data[offset + 4 : offset + 8] != fmt.STRP:
            continue
        for i in range(offset + 8, offset + 8 + length):
            for bit in range(8):
                damaged = bytearray(data)
                damaged[i] ^= 1 << bit
                _decode_outcome(_with_crcs_fixed(damaged))


@pytest.mark.parametrize("size", [0, 1, 7, 12, 13, 40, 200])
def test_garbage_after_a_valid_preamble_raises_only_kmc_errors(size):
    rng = np.random.default_rng(size)
    preamble = _vector("rgb-3colors-k3-stored")[: fmt.PREAMBLE_SIZE]
    for _ in range(50):
        garbage = rng.integers(0, 256, size, dtype=np.uint8).tobytes()
        assert _decode_outcome(preamble + garbage) is not None


# ---------------------------------------------------------------------------
# Not bytes at all
# ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    "data",
    [None, 42, 1.5, [0x8B, 0x4B], "\x8bKMC\r\n\x1a\n", np.zeros(20, np.uint8), object()],
    ids=["None", "int", "float", "list", "str", "ndarray", "object"],
)
def test_decode_of_non_bytes_raises_parameter_error(data):
    with pytest.raises(kmcodec.ParameterError):
        kmcodec.decode(data)
    with pytest.raises(kmcodec.ParameterError):
        kmcodec.decode_image(data)


@pytest.mark.parametrize("kind", [str, pathlib.Path])
def test_decode_of_a_path_raises_parameter_error(kind):
    path = kind(FIXTURES / "valid" / "rgb-3colors-k3-stored.kmc")
    with pytest.raises(kmcodec.ParameterError, match="load"):
        kmcodec.decode(path)


def test_decode_accepts_every_bytes_like_type():
    data = _vector("rgb-k16-deflate-rps3")
    expected = kmcodec.decode(data)
    doubled = bytes(b for pair in zip(data, bytes(len(data)), strict=True) for b in pair)
    for view in (bytearray(data), memoryview(data), memoryview(bytearray(data)), memoryview(doubled)[::2]):
        np.testing.assert_array_equal(kmcodec.decode(view), expected)


def test_format_errors_word_the_prefix_once_and_pickle_as_raised():
    """FormatError puts "corrupt .kmc file: " before the fault itself; each subclass words it its own way."""
    cases = [
        (kmcodec.FormatError("no PALT chunk"), "corrupt .kmc file: no PALT chunk"),
        (kmcodec.ChecksumError("CRC mismatch"), "corrupt .kmc file: CRC mismatch"),
        (kmcodec.TruncatedError("ends at byte 9"), "truncated .kmc file: ends at byte 9"),
        (kmcodec.UnsupportedVersionError("unsupported .kmc version 2.0"), "unsupported .kmc version 2.0"),
        (kmcodec.FormatError("first byte is 1", prefix="corrupt cm strip: "), "corrupt cm strip: first byte is 1"),
        (kmcodec.FormatError("not a .kmc file", prefix=""), "not a .kmc file"),
    ]
    for error, message in cases:
        assert str(error) == message
        again = pickle.loads(pickle.dumps(error))
        assert type(again) is type(error) and str(again) == message
    with pytest.raises(kmcodec.FormatError) as caught:
        kmcodec.decode(_vector("rgb-k16-lzma") + b"\x00")
    assert str(caught.value) == "corrupt .kmc file: 1 byte of trailing data after the DONE chunk"
