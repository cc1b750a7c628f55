"""Money from the command line: sandbox jobs, cost ceilings, refunds and database failures, each
ending with `db check` clean."""

from __future__ import annotations

import json
import urllib.request

from tests.cli_support import emulator, provider_env, run_cli

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
