"""The exceptions kmcodec raises.

Whose fault it is decides the class:

* the *file* breaks the spec: :class:`FormatError` and its subclasses;
* the *input image* cannot be read or has no layout we can store:
  :class:`InputImageError`;
* the *caller* misused the API (a bad ``colors``, an unknown method name):
  :class:`ParameterError`.

Every class derives from :class:`KmcError`, which derives from
:class:`ValueError`, so callers that catch ``ValueError`` keep working.
"""

from __future__ import annotations

import numbers


class KmcError(ValueError):
    """Base class of every error kmcodec raises on purpose."""


class ParameterError(KmcError):
    """The caller passed an argument the API does not accept."""


class TargetError(KmcError):
    """No encoding meets the caller's target.

    A file size that even one colour exceeds (``max_bytes``), or a PSNR that
    even the most colours allowed miss (``target_psnr``).
    """


class InputImageError(KmcError):
    """The image given to the encoder cannot be read or cannot be stored."""


class ImageTooLargeError(KmcError):
    """The image exceeds a format limit or the caller's pixel limit."""


class FormatError(KmcError):
    """The data is not a valid .kmc file (spec violation).

    Raised with the fault alone; the message puts what the data is before
    it: ``FormatError("no PALT chunk")`` reads "corrupt .kmc file: no PALT
    chunk".  Subclasses word it their own way (:attr:`prefix`); a raise site
    whose data is something else passes its own ``prefix=``, as :mod:`.cm`
    does for a strip, or ``prefix=""`` with a message that is whole ("not a
    .kmc file ...").  ``args`` holds the fault alone, so the error pickles
    as it was.
    """

    prefix = "corrupt .kmc file: "

    def __init__(self, fault: str, *, prefix: str | None = None) -> None:
        super().__init__(fault)
        if prefix is not None:
            self.prefix = prefix

    def __str__(self) -> str:
        return self.prefix + super().__str__()


class ChecksumError(FormatError):
    """A CRC does not match the bytes it covers: the file is corrupt."""


class TruncatedError(FormatError):
    """The data ends before the file does."""

    prefix = "truncated .kmc file: "


class UnsupportedVersionError(FormatError):
    """The file's major version is one this decoder does not read."""

    prefix = ""


class UnsupportedFeatureError(FormatError):
    """The file needs something this decoder lacks (a critical chunk or a method id)."""

    prefix = ""


def counted(n: int, noun: str) -> str:
    """*n* and *noun* for a message: the noun plural unless *n* is 1, thousands grouped ("1 byte", "1,200 bytes")."""
    return f"{n:,} {noun}" if n == 1 else f"{n:,} {noun}s"


def is_integer(value: object) -> bool:
    """True for a Python or numpy integer, False for a bool (which Python counts as one) and all else.

    The one test every integer parameter of the API shares before its range check.
    """
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)
