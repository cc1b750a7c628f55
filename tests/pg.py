"""A PostgreSQL server for the tests: the one at KONTEXT_TEST_POSTGRES, else a throwaway cluster.

``PostgresRun.start()`` (the session fixture ``postgres_run`` in tests/conftest.py):

1. Try KONTEXT_TEST_POSTGRES (default postgresql://postgres@127.0.0.1:5432/postgres).
2. If nothing answers there, start a throwaway cluster: initdb + pg_ctl from the PostgreSQL
   binaries (PATH, /usr/lib/postgresql/*/bin, or KONTEXT_TEST_PG_BIN), with the documented
   non-durable settings (fsync off ...) and a unix socket in a temporary directory, no TCP. initdb
   refuses to run as root, so as root it runs as the ``postgres`` user (or ``nobody``).
3. If neither works, raise with one line saying both reasons: the PostgreSQL tests then FAIL,
   they never skip.

Each run makes its own database (``kontext_test_<pid>_<random>``) and drops it at the end. Each
test gets a fresh schema in it (``new_target``: the URL with ``?search_path=t<n>``), migrated by
``open_database`` as a real start would: about 38 ms a test here, against 113-130 ms for a
``CREATE DATABASE ... TEMPLATE`` of a migrated template plus its DROP (measured on this machine,
PostgreSQL 15; the schemas go with the run's database, so no per-test DROP is paid).
"""

from __future__ import annotations

import asyncio
import glob
import os
import pwd
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import asyncpg

T = TypeVar("T")
DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
CONNECT_TIMEOUT = 5.0


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to its end from synchronous code, on a thread of its own: a fixture may be
    set up while pytest-asyncio owns this thread's event loop, which asyncio.run would disturb."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


def _with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, ""))


def _with_query(url: str, extra: str) -> str:
    parts = urlsplit(url)
    query = f"{parts.query}&{extra}" if parts.query else extra
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, ""))


async def _probe(url: str) -> str | None:
    """None when a server answers at ``url``, else why not (one line)."""
    try:
        conn = await asyncpg.connect(url, timeout=CONNECT_TIMEOUT)
    except Exception as e:
        return f"{type(e).__name__}: {e}".splitlines()[0]
    await conn.close()
    return None


def _binaries() -> Path | None:
    override = os.environ.get("KONTEXT_TEST_PG_BIN")
    if override is not None:
        return Path(override) if (Path(override) / "initdb").exists() else None
    found = shutil.which("initdb") or shutil.which("pg_ctl")
    if found:
        return Path(found).resolve().parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    return Path(candidates[-1]).parent if candidates else None


@dataclass
class Cluster:
    """A throwaway PostgreSQL cluster in a temporary directory, reached by its unix socket."""

    folder: Path
    bin: Path
    user: str | None  # who runs it when we are root
    url: str = ""

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        command = [str(self.bin / args[0]), *args[1:]]
        if self.user:
            command = ["runuser", "-u", self.user, "--", *command]
        return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)

    @classmethod
    def start(cls, password: str | None = None) -> Cluster:
        """Trust authentication, or with ``password`` the user postgres needs it (scram-sha-256)."""
        binaries = _binaries()
        if binaries is None:
            raise RuntimeError("no PostgreSQL binaries (initdb, pg_ctl) found: apt-get install postgresql")
        user = None
        if os.geteuid() == 0:  # "initdb: cannot be run as root"
            for name in ("postgres", "nobody"):
                try:
                    pwd.getpwnam(name)
                    user = name
                    break
                except KeyError:
                    continue
            if user is None:
                raise RuntimeError("running as root and there is no postgres or nobody user to run initdb as")
        folder = Path(tempfile.mkdtemp(prefix="kontext-pg-"))
        cluster = cls(folder, binaries, user)
        if user:
            shutil.chown(folder, user)
        data, log = folder / "data", folder / "log"
        auth = ["-A", "trust"]
        if password is not None:
            pwfile = folder / "pw"
            pwfile.write_text(password + "\n")
            if user:
                shutil.chown(pwfile, user)
            auth = ["-A", "scram-sha-256", f"--pwfile={pwfile}"]
        done = cluster._run("initdb", "-D", str(data), *auth, "-U", "postgres", "--no-sync")
        if done.returncode != 0:
            cluster.remove()
            raise RuntimeError(f"initdb failed: {(done.stderr or done.stdout).strip().splitlines()[-1:]}")
        options = (
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
            f"-c listen_addresses='' -k {folder} -c max_connections=200"
        )
        done = cluster._run("pg_ctl", "-D", str(data), "-l", str(log), "-w", "-o", options, "start")
        if done.returncode != 0:
            tail = log.read_text().strip().splitlines()[-1:] if log.exists() else done.stderr
            cluster.remove()
            raise RuntimeError(f"pg_ctl start failed: {tail}")
        cluster.url = f"postgresql://postgres@/postgres?host={folder}"
        return cluster

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.folder / "data"), "-m", "immediate", "stop")
        self.remove()

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


def _orphaned(database: str) -> bool:
    """kontext_test_<pid>_<random> whose test process no longer exists on this machine."""
    pid = database.split("_")[2]
    return pid.isdigit() and not Path(f"/proc/{pid}").exists()


@dataclass
class PostgresRun:
    """This test run's database on a server; ``new_target()`` gives each test a clean schema."""

    server_url: str  # the maintenance database, where the run's database is created and dropped
    database: str
    url: str  # the run's database
    cluster: Cluster | None = None
    schemas: int = field(default=0)

    @classmethod
    def start(cls) -> PostgresRun:
        given = os.environ.get("KONTEXT_TEST_POSTGRES") or DEFAULT_URL
        refused = run_sync(_probe(given))
        cluster = None
        url = given
        if refused is not None:
            try:
                cluster = Cluster.start()
            except Exception as e:
                raise RuntimeError(
                    f"PostgreSQL tests need a server: none answers at KONTEXT_TEST_POSTGRES ({refused}), "
                    f"and a throwaway one could not be started ({e})"
                ) from None
            url = cluster.url
        name = f"kontext_test_{os.getpid()}_{secrets.token_hex(3)}"
        run = cls(url, name, _with_database(url, name), cluster)
        run_sync(run._drop_leftovers())
        run_sync(run._admin(f"CREATE DATABASE {name}"))
        return run

    async def _drop_leftovers(self) -> None:
        """Databases of earlier runs on this machine that were killed before they could drop them
        (their process is gone); a run still going keeps its own."""
        conn = await asyncpg.connect(self.server_url, timeout=CONNECT_TIMEOUT)
        try:
            names = [
                r[0]
                for r in await conn.fetch(
                    "SELECT datname FROM pg_database WHERE datname LIKE 'kontext_test_%'"
                )
            ]
            for name in filter(_orphaned, names):
                await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()

    async def _admin(self, sql: str) -> None:
        conn = await asyncpg.connect(self.server_url, timeout=CONNECT_TIMEOUT)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    def new_target(self) -> str:
        """A URL whose search_path is a new, empty schema of the run's database."""
        return run_sync(self._new_schema())

    async def _new_schema(self) -> str:
        self.schemas += 1
        schema = f"t{self.schemas}"
        conn = await asyncpg.connect(self.url, timeout=CONNECT_TIMEOUT)
        try:
            await conn.execute(f"CREATE SCHEMA {schema}")
        finally:
            await conn.close()
        return _with_query(self.url, f"search_path={schema}")

    def stop(self) -> None:
        try:
            run_sync(self._admin(f"DROP DATABASE IF EXISTS {self.database} WITH (FORCE)"))
        finally:
            if self.cluster is not None:
                self.cluster.stop()
