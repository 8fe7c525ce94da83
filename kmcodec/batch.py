"""Batches: many images encoded as .kmc files, in local worker processes or on a Dask cluster.

>>> from kmcodec import batch
>>> results = batch.encode_many(["photos/"], "out/", jobs=2, colors=64)    # doctest: +SKIP
>>> [r.error for r in results if r.error]                                  # doctest: +SKIP
[]

:func:`plan` pairs every input file with its output and checks the outputs
before any work; :func:`run` encodes a plan and yields one :class:`FileResult`
per file as it finishes, keeping going past a file that fails;
:func:`encode_many` is the two in one call.  The outputs are the bytes that
:func:`kmcodec.encode` gives for each file, whatever the number of workers.
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
import time
import warnings
from collections.abc import Generator, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, wait
from typing import IO, TYPE_CHECKING, Any

from .errors import KmcError, ParameterError
from .fileio import files_read, folder_problem, open_input, read_bytes, same_file_problem, write_atomic

if TYPE_CHECKING:
    from concurrent.futures import ProcessPoolExecutor

#: Extensions (lower case) of the files a folder contributes to a batch: the common
#: raster formats Pillow reads.  A file named on its own needs none of them.
IMAGE_EXTENSIONS = (
    *(".png", ".apng", ".jpg", ".jpeg", ".jpe", ".jfif", ".gif", ".bmp", ".dib", ".tif", ".tiff"),
    *(".webp", ".avif", ".qoi", ".pbm", ".pgm", ".ppm", ".pnm", ".tga"),
)
#: Set in the workers' environment unless the user set them: the workers fill the cores
#: themselves, and a BLAS pool per worker would only oversubscribe them (numpy's
#: multi-threaded dot products made one encode about 3 x slower on a busy 2-core machine).
WORKER_THREAD_ENV = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
#: Files handed to each worker ahead of time: enough to keep it busy, few enough to
#: bound memory and let Ctrl-C stop promptly.
QUEUED_PER_WORKER = 2
#: What a batch reports for the files in flight when a worker process vanished.
WORKER_DIED = "a worker process died (killed, or out of memory?) while encoding this file or another in flight"
#: How long connecting to a scheduler address may take.
DASK_CONNECT_TIMEOUT = "10s"
DASK_MISSING = "--scheduler needs Dask's distributed scheduler: pip install 'kmcodec[dask]'"


class BatchError(KmcError):
    """A batch cannot start: nothing to encode, two inputs for one output, an output that cannot be written."""


class SameFileError(BatchError, ParameterError):
    """An output of the batch is one of its inputs: writing it would destroy the input."""


@dataclasses.dataclass(frozen=True)
class FileResult:
    """What became of one input of a batch.

    *error* is None on success, else the one-line reason the file failed
    (the other numbers are then 0 or None).  *psnr* is None for a lossless
    encoding; *k* is the number of palette entries written.
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
def _image_files(folder: str, recursive: bool) -> list[str]:
    """The image files of *folder* (and with *recursive* its subfolders), sorted, hidden names skipped."""

    def wanted(name: str) -> bool:
        return not name.startswith(".") and os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS

    def unreadable(exc: OSError) -> None:
        msg = f"cannot list folder {exc.filename!r}: {exc.strerror or exc}"
        raise BatchError(msg)

    found = []
    for root, dirs, files in os.walk(folder, onerror=unreadable):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".")) if recursive else []
        found += [os.path.join(root, name) for name in sorted(files) if wanted(name)]
    return found


def plan(
    inputs: Iterable[str], output_dir: str, *, recursive: bool = False, other_inputs: Iterable[tuple[str, str]] = ()
) -> list[tuple[str, str]]:
    """Pair every input file with its output, ``output_dir/[SUBFOLDER/]STEM.kmc``; check the outputs before any work.

    A folder in *inputs* contributes its files named with
    :data:`IMAGE_EXTENSIONS` (and with *recursive* those of its subfolders,
    mirrored under *output_dir*); a file is taken whatever its name.  Raises
    :class:`BatchError` if there is nothing to encode, two inputs have one
    output or an output's folder cannot be written, and :class:`SameFileError`
    if an output is an input or one of *other_inputs*, (role, path) pairs of
    other files the batch reads.
    """
    inputs = list(inputs)
    pairs = []
    for path in inputs:
        if os.path.isdir(path):
            pairs += [(f, os.path.relpath(f, path)) for f in _image_files(path, recursive)]
        else:
            pairs.append((path, os.path.basename(path)))
    if not pairs:
        hint = "" if recursive else " (without -r, subfolders are not searched)"
        msg = f"no image files to encode in {', '.join(map(repr, inputs))}{hint}"
        raise BatchError(msg)
    pairs = [(src, os.path.join(output_dir, os.path.splitext(rel)[0] + ".kmc")) for src, rel in pairs]
    read = files_read([("IN", src) for src, _ in pairs] + list(other_inputs))
    owner: dict[str, str] = {}
    clashes = []
    for src, dst in pairs:
        problem = same_file_problem("the output", dst, read, "give another -o DIR")
        if problem is not None:
            raise SameFileError(problem)
        key = os.path.normpath(dst)
        if key in owner:
            clashes.append(f"{owner[key]!r} and {src!r} would both be written to {dst!r}")
        owner[key] = src
    if clashes:
        more = f" (and {len(clashes) - 1} more)" if len(clashes) > 1 else ""
        msg = f"{clashes[0]}{more}"
        raise BatchError(msg)
    checked = set()
    for _, dst in pairs:
        folder = os.path.dirname(dst)
        if folder not in checked:
            checked.add(folder)
            problem = folder_problem(dst, create=True)  # the folders are made as the outputs are written
            if problem is not None:
                msg = f"cannot write {dst!r}: {problem}"
                raise BatchError(msg)
    return pairs


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
    **encode_options: Any,
) -> list[FileResult]:
    """Encode every input (a file or a folder of images) into *output_dir*; one :class:`FileResult` per file.

    The results follow the order of :func:`plan`.  *client*, a
    ``distributed.Client``, runs the batch on its cluster; else *jobs* local
    worker processes do (0: one per CPU).  *encode_options* are
    :func:`kmcodec.encode`'s keyword arguments.  A file that fails has its
    :attr:`FileResult.error` set; the others go on.
    """
    pairs = plan(inputs, output_dir, recursive=recursive)
    order = {dst: i for i, (_, dst) in enumerate(pairs)}
    with contextlib.closing(run(pairs, client=client, jobs=jobs, force=force, **encode_options)) as results:
        return sorted(results, key=lambda r: order[r.output])


def run(
    pairs: list[tuple[str, str]],
    *,
    jobs: int = 1,
    scheduler: str | None = None,
    client: object = None,
    force: bool = False,
    shared_palette: bool = False,
    **encode_options: Any,
) -> Iterator[FileResult]:
    """Encode each (input, output) of *pairs* (:func:`plan`); yield a :class:`FileResult` per file as it ends.

    The work runs in *jobs* local worker processes (0: one per CPU), on a Dask
    *client*, or on a Dask cluster named by *scheduler*: "local" for a new
    LocalCluster of *jobs* processes, or a scheduler's address.  An existing
    output is that file's failure unless *force*.  With *shared_palette*, one
    palette of ``encode_options["colors"]`` entries is fitted to all the inputs
    first.  Closing the iterator early (or Ctrl-C) stops the work; no output
    is ever left half written.
    """
    if shared_palette:
        encode_options["palette"] = _fit_shared_palette([src for src, _ in pairs], encode_options)
    todo = []
    for src, dst in pairs:
        if not force and os.path.lexists(dst):
            yield FileResult.failed(src, dst, f"{dst!r} exists (use --force to overwrite)")
        else:
            todo.append((src, dst))
    if not todo:
        return
    sources = [src for src, _ in todo]
    with contextlib.ExitStack() as stack:
        if client is None and scheduler is None:
            outcomes = _encode_in_workers(sources, encode_options, min(len(todo), jobs or cpu_count()))
        else:
            if client is None:
                client = stack.enter_context(_dask_client(scheduler, min(len(todo), jobs or cpu_count())))
            outcomes = _encode_on_dask(client, sources, encode_options)
        stack.enter_context(contextlib.closing(outcomes))  # stop the work before the client goes
        for position, outcome in outcomes:
            src, dst = todo[position]
            if isinstance(outcome, str):
                yield FileResult.failed(src, dst, outcome)
                continue
            data, size, seconds = outcome
            try:
                os.makedirs(os.path.dirname(dst) or ".", exist_ok=True)
                write_atomic(dst, data, overwrite=force)
            except KmcError as exc:
                yield FileResult.failed(src, dst, str(exc))
            except OSError as exc:
                yield FileResult.failed(src, dst, f"cannot create folder for {dst!r}: {exc.strerror or exc}")
            else:
                yield FileResult.of(src, dst, data, size, seconds)


def _fit_shared_palette(sources: list[str], options: dict[str, Any]) -> object:
    """One palette fitted to every input before any worker starts; an unreadable file stops the batch here."""
    from .codec import shared_palette

    colorspace = {"colorspace": options["colorspace"]} if "colorspace" in options else {}
    try:
        return shared_palette(sources, options.get("colors"), seed=options.get("seed", 0), **colorspace)
    except KmcError as exc:
        msg = f"cannot fit a shared palette: {exc}"
        raise BatchError(msg) from None


def encode_stream(stream: IO[bytes], options: dict[str, Any]) -> bytes:
    """:func:`kmcodec.encode` of an open image file with the keyword arguments *options*."""
    from .codec import encode

    return encode(stream, **options)


def _encode_file(path: str, options: dict[str, Any]) -> tuple[bytes, int, float]:
    """Encode one batch file; return the .kmc bytes, the input's size and the seconds it took.

    Runs in a worker process, so it is a top-level function (picklable under
    the spawn start method) and writes nothing: the parent writes every output.
    A file is handed to the encoder open, not read into memory first: PNG
    files are then read a block of rows at a time.
    """
    start = time.perf_counter()
    with open_input(path) as stream:
        size = os.fstat(stream.fileno()).st_size
        data = encode_stream(stream, options)
    return data, size, time.perf_counter() - start


def quiet_pillow() -> None:
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
    quiet_pillow()
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def cpu_count() -> int:
    """The CPUs this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0)) or 1
    return os.cpu_count() or 1


# ---------------------------------------------------------------------------
# Local worker processes
# ---------------------------------------------------------------------------
#: A finished job: (.kmc bytes, input size, seconds), or the one-line message of its failure.
Outcome = tuple[bytes, int, float] | str


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


def _outcome(future: Future, lost: tuple[type[BaseException], ...]) -> Outcome:
    """A finished job's outcome; *lost* are the exceptions that say the worker running the job died."""
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


def _encode_in_workers(sources: list[str], options: dict[str, Any], workers: int) -> Iterator[tuple[int, Outcome]]:
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
    queue: collections.deque[tuple[int, str]], options: dict[str, Any], workers: int
) -> Generator[tuple[int, Outcome], None, bool]:
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
# A Dask cluster (the optional dask extra)
# ---------------------------------------------------------------------------
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
        raise BatchError(DASK_MISSING) from None
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
            msg = f"cannot {what}: {exc}"
            raise BatchError(msg) from None
        client.run(quiet_pillow)
        yield client


def _encode_task(source: bytes, name: str, options: dict[str, Any]) -> tuple[bytes, int, float]:
    """The Dask task of one batch file: the file's bytes in, its .kmc bytes, input size and seconds out.

    The parent reads the file and writes the output, so the workers need
    kmcodec but not the files (a remote cluster need not share a file system).
    """
    start = time.perf_counter()
    stream = io.BytesIO(source)
    stream.name = name
    return encode_stream(stream, options), len(source), time.perf_counter() - start


def _encode_on_dask(client: Any, sources: list[str], options: dict[str, Any]) -> Iterator[tuple[int, Outcome]]:
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
