"""kmcodec.batch: resuming, the report, URLs, threads, and losing workers or the whole run mid-batch."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import multiprocessing
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

import kmcodec
from kmcodec import batch
from kmcodec.cli import cli
from kmcodec.container import read_outline
from kmcodec.errors import FormatError


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def _png(seed: int, size=(24, 18)) -> bytes:
    """A small noisy RGB PNG, different for each seed."""
    rng = np.random.default_rng(seed)
    w, h = size
    y, x = np.mgrid[0:h, 0:w]
    img = np.stack([x * 9 + seed * 40, y * 12, (x + y) * 5], axis=-1) + rng.integers(0, 30, (h, w, 3))
    buf = io.BytesIO()
    Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def _images(folder, count: int, size=(24, 18)):
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        (folder / f"img{i:02d}.png").write_bytes(_png(i, size))
    return folder


def _tree(folder) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _leftovers(folder) -> list[str]:
    return [p.name for p in folder.rglob(".kmc-*")]


def _whole(data: bytes) -> bool:
    try:
        read_outline(io.BytesIO(data), max_pixels=None)
    except FormatError:
        return False
    return True


# ---------------------------------------------------------------------------
# Resuming
# ---------------------------------------------------------------------------
def test_a_rerun_skips_whole_outputs_redoes_cut_ones_and_keeps_other_files(runner, tmp_path):
    src = _images(tmp_path / "in", 4)
    out = tmp_path / "out"
    first = runner.invoke(cli, ["encode", str(src), "-o", str(out), "-k", "6"])
    assert first.exit_code == 0, first.output
    before = _tree(out)
    (out / "img01.kmc").write_bytes(before["img01.kmc"][:-5])  # cut short: a copy that did not finish
    (out / "img02.kmc").write_bytes(b"precious")  # someone else's file
    (out / "img03.kmc").unlink()
    again = runner.invoke(cli, ["encode", str(src), "-o", str(out), "-k", "6"])
    assert again.exit_code == 1, again.output
    named = f"{src / 'img02.png'}: {str(out / 'img02.kmc')!r}"
    assert again.stderr == f"kmc: error: {named} exists (use --force to overwrite)\n"
    assert again.stdout.splitlines()[-1].startswith(
        "2 files encoded, 1 skipped (whole outputs there; --force redoes them), 1 failed: "
    )
    after = _tree(out)
    assert after == {**before, "img02.kmc": b"precious"}
    forced = runner.invoke(cli, ["encode", str(src), "-o", str(out), "-k", "6", "--force", "-q"])
    assert forced.exit_code == 0, forced.output
    assert _tree(out) == before
    assert _leftovers(out) == []


# ---------------------------------------------------------------------------
# The report
# ---------------------------------------------------------------------------
def _report(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_report_has_one_line_per_input_and_is_replaced_by_a_rerun(runner, tmp_path):
    src = _images(tmp_path / "in", 3)
    (src / "broken.png").write_bytes(_png(9)[:40])
    out, report = tmp_path / "out", tmp_path / "report.jsonl"
    result = runner.invoke(cli, ["encode", str(src), "-o", str(out), "-k", "5", "--report", str(report)])
    assert result.exit_code == 1, result.output
    lines = _report(report)
    assert sorted(line["input"] for line in lines) == sorted(str(p) for p in src.iterdir())
    assert all(tuple(line) == batch.REPORT_FIELDS for line in lines)
    for line in lines:
        if line["input"].endswith("broken.png"):
            assert "cannot read image" in line["error"] and line["bytes_out"] == 0
        else:
            data = (out / os.path.basename(line["output"])).read_bytes()
            assert line["error"] is None and not line["skipped"]
            assert line["bytes_out"] == len(data) and line["k"] == kmcodec.read_info(data).colors
            assert line["bytes_in"] == os.path.getsize(line["input"]) and line["psnr"] > 10
    again = runner.invoke(cli, ["encode", str(src), "-o", str(out), "-k", "5", "--report", str(report)])
    assert again.exit_code == 1
    assert sorted((line["skipped"], line["error"] is None) for line in _report(report)) == [
        (False, False),
        (True, True),
        (True, True),
        (True, True),
    ]


def test_report_never_replaces_another_file_without_force_nor_an_input(runner, tmp_path):
    src = _images(tmp_path / "in", 1)
    notes = tmp_path / "notes.jsonl"
    notes.write_text("my own notes\n")
    result = runner.invoke(cli, ["encode", str(src), "-o", str(tmp_path / "out"), "--report", str(notes)])
    assert result.exit_code == 1
    assert result.stderr == f"kmc: error: {str(notes)!r} exists and is not a batch report (use --force to overwrite)\n"
    assert notes.read_text() == "my own notes\n" and not (tmp_path / "out").exists()
    image = src / "img00.png"
    result = runner.invoke(cli, ["encode", str(src), "-o", str(tmp_path / "out"), "--report", str(image), "-f"])
    assert result.exit_code == 2 and "--report" in result.stderr and "same file as IN" in result.stderr
    forced = runner.invoke(cli, ["encode", str(src), "-o", str(tmp_path / "out"), "--report", str(notes), "-f"])
    assert forced.exit_code == 0, forced.output
    assert [line["skipped"] for line in _report(notes)] == [False]
    single = runner.invoke(cli, ["encode", str(image), str(tmp_path / "one.kmc"), "--report", str(notes)])
    assert single.exit_code == 2 and "--report is for a batch" in single.stderr


def test_report_in_a_new_folder_is_made_with_it(runner, tmp_path):
    src = _images(tmp_path / "in", 1)
    report = tmp_path / "out/logs/report.jsonl"
    result = runner.invoke(cli, ["encode", str(src), "-o", str(tmp_path / "out"), "--report", str(report), "-q"])
    assert result.exit_code == 0, result.output
    assert [line["output"] for line in _report(report)] == [str(tmp_path / "out/img00.kmc")]


# ---------------------------------------------------------------------------
# URLs, and the API with a Dask client of the program's own
# ---------------------------------------------------------------------------
def test_file_urls_are_local_paths(runner, tmp_path):
    src = _images(tmp_path / "in", 2)
    plain = runner.invoke(cli, ["encode", str(src), "-o", str(tmp_path / "plain"), "-k", "4", "-q"])
    urls = runner.invoke(cli, ["encode", f"file://{src}", "-o", f"file://{tmp_path}/url", "-k", "4", "-q"])
    assert plain.exit_code == 0 and urls.exit_code == 0, urls.output
    assert _tree(tmp_path / "url") == _tree(tmp_path / "plain")


def test_encode_many_reads_and_writes_memory_urls_on_a_dask_client(tmp_path):
    distributed = pytest.importorskip("distributed")
    fsspec = pytest.importorskip("fsspec")
    fs = fsspec.filesystem("memory")
    root = f"/kmc-test-{uuid.uuid4().hex}"
    sources = {f"{root}/in/sub/a{i}.png": _png(i) for i in range(3)}
    for path, data in sources.items():
        fs.pipe_file(path, data)
    fs.pipe_file(f"{root}/in/notes.txt", b"not an image")
    try:
        with (
            distributed.LocalCluster(
                n_workers=1, threads_per_worker=2, processes=False, dashboard_address="127.0.0.1:0"
            ) as cluster,
            distributed.Client(cluster) as client,
        ):
            results = batch.encode_many(
                [f"memory://{root}/in"], f"memory://{root}/out", client=client, recursive=True, colors=5
            )
            again = batch.encode_many([f"memory://{root}/in"], f"memory://{root}/out", client=client, recursive=True)
        assert [r.error for r in results] == [None] * 3
        for i, r in enumerate(results):
            assert r.output == f"memory://{root}/out/sub/a{i}.kmc"
            assert fs.cat_file(r.output) == kmcodec.encode(io.BytesIO(sources[f"{root}/in/sub/a{i}.png"]), 5)
        assert [r.skipped for r in again] == [True] * 3
        assert [r.bytes_out for r in again] == [r.bytes_out for r in results]
    finally:
        fs.rm(root, recursive=True)


# ---------------------------------------------------------------------------
# Tasks
# ---------------------------------------------------------------------------
class _FakeLibc:
    def __init__(self):
        self.calls = []

    def mallopt(self, param, value):
        self.calls.append(("mallopt", param, value))
        return 1

    def malloc_trim(self, pad):
        self.calls.append(("malloc_trim", pad))
        return 1


def test_a_task_keeps_the_heap_under_dasks_trim_setting_and_restores_it_after_the_last(monkeypatch):
    libc = _FakeLibc()
    monkeypatch.setattr(batch, "_glibc", lambda: libc)
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "65536")
    with batch._heap_kept(), batch._heap_kept():  # two tasks in one worker: set once, restored once
        assert libc.calls == [
            ("mallopt", batch.M_MMAP_THRESHOLD, batch.TASK_MMAP_THRESHOLD),
            ("mallopt", batch.M_TRIM_THRESHOLD, batch.TASK_TRIM_THRESHOLD),
        ]
    assert libc.calls[2:] == [
        ("mallopt", batch.M_MMAP_THRESHOLD, batch.GLIBC_MMAP_THRESHOLD),
        ("mallopt", batch.M_TRIM_THRESHOLD, 65536),
        ("malloc_trim", 0),
    ]
    libc.calls.clear()
    with pytest.raises(RuntimeError), batch._heap_kept():  # a failed task restores them too
        raise RuntimeError
    assert [c[0] for c in libc.calls] == ["mallopt"] * 4 + ["malloc_trim"]


def test_without_the_trim_setting_a_task_leaves_malloc_alone(monkeypatch):
    libc = _FakeLibc()
    monkeypatch.setattr(batch, "_glibc", lambda: libc)
    monkeypatch.delenv("MALLOC_TRIM_THRESHOLD_", raising=False)
    with batch._heap_kept():
        pass
    assert libc.calls == []


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt: Linux only")
def test_the_heap_setting_runs_on_this_c_library(monkeypatch):
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "65536")
    with batch._heap_kept():
        assert len(np.ones(1 << 20)) == 1 << 20  # an 8 MiB array from the heap, freed into it
    assert batch._heap_tasks == 0


def test_small_files_share_tasks_and_large_ones_do_not():
    small = [batch.PlannedFile(f"{i}.png", f"{i}.kmc", 1000) for i in range(200)]
    big, unknown = batch.PlannedFile("big.png", "big.kmc", batch.TASK_BYTES), batch.PlannedFile("u", "u.kmc")
    tasks = batch._tasks([*small, big, unknown], workers=1)
    assert (batch.TASK_FILES, batch.TASKS_PER_WORKER) == (32, 4)  # 202 files // 4 is over 32: groups of 32
    assert [len(t) for t in tasks] == [32] * 6 + [1, 1, 8]
    assert [f for t in tasks for f in t] == [*small[:192], big, unknown, *small[192:]]


def test_a_small_batch_gives_every_worker_several_tasks():
    small = [batch.PlannedFile(f"{i}.png", f"{i}.kmc", 1000) for i in range(40)]
    assert [len(t) for t in batch._tasks(small, workers=2)] == [5] * 8  # 40 // (4 tasks x 2 workers)
    assert batch._tasks(small[:3], workers=2) == [[f] for f in small[:3]]


# ---------------------------------------------------------------------------
# Losing a worker, or the whole run
# ---------------------------------------------------------------------------
def _check_whole_batch(results, files, out, reference) -> None:
    """Every file once, none failed, every output the reference bytes, no temporary file left."""
    assert sorted(r.input for r in results) == sorted(f.input for f in files)
    assert [r.error for r in results] == [None] * len(files)
    assert _tree(out) == reference
    assert _leftovers(out) == []


def test_a_pool_worker_killed_mid_batch_costs_only_a_rerun(tmp_path, monkeypatch):
    monkeypatch.setattr(batch, "TASK_BYTES", 1)  # a task per file: tasks are in flight when the worker dies
    src = _images(tmp_path / "in", 10, size=(150, 120))
    reference = {f"img{i:02d}.kmc": kmcodec.encode(str(src / f"img{i:02d}.png"), 16) for i in range(10)}
    files = batch.plan([str(src)], str(tmp_path / "out"))
    results = []
    with contextlib.closing(batch.run(files, jobs=2, colors=16)) as running:
        for result in running:
            results.append(result)
            if len(results) == 1:
                (victim, *_) = multiprocessing.active_children()
                os.kill(victim.pid, signal.SIGKILL)
                assert len(results) < len(files)  # the worker died with work in flight
    assert len(results) == 10 and not victim.is_alive()
    _check_whole_batch(results, files, tmp_path / "out", reference)


@pytest.mark.parametrize(
    "start", ["spawn", batch.LOCAL_START_METHOD or "spawn"]
)  # a deployment's, and --scheduler local's
def test_a_dask_worker_killed_mid_batch_costs_only_a_rerun(tmp_path, monkeypatch, start):
    distributed = pytest.importorskip("distributed")
    dask = pytest.importorskip("dask")
    monkeypatch.setitem(dask.config.config["distributed"]["worker"], "multiprocessing-method", start)
    monkeypatch.setattr(batch, "TASK_BYTES", 1)  # a task per file: tasks are in flight when the worker dies
    src = _images(tmp_path / "in", 10, size=(150, 120))
    reference = {f"img{i:02d}.kmc": kmcodec.encode(str(src / f"img{i:02d}.png"), 16) for i in range(10)}
    files = batch.plan([str(src)], str(tmp_path / "out"))
    report = tmp_path / "report.jsonl"
    results = []
    with (
        distributed.LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            dashboard_address="127.0.0.1:0",
            silence_logs=logging.CRITICAL,
        ) as cluster,
        distributed.Client(cluster) as client,
        batch.reporting(str(report)) as record,
    ):
        pids = client.run(os.getpid)
        for result in batch.run(files, client=client, colors=16):
            results.append(result)
            record(result)
            if len(results) == 1:
                # the worker that has a task running: it dies with it
                victim = next(address for address, keys in client.processing().items() if keys)
                os.kill(pids[victim], signal.SIGKILL)
    assert len(results) == 10
    with pytest.raises(ProcessLookupError):
        os.kill(pids[victim], 0)
    _check_whole_batch(results, files, tmp_path / "out", reference)
    assert sorted(line["input"] for line in _report(report)) == sorted(f.input for f in files)


def test_ctrl_c_exits_130_and_leaves_only_whole_outputs(tmp_path):
    src = _images(tmp_path / "in", 40, size=(160, 160))
    out = tmp_path / "out"
    command = [sys.executable, "-m", "kmcodec", "encode", str(src), "-o", str(out), "--jobs", "2", "-k", "64"]
    # Ctrl-C as from a terminal, even where this suite runs with SIGINT ignored (started with `&` by a
    # script, whose children inherit that): Python raises KeyboardInterrupt only where SIGINT was default.
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.monotonic() + 60
    while not list(out.glob("*.kmc")) and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, (stdout, stderr)
    assert stderr.splitlines()[-1] == "kmc: error: interrupted"
    written = _tree(out)
    assert 0 < len(written) < 40
    assert all(_whole(data) for data in written.values())
    assert _leftovers(out) == []


# ---------------------------------------------------------------------------
# Object storage: an S3-compatible server on loopback
# ---------------------------------------------------------------------------
@pytest.fixture
def s3_bucket(monkeypatch):
    """A bucket on moto's S3 server on loopback, the environment pointing every S3 client at it."""
    server_module = pytest.importorskip("moto.server", reason="the S3 test needs moto[server] (the test extra)")
    s3fs = pytest.importorskip("s3fs", reason="the S3 test needs s3fs (the test extra)")
    server = server_module.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    try:
        server.start()
    except OSError as exc:
        pytest.skip(f"moto's S3 server cannot start on loopback: {exc}")
    host, port = server.get_host_and_port()
    environment = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL_S3": f"http://{host}:{port}",  # read by the spawned workers' clients too
    }
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    fs = s3fs.S3FileSystem(skip_instance_cache=True)
    fs.mkdir("kmc-test")
    try:
        yield fs
    finally:
        server.stop()


def test_a_batch_reads_and_writes_s3_in_its_workers(runner, tmp_path, s3_bucket):
    fs = s3_bucket
    sources = {f"kmc-test/in/a{i}.png": _png(i) for i in range(3)}
    for path, data in sources.items():
        fs.pipe_file(path, data)
    report = tmp_path / "report.jsonl"
    args = ["encode", "s3://kmc-test/in", "-o", "s3://kmc-test/out", "-k", "6", "--jobs", "2"]
    result = runner.invoke(cli, [*args, "--report", str(report)])
    assert result.exit_code == 0, result.output
    fs.invalidate_cache()
    for i in range(3):
        assert fs.cat_file(f"kmc-test/out/a{i}.kmc") == kmcodec.encode(io.BytesIO(sources[f"kmc-test/in/a{i}.png"]), 6)
    assert sorted(line["output"] for line in _report(report)) == [f"s3://kmc-test/out/a{i}.kmc" for i in range(3)]
    fs.pipe_file("kmc-test/out/a1.kmc", fs.cat_file("kmc-test/out/a1.kmc")[:-3])  # cut short
    again = runner.invoke(cli, args)
    assert again.exit_code == 0, again.output
    assert again.stdout.splitlines()[-1].startswith("1 file encoded, 2 skipped ")
    fs.invalidate_cache()
    assert fs.cat_file("kmc-test/out/a1.kmc") == kmcodec.encode(io.BytesIO(sources["kmc-test/in/a1.png"]), 6)
    assert sorted(fs.ls("kmc-test/out")) == [f"kmc-test/out/a{i}.kmc" for i in range(3)]  # no temporary object


@pytest.mark.parametrize(
    ("options", "needle"),
    [({"colors": 0}, "colors must be an integer"), ({"target_psnr": 30, "max_bytes": 900}, "cannot be used together")],
)
def test_encode_many_checks_its_options_once_before_any_file(tmp_path, options, needle):
    """Bad options are the caller's fault: one ParameterError up front, not a failure on every file."""
    src = tmp_path / "in.png"
    src.write_bytes(_png(1))
    with pytest.raises(kmcodec.ParameterError, match=needle):
        batch.encode_many([str(src)], str(tmp_path / "out"), jobs=1, **options)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_encode_many_with_a_shared_palette_and_a_target_is_refused(tmp_path):
    src = tmp_path / "in.png"
    src.write_bytes(_png(2))
    with pytest.raises(kmcodec.ParameterError, match="no palette size to choose"):
        batch.encode_many([str(src)], str(tmp_path / "out"), jobs=1, shared_palette=True, target_psnr=30)


def test_encode_file_onto_its_input_raises_same_file_error_even_with_force(tmp_path):
    path = tmp_path / "in.png"
    Image.fromarray(np.zeros((4, 5, 3), np.uint8)).save(path)
    before = path.read_bytes()
    for output in (str(path), f"file://{path}"):
        with pytest.raises(batch.SameFileError, match="same file as IN"):
            batch.encode_file(str(path), output, force=True, colors=4)
    with pytest.raises(batch.SameFileError, match="same file as IN"):
        batch.encode_file("memory://kmc/in.png", "memory://kmc/in.png", force=True)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["in.png"]


def test_the_pixel_limit_of_this_process_reaches_the_spawned_workers(tmp_path, monkeypatch):
    """Spawned workers start with the default limit; the batch takes this process's and sends it to them."""
    src = tmp_path / "in"
    _images(src, 2)  # 24 x 18 = 432 pixels each
    monkeypatch.setattr(kmcodec, "MAX_IMAGE_PIXELS", 431)
    results = batch.encode_many([str(src)], str(tmp_path / "out"), jobs=2)
    assert [
        r.error.endswith("exceeds the limit of 431 (raise max_pixels or kmcodec.MAX_IMAGE_PIXELS to allow it)")
        for r in results
    ] == [True, True]
    results = batch.encode_many([str(src)], str(tmp_path / "out"), jobs=2, max_pixels=432)
    assert [r.error for r in results] == [None, None]


@pytest.mark.parametrize("role", ["input", "output"])
def test_write_report_never_replaces_a_file_of_the_batch_even_with_force(tmp_path, role):
    src = _images(tmp_path / "in", 2)
    results = batch.encode_many([str(src)], str(tmp_path / "out"))
    victim = getattr(results[1], role)
    before = Path(victim).read_bytes()
    with pytest.raises(batch.SameFileError, match=f"is the {role} "):
        batch.write_report(results, victim, force=True)
    assert Path(victim).read_bytes() == before
    assert _leftovers(tmp_path) == []
