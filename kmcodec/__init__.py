"""kmcodec: a lossy palette image codec (k-means colours, coded labels, the .kmc format).

>>> import kmcodec
>>> data = kmcodec.encode("photo.png", colors=64)      # doctest: +SKIP
>>> pixels = kmcodec.decode(data)                       # doctest: +SKIP
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import TYPE_CHECKING

from . import limits as _limits
from . import pillow_plugin  # noqa: F401  (registers .kmc with Pillow)
from ._version import __version__
from .errors import (
    ChecksumError,
    FormatError,
    ImageTooLargeError,
    InputImageError,
    KmcError,
    ParameterError,
    TargetError,
    TruncatedError,
    UnsupportedFeatureError,
    UnsupportedVersionError,
)

if TYPE_CHECKING:
    MAX_IMAGE_PIXELS: int | None
    from .codec import (
        KmcInfo,
        StripReader,
        decode,
        decode_image,
        decode_to_png,
        encode,
        encode_with,
        load,
        open_strips,
        read_info,
        read_palette,
        save,
        shared_palette,
    )
    from .fileio import FileAccessError, OutputExistsError
    from .options import EncodeOptions

#: Names imported from their module on first use (PEP 562), so that ``import kmcodec`` (and
#: ``kmc --version``) does not load numpy, construct and the kernels.
_LAZY = {
    **dict.fromkeys(
        (
            "KmcInfo",
            "StripReader",
            "decode",
            "decode_image",
            "decode_to_png",
            "encode",
            "encode_with",
            "load",
            "open_strips",
            "read_info",
            "read_palette",
            "save",
            "shared_palette",
        ),
        "codec",
    ),
    **dict.fromkeys(("FileAccessError", "OutputExistsError"), "fileio"),
    "EncodeOptions": "options",
}


def __getattr__(name: str) -> object:
    if name not in _LAZY:
        msg = f"module {__name__!r} has no attribute {name!r}"
        raise AttributeError(msg)
    value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY, "MAX_IMAGE_PIXELS"})


class _Package(types.ModuleType):
    """The package's module type: a property for its one attribute that callers set.

    Setting a module's ``__class__`` is the data model's way to run code on
    a module attribute's assignment ("Customizing module attribute access").
    """

    @property
    def MAX_IMAGE_PIXELS(self) -> int | None:
        """Pixel limit (width x height) of every decode path and of image files the encoder opens.

        Consulted at call time when no ``max_pixels`` is given, as Pillow's
        ``Image.MAX_IMAGE_PIXELS`` is.  Raise or lower it, or set it to None
        to leave only the format's own limits (spec §8).  The value is kept
        in :mod:`kmcodec.limits`, where the decoders read it without
        importing the package.
        """
        return _limits.MAX_IMAGE_PIXELS

    @MAX_IMAGE_PIXELS.setter
    def MAX_IMAGE_PIXELS(self, value: int | None) -> None:
        _limits.MAX_IMAGE_PIXELS = value  # checked where it is used, as an argument would be


sys.modules[__name__].__class__ = _Package

__all__ = [
    "MAX_IMAGE_PIXELS",
    "ChecksumError",
    "EncodeOptions",
    "FileAccessError",
    "FormatError",
    "ImageTooLargeError",
    "InputImageError",
    "KmcError",
    "KmcInfo",
    "OutputExistsError",
    "ParameterError",
    "StripReader",
    "TargetError",
    "TruncatedError",
    "UnsupportedFeatureError",
    "UnsupportedVersionError",
    "__version__",
    "decode",
    "decode_image",
    "decode_to_png",
    "encode",
    "encode_with",
    "load",
    "open_strips",
    "read_info",
    "read_palette",
    "save",
    "shared_palette",
]
