"""Money from the command line: sandbox jobs, cost ceilings, refunds and database failures, each
ending with `db check` clean."""

from __future__ import annotations

import asyncio
import json
import resource
import sqlite3
import subprocess
import urllib.request
from contextlib import closing
from pathlib import Path

from tests.cli_support import (
    clean_env,
    emulator,
    kontext_bot,
    one_error_line,
    provider_env,
    run_cli,
    run_cli_sync,
)

SANDBOX_MODEL = "black-forest-labs/flux-kontext-pro/text-to-image"


async def db_check(env, cwd) -> tuple[int, str]:
    code, out, err = await run_cli("db", "check", env=env, cwd=cwd)
    return code, out + err


async def test_a_sandbox_job_is_recorded_as_sandbox_and_keeps_the_books_clean(tmp_path):
    env = {"KONTEXT_DB": str(tmp_path / "f.db")}
    args = ("generate", "--model", SANDBOX_MODEL, "--prompt", "x", "--user", "42", "--guild", "7")
    code, out, err = await run_cli(*args, "--json", env=env, cwd=tmp_path)
    assert code == 0, err
    summary = json.loads(out)
    assert summary["charged_to"] == "sandbox" and summary["cost_usd"] == "0.00"
    assert summary["free_remaining"] == 5  # none of the free quota used
    code, text = await db_check(env, tmp_path)
    assert code == 0, text
    code, out, err = await run_cli("quota", "--user", "42", "--guild", "7", "--json", env=env, cwd=tmp_path)
    assert code == 0, err
    assert all(m["free_used"] == 0 for m in json.loads(out)["models"].values())


def arm(url: str, **spec) -> None:
    """Arm a fault on an emulator process through its control API."""
    request = urllib.request.Request(
        f"{url}/_emulator/fault", json.dumps(spec).encode(), {"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        assert json.loads(answer.read())["ok"]


async def test_a_reported_cost_above_the_reservation_charges_the_reservation_and_shows_the_overrun(tmp_path):
    with emulator() as url:
        env = provider_env(url, tmp_path)
        guild = ("--guild", "7")
        for admin in (
            ("budget", "--usd", "1"),
            ("cap", "--usd", "0.50"),
            ("free-quota", "--model", "all", "--images", "0"),
        ):
            code, _, err = await run_cli("admin", *admin, *guild, env=env, cwd=tmp_path)
            assert code == 0, err
        arm(url, provider="vtrix", kind="reported_cost", cost="250")  # usage.cost "250" for $0.04
        args = ("generate", "--model", SANDBOX_MODEL, "--prompt", "x", "--provider", "vtrix")
        code, out, err = await run_cli(*args, "--user", "42", *guild, "--json", env=env, cwd=tmp_path)
        assert code == 0, err
        assert json.loads(out)["charged_to"] == "guild"
    code, out, err = await run_cli("quota", "--user", "42", *guild, "--json", env=env, cwd=tmp_path)
    quota = json.loads(out)
    assert quota["spent_usd"] == 0.04 and quota["guild_budget"]["spent_usd"] == 0.04  # within both
    code, out, err = await run_cli("usage", *guild, "--format", "json", env=env, cwd=tmp_path)
    (row,) = json.loads(out)
    assert row["overrun_micros"] == 250_000_000 - 40_000 and row["cost_usd"] == 250.0
    code, out, err = await run_cli("usage", *guild, env=env, cwd=tmp_path)
    assert "overrun" in out.splitlines()[0] and "$249.96" in out
    code, out, err = await run_cli("usage", *guild, "--format", "csv", env=env, cwd=tmp_path)
    assert out.splitlines()[0].endswith(",overrun_micros") and out.splitlines()[1].endswith(",249960000")
    code, text = await db_check(env, tmp_path)
    assert code == 0, text


def configure(url: str, **spec) -> None:
    request = urllib.request.Request(
        f"{url}/_emulator/config", json.dumps(spec).encode(), {"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        answer.read()


def running_job(db: Path) -> str | None:
    """The id of the job the database records as running, read as another program would."""
    if not db.exists():
        return None
    with closing(sqlite3.connect(db, timeout=5)) as conn:
        try:
            row = conn.execute(
                "SELECT id FROM jobs WHERE status = 'running' AND task_id IS NOT NULL"
            ).fetchone()
        except sqlite3.OperationalError:  # not made yet
            return None
    return row[0] if row else None


def short_lease(env: dict[str, str]) -> None:
    """Leases of 3 s, renewed every second: a process hears soon that its job ended elsewhere."""
    config = Path(env["KONTEXT_CONFIG"])
    config.write_text(config.read_text() + "job_lease = 3\n")  # appended to its [limits] table


async def test_a_refund_from_another_process_cancels_a_running_generate(tmp_path):
    with emulator() as url:
        env = provider_env(url, tmp_path)
        short_lease(env)
        configure(url, latency=120)  # the task is held at the provider
        args = ("generate", "--model", SANDBOX_MODEL, "--prompt", "x", "--provider", "vtrix")
        generate = asyncio.create_task(run_cli(*args, "--user", "42", "--guild", "7", env=env, cwd=tmp_path))
        job_id = None
        async with asyncio.timeout(30):
            while job_id is None:  # another process's database: no event to wait on
                assert not generate.done(), generate.result()
                await asyncio.sleep(0.05)
                job_id = running_job(tmp_path / "k.db")
        code, out, err = await run_cli("admin", "refund", job_id, "--reason", "typo", env=env, cwd=tmp_path)
        assert code == 0 and f"Refunded job {job_id}" in out and "it was cancelled" in out, (out, err)
        configure(url, latency=0)  # were it still polled, the image would now be handed over
        code, out, err = await generate
    assert code == 1
    assert "Refunded by an admin (typo)" in one_error_line(err) and job_id in err
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())  # nothing written
    code, out, err = await run_cli("quota", "--user", "42", "--guild", "7", "--json", env=env, cwd=tmp_path)
    assert json.loads(out)["models"][SANDBOX_MODEL]["free_used"] == 0
    code, text = await db_check(env, tmp_path)
    assert code == 0, text


GENERATE = ("generate", "--model", SANDBOX_MODEL, "--prompt", "x", "--user", "42", "--guild", "7")


def run_limited(env: dict[str, str], cwd: Path, file_size: int) -> subprocess.CompletedProcess[str]:
    """``generate`` in a process that may write files of at most ``file_size`` bytes (ulimit -f)."""

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (file_size, file_size))

    return subprocess.run(
        [*kontext_bot(), *GENERATE],
        cwd=cwd,
        env=clean_env(env),
        preexec_fn=limit,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_full_disk_is_one_line_and_leaves_no_reservation(tmp_path):
    env = {"KONTEXT_DB": str(tmp_path / "f.db")}
    assert run_cli_sync(*GENERATE, env=env, cwd=tmp_path).returncode == 0  # the database exists
    done = run_limited(env, tmp_path, 40 * 1024)  # ulimit -f 40
    assert done.returncode == 1, done.stderr
    assert "cannot grow" in one_error_line(done.stderr)
    check = run_cli_sync("db", "check", env=env, cwd=tmp_path)
    assert check.returncode == 0, check.stdout + check.stderr
    listed = run_cli_sync("usage", "--guild", "7", "--format", "json", env=env, cwd=tmp_path)
    (row,) = json.loads(listed.stdout)
    assert row["jobs"] == 1  # the first job only: nothing recorded, so nothing reserved


def test_a_fresh_database_on_a_full_disk_is_one_line(tmp_path):
    env = {"KONTEXT_DB": str(tmp_path / "f.db")}
    done = run_limited(env, tmp_path, 40 * 1024)
    assert done.returncode == 1, done.stderr
    assert "cannot grow" in one_error_line(done.stderr)


def test_a_database_locked_by_another_process_is_one_line(tmp_path):
    env = {"KONTEXT_DB": str(tmp_path / "f.db")}
    assert run_cli_sync(*GENERATE, env=env, cwd=tmp_path).returncode == 0
    with closing(sqlite3.connect(tmp_path / "f.db", isolation_level=None)) as other:
        other.execute("BEGIN EXCLUSIVE")  # another process holding the database
        done = run_cli_sync(*GENERATE, env=env, cwd=tmp_path)  # bounded: run_cli_sync's timeout
        other.execute("ROLLBACK")
    assert done.returncode == 1
    assert "is busy" in one_error_line(done.stderr)
    check = run_cli_sync("db", "check", env=env, cwd=tmp_path)
    assert check.returncode == 0, check.stdout + check.stderr
