"""kmc encode --scheduler: the batch on a Dask cluster (the optional dask extra)."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from kmcodec.cli import cli


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def _batch(folder, count: int = 5):
    """*count* small noisy RGB images, each a different size, and a PNG cut off half way."""
    folder.mkdir(parents=True)
    for i in range(count):
        rng = np.random.default_rng(i)
        y, x = np.mgrid[0 : 13 + i, 0:21]
        img = np.stack([x * 11, y * 17 + i * 30, (x + y) * 4], axis=-1) + rng.integers(0, 40, (13 + i, 21, 3))
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(folder / f"img{i}.png")
    whole = (folder / "img0.png").read_bytes()
    (folder / "broken.png").write_bytes(whole[: len(whole) // 2])
    return folder


def _tree(folder) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_scheduler_local_writes_the_bytes_of_the_local_run_and_reports_the_broken_file(runner, tmp_path):
    pytest.importorskip("distributed")
    src = _batch(tmp_path / "in")
    results, trees = [], []
    for name, extra in (("jobs", ["--jobs", "2"]), ("dask", ["--scheduler", "local", "--jobs", "2"])):
        out = tmp_path / name
        result = runner.invoke(cli, ["encode", str(src), "-o", str(out), "-k", "6", *extra])
        results.append(result)
        trees.append(_tree(out))
    for result in results:
        assert result.exit_code == 1, result.output
        assert "Traceback" not in result.output
        (error,) = result.stderr.strip().splitlines()
        assert error.startswith(f"kmc: error: cannot read image {str(src / 'broken.png')!r}: ") and "truncated" in error
        assert error.count("broken.png") == 1
        assert result.stdout.strip().splitlines()[-1].startswith("5 files encoded, 1 failed: ")
    assert len(trees[0]) == 5
    assert trees[1] == trees[0]
    # resumed as in the local run: a whole output is skipped, then replaced with --force
    again = runner.invoke(cli, ["encode", str(src / "img1.png"), "-o", str(tmp_path / "dask"), "--scheduler", "local"])
    assert again.exit_code == 0 and again.stdout.startswith("0 files encoded, 1 skipped ")
    forced = ["encode", str(src / "img1.png"), "-o", str(tmp_path / "dask"), "--scheduler", "local", "-f", "-k", "3"]
    assert runner.invoke(cli, forced).exit_code == 0
    assert (tmp_path / "dask/img1.kmc").read_bytes() != trees[0]["img1.kmc"]


def test_scheduler_address_runs_on_that_cluster(runner, tmp_path):
    distributed = pytest.importorskip("distributed")
    src = _batch(tmp_path / "in", count=3)
    local = runner.invoke(cli, ["encode", str(src), "-o", str(tmp_path / "local"), "-k", "5"])
    assert local.exit_code == 1, local.output
    with (
        distributed.LocalCluster(
            n_workers=1, threads_per_worker=2, processes=False, dashboard_address="127.0.0.1:0"
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        args = ["encode", str(src), "-o", str(tmp_path / "remote"), "-k", "5", "--scheduler", cluster.scheduler_address]
        result = runner.invoke(cli, args)
        # the files went through that cluster: its scheduler ran the encode tasks (prefix: the name sans "_")
        prefixes = client.run_on_scheduler(lambda dask_scheduler: list(dask_scheduler.task_prefixes))
    assert result.exit_code == 1, result.output
    assert result.stderr == local.stderr
    assert _tree(tmp_path / "remote") == _tree(tmp_path / "local")
    assert "encode_task" in prefixes


def test_scheduler_without_dask_is_one_line(runner, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)  # import distributed raises ImportError
    src = _batch(tmp_path / "in", count=1)
    result = runner.invoke(cli, ["encode", str(src), "-o", str(tmp_path / "out"), "--scheduler", "local"])
    assert result.exit_code == 1
    assert result.stderr == "kmc: error: --scheduler needs Dask's distributed scheduler: pip install 'kmcodec[dask]'\n"
    assert not (tmp_path / "out").exists()


def test_unreachable_scheduler_is_one_line(runner, tmp_path, monkeypatch):
    pytest.importorskip("distributed")
    monkeypatch.setattr("kmcodec.batch.DASK_CONNECT_TIMEOUT", "1s")
    src = _batch(tmp_path / "in", count=1)
    result = runner.invoke(cli, ["encode", str(src), "-o", str(tmp_path / "out"), "--scheduler", "tcp://127.0.0.1:9"])
    assert result.exit_code == 1
    (line,) = result.stderr.splitlines()
    assert line.startswith("kmc: error: cannot connect to the Dask scheduler tcp://127.0.0.1:9: ")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["in.png", "out.kmc", "--scheduler", "local"], "--scheduler runs a batch"),
        (["in.png", "-o", "out", "--scheduler", "localhost"], "use local or a scheduler address"),
        (["in.png", "-o", "out", "--scheduler", "tcp://h:8786", "--jobs", "2"], "--jobs sizes a --scheduler local"),
    ],
)
def test_scheduler_misuse_exits_2(runner, tmp_path, monkeypatch, args, needle):
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(cli, ["encode", *args])
    assert result.exit_code == 2
    assert needle in result.stderr


def test_scheduler_local_interrupted_exits_130_and_writes_nothing(runner, tmp_path, monkeypatch):
    distributed = pytest.importorskip("distributed")

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(distributed.Client, "submit", interrupt)
    src = _batch(tmp_path / "in", count=2)
    result = runner.invoke(cli, ["encode", str(src), "-o", str(tmp_path / "out"), "--scheduler", "local"])
    assert result.exit_code == 130
    assert result.stderr.strip() == "kmc: error: interrupted"
    assert not (tmp_path / "out").exists()
