"""The benchmarks are not tests (no timing is asserted anywhere): this only runs each benchmark's
measuring function at a tiny size and checks it returns well-formed numbers, so they cannot rot.
Real figures come from ``python -m bench.run_all``."""

from __future__ import annotations

import asyncio
import math
from pathlib import Path

import pytest

from bench import common, dispatch, images, ledger, ledger_shared, loop_lag, memory, workers


def _numbers(*values: float) -> bool:
    return all(isinstance(v, (int, float)) and math.isfinite(v) and v >= 0 for v in values)


def _rows_ok(rows: list[common.Result]) -> None:
    assert rows
    for r in rows:
        assert _numbers(r.figure) and (r.baseline is None or _numbers(r.baseline)), r
        assert r.met in (True, False, None)
    assert common.table(rows) and common.table(rows, markdown=True).startswith("| benchmark")


def test_percentile_and_table_helpers():
    assert common.percentile([1, 2, 3, 4], 50) == 2.5
    assert common.percentile([5], 99) == 5
    assert common.percentile(list(range(101)), 99) == 99
    assert common.Result("x", 2.0, "s", 4.0, "b", "t", True).ratio == 0.5


def test_dispatch_measures_both_sides():
    pytest.importorskip("openai", reason="the baseline needs the bench extra: pip install -e '.[bench]'")
    m = dispatch.measure(4, latency=0.05, reps=1, variants=("shipped", "lifted", "aiohttp"))
    for side in ("shipped", "lifted", "aiohttp", "sdk"):
        assert m[side]["done"] == 4 and not m[side]["errors"]
        assert _numbers(m[side]["wall"], m[side]["cpu_ms_per_job"], m[side]["p50"])
    _rows_ok(dispatch.results(m))


def test_loop_lag_probe_records_samples():
    m = loop_lag.measure(jobs=2, reps=1, latency=0.0, idle_seconds=0.05)
    for variant in loop_lag.VARIANTS:
        assert m[variant]["samples"] > 0 and _numbers(m[variant]["max_ms"], m[variant]["p99_ms"])
    _rows_ok(loop_lag.results(m))


def test_image_paths_and_encode_counting(monkeypatch):
    small_jpeg, small_png = common.camera_jpeg(400, 300), common.big_png(256)
    monkeypatch.setattr(images, "camera_jpeg", lambda: small_jpeg)
    monkeypatch.setattr(images, "big_png", lambda alpha=False: common.big_png(256, alpha=alpha))
    with images.count_encodes() as seen:
        images.plain_fit(small_png, limit=20_000)
    assert seen and all(fmt == "JPEG" for fmt in seen)  # the bot's format for an opaque image
    m = images.measure(reps=1, memory=False)
    assert _numbers(m["input"]["bot_s"], m["input"]["plain_s"], m["output"]["bot_s"])
    _rows_ok(images.results(m))


def test_image_memory_case_runs_in_a_fresh_process():
    got = images.run_worker("bench.images", ["--memory", "input-bot"])
    assert _numbers(got["before_mb"], got["peak_mb"]) and got["peak_mb"] >= got["before_mb"]


def test_ledger_counts_pairs_and_grants_exactly(tmp_path: Path):
    assert _numbers(asyncio.run(ledger.pairs_per_second(tmp_path / "a.db", 20, in_flight=4)))
    assert _numbers(ledger.sync_pairs_per_second(tmp_path / "b.db", 20))
    assert _numbers(asyncio.run(ledger.aiosqlite_pairs_per_second(tmp_path / "f.db", 20)))
    b = ledger.sql_breakdown(tmp_path / "c.db", pairs=10)
    assert b["statements"] >= 4 and _numbers(b["COMMIT"], b["total"])
    fight = asyncio.run(ledger.contention(tmp_path / "d.db", contenders=30, quota=7))
    assert fight["granted"] == 7 and fight["consistent"]
    assert _numbers(ledger_shared.processes_pairs_per_second(tmp_path / "e.db", 10, processes=2, in_flight=2))


def test_ledger_on_postgres_counts_pairs(postgres_run):
    server = postgres_run.server_url
    m = ledger_shared.measure_postgres(pairs=8, reps=1, server=server)
    assert "error" not in m, m
    assert _numbers(m["sequential"], m["in_flight"], m["processes"])
    rows = ledger_shared.postgres_results({"sequential": 1.0, "in_flight": 2.0, "postgres": m})
    _rows_ok(rows)
    down = ledger_shared.measure_postgres(pairs=8, reps=1, server="postgresql://kontext:pw@127.0.0.1:9/x")
    assert down["error"].startswith("not measured") and "pw" not in down["error"]


def test_memory_worker_queues_every_job():
    m = memory.measure(jobs=3, experiment=False)
    r = m["shipped"]
    assert r["jobs"] == 3 and _numbers(r["start_mb"], r["peak_mb"], r["queued_mb"])
    _rows_ok(memory.results(m))


def test_reports_bench_builds_and_times_a_small_history(tmp_path: Path):
    from bench import reports

    path = tmp_path / "r.db"
    assert _numbers(asyncio.run(reports.build_sqlite(path, 3000)))
    m = asyncio.run(reports.measure_reports(path))
    assert m["month_jobs"] > 0 and m["history_rows"] == 10
    assert _numbers(*m["month"].values(), *m["old_month"].values(), m["history"], m["old_history"])
    _rows_ok(reports.results({"jobs": 3000, "sqlite": m}))


def test_workers_dispatch_runs_every_job_over_two_processes():
    m = workers.measure(6, 2, latency=0.05)
    assert m["done"] == 6 and m["failed"] == 0
    assert _numbers(m["wall_s"], m["cpu_ms_per_job"]) and m["wall_s"] >= 0.05
    _rows_ok(workers.results([m]))
