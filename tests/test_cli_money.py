"""Money from the command line: sandbox jobs, cost ceilings, refunds and database failures, each
ending with `db check` clean."""

from __future__ import annotations

import json

from tests.cli_support import run_cli

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
