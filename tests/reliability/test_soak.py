"""A short soak (bench/soak.py): 200 jobs, 50 at once, a fault armed before one job in three.
Every job is accounted for and the books balance; memory is the full soak's business."""

from __future__ import annotations

from pathlib import Path

from bench.common import emulator
from bench.soak import soak

JOBS = 200


async def test_a_short_soak_accounts_for_every_job_and_balances_the_books(tmp_path: Path) -> None:
    with emulator() as emu:
        report = await soak(emu.url, jobs=JOBS, concurrency=50, fault_rate=0.33, seed=7, workdir=tmp_path)
    assert report.errors == [] and report.unaccounted == 0, report.text()
    assert report.succeeded + report.failed == JOBS
    assert report.refunded == report.failed and report.settled == report.succeeded
    assert report.unfinished == 0
    assert report.ledger_problems == []
    assert report.log_errors == 0, report.text()  # no "failed unexpectedly": every fault was mapped
    assert report.faults_armed > 40 and report.failed > 0 and report.succeeded > JOBS // 2
    assert report.ok(check_memory=False), report.text()
