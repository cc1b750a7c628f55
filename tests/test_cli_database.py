"""The database commands on PostgreSQL and between backends: ``db copy``, ``db backup`` of PostgreSQL,
and a URL's password never printed, on success or failure."""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit, urlunsplit

import pytest

import storage
from storage.schema import latest_version
from tests.cli_support import run_cli
from tests.storage.conftest import GUILD, T0, new_job

PASSWORD = "Hunter2-s3cret"  # the test server trusts every local connection: any password passes


def _with_password(url: str) -> str:
    parts = urlsplit(url)
    user, _, host = parts.netloc.rpartition("@")
    return urlunsplit((parts.scheme, f"{user}:{PASSWORD}@{host}", parts.path, parts.query, ""))


@pytest.fixture
def pg_url(postgres_run) -> str:
    """A fresh PostgreSQL database (a schema) reached with a URL that carries a password."""
    return _with_password(postgres_run.new_target())


async def _some_books(target: str) -> str:
    async with await storage.open_database(target) as db:
        await storage.set_guild_budget(db, GUILD, 1_000_000, actor_id=9, now=T0)
        r = await storage.accept_job(db, new_job(free_quota=0), now=T0)
        await storage.complete_job(db, r.job_id, 1, now=T0)
        return r.job_id


async def test_db_copy_moves_a_sqlite_server_to_postgresql_and_back(tmp_path, pg_url):
    source = tmp_path / "k.db"
    job_id = await _some_books(str(source))
    code, out, err = await run_cli("db", "copy", str(source), pg_url, env={}, cwd=tmp_path)
    assert code == 0, err
    assert out.startswith(f"Copied {source} to postgresql://postgres:[redacted]@")
    assert "jobs 1, ledger 4," in out and PASSWORD not in out + err
    async with await storage.open_database(pg_url) as copy:
        assert (await storage.get_job(copy, job_id)).status == "succeeded"
        assert await storage.check(copy, now=T0) == []
    # Copied again: the target holds data now; one line, exit 1, nothing written.
    code, out, err = await run_cli("db", "copy", str(source), pg_url, env={}, cwd=tmp_path)
    assert code == 1 and out == ""
    assert err.startswith("kontext-bot: postgresql://postgres:[redacted]@") and "already holds data" in err
    # And back into a new SQLite file, with KONTEXT_DB pointing elsewhere entirely.
    back = tmp_path / "back" / "k.db"
    code, out, err = await run_cli(
        "db", "copy", pg_url, str(back), env={"KONTEXT_DB": "/nonexistent/x.db"}, cwd=tmp_path
    )
    assert code == 0, err
    async with await storage.open_database(back, create=False) as copy:
        assert len(await storage.list_jobs(copy)) == 1


async def test_db_copy_refuses_bad_usage_and_a_missing_source(tmp_path):
    code, out, err = await run_cli(
        "db", "copy", "mysql://root:pw@h/db", str(tmp_path / "t.db"), env={}, cwd=tmp_path
    )
    assert code == 2
    assert (
        err.strip() == "kontext-bot: SOURCE must be a SQLite path or a postgresql:// URL, not a mysql:// URL."
    )
    code, out, err = await run_cli(
        "db", "copy", str(tmp_path / "none.db"), str(tmp_path / "t.db"), env={}, cwd=tmp_path
    )
    assert code == 1 and f"There is no database at {tmp_path / 'none.db'}" in err
    assert not any(tmp_path.iterdir())  # neither database was made
    code, out, _ = await run_cli("db", "copy", "--help", env={}, cwd=tmp_path)
    assert code == 0 and "SOURCE" in out and "TARGET" in out and "with no data in" in " ".join(out.split())
    code, _, err = await run_cli("db", "copy", str(tmp_path / "only-one.db"), env={}, cwd=tmp_path)
    assert code == 2 and "TARGET" in err


async def test_the_db_commands_on_postgresql_show_no_password(tmp_path, pg_url):
    await _some_books(pg_url)
    env = {"KONTEXT_DB": pg_url}
    results = await asyncio.gather(
        run_cli("db", "migrate", env=env, cwd=tmp_path),
        run_cli("db", "check", env=env, cwd=tmp_path),
        run_cli("quota", "--user", "1", "--guild", str(GUILD), env=env, cwd=tmp_path),
        run_cli("-v", "usage", "--guild", str(GUILD), env=env, cwd=tmp_path),
    )
    for code, out, err in results:
        assert code == 0, err
        assert PASSWORD not in out + err
    migrate = results[0][1]
    assert (
        migrate.startswith("Database postgresql://postgres:[redacted]@")
        and f"schema version {latest_version('postgres')}" in migrate
    )
    assert "The books balance" in results[1][1]
    # db backup of PostgreSQL: a portable SQLite file, checked like a copy.
    code, out, err = await run_cli("db", "backup", f"{tmp_path}/nightly/", env=env, cwd=tmp_path)
    assert code == 0, err
    assert out.startswith("Backed up postgresql://postgres:[redacted]@") and PASSWORD not in out + err
    (backup,) = (tmp_path / "nightly").iterdir()
    async with await storage.open_database(backup, create=False) as copy:
        assert copy.dialect == "sqlite" and len(await storage.list_jobs(copy)) == 1
        assert await storage.check(copy, now=T0) == []
