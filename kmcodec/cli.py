"""The ``kmc`` command: encode, decode and inspect .kmc files.

Errors print one line ``kmc: error: ...`` on standard error and exit 1;
misuse of the command line exits 2 (click's usage errors).  Outputs are
written atomically and an existing output is kept unless ``--force``.
"""

from __future__ import annotations

import io
import json
import os
import sys
from typing import NoReturn

import click
from PIL import Image

from . import __version__
from .codec import decode_image, encode, read_info
from .errors import KmcError
from .fileio import read_bytes, write_atomic

STDIO = "-"
#: Palette entries shown by `inspect` before eliding the rest.
INSPECT_MAX_SWATCHES = 256


class CliError(click.ClickException):
    """A failure reported as one line, ``kmc: error: ...``, with exit status 1."""

    def show(self, file=None) -> None:
        click.echo(f"kmc: error: {self.format_message()}", file=file or sys.stderr, err=file is None)


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


class KmcGroup(click.Group):
    """A click group whose every failure ends as one line and an exit status, never a traceback."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        try:
            result = super().main(args, prog_name or "kmc", complete_var, standalone_mode=False, **extra)
        except click.ClickException as exc:  # usage errors exit 2, CliError 1
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


@cli.command("encode")
@click.argument("input_path", metavar="IN")
@click.argument("output_path", metavar="OUT")
@click.option(
    "-k", "--colors", type=click.IntRange(1, 65536), default=64, show_default=True, help="Palette size (1-65536)."
)
@click.option("--seed", type=click.IntRange(0, 2**64 - 1), default=0, show_default=True, help="k-means++ seed.")
@click.option(
    "--method",
    type=click.Choice(["auto", "stored", "deflate", "lzma"]),
    default="auto",
    show_default=True,
    help="Label coding; auto keeps the smallest per strip.",
)
@click.option("--strip-rows", type=click.IntRange(1), default=None, help="Rows per strip (default: ~1 M labels).")
@click.option("--no-metadata", is_flag=True, help="Drop the ICC profile, EXIF and XMP.")
@click.option("-f", "--force", is_flag=True, help="Overwrite OUT if it exists.")
@click.option("-q", "--quiet", is_flag=True, help="Print nothing on success.")
def encode_cmd(
    input_path: str,
    output_path: str,
    colors: int,
    seed: int,
    method: str,
    strip_rows: int | None,
    no_metadata: bool,
    force: bool,
    quiet: bool,
) -> None:
    """Encode image IN (any format Pillow reads) as .kmc file OUT."""
    if output_path != STDIO and not force and os.path.lexists(output_path):
        _fail(f"{output_path!r} exists (use --force to overwrite)")
    source = _read_input(input_path)
    stream = io.BytesIO(source)
    stream.name = "<stdin>" if input_path == STDIO else input_path
    data = encode(
        stream,
        colors,
        seed=seed,
        method=method,
        rows_per_strip=strip_rows,
        metadata=not no_metadata,
    )
    _write_output(output_path, data, force)
    if not quiet:
        info = read_info(data)
        psnr = info.psnr
        quality = "lossless" if psnr is None or psnr == float("inf") else f"PSNR {psnr:.2f} dB"
        click.echo(
            f"{_display(output_path)}: {len(data):,} bytes, {info.bits_per_pixel:.3f} bpp, "
            f"{len(data) / len(source):.3f} x input ({len(source):,} bytes), "
            f"{info.colors} colours, {quality}",
            err=output_path == STDIO,
        )


def _default_output(input_path: str) -> str:
    if input_path == STDIO:
        return STDIO
    root, _ = os.path.splitext(input_path)
    return root + ".png"


def _output_format(path: str) -> str:
    if path == STDIO:
        return "PNG"
    ext = os.path.splitext(path)[1].lower()
    formats = Image.registered_extensions()
    if ext not in formats or formats[ext] not in Image.SAVE:
        raise click.BadParameter(f"no image format Pillow can write has the extension {ext or '(none)'!r}")
    return formats[ext]


@cli.command("decode")
@click.argument("input_path", metavar="IN")
@click.argument("output_path", metavar="[OUT]", required=False)
@click.option("--show", is_flag=True, help="Open the decoded image in the system viewer.")
@click.option("-f", "--force", is_flag=True, help="Overwrite OUT if it exists.")
@click.option("-q", "--quiet", is_flag=True, help="Print nothing on success.")
def decode_cmd(input_path: str, output_path: str | None, show: bool, force: bool, quiet: bool) -> None:
    """Decode .kmc file IN to image OUT (format chosen by extension; default: IN with .png)."""
    output_path = output_path or _default_output(input_path)
    try:
        image_format = _output_format(output_path)
    except click.BadParameter as exc:
        exc.param_hint = "OUT"
        raise
    if output_path != STDIO and not force and os.path.lexists(output_path):
        _fail(f"{output_path!r} exists (use --force to overwrite)")
    image = decode_image(_read_input(input_path))
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


def _swatch(color: tuple[int, ...], mode: str) -> str:
    rgb = color[:3] if mode.startswith("RGB") else (color[0],) * 3
    text = "#" + "".join(f"{v:02x}" for v in color)
    return click.style("  ", bg=rgb) + " " + text


@cli.command("inspect")
@click.argument("input_path", metavar="IN")
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
def inspect_cmd(input_path: str, as_json: bool) -> None:
    """Describe .kmc file IN without decoding its pixels."""
    info = read_info(_read_input(input_path))
    if as_json:
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


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``kmc`` console script."""
    cli.main(args=argv, prog_name="kmc")
