"""Batches: many images encoded as .kmc files, in local worker processes or on a Dask cluster.

>>> from kmcodec import batch
>>> results = batch.encode_many(["photos/"], "out/", jobs=2, colors=64)    # doctest: +SKIP
>>> [r.error for r in results if r.error]                                  # doctest: +SKIP
[]

:func:`plan` pairs every input file with its output and checks the outputs
before any work; :func:`run` encodes a plan and yields one :class:`FileResult`
per file as it finishes, keeping going past a file that fails;
:func:`encode_many` is the two in one call, and :func:`write_report` keeps
the results as JSON lines.  The outputs are the bytes that
:func:`kmcodec.encode` gives for each file, whatever the number of workers.

Inputs and outputs are local paths or fsspec URLs (:mod:`kmcodec.storage`).
The workers open their inputs and write their outputs themselves: a task
carries names and options and returns :class:`FileResult` objects, so no
image byte passes through the process that runs the batch, and a task lost
with its worker can run again elsewhere.  A rerun skips the outputs that are
there whole (:func:`encode_file`), so an interrupted batch resumes.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import functools
import json
import logging
import math
import os
import signal
import sys
import threading
import time
import warnings
from collections.abc import Callable, Generator, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, wait
from typing import IO, TYPE_CHECKING, Any, NamedTuple

from . import storage, threads
from .errors import KmcError, ParameterError
from .fileio import atomic_output, file_id, files_read, folder_problem, same_file_problem
from .limits import DEFAULT, MaxPixels, pixel_limit
from .options import EncodeOptions, check_exclusions
from .storage import StorageOptions

if TYPE_CHECKING:
    from concurrent.futures import ProcessPoolExecutor

#: Extensions (lower case) of the files a folder contributes to a batch: the common
#: raster formats Pillow reads.  A file named on its own needs none of them.
IMAGE_EXTENSIONS = (
    *(".png", ".apng", ".jpg", ".jpeg", ".jpe", ".jfif", ".gif", ".bmp", ".dib", ".tif", ".tiff"),
    *(".webp", ".avif", ".qoi", ".pbm", ".pgm", ".ppm", ".pnm", ".tga"),
)
#: Set in the workers' environment unless the user set them: the workers fill the cores
#: themselves, and a BLAS pool per worker would only oversubscribe them.
WORKER_THREAD_ENV = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
#: Tasks handed to each worker ahead of time: enough to keep it busy, few enough to
#: bound memory and let Ctrl-C stop promptly.
QUEUED_PER_WORKER = 2
#: Small files share a task until their inputs add up to this many bytes (or TASK_FILES
#: files), so that a task is about 0.3 s of work or more: a 260 KB PNG photo crop
#: (about 400 x 400) takes about 80 ms at k = 64, and on two cores a Dask task costs
#: about 10 ms of the scheduler's, the client's and the worker's time (docs/benchmarks.md).
TASK_BYTES = 1 << 20
TASK_FILES = 32
#: ... and a batch of few small files still gives each worker at least this many tasks, so
#: that none is left idle while another works through one long task.
TASKS_PER_WORKER = 4
#: Runs of a task whose worker died before it fails: a file that kills every worker
#: (out of memory) must not sink the batch.
MAX_ATTEMPTS = 2
#: What a batch reports for the files of a task whose worker died MAX_ATTEMPTS times.
WORKER_DIED = "a worker process died (killed, or out of memory?) while encoding this file or another in flight"
#: How long connecting to a scheduler address may take.
DASK_CONNECT_TIMEOUT = "10s"
#: How a LocalCluster's nannies start their workers, where forking is safe (Linux): a forked
#: worker has distributed, numpy and kmcodec imported already, and a batch starts 0.3 s
#: sooner and spends 0.7 s less CPU than with Dask's default, spawn (docs/benchmarks.md).
#: Elsewhere (macOS, Windows) Dask's default stands.
LOCAL_START_METHOD = "fork" if sys.platform.startswith("linux") else None
DASK_MISSING = "--scheduler needs Dask's distributed scheduler: pip install 'kmcodec[dask]'"


class BatchError(KmcError):
    """A batch cannot start: nothing to encode, two inputs for one output, an output that cannot be written."""


class SameFileError(BatchError, ParameterError):
    """An output of the batch is one of its inputs: writing it would destroy the input."""


class PlannedFile(NamedTuple):
    """One file of a batch: where it is read, where its .kmc file goes, and its size if the listing told it."""

    input: str
    output: str
    size: int | None = None


@dataclasses.dataclass(frozen=True)
class FileResult:
    """What became of one input of a batch.

    *error* is None on success, else the one-line reason the file failed
    (the numbers are then 0 or None).  *skipped* says the output was
    there whole already: *bytes_out*, *k* and *psnr* are then that file's,
    and *bytes_in* 0.  *psnr* is None for a lossless encoding; *k* is the
    number of palette entries written.
    """

    input: str
    output: str
    bytes_in: int = 0
    bytes_out: int = 0
    k: int | None = None
    psnr: float | None = None
    bits_per_pixel: float | None = None
    seconds: float = 0.0
    error: str | None = None
    skipped: bool = False

    @classmethod
    def of(cls, input: str, output: str, data: bytes, bytes_in: int, seconds: float) -> FileResult:
        """The result of encoding *input* (*bytes_in* bytes) to *data*, the .kmc file written to *output*."""
        from .codec import read_info

        info = read_info(data)
        psnr = info.psnr if info.psnr is not None and math.isfinite(info.psnr) else None
        return cls(input, output, bytes_in, len(data), info.colors, psnr, info.bits_per_pixel, seconds)

    @classmethod
    def failed(cls, input: str, output: str, error: str) -> FileResult:
        return cls(input, output, error=error)


# ---------------------------------------------------------------------------
# Planning: the files to encode and where they go
# ---------------------------------------------------------------------------
def plan(
    inputs: Iterable[str],
    output_dir: str,
    *,
    recursive: bool = False,
    other_inputs: Iterable[tuple[str, str]] = (),
    storage_options: StorageOptions = None,
) -> list[PlannedFile]:
    """Pair every input file with its output, ``output_dir/[SUBFOLDER/]STEM.kmc``; check the outputs before any work.

    A folder in *inputs* contributes its files named with
    :data:`IMAGE_EXTENSIONS` (and with *recursive* those of its subfolders,
    mirrored under *output_dir*); a file is taken whatever its name.  Each
    may be a local path or a URL (*storage_options* are fsspec's for URLs).
    Raises :class:`BatchError` if there is nothing to encode, two inputs have
    one output or a local output's folder cannot be written, and
    :class:`SameFileError` if an output is an input or one of
    *other_inputs*, (role, path) pairs of other files the batch reads.
    """
    inputs = [storage.local(path) for path in inputs]
    output_dir = storage.local(output_dir)
    found: list[tuple[str, str, int | None]] = []
    try:
        for path in inputs:
            if storage.is_folder(path, storage_options):
                found += storage.find(path, recursive, IMAGE_EXTENSIONS, storage_options)
            else:
                name = path.rstrip("/").rsplit("/", 1)[-1] if storage.is_url(path) else os.path.basename(path)
                found.append((path, name, storage.size(path)))
    except KmcError as exc:
        raise BatchError(str(exc)) from None
    if not found:
        hint = "" if recursive else " (without -r, subfolders are not searched)"
        msg = f"no image files to encode in {', '.join(map(repr, inputs))}{hint}"
        raise BatchError(msg)
    files = [
        PlannedFile(src, storage.join(output_dir, os.path.splitext(rel)[0] + ".kmc"), size) for src, rel, size in found
    ]
    _check_outputs(files, list(other_inputs))
    return files


def _check_outputs(files: list[PlannedFile], other_inputs: list[tuple[str, str]]) -> None:
    """:func:`plan`'s checks: no output is an input, no two inputs share an output, every local folder is writable."""
    read = files_read([("IN", f.input) for f in files if not storage.is_url(f.input)] + other_inputs)
    urls_read = {f.input for f in files if storage.is_url(f.input)}
    owner: dict[str, str] = {}
    clashes = []
    for src, dst, _ in files:
        if dst in urls_read:
            raise SameFileError(_same_url_problem(dst, "give another -o DIR"))
        problem = None if storage.is_url(dst) else same_file_problem("the output", dst, read, "give another -o DIR")
        if problem is not None:
            raise SameFileError(problem)
        key = dst if storage.is_url(dst) else os.path.normpath(dst)
        if key in owner:
            clashes.append(f"{owner[key]!r} and {src!r} would both be written to {dst!r}")
        owner[key] = src
    if clashes:
        more = f" (and {len(clashes) - 1} more)" if len(clashes) > 1 else ""
        msg = f"{clashes[0]}{more}"
        raise BatchError(msg)
    checked = set()
    for f in files:
        folder = os.path.dirname(f.output)
        if not storage.is_url(f.output) and folder not in checked:
            checked.add(folder)
            problem = folder_problem(f.output, create=True)  # the folders are made as the outputs are written
            if problem is not None:
                msg = f"cannot write {f.output!r}: {problem}"
                raise BatchError(msg)


def _same_url_problem(url: str, remedy: str) -> str:
    return (
        f"the output {url!r} is the same file as IN {url!r}: "
        f"writing it would destroy the input; {remedy} (--force does not allow this)"
    )


# ---------------------------------------------------------------------------
# One file, where it is encoded
# ---------------------------------------------------------------------------
def encode_file(
    input: str,
    output: str,
    *,
    force: bool = False,
    storage_options: StorageOptions = None,
    max_pixels: MaxPixels = DEFAULT,
    **encode_options: Any,
) -> FileResult:
    """Encode the image at *input* to the .kmc file *output* (paths or URLs); never raises for the file's fault.

    An output that is there whole already (a .kmc file whose prelude parses
    and which ends with its DONE chunk) is skipped; one that starts as a .kmc
    file but is cut short is encoded again; anything else at that path is
    kept, and the file fails, unless *force*, which redoes every output.
    The output appears whole or not at all.  *encode_options* are
    :func:`kmcodec.encode`'s keyword arguments, *max_pixels* among them.  Raises
    :class:`SameFileError`, before any work, if *output* is *input*: not
    even *force* allows destroying the input.
    """
    src, dst = storage.local(input), storage.local(output)
    if storage.is_url(dst):
        problem = _same_url_problem(dst, "name another output") if dst == src else None
    else:
        problem = same_file_problem("the output", dst, files_read([("IN", src)]), "name another output")
    if problem is not None:
        raise SameFileError(problem)
    options = EncodeOptions(**encode_options)
    return _encode_file(input, output, options, force, storage_options, pixel_limit(max_pixels))


def _encode_file(
    input: str, output: str, options: EncodeOptions, force: bool, storage_options: StorageOptions, limit: int | None
) -> FileResult:
    """:func:`encode_file` with its options checked already."""
    start = time.perf_counter()
    try:
        found, facts = storage.existing(output, storage_options)
        if found == storage.WHOLE and not force:
            return _skipped(input, output, *facts)
        if found == storage.OTHER and not force:
            return FileResult.failed(input, output, f"{output!r} exists (use --force to overwrite)")
        with storage.open_read(input, storage_options) as (stream, size):
            data = encode_stream(stream, options, limit)
        storage.write(output, data, overwrite=found != storage.MISSING, options=storage_options)
    except KmcError as exc:
        return FileResult.failed(input, output, str(exc))
    except MemoryError:
        return FileResult.failed(input, output, "out of memory")
    return FileResult.of(input, output, data, size, time.perf_counter() - start)


def _skipped(input: str, output: str, prelude: Any, size: int) -> FileResult:
    """The result of a file whose output was there whole, from that output's prelude."""
    header, made = prelude.header, prelude.made
    psnr = None if made is None or made.mse == 0 else 10 * math.log10(255**2 / made.mse)
    bpp = size * 8 / (header.width * header.height)
    return FileResult(input, output, 0, size, header.colors, psnr, bpp, skipped=True)


def encode_stream(stream: IO[bytes], options: EncodeOptions, max_pixels: MaxPixels = DEFAULT) -> bytes:
    """:func:`kmcodec.encode_with` of an open image file with *options*."""
    from .codec import encode_with

    return encode_with(stream, options, max_pixels=max_pixels)


def _encode_task(
    files: list[PlannedFile],
    options: EncodeOptions,
    force: bool,
    storage_options: StorageOptions,
    threads_each: int,
    limit: int | None,
) -> list[FileResult]:
    """A worker's task: :func:`encode_file` for each of *files*, the codec on *threads_each* threads.

    A top-level function, picklable for spawned processes and Dask; one
    file's unforeseen failure becomes its result, not the task's.
    """
    quiet_pillow()
    results = []
    with threads.limited(threads_each), _heap_kept():
        for f in files:
            try:
                results.append(_encode_file(f.input, f.output, options, force, storage_options, limit))
            except Exception as exc:
                results.append(FileResult.failed(f.input, f.output, f"unexpected {type(exc).__name__}: {exc}"))
    return results


def _tasks(files: list[PlannedFile], workers: int) -> list[list[PlannedFile]]:
    """*files* as tasks for *workers*: one file each, or several small ones together.

    A task takes small files until they add up to :data:`TASK_BYTES`, or it
    has :data:`TASK_FILES` of them, or enough that every worker still gets
    :data:`TASKS_PER_WORKER` tasks.
    """
    most = max(1, min(TASK_FILES, len(files) // (TASKS_PER_WORKER * workers)))
    tasks: list[list[PlannedFile]] = []
    group: list[PlannedFile] = []
    total = 0
    for f in files:
        if f.size is None or f.size >= TASK_BYTES:
            tasks.append([f])
            continue
        group.append(f)
        total += f.size
        if total >= TASK_BYTES or len(group) >= most:
            tasks.append(group)
            group, total = [], 0
    if group:
        tasks.append(group)
    return tasks


def quiet_pillow() -> None:
    """Keep Pillow's warnings and log records off stderr, where only kmc's own lines belong.

    A damaged input still fails with one ``kmc: error:`` line when it cannot
    be read; what Pillow merely warns about it could read.  Cheap to repeat:
    the warnings filter replaces its own copy.
    """
    warnings.filterwarnings("ignore", module=r"PIL(\.|$)")
    pil_logger = logging.getLogger("PIL")
    if not pil_logger.handlers:
        pil_logger.addHandler(logging.NullHandler())
    pil_logger.propagate = False


def cpu_count() -> int:
    """The CPUs this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0)) or 1
    return os.cpu_count() or 1


# ---------------------------------------------------------------------------
# Running a plan
# ---------------------------------------------------------------------------
def encode_many(
    inputs: Iterable[str],
    output_dir: str,
    *,
    client: object = None,
    jobs: int = 1,
    recursive: bool = False,
    force: bool = False,
    storage_options: StorageOptions = None,
    max_pixels: MaxPixels = DEFAULT,
    **encode_options: Any,
) -> list[FileResult]:
    """Encode every input (a file or a folder of images, a path or a URL) into *output_dir*; a result per file.

    The results follow the order of :func:`plan`.  *client*, a
    ``distributed.Client``, runs the batch on its cluster; else *jobs* local
    worker processes do (0: one per CPU).  Outputs there whole already are
    skipped unless *force* (:func:`encode_file`).  *encode_options* are
    :func:`kmcodec.encode`'s keyword arguments, *max_pixels* among them.  A file that fails has its
    :attr:`FileResult.error` set; the others go on.
    """
    files = plan(inputs, output_dir, recursive=recursive, storage_options=storage_options)
    order = {f.output: i for i, f in enumerate(files)}
    results = run(
        files,
        client=client,
        jobs=jobs,
        force=force,
        storage_options=storage_options,
        max_pixels=max_pixels,
        **encode_options,
    )
    with contextlib.closing(results):
        return sorted(results, key=lambda r: order[r.output])


def run(
    files: list[PlannedFile],
    *,
    jobs: int = 1,
    scheduler: str | None = None,
    client: object = None,
    force: bool = False,
    shared_palette: bool = False,
    storage_options: StorageOptions = None,
    max_pixels: MaxPixels = DEFAULT,
    **encode_options: Any,
) -> Iterator[FileResult]:
    """Encode each file of *files* (:func:`plan`); yield a :class:`FileResult` per file as it ends.

    The work runs in *jobs* local worker processes (0: one per CPU), on a Dask
    *client*, or on a Dask cluster named by *scheduler*: "local" for a new
    LocalCluster of *jobs* processes, or a scheduler's address.  Each file is
    :func:`encode_file`'s, with *force* and *storage_options*.  With
    *shared_palette*, one palette of ``encode_options["colors"]`` entries is
    fitted to all the inputs first, here, as :func:`kmcodec.encode` fits one
    image's (for the eye unless the options ask for sRGB).  Closing the
    iterator early (or Ctrl-C) stops the work; no output is ever left half
    written, and the temporary files of workers that died are removed.  Bad *encode_options*
    raise :class:`~kmcodec.ParameterError` before any work, once.
    *max_pixels* is :func:`kmcodec.encode`'s, taken here (``kmcodec.MAX_IMAGE_PIXELS``
    of this process when not given), so that workers elsewhere apply the same limit.
    """
    options = EncodeOptions(**encode_options)
    limit = pixel_limit(max_pixels)
    if shared_palette:
        # before reading every input to fit it; masking weighs the shared fit
        check_exclusions({**encode_options, "palette": "shared", "masking": None})
        options = _with_shared_palette(options, [f.input for f in files], limit)
    task = functools.partial(_encode_task, options=options, force=force, storage_options=storage_options, limit=limit)
    jobs = jobs or cpu_count()
    try:
        with contextlib.ExitStack() as stack:
            if client is None and scheduler is None:
                tasks = _tasks(files, jobs)
                workers = min(len(tasks), jobs)
                each = max(1, cpu_count() // workers)  # the codec's threads fill what the workers leave
                results = _in_workers(tasks, functools.partial(task, threads_each=each), workers)
            else:
                if client is None:
                    client = stack.enter_context(_dask_client(scheduler, min(len(files), jobs)))
                tasks = _tasks(files, max(1, sum(client.nthreads().values())))
                results = _on_dask(client, tasks, functools.partial(task, threads_each=1))
            stack.enter_context(contextlib.closing(results))  # stop the work before the client goes
            yield from results
    finally:
        storage.remove_leftovers(f.output for f in files)


def _with_shared_palette(options: EncodeOptions, sources: list[str], limit: int | None) -> EncodeOptions:
    """*options* with one palette fitted to every input, here, before any worker starts.

    Fitted as :func:`kmcodec.encode` fits one image's palette: where
    *options* fit it (Oklab for the eye unless a colour space is given),
    with masking where they would mask, each image weighed alone.  Each file
    is then mapped in that space and takes the labels such a fit would (RDO
    by default from 48 colours, none where the palette holds every colour of
    the set).  An unreadable file stops the batch here.
    """
    from .codec import shared_fit

    try:
        fit = shared_fit(sources, options, limit)
    except KmcError as exc:
        msg = f"cannot fit a shared palette: {exc}"
        raise BatchError(msg) from None
    rdo = options.rdo_for(len(fit.palette), exact=fit.mse == 0) or options.rdo
    space = options.fit_colorspace
    return dataclasses.replace(options, palette=fit.palette, colorspace=space, masking=None, rdo=rdo)


#: A task's outcome: its results, or the one-line message of its failure and whether its worker died.
Outcome = list[FileResult] | tuple[str, bool]


def _outcome(future: Future, lost: tuple[type[BaseException], ...]) -> Outcome:
    """A finished task's outcome; *lost* are the exceptions that say the worker running it died."""
    try:
        return future.result()
    except lost:
        return WORKER_DIED, True
    except MemoryError:
        return "out of memory", False
    except Exception as exc:  # one task's unforeseen failure must not sink the batch
        return f"unexpected {type(exc).__name__}: {exc}", False


def _settle(task: list[PlannedFile], attempt: int, outcome: Outcome, retry: Callable[[], None]) -> list[FileResult]:
    """The results of a finished task; for a task lost with its worker, *retry* it (up to MAX_ATTEMPTS) instead."""
    if isinstance(outcome, list):
        return outcome
    message, lost = outcome
    if lost and attempt < MAX_ATTEMPTS:
        retry()
        return []
    return [FileResult.failed(f.input, f.output, message) for f in task]


# ---------------------------------------------------------------------------
# Local worker processes
# ---------------------------------------------------------------------------
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


#: glibc's mallopt parameters (malloc.h) and what a task sets them to: arrays of up to
#: 32 MiB (glibc's largest mmap threshold on 64-bit) come from the heap, which keeps up
#: to 256 MiB of free memory for the next file instead of giving it back at once.
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
TASK_MMAP_THRESHOLD, TASK_TRIM_THRESHOLD = 32 << 20, 256 << 20
#: glibc's fixed mmap threshold once MALLOC_TRIM_THRESHOLD_ is set (malloc.c's DEFAULT_MMAP_THRESHOLD).
GLIBC_MMAP_THRESHOLD = 128 * 1024
_heap_lock = threading.Lock()
_heap_tasks = 0


@contextlib.contextmanager
def _heap_kept() -> Iterator[None]:
    """While a task runs, let freed arrays be reused, where the environment sets ``MALLOC_TRIM_THRESHOLD_``.

    Dask's nanny sets it (65536) in every worker's environment, so that idle
    workers give memory back.  That also fixes glibc's mmap threshold at
    128 KiB: every array over that is mapped and unmapped, and its pages
    faulted in again, file after file (on photo crops, 8 % of a worker's
    time).  While any task of this process runs, the heap keeps them
    (:data:`TASK_MMAP_THRESHOLD`); after the last one the environment's
    settings come back and the heap is trimmed, as Dask wants.  Elsewhere
    (no variable set, or no glibc), nothing changes.
    """
    global _heap_tasks
    trim = os.environ.get("MALLOC_TRIM_THRESHOLD_", "")
    libc = _glibc() if trim.isdigit() else None
    if libc is None:
        yield
        return
    with _heap_lock:
        _heap_tasks += 1
        if _heap_tasks == 1:
            libc.mallopt(M_MMAP_THRESHOLD, TASK_MMAP_THRESHOLD)
            libc.mallopt(M_TRIM_THRESHOLD, TASK_TRIM_THRESHOLD)
    try:
        yield
    finally:
        with _heap_lock:
            _heap_tasks -= 1
            if _heap_tasks == 0:
                libc.mallopt(M_MMAP_THRESHOLD, GLIBC_MMAP_THRESHOLD)
                libc.mallopt(M_TRIM_THRESHOLD, int(trim))
                libc.malloc_trim(0)


@functools.cache
def _glibc() -> Any:
    """The C library's mallopt and malloc_trim, if this process runs on glibc; else None."""
    import ctypes

    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version  # noqa: B018 - glibc's own symbol: musl also has mallopt, as a no-op
        libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
        libc.malloc_trim.argtypes = [ctypes.c_size_t]
    except (OSError, AttributeError, TypeError):  # TypeError: Windows has no CDLL(None)
        return None
    return libc


def _init_worker() -> None:
    """Worker initializer: Pillow kept quiet, and Ctrl-C left to the parent, so a worker never prints a traceback."""
    quiet_pillow()
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _stop_workers(pool: ProcessPoolExecutor) -> None:
    """Cancel what is queued and kill the workers now; their outputs are whole or not there."""
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


Task = Callable[[list[PlannedFile]], list[FileResult]]


def _in_workers(tasks: list[list[PlannedFile]], task: Task, workers: int) -> Iterator[FileResult]:
    """Run each of *tasks* in one of *workers* processes; yield the results in order of completion.

    The workers are spawned (not forked) processes: the same on every platform,
    with a clean interpreter whose BLAS is set up by :func:`_worker_environment`.
    If a worker dies, the pool breaks: the tasks in flight run again in a new pool.
    """
    queue = collections.deque((t, 1) for t in tasks)
    with _worker_environment():
        while queue:
            yield from _run_pool(queue, task, workers)


def _run_pool(
    queue: collections.deque[tuple[list[PlannedFile], int]], task: Task, workers: int
) -> Generator[FileResult, None, None]:
    """Run tasks from *queue* (task, attempt) in a new pool until it is empty or the pool breaks."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker) as pool:
        pending: dict[Future, tuple[list[PlannedFile], int]] = {}
        broken = False
        try:
            while True:
                while queue and not broken and len(pending) < workers * QUEUED_PER_WORKER:
                    files, attempt = queue.popleft()
                    try:
                        pending[pool.submit(task, files)] = files, attempt
                    except BrokenProcessPool:
                        queue.appendleft((files, attempt))
                        broken = True
                if not pending:
                    return
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    files, attempt = pending.pop(future)
                    outcome = _outcome(future, lost=(BrokenProcessPool,))
                    broken = broken or outcome == (WORKER_DIED, True)
                    retry = functools.partial(queue.append, (files, attempt + 1))
                    yield from _settle(files, attempt, outcome, retry)
        except BaseException:  # Ctrl-C, or the caller stopped early
            _stop_workers(pool)
            raise


# ---------------------------------------------------------------------------
# A Dask cluster (the optional dask extra)
# ---------------------------------------------------------------------------
@contextlib.contextmanager
def _dask_client(scheduler: str, workers: int) -> Iterator[object]:
    """A Dask client of a new LocalCluster (*scheduler* "local", *workers* processes) or of the scheduler at an address.

    The LocalCluster's workers are processes of one thread each, started within
    :func:`_worker_environment` like the local pool's, and forked by their
    nannies where :data:`LOCAL_START_METHOD` says so (a worker restarted after
    it died too).  Both are closed on exit, whatever ended the batch.
    """
    try:
        import dask
        import distributed
    except ImportError:
        raise BatchError(DASK_MISSING) from None
    with contextlib.ExitStack() as stack:
        address: object = scheduler
        try:
            if scheduler == "local":
                if LOCAL_START_METHOD is not None:
                    stack.enter_context(
                        dask.config.set({"distributed.worker.multiprocessing-method": LOCAL_START_METHOD})
                    )
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
            msg = f"cannot {what}: {exc}"
            raise BatchError(msg) from None
        yield client


def _on_dask(client: Any, tasks: list[list[PlannedFile]], task: Task) -> Iterator[FileResult]:
    """Run each of *tasks* as a Dask task on *client*'s cluster; yield the results in order of completion.

    Like :func:`_run_pool`, at most :data:`QUEUED_PER_WORKER` tasks per worker
    thread are in flight.  A task carries names, not bytes, so when its worker
    dies the scheduler runs it again elsewhere (its ``allowed-failures``);
    past that it comes back as ``KilledWorker``, and is retried here as in the
    local pool.
    """
    import distributed

    queue = collections.deque((t, 1) for t in tasks)
    limit = max(1, sum(client.nthreads().values())) * QUEUED_PER_WORKER
    running = distributed.as_completed()
    pending: dict[object, tuple[list[PlannedFile], int]] = {}
    try:
        while queue or pending:
            while queue and len(pending) < limit:
                files, attempt = queue.popleft()
                future = client.submit(task, files, pure=False)
                pending[future] = files, attempt
                running.add(future)
            future = next(running)
            files, attempt = pending.pop(future)
            outcome = _outcome(future, lost=(distributed.KilledWorker,))
            yield from _settle(files, attempt, outcome, functools.partial(queue.append, (files, attempt + 1)))
    finally:
        client.cancel(list(pending))


# ---------------------------------------------------------------------------
# The report: one JSON line per file
# ---------------------------------------------------------------------------
#: The fields of a report line, in order (those of :class:`FileResult`).
REPORT_FIELDS = tuple(field.name for field in dataclasses.fields(FileResult))


def report_problem(path: str, force: bool) -> str | None:
    """Why the report cannot be written to the local *path*, checked before any work, or None.

    An earlier report there is replaced (a rerun writes a new one); any
    other file is kept unless *force*.
    """
    if os.path.lexists(path) and not force and not _is_report(path):
        return f"{path!r} exists and is not a batch report (use --force to overwrite)"
    problem = folder_problem(path, create=True)  # made when the report is written, as the outputs' are
    return None if problem is None else f"cannot write {path!r}: {problem}"


def _is_report(path: str) -> bool:
    """Whether the file at *path* begins as a report of :func:`write_report` (or is empty)."""
    try:
        with open(path, "rb") as f:
            line = f.readline(1 << 16)
        record = json.loads(line) if line.strip() else {}
    except (OSError, ValueError):
        return False
    return isinstance(record, dict) and (not record or {"input", "output", "error"} <= record.keys())


@contextlib.contextmanager
def reporting(path: str, *, force: bool = False) -> Iterator[Callable[[FileResult], None]]:
    """Write a report to the local *path* as results come: ``with reporting(p) as record: record(result)``.

    The lines go to a temporary file, renamed to *path* when the block ends
    without an exception: the report appears whole or not at all.  A result
    whose input or output is the file at *path* raises :class:`SameFileError`
    (even with *force*), and that file is kept.
    """
    problem = report_problem(path, force)
    if problem is not None:
        raise BatchError(problem)
    try:
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    except OSError as exc:
        msg = f"cannot create folder for {path!r}: {exc.strerror or exc}"
        raise BatchError(msg) from None
    there = file_id(path)  # what the report would replace, never a file of the batch (checked as they come)
    with atomic_output(path, overwrite=True) as f:

        def record(result: FileResult) -> None:
            for role, name in (("input", result.input), ("output", result.output)):
                if there is not None and file_id(name) == there:
                    msg = (
                        f"the report {path!r} is the {role} {name!r}: writing it would destroy it; name another report"
                    )
                    raise SameFileError(msg)
            f.write(json.dumps(dataclasses.asdict(result), allow_nan=False).encode() + b"\n")

        yield record


def write_report(results: Iterable[FileResult], path: str, *, force: bool = False) -> None:
    """Write *results* to the local file *path* as JSON lines, atomically: one object per file, the keys of
    :data:`REPORT_FIELDS` (psnr null for lossless, error null on success).

    An earlier report at *path* is replaced; another file only with *force*.
    """
    with reporting(path, force=force) as record:
        for result in results:
            record(result)
