"""The ``kmc`` command: encode, decode and inspect .kmc files.

Errors print one line ``kmc: error: ...`` on standard error and exit 1;
misuse of the command line exits 2 (click's usage errors).  Outputs are
written atomically and an existing output is kept unless ``--force``.  Every
command checks its outputs before it reads a pixel: an output that is one of
its inputs (through links or "-" too) is misuse, even with ``--force``, and
so is an output named for another format (``kmc encode x.png x.jpg``) unless
``--force``; an output whose folder is missing or read-only fails at once.

``kmc encode IN... -o DIR`` encodes a batch in worker processes, or in Dask
tasks with ``--scheduler``; the parent alone writes the outputs, keeps going
past a failed file and lists every failure at the end (exit 1).  Ctrl-C exits
130 from any command.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import io
import logging
import math
import os
import signal
import stat
import sys
import time
import warnings
from collections.abc import Generator, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, wait
from typing import IO, TYPE_CHECKING, NoReturn

import click
from PIL import Image

from . import __version__
from .defaults import COLORSPACES, DEFAULT_COLORSPACE, DEFAULT_EFFORT, DEFAULT_KS
from .errors import KmcError
from .fileio import open_input, read_bytes, write_atomic
from .limits import DEFAULT, DEFAULT_MAX_PIXELS, MaxPixels

# What only some commands use (the codec with numpy, compare and its report, the process
# pool) is imported in those commands, so that the others, and --version, start quickly.
if TYPE_CHECKING:
    from concurrent.futures import ProcessPoolExecutor

    import numpy as np

STDIO = "-"
#: Palette entries shown by `inspect` before eliding the rest.
INSPECT_MAX_SWATCHES = 256
#: Extensions (lower case) of the files a folder contributes to a batch: the common
#: raster formats Pillow reads.  A file named on the command line needs none of them.
IMAGE_EXTENSIONS = (
    *(".png", ".apng", ".jpg", ".jpeg", ".jpe", ".jfif", ".gif", ".bmp", ".dib", ".tif", ".tiff"),
    *(".webp", ".avif", ".qoi", ".pbm", ".pgm", ".ppm", ".pnm", ".tga"),
)

#: Extensions (lower case) of image formats other than .kmc: ``kmc encode`` refuses to write
#: .kmc data under one of these names unless --force, since every viewer would refuse the file.
OTHER_IMAGE_EXTENSIONS = frozenset(IMAGE_EXTENSIONS).union(
    (".jxl", ".heic", ".heif", ".jp2", ".j2k", ".jpx", ".ico", ".icns", ".psd", ".pcx", ".xbm", ".xpm", ".sgi"),
    (".dds", ".exr", ".hdr", ".svg", ".jxr"),
)


class CliError(click.ClickException):
    """A failure reported as one line, ``kmc: error: ...``, with exit status 1."""

    def show(self, file=None) -> None:
        click.echo(f"kmc: error: {self.format_message()}", file=file or sys.stderr, err=file is None)


def _check_method(ctx: click.Context, param: click.Parameter, value: str) -> str:
    """--method is auto or comma-joined method names; anything else is a usage error."""
    from .labels import METHOD_NAMES

    if value != "auto" and not all(name in METHOD_NAMES for name in value.split(",")):
        msg = f"{value!r}: use auto, or one or more of {', '.join(METHOD_NAMES)} joined by commas"
        raise click.BadParameter(msg, ctx, param)
    return value


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
        if self.finite and not math.isfinite(number):
            self.fail(f"{value} is not {self.wanted()}", param, ctx)
        return number


class DitherStrength(Number):
    """--dither's optional value, 0 to 1, with a hint when it swallowed a file name."""

    name = "strength"
    noun = "strength"

    def __init__(self) -> None:
        super().__init__(0.0, 1.0)

    def convert(self, value, param, ctx):
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


def _fail(message: str) -> NoReturn:
    raise CliError(message)


def _read_input(path: str) -> bytes:
    if path == STDIO:
        return sys.stdin.buffer.read()
    return read_bytes(path)


def _write_output(path: str, data: bytes, force: bool) -> None:
    if path == STDIO:
        stream = sys.stdout.buffer
        stream.write(data)
        stream.flush()
    else:
        write_atomic(path, data, overwrite=force)


def _display(path: str) -> str:
    return "<stdout>" if path == STDIO else path


# ---------------------------------------------------------------------------
# Output checks: every command runs them before it reads a pixel
# ---------------------------------------------------------------------------
def _regular_file(path: str, stdio: IO) -> os.stat_result | None:
    """The status of the regular file at *path* ("-": behind *stdio*), links followed; None for none.

    Pipes, terminals and missing files are None: there is no file for an output to destroy.
    """
    try:
        status = os.fstat(stdio.fileno()) if path == STDIO else os.stat(path)
    except (OSError, ValueError):  # missing; or a stream without a file (io.UnsupportedOperation)
        return None
    return status if stat.S_ISREG(status.st_mode) else None


def _named(path: str, stream: str) -> str:
    return f"- (standard {stream})" if path == STDIO else repr(path)


#: A file by identity, (device, inode): what links and "-" resolve to.
FileId = tuple[int, int]


def _files_read(inputs: list[tuple[str, str]]) -> dict[FileId, tuple[str, str]]:
    """The regular files among *inputs*, (role, path) pairs ("-": standard input), by identity."""
    files = {}
    for role, path in inputs:
        status = _regular_file(path, sys.stdin)
        if status is not None:
            files.setdefault((status.st_dev, status.st_ino), (role, path))
    return files


def _refuse_same_file(role: str, output: str, files_read: dict[FileId, tuple[str, str]], remedy: str) -> None:
    """Usage error if *output* ("-": standard output) is one of *files_read* (:func:`_files_read`), even through links.

    Not even --force allows it: the output would destroy what the command reads.
    """
    status = _regular_file(output, sys.stdout)
    if status is None or (status.st_dev, status.st_ino) not in files_read:
        return
    input_role, path = files_read[status.st_dev, status.st_ino]
    msg = (
        f"{role} {_named(output, 'output')} is the same file as {input_role} {_named(path, 'input')}: "
        f"writing it would destroy the input; {remedy} (--force does not allow this)"
    )
    raise click.UsageError(msg)


def _folder_problem(path: str, *, create: bool = False) -> str | None:
    """Why *path* cannot be written, or None: its folder is missing, not a folder, or read-only.

    With *create* the folder may be missing, to be made later; the nearest
    existing folder above it must then allow that.
    """
    folder = os.path.dirname(path) or "."
    while create and not os.path.lexists(folder) and (os.path.dirname(folder) or ".") != folder:
        folder = os.path.dirname(folder) or "."
    if not os.path.lexists(folder):
        return f"folder {folder!r} does not exist"
    if not os.path.isdir(folder):
        return f"{folder!r} is not a folder"
    if not os.access(folder, os.W_OK | os.X_OK):
        return f"no permission to write in folder {folder!r}"
    return None


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
    """Fail (exit 1) before any work if *path* ("-" always passes) exists without *force*, or cannot be written."""
    if path == STDIO:
        return
    if not force and os.path.lexists(path):
        _fail(f"{path!r} exists (use --force to overwrite)")
    problem = _folder_problem(path)
    if problem is not None:
        _fail(f"cannot write {path!r}: {problem}")


class KmcGroup(click.Group):
    """A click group whose every failure ends as one line and an exit status, never a traceback."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        _quiet_pillow()
        try:
            result = super().main(args, prog_name or "kmc", complete_var, standalone_mode=False, **extra)
        except click.ClickException as exc:  # usage errors exit 2, CliError 1
            if type(exc) is click.BadParameter:  # not MissingParameter, which words its own message
                exc = BadValue(exc.message, exc.ctx, exc.param, exc.param_hint)
            exc.show()
            sys.exit(exc.exit_code)
        except (click.exceptions.Abort, KeyboardInterrupt):
            click.echo("kmc: error: interrupted", err=True)
            sys.exit(130)
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


@dataclasses.dataclass(frozen=True)
class EncodeOptions:
    """The encoder settings of one ``kmc encode`` run, shared by every file (picklable for workers).

    Each field is the :func:`~kmcodec.encode` keyword argument of the same name.
    """

    colors: int | None
    seed: int
    method: str
    effort: int
    rows_per_strip: int | None
    metadata: bool
    palette: np.ndarray | None = None  # used as it is, instead of k-means
    dither: float = 0.0
    target_psnr: float | None = None
    max_bytes: int | None = None
    colorspace: str = DEFAULT_COLORSPACE
    rdo: float = 0.0


def _encode_input(path: str, options: EncodeOptions) -> tuple[bytes, int]:
    """Encode the file at *path* (or standard input for "-"); return the .kmc bytes and the input's size.

    A file is handed to the encoder open, not read into memory first: PNG
    files are then read a block of rows at a time.
    """
    if path == STDIO:
        source = sys.stdin.buffer.read()
        stream = io.BytesIO(source)
        stream.name = "<stdin>"
        return _encode_stream(stream, options), len(source)
    with open_input(path) as stream:
        size = os.fstat(stream.fileno()).st_size
        return _encode_stream(stream, options), size


def _encode_stream(stream: IO[bytes], options: EncodeOptions) -> bytes:
    from .codec import encode

    return encode(stream, **{field.name: getattr(options, field.name) for field in dataclasses.fields(options)})


def _summary(output_path: str, data: bytes, source_size: int) -> str:
    from .codec import read_info

    info = read_info(data)
    psnr = info.psnr
    quality = "lossless" if psnr is None or psnr == float("inf") else f"PSNR {psnr:.2f} dB"
    return (
        f"{_display(output_path)}: {len(data):,} bytes, {info.bits_per_pixel:.3f} bpp, "
        f"{len(data) / source_size:.3f} x input ({source_size:,} bytes), "
        f"{info.colors} colours, {quality}"
    )


ENCODE_HELP = f"""Encode images (any format Pillow reads) as .kmc files.

\b
kmc encode IN OUT              one image IN to the .kmc file OUT
kmc encode IN... -o DIR        a batch: each IN, a file or a folder, into DIR

Without -o/--output-dir the command takes exactly IN and OUT ("-" for standard
input or output); with it every argument is an input.  A folder contributes
its files named {", ".join("*" + ext for ext in IMAGE_EXTENSIONS)} (any case; hidden
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
end as one line "kmc: error: ..." naming the file, and then exits 1.

With --scheduler the batch runs on Dask (pip install 'kmcodec[dask]'): "local"
starts a LocalCluster of --jobs processes, tcp://HOST:PORT uses a running
cluster's workers.  One task per file; the outputs are the same bytes.
"""


@cli.command("encode", help=ENCODE_HELP)
@click.argument("paths", nargs=-1, required=True, metavar="IN OUT | IN... -o DIR")
@click.option(
    "-k",
    "--colors",
    type=WholeNumber(1, 65536),
    default=None,
    help="Palette size (1-65536; default 64); with --target-psnr or --max-bytes, the largest allowed (default 65536).",
)
@click.option(
    "--target-psnr",
    type=Number(0, min_open=True),
    default=None,
    metavar="DB",
    help="Use the smallest palette whose PSNR reaches DB (inf: lossless); an error, exit 1, if -k colours miss it.",
)
@click.option(
    "--max-bytes",
    type=WholeNumber(1),
    default=None,
    metavar="N",
    help="Use the largest palette whose whole file has at most N bytes.",
)
@click.option("--seed", type=WholeNumber(0, 2**64 - 1), default=0, show_default=True, help="k-means++ seed.")
@click.option(
    "--method",
    default="auto",
    show_default=True,
    callback=_check_method,
    help="Label coding: stored, deflate, lzma, cm or cmm (cm with a match model, for graphics), or several "
    "joined by commas (the smallest per strip is kept); auto tries the set --effort names.",
)
@click.option(
    "--effort",
    type=WholeNumber(1, 3),
    default=DEFAULT_EFFORT,
    show_default=True,
    help="What --method auto tries: 1 stored and cm; 2 cmm instead of cm, plus deflate and LZMA, where quick "
    "probes say they may win (text, screenshots; never photos); 3 all five everywhere (slowest).",
)
@click.option(
    "--colorspace",
    type=click.Choice(COLORSPACES),
    default=DEFAULT_COLORSPACE,
    show_default=True,
    help="Where k-means clusters and pixels find their nearest colour: srgb (best PSNR), oklab (perceptual), "
    "oklab-linear (Oklab, clusters averaged in linear light), oklab-srgb (fitted in Oklab, refined in sRGB).",
)
@click.option("--strip-rows", type=WholeNumber(1), default=None, help="Rows per strip (default: ~1 M labels).")
@click.option("--no-metadata", is_flag=True, help="Drop the ICC profile, EXIF and XMP.")
@click.option(
    "--dither",
    type=DitherStrength(),
    is_flag=False,
    flag_value=1.0,
    default=0.0,
    metavar="[STRENGTH]",
    help="Floyd-Steinberg dithering at STRENGTH 0-1 (1 if --dither has no value; off by default). "
    "Hides banding in gradients, costs bytes.",
)
@click.option(
    "--rdo",
    type=Number(0, finite=True),
    default=0.0,
    metavar="LAMBDA",
    help="Rate-distortion-optimised labels: each pixel takes the entry of least squared error + LAMBDA x its "
    "estimated bits (0, the default: the nearest). Smaller files, lower PSNR; not with --dither or --target-psnr.",
)
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
    help="Batch: fit one palette of -k colours to all inputs together and encode each with it.",
)
@click.option(
    "--scheduler",
    metavar="local|tcp://HOST:PORT",
    default=None,
    help="Batch: run on a Dask cluster, a LocalCluster of --jobs worker processes or the scheduler at the "
    "address (needs the dask extra).",
)
@click.option("-f", "--force", is_flag=True, help="Overwrite outputs that exist.")
@click.option("-q", "--quiet", is_flag=True, help="Print nothing on success (errors still print).")
def encode_cmd(
    paths: tuple[str, ...],
    colors: int | None,
    target_psnr: float | None,
    max_bytes: int | None,
    seed: int,
    method: str,
    effort: int,
    colorspace: str,
    strip_rows: int | None,
    no_metadata: bool,
    dither: float,
    rdo: float,
    output_dir: str | None,
    recursive: bool,
    jobs: int,
    palette_file: str | None,
    shared_palette: bool,
    scheduler: str | None,
    force: bool,
    quiet: bool,
) -> None:
    """Encode one file, or a batch with -o (the help text is :data:`ENCODE_HELP`)."""
    if palette_file is not None and shared_palette:
        raise click.UsageError("--palette and --shared-palette exclude each other")
    if shared_palette and output_dir is None:
        raise click.UsageError("--shared-palette is for a batch: give IN... -o DIR")
    if target_psnr is not None and max_bytes is not None:
        raise click.UsageError("--target-psnr and --max-bytes cannot be used together")
    if palette_file is not None and (target_psnr is not None or max_bytes is not None):
        raise click.UsageError("--palette leaves no palette size to choose: no --target-psnr or --max-bytes")
    if rdo and (dither or target_psnr is not None):
        other = "--dither" if dither else "--target-psnr"
        raise click.UsageError(f"--rdo moves pixels off their nearest entry, which {other} relies on: not both")
    # Every check of the paths, outputs first, before any file is read.
    other_inputs = [] if palette_file is None else [("--palette", palette_file)]
    if output_dir is None:
        if scheduler is not None:
            raise click.UsageError("--scheduler runs a batch: give IN... -o DIR")
        input_path, output_path = _single_paths(paths)
        files_read = _files_read([("IN", input_path), *other_inputs])
        _refuse_same_file("OUT", output_path, files_read, "name another OUT")
        _refuse_image_name(
            "OUT", output_path, force, "kmc encode writes .kmc data, which no image viewer opens", ".kmc"
        )
        _check_output(output_path, force)
    else:
        if scheduler is not None:
            _check_scheduler(scheduler, click.get_current_context())
        plan = _batch_plan(paths, output_dir, recursive, other_inputs)
    palette = None
    if palette_file is not None:
        from .codec import read_palette

        try:
            palette = read_palette(palette_file)
        except KmcError as exc:
            named = repr(palette_file) in str(exc)  # "cannot read 'ref.kmc': ..." names it already
            _fail(f"--palette: {exc}" if named else f"--palette {palette_file!r}: {exc}")
    options = EncodeOptions(
        colors,
        seed,
        method,
        effort,
        strip_rows,
        not no_metadata,
        palette,
        dither,
        target_psnr,
        max_bytes,
        colorspace,
        rdo,
    )
    if output_dir is None:
        _encode_single(input_path, output_path, options, force, quiet)
    else:
        _encode_batch(plan, jobs, options, force, quiet, shared_palette, scheduler)


def _single_paths(paths: tuple[str, ...]) -> tuple[str, str]:
    if len(paths) != 2:
        what = "missing OUT" if len(paths) == 1 else f"got {len(paths)} paths"
        raise click.UsageError(f"{what}: give IN OUT for one file, or IN... -o DIR for a batch")
    input_path, output_path = paths
    for role, path in (("IN", input_path), ("OUT", output_path)):
        if path != STDIO and os.path.isdir(path):
            raise click.UsageError(f"{role} {path!r} is a folder: use -o DIR to encode a batch")
    return input_path, output_path


def _encode_single(input_path: str, output_path: str, options: EncodeOptions, force: bool, quiet: bool) -> None:
    """Encode one file; its paths have been checked (:func:`encode_cmd`)."""
    data, size = _encode_input(input_path, options)
    _write_output(output_path, data, force)
    if not quiet:
        click.echo(_summary(output_path, data, size), err=output_path == STDIO)


# ---------------------------------------------------------------------------
# Batch encoding
# ---------------------------------------------------------------------------
#: Set in the workers' environment unless the user set them: the workers fill the cores
#: themselves, and a BLAS pool per worker would only oversubscribe them (numpy's
#: multi-threaded dot products made one encode about 3 x slower on a busy 2-core machine).
WORKER_THREAD_ENV = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
#: Files handed to each worker ahead of time: enough to keep it busy, few enough to
#: bound memory and let Ctrl-C stop promptly.
QUEUED_PER_WORKER = 2
#: What a batch reports for the files in flight when a worker process vanished.
WORKER_DIED = "a worker process died (killed, or out of memory?) while encoding this file or another in flight"


def _encode_file(path: str, options: EncodeOptions) -> tuple[bytes, int]:
    """Encode one batch file and return the .kmc bytes and the input size.

    Runs in a worker process, so it is a top-level function (picklable under
    the spawn start method) and writes nothing: the parent writes every output.
    """
    return _encode_input(path, options)


def _quiet_pillow() -> None:
    """Keep Pillow's warnings and log records off stderr, where only kmc's own lines belong.

    A damaged input still fails with one ``kmc: error:`` line when it cannot
    be read; what Pillow merely warns about it could read.
    """
    warnings.filterwarnings("ignore", module=r"PIL(\.|$)")
    pil_logger = logging.getLogger("PIL")
    if not pil_logger.handlers:
        pil_logger.addHandler(logging.NullHandler())
    pil_logger.propagate = False


def _init_worker() -> None:
    """Worker initializer: Pillow kept quiet, and Ctrl-C left to the parent, so a worker never prints a traceback."""
    _quiet_pillow()
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _cpu_count() -> int:
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0)) or 1
    return os.cpu_count() or 1


def _image_files(folder: str, recursive: bool) -> list[str]:
    """The image files of *folder* (and with *recursive* its subfolders), sorted, hidden names skipped."""

    def wanted(name: str) -> bool:
        return not name.startswith(".") and os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS

    def unreadable(exc: OSError) -> NoReturn:
        _fail(f"cannot list folder {exc.filename!r}: {exc.strerror or exc}")

    found = []
    for root, dirs, files in os.walk(folder, onerror=unreadable):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".")) if recursive else []
        found += [os.path.join(root, name) for name in sorted(files) if wanted(name)]
    return found


def _batch_plan(
    paths: tuple[str, ...], output_dir: str, recursive: bool, other_inputs: list[tuple[str, str]]
) -> list[tuple[str, str]]:
    """Pair every input file with its output; check the outputs before any work.

    Two inputs with one output, or an output that cannot be written, fail;
    an output that is an input (or an *other_inputs* file) is a usage error.
    """
    if STDIO in paths:
        raise click.UsageError("'-' (standard input) cannot be part of a batch (-o)")
    plan = []
    for path in paths:
        if os.path.isdir(path):
            plan += [(f, os.path.relpath(f, path)) for f in _image_files(path, recursive)]
        else:
            plan.append((path, os.path.basename(path)))
    if not plan:
        hint = "" if recursive else " (without -r, subfolders are not searched)"
        _fail(f"no image files to encode in {', '.join(map(repr, paths))}{hint}")
    plan = [(src, os.path.join(output_dir, os.path.splitext(rel)[0] + ".kmc")) for src, rel in plan]
    files_read = _files_read([("IN", src) for src, _ in plan] + other_inputs)
    owner: dict[str, str] = {}
    clashes = []
    for src, dst in plan:
        _refuse_same_file("the output", dst, files_read, "give another -o DIR")
        key = os.path.normpath(dst)
        if key in owner:
            clashes.append(f"{owner[key]!r} and {src!r} would both be written to {dst!r}")
        owner[key] = src
    if clashes:
        more = f" (and {len(clashes) - 1} more)" if len(clashes) > 1 else ""
        _fail(f"{clashes[0]}{more}")
    checked = set()
    for _, dst in plan:
        folder = os.path.dirname(dst)
        if folder not in checked:
            checked.add(folder)
            problem = _folder_problem(dst, create=True)  # the folders are made as the outputs are written
            if problem is not None:
                _fail(f"cannot write {dst!r}: {problem}")
    return plan


@contextlib.contextmanager
def _worker_environment() -> Iterator[None]:
    """Apply :data:`WORKER_THREAD_ENV` for as long as worker processes are being started."""
    saved = {name: os.environ.get(name) for name in WORKER_THREAD_ENV}
    for name, value in WORKER_THREAD_ENV.items():
        os.environ.setdefault(name, value)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _stop_workers(pool: ProcessPoolExecutor) -> None:
    """Cancel what is queued and kill the workers now; they write nothing, so nothing is left half done."""
    terminate = getattr(pool, "terminate_workers", None)  # Python 3.14+
    if terminate is not None:
        terminate()
        return
    processes = list((getattr(pool, "_processes", None) or {}).values())  # no public handle before 3.14
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        process.terminate()
    for process in processes:
        process.join(timeout=1.0)


def _outcome(future: Future, lost: tuple[type[BaseException], ...]) -> tuple[bytes, int] | str:
    """A finished job's (kmc bytes, input size), or the one-line message of its failure.

    *lost* are the exceptions that say the worker running the job died.
    """
    try:
        return future.result()
    except KmcError as exc:
        return str(exc)
    except lost:
        return WORKER_DIED
    except MemoryError:
        return "out of memory"
    except Exception as exc:  # one file's unforeseen failure must not sink the batch
        return f"unexpected {type(exc).__name__}: {exc}"


def _encode_in_workers(
    sources: list[str], options: EncodeOptions, workers: int
) -> Iterator[tuple[int, tuple[bytes, int] | str]]:
    """Yield (index into *sources*, outcome) in order of completion.

    The workers are spawned (not forked) processes: the same on every platform,
    with a clean interpreter whose BLAS is set up by :func:`_worker_environment`.
    If a worker dies, the files in flight fail and a new pool takes the rest.
    """
    queue = collections.deque(enumerate(sources))
    with _worker_environment():
        while (yield from _run_pool(queue, options, workers)):
            pass


def _run_pool(
    queue: collections.deque[tuple[int, str]], options: EncodeOptions, workers: int
) -> Generator[tuple[int, tuple[bytes, int] | str], None, bool]:
    """Encode files from *queue* in a new pool until it is empty or the pool breaks (then return True)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker) as pool:
        pending: dict[Future, int] = {}
        broken = False
        try:
            while True:
                while queue and not broken and len(pending) < workers * QUEUED_PER_WORKER:
                    index, path = queue.popleft()
                    try:
                        pending[pool.submit(_encode_file, path, options)] = index
                    except BrokenProcessPool:
                        queue.appendleft((index, path))
                        broken = True
                if not pending:
                    return broken
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    outcome = _outcome(future, lost=(BrokenProcessPool,))
                    broken = broken or outcome == WORKER_DIED
                    yield pending.pop(future), outcome
        except BaseException:  # Ctrl-C, or the caller stopped early
            _stop_workers(pool)
            raise


# ---------------------------------------------------------------------------
# Batch encoding on a Dask cluster (--scheduler, the optional dask extra)
# ---------------------------------------------------------------------------
#: How long connecting to a --scheduler tcp://... address may take.
DASK_CONNECT_TIMEOUT = "10s"
DASK_MISSING = "--scheduler needs Dask's distributed scheduler: pip install 'kmcodec[dask]'"


def _check_scheduler(scheduler: str, ctx: click.Context) -> None:
    """--scheduler is "local" or an address; --jobs sizes a LocalCluster only, so it is misuse with an address."""
    if scheduler != "local" and "://" not in scheduler:
        msg = f"{scheduler!r}: use local or a scheduler address tcp://HOST:PORT"
        raise click.BadParameter(msg, ctx, param_hint="--scheduler")
    if scheduler != "local" and ctx.get_parameter_source("jobs") is click.core.ParameterSource.COMMANDLINE:
        raise click.UsageError("--jobs sizes a --scheduler local cluster; a remote cluster has its own workers")


@contextlib.contextmanager
def _dask_client(scheduler: str, workers: int) -> Iterator[object]:
    """A Dask client of a new LocalCluster (*scheduler* "local", *workers* processes) or of the scheduler at an address.

    The LocalCluster's workers are spawned processes of one thread each, started
    within :func:`_worker_environment` like the local pool's.  Both are closed on
    exit, whatever ended the batch.
    """
    try:
        import distributed
    except ImportError:
        _fail(DASK_MISSING)
    with contextlib.ExitStack() as stack:
        address: object = scheduler
        try:
            if scheduler == "local":
                with _worker_environment():
                    address = stack.enter_context(
                        distributed.LocalCluster(
                            n_workers=workers,
                            threads_per_worker=1,
                            processes=True,
                            dashboard_address="127.0.0.1:0",  # any free port: two batches may run at once
                            silence_logs=logging.CRITICAL,  # a failed file is reported once, by the parent
                        )
                    )
            client = stack.enter_context(distributed.Client(address, timeout=DASK_CONNECT_TIMEOUT))
        except (OSError, RuntimeError) as exc:  # TimeoutError is an OSError
            what = "start a Dask LocalCluster" if scheduler == "local" else f"connect to the Dask scheduler {scheduler}"
            _fail(f"cannot {what}: {exc}")
        client.run(_quiet_pillow)
        yield client


def _encode_task(source: bytes, name: str, options: EncodeOptions) -> tuple[bytes, int]:
    """The Dask task of one batch file: the file's bytes in, its .kmc bytes and input size out.

    The parent reads the file and writes the output, so the workers need
    kmcodec but not the files (a remote cluster need not share a file system).
    """
    stream = io.BytesIO(source)
    stream.name = name
    return _encode_stream(stream, options), len(source)


def _encode_on_dask(
    client: object, sources: list[str], options: EncodeOptions
) -> Iterator[tuple[int, tuple[bytes, int] | str]]:
    """Yield (index into *sources*, outcome) in order of completion, one Dask task per file.

    Like :func:`_run_pool`, at most :data:`QUEUED_PER_WORKER` files per worker
    thread are in flight, so the parent holds only those files' bytes.
    """
    import distributed

    queue = collections.deque(enumerate(sources))
    limit = max(1, sum(client.nthreads().values())) * QUEUED_PER_WORKER
    running = distributed.as_completed()
    pending: dict[object, int] = {}
    try:
        while queue or pending:
            while queue and len(pending) < limit:
                index, path = queue.popleft()
                try:
                    source = read_bytes(path)
                except KmcError as exc:
                    yield index, str(exc)
                    continue
                [scattered] = client.scatter([source], hash=False)
                future = client.submit(_encode_task, scattered, path, options, pure=False)
                pending[future] = index
                running.add(future)
            if pending:
                future = next(running)
                yield pending.pop(future), _outcome(future, lost=(distributed.KilledWorker,))
    finally:
        client.cancel(list(pending))


def _encode_batch(
    plan: list[tuple[str, str]],
    jobs: int,
    options: EncodeOptions,
    force: bool,
    quiet: bool,
    shared: bool = False,
    scheduler: str | None = None,
) -> None:
    """Encode each (input, output) of *plan* (:func:`_batch_plan`), write the outputs, keep going past failures."""
    if shared:
        from .codec import shared_palette as fit_shared_palette

        # One pass over every input before any worker starts; a file that cannot
        # be read stops the batch here, since the palette would depend on it.
        try:
            palette = fit_shared_palette(
                [src for src, _ in plan], options.colors, seed=options.seed, colorspace=options.colorspace
            )
        except KmcError as exc:
            _fail(f"cannot fit a shared palette: {exc}")
        options = dataclasses.replace(options, palette=palette)
    failures: dict[int, str] = {}
    todo = []
    for index, (_, dst) in enumerate(plan):
        if not force and os.path.lexists(dst):
            failures[index] = f"{dst!r} exists (use --force to overwrite)"
        else:
            todo.append(index)
    show_bar = not quiet and _stderr_is_tty()
    bytes_in = bytes_out = done = 0
    start = time.perf_counter()
    if todo:
        workers = min(len(todo), jobs or _cpu_count())
        sources = [plan[i][0] for i in todo]
        with contextlib.ExitStack() as stack:
            if scheduler is None:
                outcomes = _encode_in_workers(sources, options, workers)
            else:
                client = stack.enter_context(_dask_client(scheduler, workers))
                outcomes = _encode_on_dask(client, sources, options)
            stack.enter_context(contextlib.closing(outcomes))  # stop the work before the client goes
            bar = None
            if show_bar:
                bar = stack.enter_context(
                    click.progressbar(length=len(todo), label="encoding", file=sys.stderr, show_pos=True)
                )
            for position, outcome in outcomes:
                index = todo[position]
                dst = plan[index][1]
                if isinstance(outcome, str):
                    failures[index] = outcome
                else:
                    data, size = outcome
                    try:
                        os.makedirs(os.path.dirname(dst) or ".", exist_ok=True)
                        write_atomic(dst, data, overwrite=force)
                    except KmcError as exc:
                        failures[index] = str(exc)
                    except OSError as exc:
                        failures[index] = f"cannot create folder for {dst!r}: {exc.strerror or exc}"
                    else:
                        done += 1
                        bytes_in += size
                        bytes_out += len(data)
                        if not quiet and not show_bar:
                            click.echo(_summary(dst, data, size))
                if bar is not None:
                    bar.update(1)
    if not quiet:
        seconds = time.perf_counter() - start
        failed = f", {len(failures)} failed" if failures else ""
        ratio = f" ({bytes_out / bytes_in:.3f} x input)" if bytes_in else ""
        click.echo(
            f"{done} file{'s' * (done != 1)} encoded{failed}: {bytes_in:,} bytes in, {bytes_out:,} bytes out"
            f"{ratio}, {seconds:.1f} s"
        )
    for index in sorted(failures):
        click.echo(f"kmc: error: {_naming(plan[index][0], failures[index])}", err=True)
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
    if path == STDIO or ext == ".png":  # kmc writes PNG itself: no Pillow plugin to load (~10 ms)
        return "PNG"
    # Pillow's common formats (PNG, JPEG, BMP, GIF, PPM) first: loading every plugin costs ~80 ms.
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
    output_path = output_path or _default_output(input_path)
    _refuse_same_file("OUT", output_path, _files_read([("IN", input_path)]), "name another OUT")
    try:
        image_format = _output_format(output_path)
    except click.BadParameter as exc:
        exc.param_hint = "OUT"
        raise
    _check_output(output_path, force)
    if image_format == "PNG" and not show:
        _decode_to_png(input_path, output_path, limit, force, quiet)
        return
    from .codec import decode_image

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


def _decode_to_png(input_path: str, output_path: str, limit: MaxPixels, force: bool, quiet: bool) -> None:
    """``kmc decode`` to PNG, strip by strip: memory bounded by a few strips, not the image."""
    from .codec import decode_to_png, open_strips

    source = sys.stdin.buffer.read() if input_path == STDIO else input_path
    with open_strips(source, max_pixels=limit) as reader:
        if output_path == STDIO:
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
@click.option("--seed", type=WholeNumber(0, 2**64 - 1), default=0, show_default=True, help="k-means++ seed.")
@click.option(
    "--method", default="auto", show_default=True, callback=_check_method, help="Label coding, as for encode."
)
@click.option("--effort", type=WholeNumber(1, 3), default=DEFAULT_EFFORT, show_default=True, help="As for encode.")
@click.option("--colorspace", type=click.Choice(COLORSPACES), default=DEFAULT_COLORSPACE, help="As for encode.")
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
        files_read = _files_read([("IMAGE", path) for path in images])
        _refuse_same_file("--html", html_path, files_read, "name another --html FILE")
        _refuse_image_name("--html", html_path, force, "the report is HTML", ".html", kmc=True)
        _check_output(html_path, force)
        require_matplotlib()
    results = []
    for path in images:
        result = compare_image(path, ks, seed=seed, method=method, effort=effort, colorspace=colorspace)
        results.append(result)
        if not as_json:
            click.echo(format_table(result))
    settings = {"seed": seed, "method": method, "effort": effort, "colorspace": colorspace}
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
