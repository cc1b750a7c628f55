"""`admin rate`, `admin free-quota --role` and `generate --role` as an operator runs them: real
processes, the emulator over loopback. A job over the limit exits 1 saying when the next one is
allowed, and nothing is charged for it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from tests.cli_support import emulator, one_error_line, provider_env, run_cli

PRO_T2I = "black-forest-labs/flux-kontext-pro/text-to-image"
MEMBER = ["--user", "42", "--guild", "7"]


@pytest.fixture(scope="module")
def emulator_process() -> Iterator[str]:
    with emulator() as url:
        yield url


@pytest.fixture
def cli(emulator_process, tmp_path):
    env = provider_env(emulator_process, tmp_path)

    async def run(*args: str) -> tuple[int, str, str]:
        return await run_cli(*args, env=env, cwd=tmp_path)

    return run


async def _generate(cli, *extra: str) -> tuple[int, dict, str]:
    code, out, err = await cli("generate", "--model", PRO_T2I, "--prompt", "a fox", *MEMBER, *extra, "--json")
    return code, json.loads(out), err


async def _free(cli, *roles: str) -> tuple[int, int, int]:
    code, out, err = await cli("quota", *MEMBER, *roles, "--json")
    assert code == 0, err
    q = json.loads(out)["models"][PRO_T2I]
    return q["free_limit"], q["free_used"], q["free_remaining"]


async def test_the_job_past_the_limit_exits_1_with_when_and_charges_nothing(cli):
    code, out, err = await cli("admin", "rate", "--guild", "7", "--jobs", "2", "--per", "1h")
    assert code == 0, err
    assert "at most 2 jobs per hour per member" in out
    for _ in range(2):
        code, summary, err = await _generate(cli)
        assert code == 0 and summary["charged_to"] == "free", err
    before = await _free(cli)
    asked = datetime.now(UTC)

    code, failure, err = await _generate(cli)
    assert code == 1
    assert failure["status"] == "refused" and failure["code"] == "rate_limited"
    retry_at = datetime.fromisoformat(failure["retry_at"])
    assert 3500 <= (retry_at - asked).total_seconds() <= 3601
    assert 3500 <= failure["retry_after_s"] <= 3601
    line = one_error_line(err)
    assert "limit of 2 jobs per hour" in line and f"allowed at {failure['retry_at']}" in line
    assert "nothing was charged" in line and "job_id" not in failure  # no job was recorded

    assert await _free(cli) == before == (5, 2, 3)
    code, out, _ = await cli("quota", *MEMBER, "--json")
    (standing,) = json.loads(out)["rate_limits"]
    assert (standing["jobs"], standing["per_s"], standing["used"]) == (2, 3600, 2)
    shown_at = datetime.fromisoformat(standing["next_allowed_at"])
    assert 0 <= (retry_at - shown_at).total_seconds() < 1  # the same moment (the refusal rounds up)
    code, out, _ = await cli("quota", *MEMBER)
    assert "Rate limit: 2 used of 2 jobs per hour; next job allowed at" in out
    code, out, err = await cli("usage", "--guild", "7", "--format", "json")
    assert [row["jobs"] for row in json.loads(out)] == [2]  # the refusal left no job behind
    code, out, err = await cli("db", "check")
    assert code == 0, out + err


async def test_a_more_generous_role_lets_its_members_through(cli):
    await cli("admin", "rate", "--guild", "7", "--jobs", "1", "--per", "1d")
    code, out, err = await cli("admin", "rate", "--guild", "7", "--jobs", "3", "--per", "10m", "--role", "55")
    assert code == 0 and "role 55: 3 jobs per 10 minutes" in out, err
    assert (await _generate(cli))[0] == 0
    assert (await _generate(cli))[0] == 1  # the server-wide 1 a day
    assert (await _generate(cli, "--role", "56"))[0] == 1  # a role with no limit changes nothing
    # Holding role 55, the member is held to its limit instead: 3 in 10 minutes (this one counts the
    # job already run, so two more).
    assert [(await _generate(cli, "--role", "56", "--role", "55"))[0] for _ in range(3)] == [0, 0, 1]

    code, out, _ = await cli("admin", "rate", "--guild", "7", "--json")
    assert json.loads(out)["limits"] == [
        {"role_id": None, "jobs": 1, "per_s": 86400},
        {"role_id": 55, "jobs": 3, "per_s": 600},
    ]
    code, out, _ = await cli("admin", "rate", "--guild", "7", "--off")
    assert code == 0 and "removed (the server-wide one)" in out
    assert (await _generate(cli))[0] == 0


async def test_bad_rate_commands_are_one_line_and_exit_2(cli):
    code, _, err = await cli("admin", "rate", "--guild", "7", "--jobs", "2", "--per", "30s")
    assert code == 2 and one_error_line(err).startswith("--per must be a window like 10m, 1h or 1d")
    code, _, err = await cli("admin", "rate", "--guild", "7", "--jobs", "-1")
    assert code == 2 and one_error_line(err).startswith("--jobs must be a whole number from 0")
    code, _, err = await cli("admin", "rate", "--guild", "7", "--jobs", "2", "--off")
    assert code == 2 and "--off and --jobs do not go together" in one_error_line(err)
    code, _, err = await cli("generate", "--model", PRO_T2I, "--prompt", "x", "--role", "5")
    assert code == 2 and "--role needs --user" in one_error_line(err)


async def test_members_holding_a_role_get_its_own_free_images(cli):
    code, out, err = await cli(
        "admin",
        "free-quota",
        "--guild",
        "7",
        "--model",
        "all",
        "--images",
        "9",
        "--period",
        "day",
        "--role",
        "55",
    )
    assert code == 0 and "9 free image(s) per member holding role 55 per day" in out, err
    await cli("admin", "free-quota", "--guild", "7", "--model", "all", "--images", "3", "--role", "56")

    code, summary, err = await _generate(cli, "--role", "56", "--role", "55")  # the more generous: 9
    assert code == 0 and summary["free_remaining"] == 8, err
    assert await _free(cli, "--role", "55") == (9, 1, 8)
    assert await _free(cli, "--role", "56") == (3, 1, 2)
    assert await _free(cli) == (5, 1, 4)  # no role: the catalog's 5 a month

    await cli(
        "admin",
        "free-quota",
        "--guild",
        "7",
        "--model",
        "all",
        "--images",
        "0",
        "--period",
        "off",
        "--role",
        "55",
    )
    assert await _free(cli, "--role", "55") == (5, 1, 4)
