"""tools/bench_coldstart.py: its commands, its compile recorder, its report, and one real (numba-free) run."""

from __future__ import annotations

from pathlib import Path

import pytest
from toolmodules import load_tool

VALID = Path(__file__).resolve().parent.parent / "fixtures" / "valid"


@pytest.fixture(scope="module")
def bench():
    return load_tool("bench_coldstart")


def test_commands_are_the_readme_first_command(bench, tmp_path):
    steps = bench.commands(bench.DEMO, tmp_path, 32, None)
    assert [name for name, _ in steps] == ["encode", "inspect", "decode"]
    encode, inspect, decode = (args for _, args in steps)
    assert encode == ["encode", str(bench.DEMO), str(tmp_path / "demo.kmc"), "-k", "32", "--force"]
    assert inspect == ["inspect", str(tmp_path / "demo.kmc")]
    assert decode[:2] == ["decode", str(tmp_path / "demo.kmc")]
    assert bench.DEMO.is_file()
    rdo = bench.commands(bench.DEMO, tmp_path, 256, 1.5)[0][1]
    assert rdo[-4:] == ["256", "--force", "--rdo", "1.5"]


def test_recording_compiles_counts_helpers_in_their_caller_and_unpatches(bench):
    from numba import njit
    from numba.core import dispatcher

    @njit
    def helper(x):
        return x + 1

    @njit
    def kernel(x):
        return helper(x) * 2

    original = dispatcher.Dispatcher.compile
    with bench.recording_compiles() as records:
        assert kernel(3) == 8
        assert kernel(4) == 10  # compiled already: no record
    assert dispatcher.Dispatcher.compile is original
    assert [r["kernel"].rsplit(".", 1)[1] for r in records] == ["kernel"]
    assert records[0]["signature"] == "(int64,)"
    assert records[0]["wall"] >= 0 and records[0]["cpu"] >= 0


def _fake_runs(bench):
    def run(wall, cpu):
        return {"wall": wall, "cpu": cpu}

    rounds = [(10.0, 8.0, 1.0), (12.0, 9.0, 1.4), (11.0, 7.0, 1.2)]
    return [
        {
            "cold": {"encode": run(w, c), "inspect": run(0.3, 0.2), "decode": run(w / 2, c / 2)},
            "warm": {"encode": run(v, v), "inspect": run(0.3, 0.2), "decode": run(v, v)},
        }
        for w, c, v in rounds
    ]


def test_summary_gives_median_and_best(bench):
    rows = bench.summary(_fake_runs(bench), ["encode", "inspect", "decode"])
    assert [r["command"] for r in rows] == ["encode", "inspect", "decode"]
    assert rows[0]["cold_wall"] == {"median": 11.0, "best": 10.0}
    assert rows[0]["cold_cpu"] == {"median": 8.0, "best": 7.0}
    assert rows[2]["cold_wall"] == {"median": 5.5, "best": 5.0}
    assert rows[0]["warm_cpu"] == {"median": 1.2, "best": 1.0}


def test_report_lists_commands_and_kernels(bench, tmp_path):
    steps = bench.commands(Path("/x/demo.png"), tmp_path, 32, None)
    compiles = [
        {"kernel": "kmcodec._cm_kernels.encode_kernel", "signature": "(a,)", "wall": 4.0, "cpu": 3.0},
        {"kernel": "kmcodec._quant_kernels.count", "signature": "(a,)", "wall": 0.5, "cpu": 0.4},
        {"kernel": "kmcodec._quant_kernels.count", "signature": "(b,)", "wall": 0.5, "cpu": 0.4},
    ]
    table = bench.kernel_table(compiles)
    assert [(k["kernel"].rsplit(".", 1)[1], k["signatures"]) for k in table] == [("encode_kernel", 1), ("count", 2)]
    assert table[1]["cpu"] == pytest.approx(0.8)
    profile = {
        "encode": {"wall": 9.0, "cpu": 8.0, "compiles": compiles},
        "inspect": {"wall": 0.3, "cpu": 0.2, "compiles": []},
        "decode": {"wall": 5.0, "cpu": 4.0, "compiles": compiles[:1]},
    }
    lines = bench.report({"runs": _fake_runs(bench), "kernels": profile, "load": [2.0, 3.5]}, steps)
    text = "\n".join(lines)
    assert "median (best) of 3 rounds; load average 2.0 before, 3.5 after" in text
    assert (
        "| kmc encode demo.png demo.kmc -k 32 --force | 11.00 (10.00) | 8.00 (7.00) | 1.20 (1.00) | 1.20 (1.00) |"
        in text
    )
    assert "encode: process 9.00 wall, 8.00 CPU; compiling 2 kernels 3.80 CPU" in text
    assert "inspect: process 0.30 wall, 0.20 CPU; compiling 0 kernels 0.00 CPU" in text
    assert "kmcodec._quant_kernels.count  x2" in text


def test_run_round_runs_kmc_in_fresh_processes(bench, tmp_path):
    # kmc inspect compiles nothing, so this real run stays quick.
    steps = [("inspect", ["inspect", str(next(VALID.glob("*.kmc")))])]
    cache = tmp_path / "cache"
    cache.mkdir()
    plain = bench.run_round(steps, cache)
    assert set(plain["inspect"]) == {"wall", "cpu"}
    recorded = bench.run_round(steps, cache, record_dir=tmp_path)
    assert recorded["inspect"]["compiles"] == []
    with pytest.raises(SystemExit, match=r"kmc inspect .* failed \(exit 1\)"):
        bench.run_round([("inspect", ["inspect", str(tmp_path / "missing.kmc")])], cache)
