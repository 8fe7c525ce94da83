"""File I/O that never loses data: atomic writes and reads with clear errors."""

from __future__ import annotations

import contextlib
import os
import stat
import sys
from collections.abc import Iterator
from typing import IO

from .errors import KmcError

#: The path that names standard input or output.
STDIO = "-"
#: A file by identity, (device, inode): what links and "-" resolve to.
FileId = tuple[int, int]


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


#: How the temporary files of :func:`atomic_output` are named: PREFIX + 8 random characters + SUFFIX.
TEMP_PREFIX, TEMP_SUFFIX = ".kmc-", ".tmp"


def write_atomic(path: str | os.PathLike, data: bytes, *, overwrite: bool, prefix: str = TEMP_PREFIX) -> None:
    """Write *data* to *path* through a temporary file in the same folder, then rename.

    A failure (including KeyboardInterrupt) removes the temporary file and
    leaves any existing *path* untouched.  Without *overwrite*, an existing
    file is kept and :class:`OutputExistsError` raised.
    """
    with atomic_output(path, overwrite=overwrite, prefix=prefix) as f:
        f.write(data)


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike, *, overwrite: bool, prefix: str = TEMP_PREFIX) -> Iterator[IO[bytes]]:
    """Open a temporary file beside *path* for writing; on success rename it to *path*.

    The streaming form of :func:`write_atomic`, with the same guarantees: if
    the ``with`` block raises (KeyboardInterrupt included), the temporary
    file is removed and any existing *path* is untouched; an existing *path*
    is kept unless *overwrite*.  OS errors become :class:`FileAccessError`.
    The temporary file's name starts with *prefix* (which starts with ".").
    """
    path = os.fspath(path)
    if is_special(path):  # a device or a pipe: written through, as "-" is; there is no file to destroy
        try:
            with open(path, "wb") as f:
                yield f
        except OSError as exc:
            msg = f"cannot write {path!r}: {exc.strerror or exc}"
            raise FileAccessError(msg) from None
        return
    if not overwrite and os.path.lexists(path):
        msg = f"{path!r} exists (use --force to overwrite)"
        raise OutputExistsError(msg)
    import tempfile  # here, not at the top: it loads random, hashlib and shutil, which reading needs none of

    target = os.path.realpath(path) if os.path.islink(path) else path  # a link stays, its target is replaced
    try:
        mode = stat.S_IMODE(os.stat(target).st_mode)  # an existing file keeps its permissions
    except OSError:
        mode = 0o666 & ~_umask()
    folder = os.path.dirname(os.path.abspath(target))
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=TEMP_SUFFIX, dir=folder)
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        with contextlib.suppress(OSError):
            os.chmod(tmp, mode)
        if overwrite:
            os.replace(tmp, target)
        else:
            # link() fails if path appeared meanwhile, so a racing file is not clobbered.
            try:
                os.link(tmp, target)
            except FileExistsError:
                msg = f"{path!r} exists (use --force to overwrite)"
                raise OutputExistsError(msg) from None
            except OSError:
                os.replace(tmp, target)  # file systems without hard links
    except OSError as exc:
        msg = f"cannot write {path!r}: {exc.strerror or exc}"
        raise FileAccessError(msg) from None
    finally:
        if tmp is not None and os.path.exists(tmp):
            with contextlib.suppress(OSError):
                os.unlink(tmp)


def is_special(path: str | os.PathLike) -> bool:
    """Whether *path* is a device, a named pipe or a socket (links followed): written through, not replaced."""
    try:
        mode = os.stat(path).st_mode
    except (OSError, ValueError):
        return False
    return not (stat.S_ISREG(mode) or stat.S_ISDIR(mode))


def write_all(stream: IO[bytes], data: bytes) -> None:
    """Write all of *data* to *stream*: an unbuffered stream (``python -u``, PYTHONUNBUFFERED) may take part of it."""
    view = memoryview(data).cast("B")
    while view:
        written = stream.write(view)
        if written is None:  # a non-blocking stream that is full: wait until it takes more
            import select

            select.select([], [stream.fileno()], [])
            continue
        view = view[written:]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# ---------------------------------------------------------------------------
# Output checks, made before any pixel is read
# ---------------------------------------------------------------------------
def file_id(target: object) -> FileId | None:
    """The identity of the regular file *target* is: a path (links followed) or a file object; None for none.

    Pipes, terminals, missing files, bytes and streams without a descriptor
    are None: there is no file for an output to destroy.
    """
    try:
        if isinstance(target, (str, os.PathLike)):
            status = os.stat(target)
        elif hasattr(target, "fileno"):
            status = os.fstat(target.fileno())
        else:
            return None
    except (OSError, ValueError):  # missing, a NUL in the name, or no descriptor (io.UnsupportedOperation)
        return None
    return (status.st_dev, status.st_ino) if stat.S_ISREG(status.st_mode) else None


def _named(path: str, stream: str) -> str:
    return f"- (standard {stream})" if path == STDIO else repr(path)


def files_read(inputs: list[tuple[str, str]]) -> dict[FileId, tuple[str, str]]:
    """The regular files among *inputs*, (role, path) pairs ("-": standard input), by identity."""
    files = {}
    for role, path in inputs:
        identity = file_id(sys.stdin if path == STDIO else path)
        if identity is not None:
            files.setdefault(identity, (role, path))
    return files


def same_file_problem(role: str, output: str, read: dict[FileId, tuple[str, str]], remedy: str) -> str | None:
    """The message if *output* ("-": standard output) is one of *read* (:func:`files_read`), even through links.

    Not even --force allows it: the output would destroy what the command reads.
    """
    identity = file_id(sys.stdout if output == STDIO else output)
    if identity is None or identity not in read:
        return None
    input_role, path = read[identity]
    return (
        f"{role} {_named(output, 'output')} is the same file as {input_role} {_named(path, 'input')}: "
        f"writing it would destroy the input; {remedy} (--force does not allow this)"
    )


def folder_problem(path: str, *, create: bool = False) -> str | None:
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
