"""The encoder's options: each declared once, checked once, kept in one frozen :class:`EncodeOptions`.

:data:`PARAMETER_CONSTRAINTS` gives each option's type, range or choices and
the one message a bad value gets; :data:`EXCLUSIONS` the pairs of options
that may not be combined, with theirs (in the manner of scikit-learn's
``_parameter_constraints``).  :func:`kmcodec.encode`, the Pillow plugin and
``kmc`` all build an :class:`EncodeOptions`, so no rule is written twice.
An exclusion's message names the options as its caller spells them:
``target_psnr`` in the API, ``--target-psnr`` on the command line
(:func:`check_exclusions`, which ``kmc`` runs before it reads any file).

Nothing here imports numpy or the codec, so the command line can declare its
options from these constraints before it parses any.

>>> EncodeOptions(colors=16, method="deflate,cm").k
16
>>> EncodeOptions(target_psnr=30, max_bytes=1000)
Traceback (most recent call last):
    ...
kmcodec.errors.ParameterError: target_psnr and max_bytes cannot be used together: give one, not both
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Hashable, Mapping
from typing import TYPE_CHECKING

from .defaults import (
    COLORSPACES,
    DEFAULT_COLORS,
    DEFAULT_COLORSPACE,
    DEFAULT_EFFORT,
    DEFAULT_RDO,
    EFFORTS,
    EYE_COLORSPACE,
    METHODS,
    RDO_COLORSPACES,
    RDO_FROM_COLORS,
)
from .errors import ParameterError, is_integer
from .limits import MAX_COLORS

if TYPE_CHECKING:
    import numpy as np


# ---------------------------------------------------------------------------
# Kinds of value: what a constraint accepts, and what it keeps
# ---------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Integer:
    """An integer (not a bool) in *low* ..= *high* (None: unbounded); kept as int."""

    low: int | None = None
    high: int | None = None

    def accepts(self, value: object) -> bool:
        if not is_integer(value):
            return False
        return (self.low is None or value >= self.low) and (self.high is None or value <= self.high)

    def convert(self, value: object) -> int:
        return int(value)


@dataclasses.dataclass(frozen=True)
class Real:
    """A real number (not a bool) from *low* (above it if *low_open*) to *high*, finite if *finite*; kept as float."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    finite: bool = True

    def accepts(self, value: object) -> bool:
        if not isinstance(value, numbers.Real) or isinstance(value, bool) or math.isnan(value):
            return False
        if self.finite and not math.isfinite(value):
            return False
        if self.low is not None and not (value > self.low if self.low_open else value >= self.low):
            return False
        return self.high is None or value <= self.high

    def convert(self, value: object) -> float:
        return float(value)


@dataclasses.dataclass(frozen=True)
class Choice:
    """One of *choices* (never a bool, which would equal 1); kept as given."""

    choices: tuple

    def accepts(self, value: object) -> bool:
        return isinstance(value, Hashable) and not isinstance(value, bool) and value in self.choices

    def convert(self, value: object) -> object:
        return value


@dataclasses.dataclass(frozen=True)
class MethodNames:
    """The string "auto", or one or more of *names* joined by commas; kept as given."""

    names: tuple[str, ...]

    def accepts(self, value: object) -> bool:
        return isinstance(value, str) and (value == "auto" or all(n in self.names for n in value.split(",")))

    def convert(self, value: object) -> str:
        return value


class Palette:
    """An array-like of uint8, shape (k, C) with 1 <= k <= MAX_COLORS; kept as a C-contiguous ndarray.

    Whether C is the image's channel count is the encoder's to check, once it has the image.
    """

    def accepts(self, value: object) -> bool:
        array = self.seen(value)
        return array.dtype.name == "uint8" and array.ndim == 2 and 1 <= len(array) <= MAX_COLORS

    def convert(self, value: object) -> np.ndarray:
        import numpy as np

        return np.ascontiguousarray(value)

    @staticmethod
    def seen(value: object) -> np.ndarray:
        """The value as the message shows it: an array, by dtype and shape."""
        import numpy as np

        return np.asarray(value)


class Truth:
    """Any value, kept as its truth (``bool(value)``)."""

    def accepts(self, value: object) -> bool:
        return True

    def convert(self, value: object) -> bool:
        return bool(value)


@dataclasses.dataclass(frozen=True)
class Constraint:
    """What one option accepts, and the one message a value it refuses gets.

    *message* is formatted with ``name`` (the option as the caller spells it)
    and ``value`` (as given, or as the kind shows it: a palette's array);
    empty for a kind that refuses nothing.
    With *optional*, None is accepted and kept (the option's default or
    off); *off* is the value besides None that leaves the option off, for
    :data:`EXCLUSIONS`.
    """

    kind: Integer | Real | Choice | MethodNames | Palette | Truth
    message: str
    optional: bool = False
    off: object = None


# ---------------------------------------------------------------------------
# The declarations: every option's constraint, then the pairs that exclude each other
# ---------------------------------------------------------------------------
#: Each option of :func:`kmcodec.encode`, checked in this order.
PARAMETER_CONSTRAINTS: dict[str, Constraint] = {
    "colors": Constraint(
        Integer(1, MAX_COLORS), f"{{name}} must be an integer in 1..{MAX_COLORS} or None, not {{value!r}}", True
    ),
    "seed": Constraint(Integer(0, 2**64 - 1), "{name} must be an integer in 0..2**64 - 1, not {value!r}"),
    "rows_per_strip": Constraint(Integer(1), "{name} must be a positive integer or None, not {value!r}", True),
    "effort": Constraint(Choice(EFFORTS), f"{{name}} must be one of {', '.join(map(str, EFFORTS))}, not {{value!r}}"),
    "method": Constraint(
        MethodNames(METHODS),
        f"{{name}} must be auto, or one or more of {', '.join(METHODS)} joined by commas; not {{value!r}}",
    ),
    "target_psnr": Constraint(
        Real(0, low_open=True, finite=False),
        "{name} must be a positive number of dB (inf for lossless), not {value!r}",
        True,
    ),
    "max_bytes": Constraint(Integer(1), "{name} must be a positive integer, not {value!r}", True),
    "colorspace": Constraint(
        Choice(COLORSPACES), f"{{name}} must be one of {', '.join(COLORSPACES)} or None, not {{value!r}}", True
    ),
    "palette": Constraint(
        Palette(),
        f"{{name}} must be uint8 of shape (k, C), 1 <= k <= {MAX_COLORS}; not {{value.dtype}} {{value.shape}}",
        True,
    ),
    "dither": Constraint(Real(0, 1), "{name} must be a number from 0 to 1, not {value!r}", off=0),
    "rdo": Constraint(
        Real(0), "{name} must be a finite number >= 0 (0: off; None: the default), not {value!r}", True, off=0
    ),
    "masking": Constraint(Truth(), "", optional=True, off=False),
    "metadata": Constraint(Truth(), ""),
}

#: A target chooses the palette size, which a given palette fixes.
_NO_K = "a given {palette} leaves no palette size to choose: no {target_psnr} or {max_bytes} with {palette}"
#: RDO labels are not the nearest entries, which dithering and a PSNR target assume.
_NOT_NEAREST = "{a} moves pixels off their nearest entry, which {b} relies on: not {a} with {b}"

#: Pairs of options that may not both be given (not None, nor their constraint's *off*), checked
#: in this order after every value: the message is formatted with ``a`` and ``b``, the pair as the
#: caller spells them, and every option's name by its own.
EXCLUSIONS: dict[tuple[str, str], str] = {
    ("target_psnr", "max_bytes"): "{a} and {b} cannot be used together: give one, not both",
    ("palette", "target_psnr"): _NO_K,
    ("palette", "max_bytes"): _NO_K,
    ("rdo", "dither"): _NOT_NEAREST,
    ("rdo", "target_psnr"): _NOT_NEAREST,
    ("palette", "masking"): "a given {palette} is used as it is, so {masking} has no fit to weigh: not {b} with {a}",
}


def check_option(name: str, value: object, *, spelled: str | None = None) -> object:
    """*value* kept as option *name* keeps it, if its constraint accepts it; :class:`ParameterError` if not.

    *spelled* is how the message names the option (default: *name*).
    """
    constraint = PARAMETER_CONSTRAINTS[name]
    if value is None and constraint.optional:
        return None
    kind = constraint.kind
    if kind.accepts(value):
        return kind.convert(value)
    shown = kind.seen(value) if isinstance(kind, Palette) else value
    msg = constraint.message.format(name=spelled or name, value=shown)
    raise ParameterError(msg)


def is_given(name: str, value: object) -> bool:
    """Whether *value* turns option *name* on: not None, nor its constraint's *off* value."""
    off = PARAMETER_CONSTRAINTS[name].off
    return value is not None and (off is None or value != off)


def check_exclusions(values: Mapping[str, object], *, spelling: Mapping[str, str] | None = None) -> None:
    """:class:`ParameterError` for the first pair of :data:`EXCLUSIONS` that *values* both give.

    *values* maps option names to values, checked or not (a command line
    checks its options' combination before it reads the files they name);
    *spelling* maps option names to the caller's, for the message.
    """
    for (a, b), message in EXCLUSIONS.items():
        if is_given(a, values.get(a)) and is_given(b, values.get(b)):
            names = {name: name for name in PARAMETER_CONSTRAINTS} | dict(spelling or {})
            raise ParameterError(message.format(**names, a=names[a], b=names[b]))


# ---------------------------------------------------------------------------
# The options type
# ---------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True, eq=False)
class EncodeOptions:
    """The options of one encode, checked: each field is the :func:`kmcodec.encode` keyword of its name.

    Building one checks every value against :data:`PARAMETER_CONSTRAINTS`,
    then every pair against :data:`EXCLUSIONS`, and raises
    :class:`~kmcodec.ParameterError` with the first rule's message; the
    values are kept converted (int, float, a C-contiguous uint8 palette), so
    the encoder trusts them.  Instances are immutable and picklable, for
    batch workers.

    Parameters
    ----------
    colors : int, optional
        Palette size k, 1 to 65536 (default 64).  An image with at most k
        distinct colours keeps exactly those and round-trips bit-exact,
        except that fully transparent pixels of LA and RGBA images all
        decode as zeros.  With *target_psnr* or *max_bytes* it is the
        largest k allowed (default 65536).
    seed : int
        Seed of the k-means++ generator; the same input, options and seed
        give byte-identical output.
    method : str
        Label coding: "stored", "deflate", "lzma", "cm" (context-modelled
        range coding, the smallest on photos), "cmm" (cm with a match
        model, for graphics and screenshots), "cm2d" (cm with a 2-D
        match model, the smallest on text) or "cmx" (cm2d with a logistic
        mixer, smaller on graphics, slower to decode); several joined by
        commas ("deflate,cm") to keep the smallest of them per strip; "auto"
        for the set *effort* names.
    effort : {1, 2, 3}
        How hard "auto" looks for the smallest coding of each strip: 1 is
        the fastest, 2 (default) also finds the repeats of text and
        screenshots, 3 tries every method everywhere.  The methods each
        effort tries are the spec's (Appendix A, "Strips and methods").
    rows_per_strip : int, optional
        Rows per independently coded strip (default: about a million labels).
    metadata : bool
        Carry the input's ICC profile, EXIF and XMP into the file.
    palette : array_like, shape (k, C), uint8, optional
        Use this palette as it is, every entry in its order, instead of
        choosing one (*colors* is then ignored): each pixel takes its nearest
        entry.  C must be the image's channel count (1 L, 2 LA, 3 RGB,
        4 RGBA).  See :func:`kmcodec.shared_palette` and :func:`kmcodec.read_palette`.
    dither : float
        0 to 1: Floyd-Steinberg error diffusion over the chosen palette at
        this strength (see :mod:`kmcodec.dither`), in Oklab where the fit
        maps pixels there (the default); 0, the default, maps each
        pixel to its nearest palette colour.  Dithering hides banding in
        gradients but costs bytes.
    target_psnr : float, optional
        Use the smallest k (up to *colors*) whose palette reaches this PSNR
        in dB; see :func:`~kmcodec.quantize.fit_to_psnr` for what the search
        guarantees.  :class:`~kmcodec.TargetError` if even k = *colors*
        misses it (inf: lossless, so an image of more distinct colours
        than *colors* misses it).
    max_bytes : int, optional
        Use the largest k (up to *colors*) whose whole file has at most this
        many bytes, found by doubling then bisection over k with real
        encodes: the file at the k chosen fits and the one at k + 1 (if
        allowed) does not.
        :class:`~kmcodec.TargetError` if even k = 1 does not fit.  Not with
        *target_psnr*; neither with *palette*.
    colorspace : {"srgb", "oklab", "oklab-linear", "oklab-srgb", "oklrab"}, optional
        Where k-means clusters and each colour finds its nearest palette
        entry (a given *palette* too): "srgb", the stored values, whose
        squared error PSNR counts; "oklab", a perceptual space (higher
        SSIMULACRA2 and lower CIEDE2000, lower PSNR); "oklab-linear", Oklab
        with clusters averaged in linear light (FFmpeg palettegen);
        "oklab-srgb", fitted in Oklab, then refined and mapped in sRGB;
        "oklrab", Oklab with Ottosson's lightness L_r for L (fewer entries
        in the shadows).
        None (default): "oklrab" where the palette is fitted for the eye,
        "srgb" with *target_psnr* or *palette* (see
        :attr:`fit_colorspace`).  "srgb" given also turns *masking*'s
        default off: it is the PSNR-first fit.  See
        :mod:`kmcodec.colorspace`.  The palette is sRGB either way, and the
        file does not record the choice.  Dithering diffuses the error where
        the pixels are mapped (Oklab for "oklab", "oklab-linear" and "oklrab").
    rdo : float, optional
        Rate-distortion-optimised labels (see :mod:`kmcodec.rdo`): after the
        palette is chosen, each pixel takes the entry, among its nearest and
        its coded neighbours' labels, of least squared error (all channels,
        8-bit units) + *rdo* x the bits the label coder would spend on it.
        The error is measured where the pixels were mapped: in sRGB, or in
        Oklab (the default fit for the eye) with a unit of Oklab error
        counting as 4.5 of sRGB's; with *masking*, a pixel's error also
        counts its masking weight over the image's mean (:mod:`kmcodec.rdo`).
        0: the nearest entry.  None (default): 5 where the palette is fitted
        for the eye in Oklab, undithered, with 48 or more entries and some
        error, else the nearest entry (see :meth:`rdo_for`).  Cleaner label
        maps in flat areas, smaller files for slightly lower quality.  Not
        with *dither* or *target_psnr* (whose PSNR it would lower).
    masking : bool, optional
        Fit the palette where the eye sees its error: each pixel's colour
        weighs from 1 (busy areas, which hide error) to 9 (smooth ones, where
        banding shows) in k-means (see :mod:`kmcodec.masking`).  Higher
        SSIMULACRA2 at the same k, a slightly lower PSNR.  None (default):
        on where the palette is fitted for the eye, off with
        *target_psnr* or ``colorspace="srgb"`` (see :attr:`masked`).
        True is not allowed with *palette*.

    The palette size chosen is the header's colour count; the MADE chunk's
    requested colours record *colors* (the cap) when a target is given.
    """

    colors: int | None = None
    seed: int = 0
    method: str = "auto"
    effort: int = DEFAULT_EFFORT
    rows_per_strip: int | None = None
    metadata: bool = True
    palette: np.ndarray | None = None
    dither: float = 0.0
    target_psnr: float | None = None
    max_bytes: int | None = None
    colorspace: str | None = None
    rdo: float | None = None
    masking: bool | None = None

    def __post_init__(self) -> None:
        for name in PARAMETER_CONSTRAINTS:
            object.__setattr__(self, name, check_option(name, getattr(self, name)))
        check_exclusions(self.__dict__)

    @classmethod
    def from_mapping(cls, values: Mapping[str, object]) -> EncodeOptions:
        """The options *values* names, the others at their defaults; keys that name no option are ignored.

        For mappings that carry other settings too, such as Pillow's
        ``encoderinfo``.
        """
        return cls(**{name: values[name] for name in PARAMETER_CONSTRAINTS if name in values})

    @property
    def for_the_eye(self) -> bool:
        """Whether the palette is fitted by default for the eye (SSIMULACRA2) rather than for PSNR: where it is
        fitted at all (no *palette*) and no PSNR target asks for the PSNR-first fit.  Dithered or not: with Oklab
        + masking, diffusing in Oklab, *dither* gains 3.7-4.6 SSIMULACRA2 points at equal k (docs/benchmarks.md)."""
        return self.palette is None and self.target_psnr is None

    @property
    def fit_colorspace(self) -> str:
        """Where the palette is fitted and pixels mapped: *colorspace* if given, else Oklab for the eye, else sRGB."""
        if self.colorspace is not None:
            return self.colorspace
        return EYE_COLORSPACE if self.for_the_eye else DEFAULT_COLORSPACE

    @property
    def masked(self) -> bool:
        """Whether the palette is fitted to masking weights: *masking* if given, else where it is fitted for the eye
        and no ``colorspace="srgb"`` asks for the PSNR-first fit."""
        if self.palette is not None:
            return False
        if self.masking is not None:
            return self.masking
        return self.for_the_eye and self.colorspace != "srgb"

    def rdo_for(self, colors: int, *, exact: bool) -> float:
        """The RDO lambda of labels over a palette of *colors* entries (0: each pixel's nearest entry).

        *rdo* if given.  By default :data:`~kmcodec.defaults.DEFAULT_RDO` where the palette is fitted for
        the eye in Oklab (masked or not), undithered, with at least
        :data:`~kmcodec.defaults.RDO_FROM_COLORS` entries, and not *exact* (an image the palette holds
        every colour of stays lossless); 0 otherwise.
        """
        if self.rdo is not None:
            return self.rdo
        eye = self.for_the_eye and self.fit_colorspace in RDO_COLORSPACES and not self.dither
        return DEFAULT_RDO if eye and colors >= RDO_FROM_COLORS and not exact else 0.0

    @property
    def k(self) -> int:
        """The palette size asked for: *colors*, or by default 64, or 65536 as the cap of a target."""
        if self.colors is not None:
            return self.colors
        return DEFAULT_COLORS if self.target_psnr is None and self.max_bytes is None else MAX_COLORS


__all__ = [
    "EXCLUSIONS",
    "PARAMETER_CONSTRAINTS",
    "Constraint",
    "EncodeOptions",
    "check_exclusions",
    "check_option",
    "is_given",
]
