"""Files the command line writes, and amounts it takes: ``db backup`` into a folder, ``generate --out``
that cannot be written (before and after the job ran), and upper bounds on every amount and count.
Real processes, a real SQLite file, the provider emulator over loopback."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path

import httpx
import pytest

from tests.cli_support import emulator, one_error_line, provider_env, run_cli, run_cli_sync

PRO_T2I = "black-forest-labs/flux-kontext-pro/text-to-image"


# --- db backup ------------------------------------------------------------------------------------


def test_backup_into_a_folder_writes_one_timestamped_copy_and_nothing_else(tmp_path):
    env = {"KONTEXT_DB": str(tmp_path / "k.db")}
    assert (
        run_cli_sync("admin", "budget", "--guild", "7", "--usd", "4", env=env, cwd=tmp_path).returncode == 0
    )
    backups = tmp_path / "backups"
    backups.mkdir()
    proc = run_cli_sync("db", "backup", str(backups), env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    (copy,) = backups.iterdir()
    assert copy.name.startswith("kontext-") and copy.suffix == ".db"
    assert proc.stdout.strip().endswith(f"to {copy}")
    assert not [p for p in tmp_path.rglob("*") if p.name.endswith(".partial")]  # nothing left behind
    with sqlite3.connect(copy) as conn:
        assert conn.execute("PRAGMA quick_check").fetchone() == ("ok",)
    # The copy is the database: the budget set above is in it.
    quota = run_cli_sync(
        "quota", "--user", "1", "--guild", "7", "--json", env={"KONTEXT_DB": str(copy)}, cwd=tmp_path
    )
    assert json.loads(quota.stdout)["guild_budget"]["budget_usd"] == 4


def test_backup_to_a_new_folder_given_with_a_slash_and_to_a_file(tmp_path):
    env = {"KONTEXT_DB": str(tmp_path / "k.db")}
    assert run_cli_sync("db", "migrate", env=env, cwd=tmp_path).returncode == 0
    proc = run_cli_sync("db", "backup", f"{tmp_path}/nightly/", env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert [p.suffix for p in (tmp_path / "nightly").iterdir()] == [".db"]
    proc = run_cli_sync("db", "backup", str(tmp_path / "one.db"), env=env, cwd=tmp_path)
    assert proc.returncode == 0 and (tmp_path / "one.db").is_file()


@pytest.mark.parametrize("target", ["/proc/nope/k.db", "/proc/self/k.db"])
def test_backup_to_a_path_that_cannot_be_written_is_bad_usage_and_leaves_nothing(tmp_path, target):
    env = {"KONTEXT_DB": str(tmp_path / "k.db")}
    assert run_cli_sync("db", "migrate", env=env, cwd=tmp_path).returncode == 0
    before = sorted(tmp_path.iterdir())
    proc = run_cli_sync("db", "backup", target, env=env, cwd=tmp_path)
    assert proc.returncode == 2
    assert one_error_line(proc.stderr).startswith(f"PATH {target!r} cannot be written")
    assert sorted(tmp_path.iterdir()) == before
    assert not Path(target + ".partial").exists()


def test_check_and_backup_of_a_database_that_does_not_exist_create_nothing(tmp_path):
    env = {"KONTEXT_DB": str(tmp_path / "data" / "k.db")}
    proc = run_cli_sync("db", "check", env=env, cwd=tmp_path)
    assert (proc.returncode, proc.stdout.strip()) == (
        0,
        f"No database at {tmp_path}/data/k.db yet: nothing to check.",
    )
    proc = run_cli_sync("db", "backup", str(tmp_path / "copy.db"), env=env, cwd=tmp_path)
    assert proc.returncode == 1 and "there is nothing to back up" in one_error_line(proc.stderr)
    assert list(tmp_path.iterdir()) == []


# --- upper bounds on amounts and counts ----------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["budget", "--guild", "7", "--usd", "1e15"], "--usd must be at most $1,000,000 per period"),
        (["budget", "--guild", "7", "--usd", "1e999999999"], "--usd must be an amount in USD"),
        (
            ["team", "--guild", "7", "--role", "5", "--name", "art", "--usd", "2000000"],
            "--usd must be at most",
        ),
        (["cap", "--guild", "7", "--usd", "99999999"], "--usd must be at most"),
        (
            ["free-quota", "--guild", "7", "--model", "all", "--images", "100001"],
            "--images must be a whole number from 0 to 100,000",
        ),
        (
            ["grant", "--guild", "7", "--user", "1", "--model", "flux-kontext-pro", "--images", "10001"],
            "from 1 to 10,000",
        ),
        (["budget", "--guild", str(2**63), "--usd", "1"], "argument --guild: must be a Discord id"),
    ],
)
def test_amounts_and_counts_past_their_bounds_are_bad_usage(tmp_path, args, needle):
    env = {"KONTEXT_DB": str(tmp_path / "k.db")}
    proc = run_cli_sync("admin", *args, env=env, cwd=tmp_path)
    assert proc.returncode == 2
    assert needle in one_error_line(proc.stderr)
    proc = run_cli_sync("quota", "--user", "1", "--guild", "7", "--json", env=env, cwd=tmp_path)
    assert json.loads(proc.stdout)["guild_budget"]["budget_usd"] in (0, None)  # nothing was set


def test_the_largest_amount_is_taken(tmp_path):
    env = {"KONTEXT_DB": str(tmp_path / "k.db")}
    proc = run_cli_sync("admin", "budget", "--guild", "7", "--usd", "1000000", env=env, cwd=tmp_path)
    assert proc.returncode == 0 and "$1000000.00 per month" in proc.stdout


# --- generate --out -------------------------------------------------------------------------------


@pytest.mark.parametrize("out", ["/proc/nope", "/proc/self", "a-file"])
async def test_an_out_folder_that_cannot_be_written_is_refused_before_the_job(tmp_path, out):
    (tmp_path / "a-file").write_text("not a folder")
    db = tmp_path / "k.db"
    args = ["generate", "--model", PRO_T2I, "--prompt", "a fox", "--user", "42", "--guild", "7"]
    code, out_text, err = await run_cli(
        *args, "--out", out, "--json", env={"KONTEXT_DB": str(db)}, cwd=tmp_path
    )
    assert code == 2
    line = one_error_line(err)
    assert line.startswith(f"--out {out} ")
    assert json.loads(out_text) == {"status": "refused", "error": line, "code": "output_unwritable"}
    assert not db.exists()  # nothing recorded: the database was not even opened


async def _wait_for_submit(http: httpx.AsyncClient, provider: str) -> None:
    for _ in range(600):  # a generous bound, only so a broken run ends; the test waits for an event
        requests = (await http.get("/_emulator/requests")).json()
        if any(r["provider"] == provider and r["method"] == "POST" for r in requests):
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"no submit to {provider}")


async def test_images_that_cannot_be_written_after_the_job_ran_are_not_charged(tmp_path):
    """The folder is writable when the job starts and becomes a file while the provider works: one
    line, exit 1, and the member gets the free image back."""
    out = tmp_path / "out"
    with emulator() as url:
        env = provider_env(url, tmp_path)
        args = ["generate", "--model", PRO_T2I, "--prompt", "a fox", "--provider", "wavespeed"]
        args += ["--user", "42", "--guild", "7", "--out", str(out), "--json"]
        async with httpx.AsyncClient(base_url=url) as http:
            await http.post("/_emulator/config", json={"polls_until_done": 1_000_000})  # hold the task
            job = asyncio.create_task(run_cli(*args, env=env, cwd=tmp_path))
            try:
                await _wait_for_submit(http, "wavespeed")
                out.rmdir()  # made (and checked) by generate before it recorded anything
                out.write_text("now a file")
                await http.post("/_emulator/config", json={"polls_until_done": 1})  # let it finish
                code, stdout, err = await job
            finally:
                job.cancel()  # (done already unless the test failed: run_cli then kills the process)
        assert code == 1
        failure = json.loads(stdout)
        assert failure["error"] == one_error_line(err)
        assert (failure["status"], failure["code"]) == ("failed", "output_failed")
        assert f"job {failure['job_id']} was refunded" in failure["error"]
        assert out.read_text() == "now a file"

        code, stdout, _ = await run_cli(
            "quota", "--user", "42", "--guild", "7", "--json", env=env, cwd=tmp_path
        )
        pro = json.loads(stdout)["models"]["black-forest-labs/flux-kontext-pro/text-to-image"]
        assert (pro["free_used"], pro["free_remaining"]) == (0, 5)  # the free image came back
        code, stdout, _ = await run_cli("db", "check", env=env, cwd=tmp_path)
        assert code == 0, stdout
