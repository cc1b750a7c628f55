"""Where the PostgreSQL tests get their server (tests/pg.py): KONTEXT_TEST_POSTGRES, else a
throwaway cluster started on the spot, else a failure with one reason -- never a skip."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import asyncpg

from tests.pg import run_sync

ROOT = Path(__file__).resolve().parents[2]
DEAD = "postgresql://postgres@127.0.0.1:9/postgres"  # port 9: nothing listens


def test_the_run_database_answers(postgres_run):
    async def probe() -> int:
        conn = await asyncpg.connect(postgres_run.url)
        try:
            return await conn.fetchval("SELECT 1")
        finally:
            await conn.close()

    assert run_sync(probe()) == 1
    assert postgres_run.database.startswith("kontext_test_")
    if os.environ.get("KONTEXT_TEST_EXPECT_THROWAWAY") == "1":  # set by the test below
        assert postgres_run.cluster is not None and postgres_run.url.endswith(
            f"?host={postgres_run.cluster.folder}"
        )


def _pytest_alone(**env: str) -> subprocess.CompletedProcess[str]:
    """This file's first test in a pytest of its own, with ``env`` on top of ours."""
    test = f"{Path(__file__).relative_to(ROOT)}::test_the_run_database_answers"
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-o", "addopts=", "-q", test],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_with_no_server_answering_a_throwaway_cluster_is_started():
    done = _pytest_alone(KONTEXT_TEST_POSTGRES=DEAD, KONTEXT_TEST_EXPECT_THROWAWAY="1")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "1 passed" in done.stdout


def test_with_neither_the_postgres_tests_fail_with_one_reason():
    done = _pytest_alone(KONTEXT_TEST_POSTGRES=DEAD, KONTEXT_TEST_PG_BIN="/nonexistent")
    assert done.returncode != 0
    assert "1 error" in done.stdout and "skipped" not in done.stdout
    assert "PostgreSQL tests need a server: none answers at KONTEXT_TEST_POSTGRES" in done.stdout
    assert "no PostgreSQL binaries (initdb, pg_ctl) found" in done.stdout
