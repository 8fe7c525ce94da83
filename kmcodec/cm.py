"""Context-modelled label coding: an adaptive binary range coder over a label map.

This is label coding method 3, cm (format 1.1), with ``match=True`` method
4, cmm (format 1.2): cm plus a match model that predicts a label from the
last pixel whose neighbourhood was the same, which finds the repeats of
text and user interfaces, and with ``twod=True`` method 5, cm2d (format
1.3): cm plus a 2-D match model that predicts a label from the offset under
which the neighbours repeat best (the same glyph earlier on a line), and
with ``mix=True`` method 6, cmx (format 1.4): cm2d whose decisions but the
flat one take their probability from a logistic mixer over their counters, a
counter keyed on a wider neighbourhood and one keyed on the 2-D prediction.
All four are specified in ``spec/kmc-method-cm.md`` (section numbers below
are that document's; §9 is the match model, §10 the 2-D one, §11 the
mixer).  One call codes one strip: the model starts from scratch, and nothing outside the strip is seen, so strips
decode independently (and, the kernels releasing the GIL, in parallel threads).

In brief (§5): a pixel whose neighbours W, N, NW and NE are all equal costs one
binary decision, "label = W"; otherwise the distinct neighbour labels are
offered in the order W, N, NW, NE, one decision each, until one matches; a
label none of them matches is coded bit by bit, most significant first.  Every
decision is coded by LZMA's binary range coder (§2) with a probability from
adaptive counters (§3) chosen by the neighbours (§4, §5).

``encode_labels`` and ``decode_labels`` mirror each other.  The kernels are C,
in :mod:`kmcodec._kernels` (``kmcodec/csrc/cm.c``, with the model in
``cm_model.h``, which the RDO labeller of :mod:`kmcodec.rdo` shares); they
release the GIL while they run.

>>> import numpy as np
>>> labels = np.array([[0, 0, 1], [0, 1, 1]], dtype=np.uint8)
>>> data = encode_labels(labels, colors=2)
>>> bool((decode_labels(data, 2, 3, colors=2) == labels).all())
True
>>> data = encode_labels(labels, colors=2, match=True)
>>> bool((decode_labels(data, 2, 3, colors=2, match=True) == labels).all())
True
"""

from __future__ import annotations

import numpy as np

from . import _kernels
from .errors import FormatError, ParameterError, TruncatedError, counted, is_integer
from .format import MAX_COLORS

#: Labels one call may code: with the padded work array (2 bytes a label)
#: this bounds a call's memory near 1 GiB whatever size a caller passes.
MAX_LABELS = 1 << 28
#: Bytes the decoder reads before the first decision (§2.1).
HEAD_BYTES = 5
#: How this module's FormatError messages name the data: a strip, decoded on its own.
_CORRUPT = "corrupt cm strip: "


def _check_colors(colors: object) -> int:
    if not is_integer(colors) or not 1 <= colors <= MAX_COLORS:
        msg = f"colors must be an integer from 1 to {MAX_COLORS}, not {colors!r}"
        raise ParameterError(msg)
    return int(colors)


def _check_size(h: object, w: object) -> tuple[int, int]:
    for name, value in (("h", h), ("w", w)):
        if not is_integer(value) or value < 0:
            msg = f"{name} must be a non-negative integer, not {value!r}"
            raise ParameterError(msg)
    if h * w > MAX_LABELS:
        msg = f"{h} x {w} labels exceed the {MAX_LABELS} one call may code"
        raise ParameterError(msg)
    return int(h), int(w)


def _bits(colors: int) -> int:
    """Bits of the largest label: ceil(log2(colors))."""
    return (colors - 1).bit_length()


def match_counts(labels: np.ndarray, row_step: int) -> tuple[int, int]:
    """Follow the match model (§9) along every *row_step*-th row of an (h, w) label map, coding nothing.

    Returns (hits, seen): the labels that a match running for 6 or more
    labels predicts and that differ from W, and the non-flat pixels seen.
    The encoder's guess of whether cmm pays, which reads these counts, is
    :func:`kmcodec.labels.match_may_pay`.
    """
    hits, seen = _kernels.cm_match_probe(np.ascontiguousarray(labels), row_step)
    return int(hits), int(seen)


def _model(match: bool, twod: bool, mix: bool = False) -> int:
    """The kernels' model number for method cm, cmm (*match*), cm2d (*twod*) or cmx (*mix*, *twod* implied)."""
    if match and (twod or mix):
        msg = "match and twod (or mix) are two methods: ask for one of them"
        raise ParameterError(msg)
    if mix:
        return _kernels.CM_MODEL_CMX
    if twod:
        return _kernels.CM_MODEL_CM2D
    return _kernels.CM_MODEL_CMM if match else _kernels.CM_MODEL_CM


def max_coded_size(h: int, w: int, colors: int, match: bool = False, twod: bool = False, mix: bool = False) -> int:
    """An upper bound on ``len(encode_labels(...))`` for an h x w strip.

    A pixel takes at most 4 candidate decisions (5 with the match model's
    or the 2-D model's, which cmx has too) and one per label bit; a decision
    narrows the range by at most 2**12, so it makes at most two ``shift_low``
    calls (§2.2), each of which writes at most one byte, and the flush makes five.
    """
    return HEAD_BYTES + 2 * h * w * (4 + int(match or twod or mix) + _bits(colors))


def encode_labels(
    labels: np.ndarray,
    colors: int,
    *,
    match: bool = False,
    twod: bool = False,
    mix: bool = False,
    limit: int | None = None,
) -> bytes | None:
    """Code an (h, w) label map as one strip of the cm method (cmm with *match*, cm2d with *twod*, cmx with *mix*).

    Parameters
    ----------
    labels : ndarray, shape (h, w), dtype uint8 or uint16
        Every label must be below *colors*.
    colors : int, 1 ..= 65536
        Palette size.
    match : bool
        Add the match model (§9): method cmm instead of cm.
    twod : bool
        Add the 2-D match model (§10): method cm2d instead of cm (not with *match*).
    mix : bool
        Method cmx (§11): cm2d with the mixer (*twod* is then implied; not with *match*).
    limit : int, optional
        A budget: if the coded strip would be longer than *limit* bytes,
        stop as soon as that is certain (at the start of the first row
        that finds the bytes written and owed past it) and return None.
        An encoder's search gives the best size so far, so a coding that
        cannot win costs only the rows it took to lose.

    Returns
    -------
    bytes or None
        The coded strip; empty when there is nothing to code (colors == 1 or
        no labels); None when it is longer than *limit*.  The same input
        always gives the same bytes.
    """
    colors = _check_colors(colors)
    if not isinstance(labels, np.ndarray) or labels.ndim != 2 or labels.dtype not in (np.uint8, np.uint16):
        msg = "labels must be a 2-D uint8 or uint16 array"
        raise ParameterError(msg)
    h, w = _check_size(*labels.shape)
    if h * w and int(labels.max()) >= colors:
        msg = f"a label is {int(labels.max())}, the palette has {counted(colors, 'colour')}"
        raise ParameterError(msg)
    if limit is not None and (not is_integer(limit) or isinstance(limit, bool)):
        msg = f"limit must be an integer or None, not {limit!r}"
        raise ParameterError(msg)
    if colors == 1 or h * w == 0:  # §1: nothing to code
        return b"" if limit is None or limit >= 0 else None
    if limit is not None and limit < HEAD_BYTES:
        return None  # the flush alone writes five bytes
    padded = np.zeros((h + 2, w + 3), dtype=np.uint16)
    padded[2:, 2 : w + 2] = labels
    # Room for (B + 4) bits a label and one worst-case row covers every
    # strip seen in practice; the rare one that needs more is coded again.
    model = _model(match, twod, mix)
    bound = max_coded_size(h, w, colors, match, twod, mix)
    row = max_coded_size(1, w, colors, match, twod, mix)  # the room the kernel keeps free for one row and the flush
    if limit is not None:
        # The kernel gives up at a row start where the bytes written and
        # pending leave less than a row's room, i.e. once they pass limit.
        out = np.empty(min(bound, limit + row), dtype=np.uint8)
        size = _kernels.cm_encode(padded, colors, out, model)
        return out[:size].tobytes() if 0 <= size <= limit else None
    out = np.empty(min(bound, h * w * (_bits(colors) + 4) // 8 + row), dtype=np.uint8)
    size = _kernels.cm_encode(padded, colors, out, model)
    if size < 0:
        out = np.empty(bound, dtype=np.uint8)
        size = _kernels.cm_encode(padded, colors, out, model)
    return out[:size].tobytes()


def decode_labels(
    data: bytes | bytearray | memoryview,
    h: int,
    w: int,
    colors: int,
    *,
    match: bool = False,
    twod: bool = False,
    mix: bool = False,
) -> np.ndarray:
    """Decode one strip of the cm method (cmm with *match*, cm2d with *twod*, cmx with *mix*) into an (h, w) label map.

    Parameters
    ----------
    data : bytes-like
        Exactly the bytes :func:`encode_labels` returned.
    h, w : int
        Strip size, from the container.
    colors : int, 1 ..= 65536
    match : bool
        The strip is method cmm (§9).
    twod : bool
        The strip is method cm2d (§10).
    mix : bool
        The strip is method cmx (§11).

    Returns
    -------
    ndarray, shape (h, w), uint8 if colors <= 256 else uint16
        Every label is below *colors* (the code cannot express any other).

    Raises
    ------
    TruncatedError
        The data ends before the strip does.
    FormatError
        The data is not a strip the encoder could have written: a nonzero
        first byte, bytes left over, or a range coder that does not end at
        zero.  A corrupt strip that passes these checks decodes to some
        labels, all valid; the container's CRC is what catches it.
    """
    colors = _check_colors(colors)
    h, w = _check_size(h, w)
    if colors == 1 or h * w == 0:  # nothing is coded (§6): no padded copy of a strip that may be huge
        _check_empty(data)
        return np.zeros((h, w), dtype=np.uint8)
    padded = _decode_padded(data, h, w, colors, _model(match, twod, mix))
    return padded[2:, 2 : w + 2].astype(np.uint8 if colors <= 256 else np.uint16)


def decode_pixels(
    data: bytes | bytearray | memoryview,
    h: int,
    w: int,
    colors: int,
    palette: np.ndarray,
    out: np.ndarray,
    *,
    match: bool = False,
    twod: bool = False,
    mix: bool = False,
) -> None:
    """Decode one strip like :func:`decode_labels`, writing ``palette[label]`` into *out* instead.

    *palette* is a (colors, channels) uint8 array and *out* an (h, w, channels)
    uint8 array (a view into the image is fine); the errors are those of
    :func:`decode_labels`, raised before *out* is written.
    """
    colors = _check_colors(colors)
    h, w = _check_size(h, w)
    if palette.shape[0] != colors or out.shape != (h, w, palette.shape[1]):
        msg = f"palette {palette.shape} and out {out.shape} do not fit {colors} colours and a {h} x {w} strip"
        raise ParameterError(msg)
    if colors == 1 or h * w == 0:  # nothing is coded (§6): every pixel is the one entry
        _check_empty(data)
        out[...] = palette[0]
        return
    padded = _decode_padded(data, h, w, colors, _model(match, twod, mix))
    palette = np.ascontiguousarray(palette)
    if out.flags.c_contiguous:
        _kernels.cm_palette(padded, palette, out)
    else:  # the kernel writes contiguous rows
        pixels = np.empty(out.shape, np.uint8)
        _kernels.cm_palette(padded, palette, pixels)
        out[...] = pixels


def _check_empty(data: bytes | bytearray | memoryview | np.ndarray) -> None:
    """§6: where nothing is coded (k = 1, or no pixels) the data must be empty."""
    size = len(memoryview(data).cast("B"))
    if size:
        msg = f"{counted(size, 'byte')} where nothing is coded"
        raise FormatError(msg, prefix=_CORRUPT)


def _decode_padded(data: bytes | bytearray | memoryview, h: int, w: int, colors: int, model: int) -> np.ndarray:
    """The strip's labels in the kernels' padded (h + 2, w + 3) uint16 array, checked as §6 says."""
    buf = np.frombuffer(memoryview(data).cast("B"), dtype=np.uint8)
    if colors == 1 or h * w == 0:
        _check_empty(buf)
        return np.zeros((h + 2, w + 3), dtype=np.uint16)
    if len(buf) < HEAD_BYTES:
        msg = f"{counted(len(buf), 'byte')}, a strip has at least {HEAD_BYTES}"
        raise TruncatedError(msg, prefix=_CORRUPT)
    if buf[0] != 0:
        msg = f"first byte is {int(buf[0])}, the range coder always writes 0"
        raise FormatError(msg, prefix=_CORRUPT)
    padded = np.zeros((h + 2, w + 3), dtype=np.uint16)
    used, code = _kernels.cm_decode(padded, colors, buf, model)
    if used > len(buf):
        msg = f"the labels need {used} bytes, the strip has {len(buf)}"
        raise TruncatedError(msg, prefix=_CORRUPT)
    if used < len(buf) or code != 0:
        msg = (
            f"{counted(len(buf) - used, 'byte')} left after the last label"
            if used < len(buf)
            else "the range coder does not end at zero"
        )
        raise FormatError(msg, prefix=_CORRUPT)
    return padded
