"""Where a batch's files live: local paths, or fsspec URLs (``s3://``, ``gs://``, ``memory://``, ...).

A local path (a ``file://`` URL is made one by :func:`local`) goes through
:mod:`os` and :mod:`kmcodec.fileio`; any other URL through fsspec (the dask
extra), imported on first use.  Every function here runs where the file is
read or written, in a batch's worker, and turns what goes wrong into a
one-line :class:`~kmcodec.fileio.FileAccessError` naming the file.

An output appears whole or not at all on every backend: a local file is
written under a temporary name and renamed; an object store's single PUT is
atomic by itself (:data:`ATOMIC_PUT`); other file systems get a temporary
name and a move.
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import secrets
from collections.abc import Iterable, Iterator
from typing import IO, Any

from .errors import FormatError
from .fileio import TEMP_PREFIX, TEMP_SUFFIX, FileAccessError, OutputExistsError, open_input, write_atomic

#: fsspec's keyword arguments for a URL's file system (credentials, endpoint, ...), or None.
StorageOptions = dict[str, Any] | None
#: Protocols whose one-shot write (a single PUT) makes the whole object appear at once.
ATOMIC_PUT = frozenset({"s3", "s3a", "gs", "gcs", "az", "abfs", "abfss", "oss", "memory"})
FSSPEC_MISSING = "URLs need fsspec: pip install 'kmcodec[dask]'"
#: The longest output name kept in a temporary file's name (which must stay within NAME_MAX, 255).
TEMP_NAME_CHARS = 200
#: What :func:`existing` finds at an output's path.
MISSING, WHOLE, BROKEN, OTHER = "missing", "whole", "broken", "other"


def is_url(path: str) -> bool:
    return "://" in path


def local(path: str) -> str:
    """*path* with a ``file://`` prefix taken off, so that it goes through :mod:`os`; anything else unchanged."""
    return path[len("file://") :] if path.startswith("file://") else path


def join(folder: str, relative: str) -> str:
    """*relative* (with "/" separators) under *folder*, a local path or a URL."""
    if is_url(folder):
        return folder.rstrip("/") + "/" + relative
    return os.path.join(folder, *relative.split("/"))


def _filesystem(url: str, options: StorageOptions) -> tuple[Any, str]:
    """The fsspec file system of *url* and the path in it."""
    try:
        from fsspec.core import url_to_fs
    except ImportError:
        msg = f"cannot use {url!r}: {FSSPEC_MISSING}"
        raise FileAccessError(msg) from None
    try:
        return url_to_fs(url, **(options or {}))
    except (ImportError, ValueError, TypeError) as exc:  # an unknown protocol, or its package missing
        msg = f"cannot use {url!r}: {exc}"
        raise FileAccessError(msg) from None


def _failure(verb: str, path: str, exc: OSError) -> FileAccessError:
    reason = exc.strerror or str(exc) or type(exc).__name__
    if isinstance(exc, FileNotFoundError) and not exc.strerror:
        reason = "No such file or directory"
    return FileAccessError(f"cannot {verb} {path!r}: {reason}")


# ---------------------------------------------------------------------------
# Listing and reading
# ---------------------------------------------------------------------------
def is_folder(path: str, options: StorageOptions = None) -> bool:
    if not is_url(path):
        return os.path.isdir(path)
    fs, inner = _filesystem(path, options)
    try:
        return fs.isdir(inner)
    except OSError as exc:
        raise _failure("read", path, exc) from None


def size(path: str) -> int | None:
    """The size of the file at local *path*, None if unknown (a URL is not asked: that would cost a request)."""
    if is_url(path):
        return None
    try:
        return os.stat(path).st_size
    except OSError:
        return None


def find(folder: str, recursive: bool, extensions: Iterable[str], options: StorageOptions = None) -> list[tuple]:
    """The files of *folder* named with *extensions*, sorted, hidden names skipped: (path, relative, size) each.

    *relative* is the path under *folder* with "/" separators; with
    *recursive* the subfolders' files are listed too.
    """
    wanted = tuple(extensions)

    def taken(name: str) -> bool:
        return not name.startswith(".") and os.path.splitext(name)[1].lower() in wanted

    found = []
    if is_url(folder):
        fs, inner = _filesystem(folder, options)
        try:
            listing = fs.find(inner, maxdepth=None if recursive else 1, withdirs=False, detail=True)
        except OSError as exc:
            raise _failure("list folder", folder, exc) from None
        base = inner.rstrip("/")
        for name in sorted(listing):
            relative = posixpath.relpath(name, base)
            parts = relative.split("/")
            if taken(parts[-1]) and not any(part.startswith(".") for part in parts[:-1]):
                found.append((join(folder, relative), relative, listing[name].get("size")))
        return found

    def unreadable(exc: OSError) -> None:
        raise _failure("list folder", exc.filename, exc)

    for root, dirs, files in os.walk(folder, onerror=unreadable):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".")) if recursive else []
        for name in sorted(files):
            if taken(name):
                path = os.path.join(root, name)
                found.append((path, os.path.relpath(path, folder).replace(os.sep, "/"), size(path)))
    return found


@contextlib.contextmanager
def open_read(path: str, options: StorageOptions = None) -> Iterator[tuple[IO[bytes], int]]:
    """The file at *path* open for reading, and its size."""
    if not is_url(path):
        with open_input(path) as stream:
            yield stream, os.fstat(stream.fileno()).st_size
        return
    fs, inner = _filesystem(path, options)
    try:
        stream = fs.open(inner, "rb")
        length = stream.size if getattr(stream, "size", None) is not None else fs.size(inner)
    except OSError as exc:
        raise _failure("read", path, exc) from None
    with stream:
        stream.name = path  # the encoder's messages name the file as the user did
        yield stream, length


# ---------------------------------------------------------------------------
# What is at an output's path, and writing it whole
# ---------------------------------------------------------------------------
def existing(path: str, options: StorageOptions = None) -> tuple[str, Any]:
    """What is at the output path *path*: (:data:`MISSING`, None), (:data:`OTHER`, None), (:data:`BROKEN`, None)
    or (:data:`WHOLE`, its :class:`~kmcodec.container.Prelude` and size).

    WHOLE is a .kmc file whose prelude parses and which ends with its DONE
    chunk (:func:`~kmcodec.container.read_outline`: a few small reads); BROKEN
    one that starts as a .kmc file (or is empty) but is not whole; OTHER
    anything else, a folder included.
    """
    from . import format as fmt  # here, not at the top: it loads construct, which listing files needs none of
    from .container import read_outline

    try:
        if is_url(path):
            fs, inner = _filesystem(path, options)
            if not fs.exists(inner):
                return MISSING, None
            if fs.isdir(inner):
                return OTHER, None
            opened = fs.open(inner, "rb")
        else:
            if not os.path.lexists(path):
                return MISSING, None
            if os.path.isdir(path):
                return OTHER, None
            opened = open(path, "rb")  # noqa: SIM115  (closed by the with below)
        with opened as fp:
            head = fp.read(len(fmt.SIGNATURE))
            if not fmt.SIGNATURE.startswith(head):
                return OTHER, None
            fp.seek(0)
            try:
                prelude = read_outline(fp, max_pixels=None)
            except FormatError:
                return BROKEN, None
            return WHOLE, (prelude, fp.seek(0, os.SEEK_END))
    except OSError as exc:
        raise _failure("read", path, exc) from None


def temp_prefix(path: str) -> str:
    """The start of the names of the temporary files written on the way to *path*."""
    return f"{TEMP_PREFIX}{posixpath.basename(path)[:TEMP_NAME_CHARS]}-"


def write(path: str, data: bytes, *, overwrite: bool, options: StorageOptions = None) -> None:
    """Write *data* as the file *path*, whole or not at all, making its folder.

    An existing *path* is kept (:class:`~kmcodec.fileio.OutputExistsError`) unless *overwrite*.
    """
    if not is_url(path):
        try:
            os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        except OSError as exc:
            msg = f"cannot create folder for {path!r}: {exc.strerror or exc}"
            raise FileAccessError(msg) from None
        write_atomic(path, data, overwrite=overwrite, prefix=temp_prefix(path))
        return
    fs, inner = _filesystem(path, options)
    try:
        if not overwrite and fs.exists(inner):
            msg = f"{path!r} exists (use --force to overwrite)"
            raise OutputExistsError(msg)
        folder = posixpath.dirname(inner)
        fs.makedirs(folder, exist_ok=True)
        protocols = {fs.protocol} if isinstance(fs.protocol, str) else set(fs.protocol)
        if protocols & ATOMIC_PUT:
            fs.pipe_file(inner, data)
            return
        temp = posixpath.join(folder, f"{temp_prefix(inner)}{secrets.token_hex(4)}{TEMP_SUFFIX}")
        try:
            fs.pipe_file(temp, data)
            fs.mv(temp, inner)
        finally:
            with contextlib.suppress(OSError):
                if fs.exists(temp):
                    fs.rm(temp)
    except OSError as exc:
        raise _failure("write", path, exc) from None


def remove_leftovers(outputs: Iterable[str]) -> None:
    """Remove the temporary files that writers of the local *outputs* left (killed workers): one listing per folder.

    Only names of the form ``temp_prefix(output) + 8 characters + .tmp`` go.
    """
    prefixes: dict[str, set[str]] = {}
    for path in outputs:
        if not is_url(path):
            prefixes.setdefault(os.path.dirname(path) or ".", set()).add(temp_prefix(path))
    for folder, starts in prefixes.items():
        with contextlib.suppress(OSError), os.scandir(folder) as entries:
            for entry in entries:
                name = entry.name
                if name.endswith(TEMP_SUFFIX) and name[: -len(TEMP_SUFFIX) - 8] in starts:
                    with contextlib.suppress(OSError):
                        os.unlink(entry.path)
