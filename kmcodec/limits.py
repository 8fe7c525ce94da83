"""The caller's pixel limit: one setting that every decode path and the encoder's file input consult.

``kmcodec.MAX_IMAGE_PIXELS`` plays the part of Pillow's
``Image.MAX_IMAGE_PIXELS``: a package attribute the caller may raise,
lower, or set to ``None`` (leaving only the format's own limits, spec §8).
Its value lives here, as :data:`MAX_IMAGE_PIXELS`: the package forwards the
attribute to it, so nothing here imports the package.  It is read at call
time by every function whose ``max_pixels`` argument is not given:
:func:`kmcodec.decode`, :func:`~kmcodec.decode_image`,
:func:`~kmcodec.load`, :func:`~kmcodec.open_strips`,
:func:`~kmcodec.decode_to_png`, ``Image.open`` of a .kmc file, ``kmc
decode``, and :func:`~kmcodec.encode` when it opens an image file itself.
It is checked before any size the file declares is used to allocate.
"""

from __future__ import annotations

import enum

from .errors import ImageTooLargeError, ParameterError, is_integer

#: The value ``kmcodec.MAX_IMAGE_PIXELS`` starts with (an RGBA image of this size is 1 GiB).
#: ``kmcodec.format.DEFAULT_MAX_PIXELS`` is this one: it lives here so that ``import kmcodec``
#: needs no construct.
DEFAULT_MAX_PIXELS = 2**28

#: Most palette entries a file may have (labels are at most 16 bits; spec §8).  ``kmcodec.format.MAX_COLORS``
#: is this one: it lives here so that the options (:mod:`kmcodec.options`) need no construct.
MAX_COLORS = 2**16

#: The value of ``kmcodec.MAX_IMAGE_PIXELS``: the package's attribute reads and sets this one.
MAX_IMAGE_PIXELS: int | None = DEFAULT_MAX_PIXELS


class _Default(enum.Enum):
    """The type of :data:`DEFAULT`, a sentinel that shows as what it stands for in signatures."""

    TOKEN = 0

    def __repr__(self) -> str:
        return "kmcodec.MAX_IMAGE_PIXELS"


#: ``max_pixels=DEFAULT``: use ``kmcodec.MAX_IMAGE_PIXELS`` as it is at call time.
DEFAULT = _Default.TOKEN

MaxPixels = int | None | _Default


def pixel_limit(max_pixels: MaxPixels = DEFAULT) -> int | None:
    """The pixel limit to apply: *max_pixels*, or ``kmcodec.MAX_IMAGE_PIXELS`` for :data:`DEFAULT`.

    Raises :class:`~kmcodec.ParameterError` unless the value is a positive
    integer or ``None`` (no limit but the format's).
    """
    name = "max_pixels"
    if max_pixels is DEFAULT:
        name = "kmcodec.MAX_IMAGE_PIXELS"
        max_pixels = MAX_IMAGE_PIXELS
    if max_pixels is not None and (not is_integer(max_pixels) or max_pixels < 1):
        msg = f"{name} must be a positive integer or None, not {max_pixels!r}"
        raise ParameterError(msg)
    return None if max_pixels is None else int(max_pixels)


#: What the caller of a decode function may raise to allow a larger image (:func:`check_pixels`).
RAISE_EITHER = "max_pixels or kmcodec.MAX_IMAGE_PIXELS"
#: The same for ``Image.open`` of a .kmc file, which takes no max_pixels and applies Pillow's limit next.
RAISE_PILLOW = "kmcodec.MAX_IMAGE_PIXELS, and Pillow's Image.MAX_IMAGE_PIXELS,"


def check_pixels(width: int, height: int, limit: int | None, what: str = "image", raise_: str = RAISE_EITHER) -> None:
    """Raise :class:`~kmcodec.ImageTooLargeError` if width x height exceeds *limit* (None: no limit).

    The message tells the caller to raise *raise_*, the settings that allow it.
    """
    if limit is not None and width * height > limit:
        pixels = f"{width} x {height} = {width * height:,} pixels"
        msg = f"{what} of {pixels} exceeds the limit of {limit:,} {advice(raise_)}"
        raise ImageTooLargeError(msg)


def advice(raise_: str) -> str:
    """The end of :func:`check_pixels`' message: what to raise to allow the image."""
    return f"(raise {raise_} to allow it)"
