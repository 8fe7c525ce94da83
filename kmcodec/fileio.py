"""File I/O that never loses data: atomic writes and reads with clear errors."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import IO

from .errors import KmcError


class OutputExistsError(KmcError):
    """The output file exists and overwriting was not allowed."""


class FileAccessError(KmcError):
    """A file could not be read or written (missing, permission, disk full)."""


def read_bytes(path: str | os.PathLike) -> bytes:
    """Read a whole file, turning OS errors into one-line :class:`FileAccessError`."""
    with open_input(path) as f:
        try:
            return f.read()
        except OSError as exc:
            msg = f"cannot read {os.fsdecode(path)!r}: {exc.strerror or exc}"
            raise FileAccessError(msg) from None


def open_input(path: str | os.PathLike) -> IO[bytes]:
    """Open a file for reading, turning OS errors into one-line :class:`FileAccessError`."""
    try:
        return open(path, "rb")
    except OSError as exc:
        msg = f"cannot read {os.fsdecode(path)!r}: {exc.strerror or exc}"
        raise FileAccessError(msg) from None


def write_atomic(path: str | os.PathLike, data: bytes, *, overwrite: bool) -> None:
    """Write *data* to *path* through a temporary file in the same folder, then rename.

    A failure (including KeyboardInterrupt) removes the temporary file and
    leaves any existing *path* untouched.  Without *overwrite*, an existing
    file is kept and :class:`OutputExistsError` raised.
    """
    with atomic_output(path, overwrite=overwrite) as f:
        f.write(data)


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike, *, overwrite: bool) -> Iterator[IO[bytes]]:
    """Open a temporary file beside *path* for writing; on success rename it to *path*.

    The streaming form of :func:`write_atomic`, with the same guarantees: if
    the ``with`` block raises (KeyboardInterrupt included), the temporary
    file is removed and any existing *path* is untouched; an existing *path*
    is kept unless *overwrite*.  OS errors become :class:`FileAccessError`.
    """
    path = os.fspath(path)
    if not overwrite and os.path.lexists(path):
        msg = f"{path!r} exists (use --force to overwrite)"
        raise OutputExistsError(msg)
    import tempfile  # here, not at the top: it loads random, hashlib and shutil, which reading needs none of

    folder = os.path.dirname(os.path.abspath(path))
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=".kmc-", suffix=".tmp", dir=folder)
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        if overwrite:
            os.replace(tmp, path)
        else:
            # link() fails if path appeared meanwhile, so a racing file is not clobbered.
            try:
                os.link(tmp, path)
            except FileExistsError:
                msg = f"{path!r} exists (use --force to overwrite)"
                raise OutputExistsError(msg) from None
            except OSError:
                os.replace(tmp, path)  # file systems without hard links
        with contextlib.suppress(OSError):
            os.chmod(path, 0o666 & ~_umask())
    except OSError as exc:
        msg = f"cannot write {path!r}: {exc.strerror or exc}"
        raise FileAccessError(msg) from None
    finally:
        if tmp is not None and os.path.exists(tmp):
            with contextlib.suppress(OSError):
                os.unlink(tmp)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
