"""kmcodec: a lossy palette image codec (k-means colours, coded labels, the .kmc format).

>>> import kmcodec
>>> data = kmcodec.encode("photo.png", colors=64)      # doctest: +SKIP
>>> pixels = kmcodec.decode(data)                       # doctest: +SKIP
"""

from . import pillow_plugin  # noqa: F401  (registers .kmc with Pillow)
from .codec import KmcInfo, decode, decode_image, encode, load, read_info, save
from .errors import (
    ChecksumError,
    FormatError,
    ImageTooLargeError,
    InputImageError,
    KmcError,
    ParameterError,
    TruncatedError,
    UnsupportedFeatureError,
    UnsupportedVersionError,
)
from .fileio import FileAccessError, OutputExistsError

__version__ = "0.1.0"

__all__ = [
    "ChecksumError",
    "FileAccessError",
    "FormatError",
    "ImageTooLargeError",
    "InputImageError",
    "KmcError",
    "KmcInfo",
    "OutputExistsError",
    "ParameterError",
    "TruncatedError",
    "UnsupportedFeatureError",
    "UnsupportedVersionError",
    "__version__",
    "decode",
    "decode_image",
    "encode",
    "load",
    "read_info",
    "save",
]
