"""The ``kmc`` command: encode, decode and inspect .kmc files.

Errors print one line ``kmc: error: ...`` on standard error and exit 1;
misuse of the command line exits 2 (click's usage errors).  Outputs are
written atomically and an existing output is kept unless ``--force``.  Every
command checks its outputs before it reads a pixel: an output that is one of
its inputs (through links or "-" too) is misuse, even with ``--force``, and
so is an output named for another format (``kmc encode x.png x.jpg``) unless
``--force``; an output whose folder is missing or read-only fails at once.

``kmc encode IN... -o DIR`` encodes a batch with :mod:`kmcodec.batch`, in
worker processes or in Dask tasks with ``--scheduler``, keeps going past a
failed file and lists every failure at the end (exit 1).  Ctrl-C exits
130 from any command.
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import re
import signal
import sys
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, NoReturn

import click
from PIL import Image

from . import __version__, batch
from .defaults import DEFAULT_KS
from .errors import ImageTooLargeError, KmcError, ParameterError
from .fileio import (
    STDIO,
    FileId,
    files_read,
    folder_problem,
    is_special,
    open_input,
    read_bytes,
    same_file_problem,
    write_all,
    write_atomic,
)
from .limits import DEFAULT, DEFAULT_MAX_PIXELS, RAISE_EITHER, MaxPixels, advice
from .options import PARAMETER_CONSTRAINTS, Choice, EncodeOptions, Integer, MethodNames, Real, Truth, check_exclusions

if TYPE_CHECKING:
    import numpy as np

# What only some commands use (the codec with numpy, compare and its report, the batch's
# worker pool) is imported in those commands, so that the others, and --version, start quickly.
#: Palette entries shown by `inspect` before eliding the rest.
INSPECT_MAX_SWATCHES = 256
#: Extensions (lower case) of image formats other than .kmc: ``kmc encode`` refuses to write
#: .kmc data under one of these names unless --force, since every viewer would refuse the file.
OTHER_IMAGE_EXTENSIONS = frozenset(batch.IMAGE_EXTENSIONS).union(
    (".jxl", ".heic", ".heif", ".jp2", ".j2k", ".jpx", ".ico", ".icns", ".psd", ".pcx", ".xbm", ".xpm", ".sgi"),
    (".dds", ".exr", ".hdr", ".svg", ".jxr"),
)


class CliError(click.ClickException):
    """A failure reported as one line, ``kmc: error: ...``, with exit status 1."""

    def show(self, file=None) -> None:
        click.echo(f"kmc: error: {self.format_message()}", file=file or sys.stderr, err=file is None)


class BadValue(click.BadParameter):
    """A bad value, shown as ``-k/--colors: ...``, not as click's ``Invalid value for '-k' / '--colors': ...``.

    :class:`KmcGroup` shows every plain :class:`click.BadParameter` this way (its subclasses,
    such as a missing argument, word their own messages).
    """

    def format_message(self) -> str:
        hint = self.param_hint
        if hint is None and isinstance(self.param, click.Option):
            hint = "/".join(self.param.opts)
        elif hint is None and self.param is not None:
            hint = self.param.human_readable_name
        elif not isinstance(hint, str) and hint is not None:
            hint = "/".join(hint)
        return self.message if hint is None else f"{hint}: {self.message}"


class _Ranged:
    """A number type in a range whose message says what it wants as a person would: "a whole number from 1 to 3"."""

    noun = "number"

    def convert(self, value, param, ctx):
        try:
            return super().convert(value, param, ctx)
        except click.BadParameter:
            shown = value if _is_number(value) else repr(value)  # 0 and 3.5 bare, 'abc' quoted
            self.fail(f"{shown} is not {self.wanted()}", param, ctx)

    def wanted(self) -> str:
        low, high = (f"{x:g}" if isinstance(x, float) else x for x in (self.min, self.max))
        if low is not None and high is not None:
            return f"a {self.noun} from {low} to {high}"
        if low is not None:
            return f"a {self.noun} above {low}" if self.min_open else f"a {self.noun}, {low} or more"
        return f"a {self.noun}, {high} or less"


class WholeNumber(_Ranged, click.IntRange):
    noun = "whole number"


class Number(_Ranged, click.FloatRange):
    def __init__(self, *args, finite: bool = False, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.finite = finite
        if finite:
            self.noun = "finite number"

    def convert(self, value, param, ctx):
        number = super().convert(value, param, ctx)
        if math.isnan(number) or (self.finite and not math.isfinite(number)):  # NaN passes every range check
            self.fail(f"{value} is not {self.wanted()}", param, ctx)
        return number


class DitherStrength(Number):
    """--dither's optional value, 0 to 1, with a hint when it swallowed a file name."""

    name = "strength"
    noun = "strength"

    def __init__(self, low: float, high: float) -> None:
        super().__init__(low, high)

    def convert(self, value, param, ctx):
        if isinstance(value, str) and value.startswith(MINUS):  # a negative number (_mark_negative_values)
            value = "-" + value[1:]
        try:
            return super().convert(value, param, ctx)
        except click.BadParameter as exc:
            if _is_number(value):
                raise
            self.fail(f"{exc.message} (write --dither=STRENGTH, or put --dither after IN OUT)", param, ctx)


def _is_number(text: object) -> bool:
    try:
        float(text)
    except (TypeError, ValueError):
        return False
    return True


# ---------------------------------------------------------------------------
# The encoder's options, declared once for every command that takes them
# ---------------------------------------------------------------------------
def _flags(*opts: str, **settings: object) -> tuple[tuple[str, ...], dict[str, object]]:
    """An option's flags and click settings (help, metavar, ...), as :data:`ENCODER_FLAGS` lists them."""
    return opts, settings


#: Each encoder option's flags, help and how it shows.  Its type, range or choices are its
#: constraint in kmcodec.options.PARAMETER_CONSTRAINTS, and its default is EncodeOptions'.
ENCODER_FLAGS = {
    "colors": _flags(
        "-k",
        "--colors",
        help="Palette size (1-65536; default 64); with --target-psnr or --max-bytes, "
        "the largest allowed (default 65536).",
    ),
    "target_psnr": _flags(
        "--target-psnr",
        metavar="DB",
        help="Use the smallest palette whose PSNR reaches DB (inf: lossless); an error, exit 1, if -k colours miss it.",
    ),
    "max_bytes": _flags(
        "--max-bytes", metavar="N", help="Use the largest palette whose whole file has at most N bytes."
    ),
    "seed": _flags("--seed", show_default=True, help="k-means++ seed."),
    "method": _flags(
        "--method",
        show_default=True,
        help="Label coding: stored, deflate, lzma, cm, cmm (cm with a match model, for graphics), cm2d "
        "(cm with a 2-D match model, for text) or cmx (cm2d with a mixer, smaller and slower), "
        "or several joined by commas (the smallest per strip is kept); auto tries the set --effort names.",
    ),
    "effort": _flags(
        "--effort",
        show_default=True,
        help="How hard --method auto looks for the smallest coding of each strip: 1 fastest; "
        "2 also finds the repeats of text and screenshots; 3 tries every method everywhere (slowest). "
        "The spec's Appendix A says which methods each tries.",
    ),
    "colorspace": _flags(
        "--colorspace",
        help="Where k-means clusters and pixels find their nearest colour: oklab (perceptual), "
        "srgb (the PSNR-first fit: best PSNR, masking off unless --masking), oklab-linear (Oklab, clusters "
        "averaged in linear light), oklab-srgb (fitted in Oklab, refined in sRGB), oklrab (Oklab with "
        "Ottosson's L_r lightness: fewer entries in the shadows; best by eye). "
        "Default: oklrab, but srgb with --target-psnr or --palette.",
    ),
    "rows_per_strip": _flags("--strip-rows", help="Rows per strip (default: ~1 M labels)."),
    "dither": _flags(
        "--dither",
        is_flag=False,
        flag_value=1.0,
        metavar="[STRENGTH]",
        help="Floyd-Steinberg dithering at STRENGTH 0-1 (1 if --dither has no value; off by default). "
        "Hides banding in gradients, costs bytes. Diffuses Oklab error by default (sRGB's with --colorspace srgb).",
    ),
    "rdo": _flags(
        "--rdo",
        metavar="LAMBDA",
        help="Rate-distortion-optimised labels: each pixel takes the entry of least squared error "
        "(in the space it was mapped in) + LAMBDA x its estimated bits (0: the nearest). Smaller files, "
        "slightly lower quality; not with --dither or --target-psnr. Default: 5 from 48 colours up in the "
        "default Oklab fit (or oklrab), else 0.",
    ),
    "masking": _flags(
        "--masking/--no-masking",
        help="Fit the palette where errors show: smooth areas weigh up to 9x busy ones. Better by eye "
        "(SSIMULACRA2), slightly lower PSNR. Default: on, but off with --target-psnr or "
        "--colorspace srgb.",
    ),
}
#: How kmc spells each encoder option, for the messages of kmcodec.options' rules.
SPELLING = {name: flags[-1] for name, (flags, _) in ENCODER_FLAGS.items()} | {
    "palette": "--palette",
    "metadata": "--no-metadata",
    "masking": "--masking",
}


def _option_type(name: str) -> click.ParamType:
    """The click type of encoder option *name*: its constraint, with the command line's messages."""
    kind = PARAMETER_CONSTRAINTS[name].kind
    if isinstance(kind, Integer):
        return WholeNumber(kind.low, kind.high)
    if isinstance(kind, Real) and name == "dither":
        return DitherStrength(kind.low, kind.high)
    if isinstance(kind, Real):
        return Number(kind.low, kind.high, min_open=kind.low_open, finite=kind.finite)
    if isinstance(kind, Choice) and all(isinstance(choice, int) for choice in kind.choices):
        return WholeNumber(min(kind.choices), max(kind.choices))  # the choices are a range: 1 to 3
    if isinstance(kind, Choice):
        return click.Choice(kind.choices)
    if isinstance(kind, MethodNames):
        return MethodList(kind)
    if isinstance(kind, Truth):
        return click.BOOL
    msg = f"no command-line type for option {name!r}"
    raise TypeError(msg)


class MethodList(click.ParamType):
    """--method: auto or comma-joined method names; anything else is a usage error."""

    name = "method"

    def __init__(self, kind: MethodNames) -> None:
        self.kind = kind

    def convert(self, value, param, ctx):
        if not self.kind.accepts(value):
            self.fail(
                f"{value!r}: use auto, or one or more of {', '.join(self.kind.names)} joined by commas", param, ctx
            )
        return value


def encoder_options(*names: str):
    """Decorate a command with the encoder options *names*, in that order, each passed as its option's name."""

    def decorate(command):
        for name in reversed(names):
            flags, settings = ENCODER_FLAGS[name]
            default = getattr(EncodeOptions, name)
            command = click.option(*flags, name, type=_option_type(name), default=default, **settings)(command)
        return command

    return decorate


def _refuse_exclusions(values: dict[str, object]) -> None:
    """Usage error (exit 2) for options that exclude each other (kmcodec.options.EXCLUSIONS)."""
    try:
        check_exclusions(values, spelling=SPELLING)
    except ParameterError as exc:
        raise click.UsageError(str(exc)) from None


def _fail(message: str) -> NoReturn:
    raise CliError(message)


def _read_input(path: str) -> bytes:
    if path == STDIO:
        return sys.stdin.buffer.read()
    return read_bytes(path)


@contextlib.contextmanager
def _stdout_errors() -> Iterator[None]:
    """A failed write to standard output (disk full, ...) as one line; a closed pipe stays BrokenPipeError."""
    try:
        yield
    except BrokenPipeError:
        raise
    except OSError as exc:
        msg = f"cannot write standard output: {exc.strerror or exc}"
        raise CliError(msg) from None


def _write_output(path: str, data: bytes, force: bool) -> None:
    if path == STDIO:
        stream = sys.stdout.buffer
        with _stdout_errors():
            write_all(stream, data)
            stream.flush()
    else:
        write_atomic(path, data, overwrite=force)


def _display(path: str) -> str:
    return "<stdout>" if path == STDIO else path


# ---------------------------------------------------------------------------
# Output checks: every command runs them before it reads a pixel
# ---------------------------------------------------------------------------
def _refuse_same_file(role: str, output: str, read: dict[FileId, tuple[str, str]], remedy: str) -> None:
    """Usage error if *output* ("-": standard output) is one of *read* (:func:`~kmcodec.fileio.files_read`)."""
    problem = same_file_problem(role, output, read, remedy)
    if problem is not None:
        raise click.UsageError(problem)


def _refuse_image_name(role: str, path: str, force: bool, writes: str, extension: str, kmc: bool = False) -> None:
    """Usage error, unless *force*, if *path* is named as an image of another format (or, with *kmc*, .kmc).

    The command *writes* something else, which every program that trusts the
    name would refuse; the message suggests the name with *extension*.
    """
    root, ext = os.path.splitext(path)
    if path != STDIO and not force and (ext.lower() in OTHER_IMAGE_EXTENSIONS or (kmc and ext.lower() == ".kmc")):
        msg = (
            f"{role} {path!r} is named as a {ext} image, but {writes}: "
            f"name it {root + extension!r}, or add --force to keep the name"
        )
        raise click.UsageError(msg)


def _check_output(path: str, force: bool) -> None:
    """Fail (exit 1) before any work if *path* ("-", a device or a pipe always pass) exists without *force*, or
    cannot be written."""
    if path == STDIO or is_special(path):
        return
    if not force and os.path.lexists(path):
        _fail(f"{path!r} exists (use --force to overwrite)")
    problem = folder_problem(path)
    if problem is not None:
        _fail(f"cannot write {path!r}: {problem}")


class Terminated(BaseException):
    """SIGTERM or SIGHUP, raised in the main thread as Ctrl-C's KeyboardInterrupt is: every ``finally`` runs
    (temporary outputs removed, batch workers stopped) before kmc exits 128 + the signal's number."""

    def __init__(self, signum: int) -> None:
        super().__init__("terminated" if signum == signal.SIGTERM else "hung up")
        self.signum = signum


def _raise_terminated(signum: int, frame: object) -> NoReturn:
    raise Terminated(signum)


@contextlib.contextmanager
def _terminate_as_exception() -> Iterator[None]:
    """Within the block, SIGTERM and SIGHUP raise :class:`Terminated` (where this thread may set handlers)."""
    previous = {}
    for name in ("SIGTERM", "SIGHUP"):  # Windows has no SIGHUP
        signum = getattr(signal, name, None)
        if signum is not None:
            with contextlib.suppress(ValueError, OSError):  # ValueError: not the main thread
                previous[signum] = signal.signal(signum, _raise_terminated)
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


#: Options whose value may be left out (--dither alone is strength 1).  click reads an argument after
#: them that starts with "-" as an option, even written "--dither=-0.1", so that failed as "No such
#: option '-0'": the CLI hands such a value on with MINUS in place of its "-", which the option's
#: type reads back (:class:`DitherStrength`) and then refuses as a value, out of range.
OPTIONAL_VALUES = frozenset(
    flag for flags, settings in ENCODER_FLAGS.values() if settings.get("flag_value") is not None for flag in flags
)
NEGATIVE_NUMBER = re.compile(r"-\.?[0-9]")
MINUS = "\u2212"


def _mark_negative_values(args: list[str]) -> list[str]:
    """*args* with a negative number after an option of OPTIONAL_VALUES (up to "--") marked by MINUS."""
    marked: list[str] = []
    for at, arg in enumerate(args):
        if arg == "--":
            return marked + args[at:]
        flag, equals, value = arg.partition("=")
        if equals and flag in OPTIONAL_VALUES and NEGATIVE_NUMBER.match(value):
            arg = f"{flag}={MINUS}{value[1:]}"
        elif at and args[at - 1] in OPTIONAL_VALUES and NEGATIVE_NUMBER.match(arg):
            arg = MINUS + arg[1:]
        marked.append(arg)
    return marked


class KmcGroup(click.Group):
    """A click group whose every failure ends as one line and an exit status, never a traceback."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        batch.quiet_pillow()
        args = _mark_negative_values(list(sys.argv[1:] if args is None else args))
        try:
            with _terminate_as_exception():
                result = super().main(args, prog_name or "kmc", complete_var, standalone_mode=False, **extra)
        except click.ClickException as exc:  # usage errors exit 2, CliError 1
            if type(exc) is click.BadParameter:  # not MissingParameter, which words its own message
                exc = BadValue(exc.message, exc.ctx, exc.param, exc.param_hint)
            exc.show()
            sys.exit(exc.exit_code)
        except (click.exceptions.Abort, KeyboardInterrupt):
            click.echo("kmc: error: interrupted", err=True)
            sys.exit(130)
        except Terminated as exc:
            click.echo(f"kmc: error: {exc}", err=True)
            sys.exit(128 + exc.signum)
        except KmcError as exc:
            click.echo(f"kmc: error: {exc}", err=True)
            sys.exit(1)
        except BrokenPipeError:
            sys.exit(1)
        except MemoryError:
            click.echo("kmc: error: out of memory", err=True)
            sys.exit(1)
        sys.exit(result if isinstance(result, int) else 0)


@click.group(cls=KmcGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "-V", "--version", prog_name="kmc", message="%(prog)s %(version)s")
def cli() -> None:
    """kmcodec: a lossy palette image codec (.kmc files).

    Use "-" for IN or OUT to read standard input or write standard output.
    """


def _summary(result: batch.FileResult) -> str:
    """The line printed for an encoded file."""
    quality = "lossless" if result.psnr is None else f"PSNR {result.psnr:.2f} dB"
    return (
        f"{_display(result.output)}: {result.bytes_out:,} bytes, {result.bits_per_pixel:.3f} bpp, "
        f"{result.bytes_out / result.bytes_in:.3f} x input ({result.bytes_in:,} bytes), "
        f"{result.k} colours, {quality}"
    )


ENCODE_HELP = f"""Encode images (any format Pillow reads) as .kmc files.

\b
kmc encode IN OUT              one image IN to the .kmc file OUT
kmc encode IN... -o DIR        a batch: each IN, a file or a folder, into DIR

Without -o/--output-dir the command takes exactly IN and OUT ("-" for standard
input or output); with it every argument is an input.  A folder contributes
its files named {", ".join("*" + ext for ext in batch.IMAGE_EXTENSIONS)} (any case; hidden
files skipped), and with -r those of its subfolders, mirrored under DIR.  A file
named on the command line is taken whatever its extension.  Each output is
DIR/[SUBFOLDER/]STEM.kmc; two inputs with the same output are an error before
any work starts.

Before any image is read, the outputs are checked: an output that is an input
(or a link to it) is refused even with --force; OUT named as another image
format (.png, .jpg, .webp, ...) is refused unless --force; OUT's folder must
exist and be writable (DIR is created, with the folders it needs).

A batch shows a progress bar on a terminal (otherwise one line per file), then
a summary.  It keeps going past a file that fails, reports each failure at the
end as one line "kmc: error: ..." naming the file, and then exits 1.  A batch
resumes: an output that is there whole is skipped (--force redoes it), one cut
short is encoded again, and any other file in the way fails unless --force.
--report FILE.jsonl keeps one JSON line per file.

In a batch, IN and DIR may be URLs that fsspec opens (s3://..., gs://...,
memory://...; pip install 'kmcodec[dask]' and the file system's package);
the workers read and write them themselves.  With --scheduler the batch runs
on Dask (pip install 'kmcodec[dask]'): "local" starts a LocalCluster of --jobs
processes, tcp://HOST:PORT uses a running cluster's workers.  The outputs are
the same bytes.
"""


@cli.command("encode", help=ENCODE_HELP)
@click.argument("paths", nargs=-1, required=True, metavar="IN OUT | IN... -o DIR")
@encoder_options(
    "colors", "target_psnr", "max_bytes", "seed", "method", "effort", "colorspace", "masking", "rows_per_strip"
)
@click.option("--no-metadata", is_flag=True, help="Drop the ICC profile, EXIF and XMP.")
@encoder_options("dither", "rdo")
@click.option(
    "-o",
    "--output-dir",
    type=click.Path(file_okay=False),
    metavar="DIR",
    default=None,
    help="Batch: encode every IN (file or folder) into DIR as NAME.kmc (DIR is created).",
)
@click.option("-r", "--recursive", is_flag=True, help="Batch: also take the images in subfolders of a folder IN.")
@click.option(
    "-j",
    "--jobs",
    type=WholeNumber(0),
    default=1,
    show_default=True,
    help="Batch: worker processes (0: one per CPU).",
)
@click.option(
    "--palette",
    "palette_file",
    type=click.Path(dir_okay=False),
    metavar="FILE.kmc",
    default=None,
    help="Use the palette of an existing .kmc file, entries and order kept (as pngquant --map); -k is ignored.",
)
@click.option(
    "--shared-palette",
    is_flag=True,
    help="Batch: fit one palette of -k colours to all inputs together, as one image's is fitted (in Oklab "
    "with masking unless --colorspace srgb), and encode each with it.",
)
@click.option(
    "--scheduler",
    metavar="local|tcp://HOST:PORT",
    default=None,
    help="Batch: run on a Dask cluster, a LocalCluster of --jobs worker processes or the scheduler at the "
    "address (needs the dask extra).",
)
@click.option(
    "--report",
    "report_path",
    type=click.Path(dir_okay=False),
    metavar="FILE.jsonl",
    default=None,
    help="Batch: write one JSON line per file (input, output, bytes, k, PSNR, seconds, error, skipped).",
)
@click.option(
    "-f",
    "--force",
    is_flag=True,
    help="Overwrite OUT if it exists; in a batch, encode every file again, whatever is at its output.",
)
@click.option(
    "--max-pixels",
    type=WholeNumber(0),
    default=None,
    metavar="N",
    help=f"Refuse input images of more than N pixels (0: no limit; default {DEFAULT_MAX_PIXELS}, "
    "kmcodec.MAX_IMAGE_PIXELS).",
)
@click.option("-q", "--quiet", is_flag=True, help="Print nothing on success (errors still print).")
def encode_cmd(
    paths: tuple[str, ...],
    no_metadata: bool,
    output_dir: str | None,
    recursive: bool,
    jobs: int,
    palette_file: str | None,
    shared_palette: bool,
    scheduler: str | None,
    report_path: str | None,
    force: bool,
    max_pixels: int | None,
    quiet: bool,
    **encoder: object,
) -> None:
    """Encode one file, or a batch with -o (the help text is :data:`ENCODE_HELP`).

    *encoder* holds the options :func:`encoder_options` declared, by their names in kmcodec.encode.
    """
    if palette_file is not None and shared_palette:
        raise click.UsageError("--palette and --shared-palette exclude each other")
    if shared_palette and output_dir is None:
        raise click.UsageError("--shared-palette is for a batch: give IN... -o DIR")
    for target in ("target_psnr", "max_bytes"):
        if shared_palette and encoder.get(target) is not None:
            flag = SPELLING[target]
            msg = f"--shared-palette and {flag} exclude each other: a shared palette leaves no size to search"
            raise click.UsageError(msg)
    values = {**encoder, "metadata": not no_metadata}
    _refuse_exclusions({**values, "palette": palette_file})
    # Every check of the paths, outputs first, before any file is read.
    other_inputs = [] if palette_file is None else [("--palette", palette_file)]
    if output_dir is None:
        if scheduler is not None:
            raise click.UsageError("--scheduler runs a batch: give IN... -o DIR")
        if report_path is not None:
            raise click.UsageError("--report is for a batch: give IN... -o DIR")
        ctx = click.get_current_context()
        for name, flag in (("jobs", "--jobs"), ("recursive", "-r")):
            if ctx.get_parameter_source(name) is click.core.ParameterSource.COMMANDLINE:
                raise click.UsageError(f"{flag} is for a batch: give IN... -o DIR")
        input_path, output_path = _single_paths(paths)
        read = files_read([("IN", input_path), *other_inputs])
        _refuse_same_file("OUT", output_path, read, "name another OUT")
        _refuse_image_name(
            "OUT", output_path, force, "kmc encode writes .kmc data, which no image viewer opens", ".kmc"
        )
        _check_output(output_path, force)
    else:
        if scheduler is not None:
            _check_scheduler(scheduler, click.get_current_context())
        files = _plan(paths, output_dir, recursive, other_inputs)
        if report_path is not None:
            _check_report(report_path, files, force, output_dir)
    if palette_file is not None:
        values["palette"] = _read_palette(palette_file)
    options = EncodeOptions.from_mapping(values)
    limit = DEFAULT if max_pixels is None else max_pixels or None
    with _max_pixels_advice():
        if output_dir is None:
            _encode_single(input_path, output_path, options, force, quiet, limit)
        else:  # the batch engine takes kmcodec.encode's keywords, checked above as options
            _encode_batch(
                files, jobs, {**values, "max_pixels": limit}, force, quiet, shared_palette, scheduler, report_path
            )


def _read_palette(path: str) -> np.ndarray:
    """The palette of the .kmc file --palette names; a file that cannot give one fails the command (exit 1)."""
    from .codec import read_palette

    try:
        return read_palette(path)
    except KmcError as exc:
        named = repr(path) in str(exc)  # "cannot read 'ref.kmc': ..." names it already
        _fail(f"--palette: {exc}" if named else f"--palette {path!r}: {exc}")


def _single_paths(paths: tuple[str, ...]) -> tuple[str, str]:
    if len(paths) != 2:
        what = "missing OUT" if len(paths) == 1 else f"got {len(paths)} paths"
        raise click.UsageError(f"{what}: give IN OUT for one file, or IN... -o DIR for a batch")
    input_path, output_path = paths
    for role, path in (("IN", input_path), ("OUT", output_path)):
        if path != STDIO and os.path.isdir(path):
            raise click.UsageError(f"{role} {path!r} is a folder: use -o DIR to encode a batch")
    return input_path, output_path


def _encode_single(
    input_path: str, output_path: str, options: EncodeOptions, force: bool, quiet: bool, limit: MaxPixels
) -> None:
    """Encode one file; its paths have been checked (:func:`encode_cmd`).

    A file is handed to the encoder open, not read into memory first: PNG
    files are then read a block of rows at a time.
    """
    from .codec import encode_with

    start = time.perf_counter()
    if input_path == STDIO:
        source = sys.stdin.buffer.read()
        stream = io.BytesIO(source)
        stream.name = "<stdin>"
        data, size = encode_with(stream, options, max_pixels=limit), len(source)
    else:
        with open_input(input_path) as stream:
            size = os.fstat(stream.fileno()).st_size
            data = encode_with(stream, options, max_pixels=limit)
    _write_output(output_path, data, force)
    if not quiet:
        result = batch.FileResult.of(input_path, output_path, data, size, time.perf_counter() - start)
        click.echo(_summary(result), err=output_path == STDIO)


# ---------------------------------------------------------------------------
# Batch encoding: the engine is kmcodec.batch; this prints what it yields
# ---------------------------------------------------------------------------
def _check_scheduler(scheduler: str, ctx: click.Context) -> None:
    """--scheduler is "local" or an address; --jobs sizes a LocalCluster only, so it is misuse with an address."""
    if scheduler != "local" and "://" not in scheduler:
        msg = f"{scheduler!r}: use local or a scheduler address tcp://HOST:PORT"
        raise click.BadParameter(msg, ctx, param_hint="--scheduler")
    if scheduler != "local" and ctx.get_parameter_source("jobs") is click.core.ParameterSource.COMMANDLINE:
        raise click.UsageError("--jobs sizes a --scheduler local cluster; a remote cluster has its own workers")


def _plan(
    paths: tuple[str, ...], output_dir: str, recursive: bool, other_inputs: list[tuple[str, str]]
) -> list[batch.PlannedFile]:
    """:func:`kmcodec.batch.plan`, its misuse a usage error (exit 2)."""
    if STDIO in paths:
        raise click.UsageError("'-' (standard input) cannot be part of a batch (-o)")
    if output_dir == STDIO:
        raise click.UsageError("-o takes a folder, not '-': a batch writes a file for each input")
    try:
        return batch.plan(paths, output_dir, recursive=recursive, other_inputs=other_inputs)
    except batch.SameFileError as exc:
        raise click.UsageError(str(exc)) from None


def _check_report(path: str, files: list[batch.PlannedFile], force: bool, output_dir: str) -> None:
    """--report: never an input, an output or a folder (usage errors), never another file unless --force,
    in a writable folder."""
    _refuse_same_file("--report", path, files_read([("IN", f.input) for f in files]), "name another --report FILE")
    where = os.path.realpath(path)
    if os.path.isdir(path) or where == os.path.realpath(output_dir):
        raise click.UsageError(f"--report {path!r} is a folder: name a file")
    for f in files:
        if os.path.realpath(f.output) == where:
            msg = f"--report {path!r} is the output of IN {f.input!r}: name another --report FILE"
            raise click.UsageError(msg)
    problem = batch.report_problem(path, force)
    if problem is not None:
        _fail(problem)


def _encode_batch(
    files: list[batch.PlannedFile],
    jobs: int,
    options: dict,
    force: bool,
    quiet: bool,
    shared: bool,
    scheduler: str | None,
    report_path: str | None,
) -> None:
    """Encode each file of *files*: a progress bar or a line per file, a summary, the failures last."""
    show_bar = not quiet and _stderr_is_tty()
    order = {f.output: i for i, f in enumerate(files)}
    failures: dict[int, str] = {}
    bytes_in = bytes_out = done = skipped = 0
    start = time.perf_counter()
    results = batch.run(files, jobs=jobs, scheduler=scheduler, force=force, shared_palette=shared, **options)
    with contextlib.ExitStack() as stack:
        stack.enter_context(contextlib.closing(results))
        record = stack.enter_context(batch.reporting(report_path, force=force)) if report_path else None
        bar = None
        if show_bar:
            bar = stack.enter_context(
                click.progressbar(length=len(files), label="encoding", file=sys.stderr, show_pos=True)
            )
        for result in results:
            if record is not None:
                record(result)
            if result.error is not None:
                failures[order[result.output]] = _naming(result.input, _with_max_pixels_advice(result.error))
            elif result.skipped:
                skipped += 1
            else:
                done += 1
                bytes_in += result.bytes_in
                bytes_out += result.bytes_out
                if not quiet and not show_bar:
                    click.echo(_summary(result))
            if bar is not None:
                bar.update(1)
    if not quiet:
        seconds = time.perf_counter() - start
        skips = f", {skipped} skipped (whole outputs there; --force redoes them)" if skipped else ""
        failed = f", {len(failures)} failed" if failures else ""
        ratio = f" ({bytes_out / bytes_in:.3f} x input)" if bytes_in else ""
        click.echo(
            f"{done} file{'s' * (done != 1)} encoded{skips}{failed}: {bytes_in:,} bytes in, {bytes_out:,} bytes out"
            f"{ratio}, {seconds:.1f} s"
        )
    for index in sorted(failures):
        click.echo(f"kmc: error: {failures[index]}", err=True)
    if failures:
        click.get_current_context().exit(1)


def _naming(path: str, message: str) -> str:
    """*message* about the file at *path*, with the path in front unless the message names it already."""
    return message if repr(path) in message else f"{path}: {message}"


def _stderr_is_tty() -> bool:
    return sys.stderr.isatty()


def _default_output(input_path: str) -> str:
    if input_path == STDIO:
        return STDIO
    root, _ = os.path.splitext(input_path)
    return root + ".png"


def _output_format(path: str) -> str:
    root, ext = os.path.splitext(path)
    ext = ext.lower()
    if ext == ".kmc":  # Pillow's kmc plugin would write one, re-encoded at its default 64 colours
        msg = (
            f"{path!r} would be a .kmc file, but kmc decode writes an image: name it {root + '.png'!r} "
            "(or another image extension); to re-encode, decode to an image and run kmc encode on it"
        )
        raise click.BadParameter(msg)
    if path == STDIO or ext == ".png":  # kmc writes PNG itself: no Pillow plugin to load
        return "PNG"
    # Pillow's common formats (PNG, JPEG, BMP, GIF, PPM) first: loading every plugin is slow.
    Image.preinit()
    formats = Image.EXTENSION if ext in Image.EXTENSION else Image.registered_extensions()
    if ext not in formats or formats[ext] not in Image.SAVE:
        raise click.BadParameter(f"no image format Pillow can write has the extension {ext or '(none)'!r}")
    return formats[ext]


@cli.command("decode")
@click.argument("input_path", metavar="IN")
@click.argument("output_path", metavar="[OUT]", required=False)
@click.option(
    "--max-pixels",
    type=WholeNumber(0),
    default=None,
    metavar="N",
    help=f"Refuse images of more than N pixels (0: no limit; default {DEFAULT_MAX_PIXELS}, kmcodec.MAX_IMAGE_PIXELS).",
)
@click.option("--show", is_flag=True, help="Open the decoded image in the system viewer.")
@click.option("-f", "--force", is_flag=True, help="Overwrite OUT if it exists.")
@click.option("-q", "--quiet", is_flag=True, help="Print nothing on success.")
def decode_cmd(
    input_path: str, output_path: str | None, max_pixels: int | None, show: bool, force: bool, quiet: bool
) -> None:
    """Decode .kmc file IN to image OUT (format chosen by extension; default: IN with .png; not .kmc)."""
    limit = DEFAULT if max_pixels is None else max_pixels or None
    if output_path is None:  # OUT is IN's name with .png: for an image named so, "OUT is IN" would mislead
        _check_signature(input_path)
    output_path = output_path or _default_output(input_path)
    if output_path != STDIO and os.path.isdir(output_path):
        name = "image.png" if input_path == STDIO else os.path.basename(_default_output(input_path))
        named = os.path.join(output_path, name)
        raise click.UsageError(f"OUT {output_path!r} is a folder: name the image to write, e.g. {named!r}")
    _refuse_same_file("OUT", output_path, files_read([("IN", input_path)]), "name another OUT")
    try:
        image_format = _output_format(output_path)
    except click.BadParameter as exc:
        exc.param_hint = "OUT"
        raise
    _check_output(output_path, force)
    if image_format == "PNG" and not show:
        with _max_pixels_advice():
            _decode_to_png(input_path, output_path, limit, force, quiet)
        return
    from .codec import decode_image

    with _max_pixels_advice():
        image = decode_image(_read_input(input_path), max_pixels=limit)
    buf = io.BytesIO()
    extra = {key: image.info[key] for key in ("icc_profile", "exif") if key in image.info}
    try:
        image.save(buf, format=image_format, **extra)
    except (OSError, ValueError, KeyError) as exc:
        _fail(f"cannot write {image.mode} image as {image_format}: {exc}")
    _write_output(output_path, buf.getvalue(), force)
    if not quiet:
        click.echo(
            f"{_display(output_path)}: {image.width} x {image.height} {image.mode}, {buf.tell():,} bytes",
            err=output_path == STDIO,
        )
    if show:
        image.show()


def _with_max_pixels_advice(message: str) -> str:
    """*message* of an image over the pixel limit naming --max-pixels, the command line's way to raise it."""
    return message.replace(advice(RAISE_EITHER), "(give --max-pixels N, or 0 for no limit, to allow it)")


@contextlib.contextmanager
def _max_pixels_advice() -> Iterator[None]:
    """An image over the pixel limit: the message names --max-pixels (:func:`_with_max_pixels_advice`)."""
    try:
        yield
    except (ImageTooLargeError, batch.BatchError) as exc:  # a batch's: the shared palette's fit
        raise type(exc)(_with_max_pixels_advice(str(exc))) from None


def _check_signature(path: str) -> None:
    """Fail (exit 1) at once if the file IN is readable and not a .kmc file: say so, rather than that its
    default OUT (a PNG's own name) is IN.  Unreadable files and "-" fail later, as they would anyway.
    Only the preamble is read, before the output checks, which otherwise come first."""
    from .container import check_preamble
    from .format import PREAMBLE_SIZE

    if path == STDIO:
        return
    try:
        with open(path, "rb") as f:
            head = f.read(PREAMBLE_SIZE)
    except OSError:
        return
    if len(head) == PREAMBLE_SIZE:  # shorter: a truncated file, which the decoder words precisely
        check_preamble(head)


def _decode_to_png(input_path: str, output_path: str, limit: MaxPixels, force: bool, quiet: bool) -> None:
    """``kmc decode`` to PNG, strip by strip: memory bounded by a few strips, not the image."""
    from .codec import decode_to_png, open_strips

    source = sys.stdin.buffer.read() if input_path == STDIO else input_path
    with open_strips(source, max_pixels=limit) as reader:
        if output_path == STDIO:
            with _stdout_errors():
                size = decode_to_png(reader, sys.stdout.buffer)
                sys.stdout.buffer.flush()
        else:
            size = decode_to_png(reader, output_path, overwrite=force)
    if not quiet:
        click.echo(
            f"{_display(output_path)}: {reader.width} x {reader.height} {reader.mode}, {size:,} bytes",
            err=output_path == STDIO,
        )


def _swatch(color: tuple[int, ...], mode: str) -> str:
    rgb = color[:3] if mode.startswith("RGB") else (color[0],) * 3
    text = "#" + "".join(f"{v:02x}" for v in color)
    return click.style("  ", bg=rgb) + " " + text


@cli.command("inspect")
@click.argument("input_path", metavar="IN")
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
def inspect_cmd(input_path: str, as_json: bool) -> None:
    """Describe .kmc file IN without decoding its pixels."""
    from .codec import read_info

    info = read_info(_read_input(input_path))
    if as_json:
        import json

        click.echo(json.dumps(info.to_dict(), indent=2))
        return
    name = "<stdin>" if input_path == STDIO else input_path
    strips = f"{info.strips} strip{'s' * (info.strips != 1)} of up to {info.rows_per_strip} rows"
    lines = [
        f"{name}: .kmc version {info.version}",
        f"  size        {info.width} x {info.height}, {info.mode}",
        f"  palette     {info.colors} colours, {info.bits_per_label} bits per label",
        f"  method      {info.method} ({strips})",
        f"  file        {info.file_bytes:,} bytes, {info.bits_per_pixel:.3f} bits per pixel, "
        f"{info.file_bytes / info.raw_bytes:.4f} x raw ({info.raw_bytes:,} bytes)",
    ]
    if info.mse is not None:
        psnr = "lossless" if info.mse == 0 else f"PSNR {info.psnr:.2f} dB"
        lines.append(
            f"  made        k = {info.requested_colors} asked, seed {info.seed}, {info.iterations} iterations, "
            f"{psnr}, {info.unique_colors:,} distinct input colours"
        )
    meta = [n for n, present in (("ICC profile", info.icc_profile), ("EXIF", info.exif), ("XMP", info.xmp)) if present]
    lines.append(f"  metadata    {', '.join(meta) or 'none'}")
    lines.append("chunks")
    lines.append(f"  {'offset':>10}  type  {'length':>10}")
    lines += [f"  {c['offset']:>10}  {c['type']}  {c['length']:>10}" for c in info.chunks]
    lines.append("palette")
    shown = info.palette[:INSPECT_MAX_SWATCHES]
    for start in range(0, len(shown), 8):
        lines.append("  " + "  ".join(_swatch(c, info.mode) for c in shown[start : start + 8]))
    if len(info.palette) > len(shown):
        lines.append(f"  ... and {len(info.palette) - len(shown)} more")
    click.echo("\n".join(lines))


def _parse_ks(ctx: click.Context, param: click.Parameter, value: str) -> list[int]:
    from .compare import parse_ks

    try:
        return parse_ks(value)
    except KmcError as exc:
        raise click.BadParameter(str(exc), ctx, param) from None


@cli.command("compare")
@click.argument("images", nargs=-1, required=True, metavar="IMAGE...")
@click.option(
    "-k",
    "--colors",
    "ks",
    default=",".join(map(str, DEFAULT_KS)),
    show_default=True,
    callback=_parse_ks,
    metavar="K[,K...]",
    help="Palette sizes to try, joined by commas.",
)
@encoder_options("seed", "method", "effort", "colorspace", "masking", "rdo")
@click.option(
    "--ssimulacra2/--no-ssimulacra2",
    "perceptual",
    default=True,
    show_default=True,
    help="Measure SSIMULACRA2 (the report extra; about a second a megapixel and k, the slowest column).",
)
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON instead of the tables.")
@click.option(
    "--html",
    "html_path",
    type=click.Path(dir_okay=False),
    metavar="FILE",
    help="Also write a self-contained HTML report (needs the report extra, for matplotlib).",
)
@click.option("-f", "--force", is_flag=True, help="Overwrite the --html file if it exists.")
def compare_cmd(
    images: tuple[str, ...],
    ks: list[int],
    seed: int,
    method: str,
    effort: int,
    colorspace: str,
    masking: bool | None,
    rdo: float | None,
    perceptual: bool,
    as_json: bool,
    html_path: str | None,
    force: bool,
) -> None:
    """Compare .kmc with PNG on each IMAGE at each k: bytes, quality and time.

    Per image and k: the .kmc bytes, the input file's bytes, a truecolor PNG's
    and a PNG-8's of the same palette image (Pillow, optimize=True), their
    ratios, PSNR, mean CIEDE2000, SSIMULACRA2 (with the report extra) and the
    encode and decode seconds.  The coders get the pixels only, without ICC
    profile, EXIF or XMP.
    """
    import json

    from .compare import compare_image, format_table
    from .report import render_html, require_matplotlib

    if html_path is not None:
        read = files_read([("IMAGE", path) for path in images])
        _refuse_same_file("--html", html_path, read, "name another --html FILE")
        _refuse_image_name("--html", html_path, force, "the report is HTML", ".html", kmc=True)
        _check_output(html_path, force)
        require_matplotlib()
    results = []
    for path in images:
        result = compare_image(
            path,
            ks,
            seed=seed,
            method=method,
            effort=effort,
            colorspace=colorspace,
            masking=masking,
            rdo=rdo,
            perceptual=perceptual,
        )
        results.append(result)
        if not as_json:
            click.echo(format_table(result))
    # what the fit was, not what was typed: None resolves to the eye's fit (EncodeOptions)
    fit = EncodeOptions(colorspace=colorspace, masking=masking)
    settings = {
        "seed": seed,
        "method": method,
        "effort": effort,
        "colorspace": fit.fit_colorspace,
        "masking": fit.masked,
        "rdo": "default" if rdo is None else rdo,  # the default's lambda depends on k (EncodeOptions.rdo_for)
    }
    if as_json:
        document = {"kmcodec": __version__, "ks": ks, **settings, "images": [r.to_dict() for r in results]}
        click.echo(json.dumps(document, indent=2))
    if html_path is not None:
        page = render_html(results, settings=", ".join(f"{key} {value}" for key, value in settings.items()))
        data = page.encode("utf-8")
        write_atomic(html_path, data, overwrite=force)
        if not as_json:
            click.echo(f"{html_path}: HTML report, {len(data):,} bytes")


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``kmc`` console script."""
    cli.main(args=argv, prog_name="kmc")
