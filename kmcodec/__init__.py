"""kmcodec: a lossy palette image codec (k-means colours, coded labels, the .kmc format).

>>> import kmcodec
>>> data = kmcodec.encode("photo.png", colors=64)      # doctest: +SKIP
>>> pixels = kmcodec.decode(data)                       # doctest: +SKIP
"""

from . import pillow_plugin  # noqa: F401  (registers .kmc with Pillow)
from .codec import (
    KmcInfo,
    StripReader,
    decode,
    decode_image,
    decode_to_png,
    encode,
    load,
    open_strips,
    read_info,
    read_palette,
    save,
    shared_palette,
)
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
from .fileio import FileAccessError, OutputExistsError
from .limits import DEFAULT_MAX_PIXELS

__version__ = "0.1.0"

#: Pixel limit (width x height) of every decode path and of image files the
#: encoder opens, consulted at call time when no ``max_pixels`` is given, as
#: Pillow's ``Image.MAX_IMAGE_PIXELS`` is.  Raise or lower it, or set it to
#: None to leave only the format's own limits (spec §8).
MAX_IMAGE_PIXELS: int | None = DEFAULT_MAX_PIXELS

__all__ = [
    "MAX_IMAGE_PIXELS",
    "ChecksumError",
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
    "load",
    "open_strips",
    "read_info",
    "read_palette",
    "save",
    "shared_palette",
]
