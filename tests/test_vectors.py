"""The golden vectors in fixtures/: expected pixels, byte-identical re-encoding, exact errors.

The vectors pin the format (see fixtures/README.md); these tests only read them.
"""

from __future__ import annotations

import json
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

import kmcodec
from kmcodec import format as fmt
from kmcodec.labels import METHOD_NAMES

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
MANIFEST = json.loads((FIXTURES / "manifest.json").read_text(encoding="utf-8"))
VALID = MANIFEST["valid"]
INVALID = MANIFEST["invalid"]
CHANNELS = {"L": 1, "LA": 2, "RGB": 3, "RGBA": 4}


def _name(entry: dict) -> str:
    return Path(entry["file"]).stem


def _bytes(entry: dict) -> bytes:
    return (FIXTURES / entry["file"]).read_bytes()


def _vector(name: str) -> dict:
    return next(e for e in VALID if _name(e) == name)


def _png_pixels(path: Path, mode: str) -> np.ndarray:
    with Image.open(path) as image:
        assert image.mode == mode
        pixels = np.asarray(image)
    return pixels[:, :, None] if pixels.ndim == 2 else pixels


# ---------------------------------------------------------------------------
# The manifest itself
# ---------------------------------------------------------------------------
def test_manifest_lists_every_vector_file_and_nothing_else():
    listed = {e["file"] for e in VALID + INVALID} | {e["expected"] for e in VALID}
    on_disk = {str(p.relative_to(FIXTURES)) for folder in ("valid", "invalid") for p in (FIXTURES / folder).iterdir()}
    assert listed == on_disk
    sources = {e["source"] for e in VALID}
    assert all((FIXTURES / s).is_file() for s in sources)
    assert MANIFEST["format_version"] == f"{fmt.VERSION_MAJOR}.{fmt.VERSION_MINOR}"


def test_manifest_covers_what_the_format_needs_pinned():
    infos = [e["info"] for e in VALID]
    assert {i["mode"] for i in infos} == {"L", "LA", "RGB", "RGBA"}
    assert {i["method"] for i in infos} == {"stored", "deflate", "lzma", "cm", "cmm", "cm2d", "cmx", "mixed"}
    assert {e["options"]["method"] for e in VALID} == {
        "auto",
        "stored,deflate,lzma",
        "stored",
        "deflate",
        "lzma",
        "cm",
        "cmm",
        "cm2d",
        "cmx",
        "stored,cm,cmm,cm2d",
    }
    assert {1, 2, 3, 16, 17, 256} <= {i["colors"] for i in infos}
    assert any(i["bits_per_label"] > 8 for i in infos)
    assert any(i["strips"] >= 4 for i in infos)
    assert any(i["width"] % 2 for i in infos)
    assert {"iccp", "exif", "xmpd", "made"} <= {c for i in infos for c in i["chunks"]}
    assert any(e["exact"] for e in VALID) and not all(e["exact"] for e in VALID)
    names = {Path(e["file"]).name for e in INVALID}
    for required in (
        "bad-signature.kmc",
        "text-mode-crlf.kmc",
        "truncated-in-strip.kmc",
        "bad-chunk-crc.kmc",
        "bad-version-check.kmc",
        "newer-major-version.kmc",
        "unknown-critical-chunk.kmc",
        "unknown-method.kmc",
        "label-out-of-range.kmc",
        "nonzero-padding.kmc",
        "missing-done.kmc",
        "trailing-data.kmc",
        "zero-width.kmc",
        "palette-length-mismatch.kmc",
        "strip-out-of-order.kmc",
        "missing-strip.kmc",
        "duplicate-head.kmc",
        "deflate-bomb.kmc",
        "lzma-truncated-stream.kmc",
        "too-many-pixels.kmc",
        "cm-nonzero-first-byte.kmc",
        "cm-truncated-stream.kmc",
        "cm-trailing-bytes.kmc",
        "cm2d-in-version-1.2.kmc",
        "cm2d-truncated-stream.kmc",
        "cmx-in-version-1.3.kmc",
        "cmx-truncated-stream.kmc",
    ):
        assert required in names


# ---------------------------------------------------------------------------
# Valid vectors
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("entry", VALID, ids=_name)
def test_valid_vector_decodes_to_its_expected_pixels(entry):
    info = entry["info"]
    pixels = kmcodec.decode(_bytes(entry))
    assert pixels.dtype == np.uint8
    assert pixels.shape == (info["height"], info["width"], CHANNELS[info["mode"]])
    np.testing.assert_array_equal(pixels, _png_pixels(FIXTURES / entry["expected"], info["mode"]))


@pytest.mark.parametrize("entry", VALID, ids=_name)
def test_valid_vector_decodes_to_a_pil_image_of_its_mode(entry):
    image = kmcodec.decode_image(_bytes(entry))
    assert image.mode == entry["info"]["mode"]
    assert image.size == (entry["info"]["width"], entry["info"]["height"])


@pytest.mark.parametrize("entry", [e for e in VALID if e["reencode"]], ids=_name)
def test_reencoding_the_source_gives_identical_bytes(entry):
    data = kmcodec.encode(FIXTURES / entry["source"], **entry["options"])
    assert data == _bytes(entry)


@pytest.mark.parametrize("entry", [e for e in VALID if e["exact"]], ids=_name)
def test_exact_vector_reproduces_its_source(entry):
    """At most k colours: the decoded image is the source, converted by Pillow alone."""
    mode = entry["info"]["mode"]
    with Image.open(FIXTURES / entry["source"]) as image:
        source = np.asarray(ImageOps.exif_transpose(image).convert(mode))
    source = source[:, :, None] if source.ndim == 2 else source.copy()
    if mode in ("LA", "RGBA"):
        source[source[:, :, -1] == 0] = 0  # fully transparent pixels are one colour
    np.testing.assert_array_equal(kmcodec.decode(_bytes(entry)), source)


@pytest.mark.parametrize("entry", VALID, ids=_name)
def test_read_info_on_valid_vector(entry):
    data = _bytes(entry)
    info = kmcodec.read_info(data)
    want = entry["info"]
    assert info.width == want["width"]
    assert info.height == want["height"]
    assert info.mode == want["mode"]
    assert info.colors == want["colors"] == len(info.palette)
    assert info.bits_per_label == want["bits_per_label"] == max(1, (info.colors - 1).bit_length())
    assert info.method == want["method"]
    assert info.strips == want["strips"] == len(info.strip_methods)
    assert info.strip_methods == want["strip_methods"]
    assert [c["type"] for c in info.chunks] == want["chunks"]
    assert info.file_bytes == len(data)
    # The chunk table tiles the file exactly.
    offset = fmt.PREAMBLE_SIZE
    for chunk in info.chunks:
        assert chunk["offset"] == offset
        offset += 12 + chunk["length"]
    assert offset == len(data)
    assert all(len(p) == len(info.mode) for p in info.palette)
    if entry["reencode"]:
        # The encoder writes the lowest version that has every method it used (spec §2).
        want_minor = max((fmt.METHOD_MINOR[METHOD_NAMES[m]] for m in info.strip_methods), default=0)
        assert info.version == f"1.{want_minor}"
        assert info.requested_colors == entry["options"]["colors"]
        assert info.seed == entry["options"]["seed"]
        assert (info.iterations == 0) == entry["exact"]
        assert (info.mse == 0) == entry["exact"]
    assert kmcodec.read_info(FIXTURES / entry["file"]) == info
    assert kmcodec.read_info(str(FIXTURES / entry["file"])) == info


def test_mixed_methods_vector_has_strips_of_different_methods():
    info = kmcodec.read_info(FIXTURES / "valid/rgb-mixed-k16-auto-rps8.kmc")
    assert info.method == "mixed"
    assert info.strip_methods == ["deflate", "stored"]


def test_unknown_ancillary_chunks_are_skipped():
    entry = _vector("rgb-unknown-ancillary")
    info = kmcodec.read_info(_bytes(entry))
    assert [c["type"] for c in info.chunks].count("futr") == 3
    base = (FIXTURES / entry["derived_from"]).read_bytes()
    np.testing.assert_array_equal(kmcodec.decode(_bytes(entry)), kmcodec.decode(base))


def test_minor_version_is_accepted():
    assert kmcodec.read_info(FIXTURES / "valid/rgb-minor-version-1.kmc").version == "1.1"


def test_empty_metadata_chunks_carry_nothing():
    data = (FIXTURES / "valid/rgb-empty-metadata.kmc").read_bytes()
    info = kmcodec.read_info(data)
    assert {"iccp", "exif", "xmpd"} <= {c["type"] for c in info.chunks}
    assert not (info.icc_profile or info.exif or info.xmp)
    image = kmcodec.decode_image(data)
    assert not {"icc_profile", "exif", "xmp"} & set(image.info)


def test_metadata_vector_carries_icc_exif_and_xmp():
    entry = _vector("rgb-metadata-k4-deflate")
    with Image.open(FIXTURES / entry["source"]) as source:
        source.load()
        icc, xmp = source.info["icc_profile"], source.info["xmp"]
    image = kmcodec.decode_image(_bytes(entry))
    assert image.info["icc_profile"] == icc
    assert image.info["xmp"] == (xmp.encode() if isinstance(xmp, str) else xmp)
    assert image.info["exif"].startswith(b"Exif\x00\x00MM\x00*")
    assert image.getexif()[0x010E] == "kmcodec fixture"
    plain = kmcodec.decode_image((FIXTURES / "valid/rgb-no-metadata-k4-deflate.kmc").read_bytes())
    assert not {"icc_profile", "exif", "xmp"} & set(plain.info)


def test_oriented_vector_is_stored_upright():
    entry = _vector("rgb-oriented-k8-stored")
    with Image.open(FIXTURES / entry["source"]) as source:
        assert source.size == (7, 4)
        assert source.getexif()[0x0112] == 6
    image = kmcodec.decode_image(_bytes(entry))
    assert image.size == (4, 7)
    assert 0x0112 not in image.getexif()  # applied, so no longer claimed


# ---------------------------------------------------------------------------
# Invalid vectors
# ---------------------------------------------------------------------------
def _error_class(name: str | None) -> type[kmcodec.KmcError] | None:
    return None if name is None else getattr(kmcodec, name)


@pytest.mark.parametrize("entry", INVALID, ids=_name)
def test_invalid_vector_raises_exactly_its_error(entry):
    expected = _error_class(entry["error"])
    with pytest.raises(kmcodec.KmcError) as caught:
        kmcodec.decode(_bytes(entry))
    assert type(caught.value) is expected, str(caught.value)
    assert isinstance(caught.value, ValueError)
    message = str(caught.value)
    assert message and "\n" not in message
    # The other entry points agree.
    with pytest.raises(expected):
        kmcodec.decode_image(_bytes(entry))
    with pytest.raises(expected):
        kmcodec.load(FIXTURES / entry["file"])


@pytest.mark.parametrize("entry", INVALID, ids=_name)
def test_invalid_vector_read_info(entry):
    expected = _error_class(entry["read_info_error"])
    if expected is None:
        kmcodec.read_info(_bytes(entry))  # the fault lies in strip data, which read_info does not decode
    else:
        with pytest.raises(kmcodec.KmcError) as caught:
            kmcodec.read_info(_bytes(entry))
        assert type(caught.value) is expected, str(caught.value)


@pytest.mark.parametrize("entry", INVALID, ids=_name)
def test_invalid_vector_fails_without_a_large_allocation(entry):
    """A lying header or a bomb never makes the decoder allocate more than a little."""
    data = _bytes(entry)
    tracemalloc.start()
    try:
        with pytest.raises(kmcodec.KmcError):
            kmcodec.decode(data)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20


def test_too_many_pixels_fails_even_without_a_pixel_limit():
    data = (FIXTURES / "invalid/too-many-pixels.kmc").read_bytes()
    with pytest.raises(kmcodec.FormatError, match="pixel limit"):
        kmcodec.decode(data, max_pixels=None)


def test_over_default_pixel_limit_vector_passes_a_raised_limit_to_the_next_check():
    """With the limit raised, the header is legal; the strips (of a 11 x 7 image) then are not."""
    data = (FIXTURES / "invalid/over-default-pixel-limit.kmc").read_bytes()
    info = kmcodec.read_info(data)
    assert (info.width, info.height, info.strips) == (16384, 16385, 3)
    with pytest.raises(kmcodec.ImageTooLargeError):
        kmcodec.decode(data, max_pixels=16384 * 16385 - 1)
