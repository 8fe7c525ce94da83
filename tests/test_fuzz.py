"""A short, deterministic run of tools/fuzz.py, the fuzzer's own checks, and its regression vectors.

The long campaigns run by hand (``python tools/fuzz.py --count 100000``);
this run is the same harness on fixed seeds, small enough for every test
run (about 8 s on an idle machine), supervised as campaigns are: its time
limit is on CPU time, so a loaded machine cannot trip it, and a child that
hangs where the per-input alarm cannot reach (compiled code) is killed and
reported.  Inputs kept from campaigns (crashers,
and the heaviest inputs) are in ``fixtures/fuzz-regressions/`` with the error
the decoder must give.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
import random
import signal
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from toolmodules import load_tool

import kmcodec

ROOT = Path(__file__).resolve().parent.parent
REGRESSIONS = ROOT / "fixtures" / "fuzz-regressions"


fuzz = load_tool("fuzz")

#: Fast inputs: outcome, time and resident set only.  The slowest input takes
#: well under a second of CPU time, a twentieth of the limit (load adds wall
#: time, not CPU time; the wall limit is 10 times wider still).
SHORT_RUN = fuzz.Config(count=800, seed=1, time_limit=20.0, max_rss_mb=256, bomb_mib=8, trace_memory=False, progress=0)
#: Fewer inputs with every allocation traced (tracemalloc slows the decoder about 6 times).
TRACED_RUN = dataclasses.replace(SHORT_RUN, count=250, seed=2, trace_memory=True)


def _run(config: fuzz.Config) -> fuzz.Stats:
    """A supervised campaign (children forked) where fork exists, else one in this process."""
    if not hasattr(os, "fork"):
        return fuzz.run_campaign(config)
    return fuzz.run_supervised(config, log=lambda line: None)


@pytest.fixture(scope="module")
def short_run():
    return _run(SHORT_RUN)


@pytest.fixture(scope="module")
def traced_run():
    return _run(TRACED_RUN)


# ---------------------------------------------------------------------------
# The short run
# ---------------------------------------------------------------------------
def test_short_run_has_no_escape_hang_or_memory_failure(short_run):
    assert short_run.run == SHORT_RUN.count, short_run.report(SHORT_RUN)
    assert not short_run.failures, short_run.report(SHORT_RUN)


def test_traced_run_memory_per_input_is_bounded(traced_run):
    """Every input's traced peak is within the budget its accepted header justifies.

    Inputs whose header the decoder refuses justify only the base budget
    (64 MiB); so do the vectors' own tiny sizes.
    """
    assert traced_run.run == TRACED_RUN.count, traced_run.report(TRACED_RUN)
    assert not traced_run.failures, traced_run.report(TRACED_RUN)
    worst = traced_run.worst_budget_share
    assert 0 < worst.traced_peak <= worst.budget
    assert traced_run.most_rss.rss_growth <= TRACED_RUN.max_rss


def test_short_run_reaches_past_the_crc_checks(short_run):
    """Recomputed CRCs let the damage reach the parser and the strip decoders."""
    outcomes = short_run.outcomes
    assert outcomes["ChecksumError"] < 0.1 * short_run.run
    assert outcomes["FormatError"] > 0.5 * short_run.run
    for outcome in ("decoded", "TruncatedError", "UnsupportedFeatureError"):
        assert outcomes[outcome] > 0, outcome
    assert set(short_run.mutations) >= set(fuzz.MUTATIONS)


# ---------------------------------------------------------------------------
# The harness itself
# ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def mutator():
    return fuzz.Mutator(fuzz.load_corpus(fuzz.DEFAULT_CORPUS), bomb_bytes=fuzz.MIB)


def test_inputs_are_a_function_of_seed_and_index(mutator):
    for index in (0, 1, 77):
        assert mutator.generate(5, index) == mutator.generate(5, index)
    assert mutator.generate(5, 0) != mutator.generate(6, 0)


def test_fix_crcs_lets_payload_damage_through_to_the_parser():
    data = bytearray((ROOT / "fixtures" / "valid" / "rgb-3colors-k3-stored.kmc").read_bytes())
    _, chunks, _ = fuzz.split_file(bytes(data))
    assert [c.type for c in chunks] == [b"HEAD", b"made", b"PALT", b"STRP", b"DONE"]
    data[12 + 8 + 16] = 9  # HEAD layout
    with pytest.raises(kmcodec.ChecksumError):
        kmcodec.decode(bytes(data))
    with pytest.raises(kmcodec.FormatError, match="layout") as caught:
        kmcodec.decode(fuzz.fix_crcs(bytes(data)))
    assert type(caught.value) is kmcodec.FormatError


def test_fix_crcs_follows_a_lying_length():
    data = (ROOT / "fixtures" / "valid" / "rgb-3colors-k3-stored.kmc").read_bytes()
    lying = data[:12] + (18 + 12).to_bytes(4, "big") + data[16:]  # HEAD swallows the next chunk's head
    with pytest.raises(kmcodec.FormatError, match="HEAD chunk is 30 bytes"):
        kmcodec.decode(fuzz.fix_crcs(lying))


def test_memory_budget_grows_only_with_an_accepted_header(mutator):
    data = (ROOT / "fixtures" / "valid" / "rgb-3colors-k3-stored.kmc").read_bytes()
    assert fuzz.memory_budget(data) == fuzz.BASE_BUDGET + 2 * 5 * 3 * 3 + 16 * 3 * 5
    huge = fuzz.Declared(2**14, 2**14, 3, 2**13, 4, 0)
    accepted = fuzz.fix_crcs(data[:20] + huge.build() + data[38:])
    assert fuzz.memory_budget(accepted) > 2**30
    refused = fuzz.fix_crcs(data[:20] + huge._replace(height=2**15).build() + data[38:])  # over max_pixels
    assert fuzz.memory_budget(refused) == fuzz.BASE_BUDGET


def test_time_allowance_grows_only_with_an_accepted_header():
    """A valid one-colour 16,777,215 x 7 image (126 bytes once) earns its decode time; a refused header nothing."""
    data = (ROOT / "fixtures" / "valid" / "rgb-3colors-k3-stored.kmc").read_bytes()
    assert fuzz.time_allowance(data) == pytest.approx(fuzz.TIME_PER_PIXEL * 5 * 3)
    wide = fuzz.Declared(16_777_215, 7, 1, 7, 3, 6)
    assert fuzz.time_allowance(data[:20] + wide.build() + data[38:]) == pytest.approx(11.74, abs=0.01)
    refused = data[:20] + wide._replace(height=2**15).build() + data[38:]  # over max_pixels
    assert fuzz.time_allowance(refused) == 0 == fuzz.time_allowance(b"not a kmc file")


def test_check_input_reports_an_escape(monkeypatch):
    def broken(data):
        return [][0]

    monkeypatch.setattr(kmcodec, "decode", broken)
    r = fuzz.check_input(b"anything", time_limit=5)
    assert r.outcome == "escape"
    assert "IndexError" in r.detail


def test_check_input_interrupts_a_hang(monkeypatch):
    def spin(data):
        while True:
            pass

    monkeypatch.setattr(kmcodec, "decode", spin)
    start = time.perf_counter()
    r = fuzz.check_input(b"anything", time_limit=0.2, wall_limit=60)
    assert r.outcome == "hang"
    assert r.detail.startswith("CPU time limit tripped")
    assert 0.1 < r.cpu_seconds < 5  # the kernel's timer samples CPU time more coarsely than process_time
    assert time.perf_counter() - start < 30


def test_check_input_time_limit_is_on_cpu_time(monkeypatch):
    """Time spent not computing (what load adds) is not a hang; the wall limit stops an input that blocks."""

    def wait(data):
        time.sleep(0.3)
        raise kmcodec.FormatError("slow, but not computing")

    monkeypatch.setattr(kmcodec, "decode", wait)
    r = fuzz.check_input(b"anything", time_limit=0.1, wall_limit=60)
    assert r.outcome == "FormatError", r.detail
    assert r.seconds >= 0.3 > r.cpu_seconds
    r = fuzz.check_input(b"anything", time_limit=0.1, wall_limit=0.1)
    assert r.outcome == "hang"
    assert r.detail.startswith("wall time limit tripped")


@pytest.mark.skipif(not os.path.exists("/proc/self/clear_refs"), reason="the resident set is measured on Linux")
def test_failure_report_names_the_input_the_limit_and_the_value(monkeypatch):
    def hog(data):
        np.ones(fuzz.BASE_BUDGET, np.uint8)  # over glibc's largest mmap threshold: fresh pages
        return "FormatError"

    monkeypatch.setattr(fuzz, "_decode_all", hog)
    data = (ROOT / "fixtures" / "valid" / "rgb-3colors-k3-stored.kmc").read_bytes()
    r = fuzz.check_input(data, time_limit=5, max_rss=fuzz.MIB, index=7, mutations=("bit-flip", "crc-fixed"))
    stats = fuzz.Stats()
    stats.add(r)
    report = stats.report(dataclasses.replace(SHORT_RUN, seed=3))
    headline = (
        f"--- memory: seed 3, index 7 (bit-flip + crc-fixed; {len(data)} bytes; HEAD 5 x 3, 3 colours, layout 3, "
        "method 0); replay: python tools/fuzz.py --seed 3 --replay 7"
    )
    assert headline in report
    assert f"memory limit tripped: RSS growth {r.rss_growth / fuzz.MIB:.1f} MiB over the limit 1 MiB" in report


def test_check_input_reports_memory_over_budget(monkeypatch):
    def hog(data):
        np.ones(fuzz.BASE_BUDGET + fuzz.MIB, np.uint8)
        raise kmcodec.FormatError("refused, but too late")

    monkeypatch.setattr(kmcodec, "decode", hog)
    tracemalloc.start()
    try:
        r = fuzz.check_input(b"no header", time_limit=5)
    finally:
        tracemalloc.stop()
    assert r.outcome == "memory"
    assert r.traced_peak > fuzz.BASE_BUDGET


@pytest.mark.skipif(not hasattr(os, "fork"), reason="the test patches the worker, which needs fork")
def test_supervisor_survives_a_dying_worker(monkeypatch):
    """A worker that dies is replaced; its input is counted as a crash and the run goes on."""
    check_input = fuzz.check_input

    def dies_at_three(data, **kw):
        if kw["index"] == 3:
            os.kill(os.getpid(), signal.SIGKILL)
        return check_input(data, **kw)

    monkeypatch.setattr(fuzz, "check_input", dies_at_three)
    config = dataclasses.replace(SHORT_RUN, count=8, bomb_mib=1, progress=0)
    stats = fuzz.run_supervised(config, log=lambda line: None)
    assert stats.run == 8
    assert [(r.index, r.outcome) for r in stats.failures] == [(3, "crash")]


@pytest.mark.skipif(not os.path.exists("/proc/self/stat"), reason="the worker's CPU time is read from /proc")
@pytest.mark.skipif(not hasattr(os, "fork"), reason="the test patches the worker, which needs fork")
def test_supervisor_kills_a_hang_in_c_code(monkeypatch):
    """An endless loop in C, which no alarm interrupts, fails the campaign as a hang; the run goes on."""
    check_input = fuzz.check_input

    def hangs_at_three(data, **kw):
        if kw["index"] == 3:
            sum(itertools.repeat(0))  # never returns, never looks at signals: like a compiled kernel
        return check_input(data, **kw)

    monkeypatch.setattr(fuzz, "check_input", hangs_at_three)
    monkeypatch.setattr(fuzz, "STALL_GRACE", 0.5)
    config = dataclasses.replace(SHORT_RUN, count=6, time_limit=0.5, wall_limit=60, bomb_mib=1)
    stats = fuzz.run_supervised(config, log=lambda line: None)
    assert stats.run == 6
    assert [(r.index, r.outcome) for r in stats.failures] == [(3, "hang")]
    assert stats.failures[0].detail.startswith("CPU time limit tripped: worker computed")


def test_every_mutation_runs_on_every_vector(mutator):
    """No mutation may fail on a seed, or on input that is not a .kmc file at all."""
    for name, (_, mutate) in fuzz.MUTATIONS.items():
        for i, data in enumerate([*mutator.corpus, b"", b"\x8bKMC\r\n\x1a\n", bytes(40)]):
            out = mutate(mutator, random.Random(f"{name}/{i}"), data)
            assert isinstance(out, bytes), name


# ---------------------------------------------------------------------------
# Regression vectors: inputs that once failed a campaign
# ---------------------------------------------------------------------------
def _regressions() -> list[dict]:
    index = REGRESSIONS / "index.json"
    return json.loads(index.read_text(encoding="utf-8"))["vectors"] if index.exists() else []


def test_regression_index_lists_every_file():
    listed = {e["file"] for e in _regressions()}
    on_disk = {p.name for p in REGRESSIONS.glob("*.kmc")}
    assert listed == on_disk


@pytest.mark.parametrize("entry", _regressions(), ids=lambda e: e["file"])
def test_regression_vector(entry):
    data = (REGRESSIONS / entry["file"]).read_bytes()
    expected = entry["error"]
    tracemalloc.start()
    try:
        r = fuzz.check_input(data, time_limit=SHORT_RUN.time_limit, max_rss=SHORT_RUN.max_rss)
    finally:
        tracemalloc.stop()
    assert r.outcome not in fuzz.FAILURES, r.detail
    if expected == "decoded":
        kmcodec.decode(data)
        return
    with pytest.raises(kmcodec.KmcError) as caught:
        kmcodec.decode(data)
    assert type(caught.value).__name__ == expected
