"""The process roles' command lines (issue 13): bad shard or concurrency flags are bad usage (exit 2,
one line, nothing touched); a worker without a token says so; a worker's --concurrency is what its
worker runs at once."""

from __future__ import annotations

import pytest

from bot.cli.parser import build_parser
from tests.cli_support import one_error_line, run_cli

BAD = [
    (["run", "--shard-ids", "0"], "--shard-ids needs --shard-count"),
    (["run", "--shard-count", "2", "--shard-ids", "2"], "numbered 0 to 1"),
    (["run", "--shard-count", "2", "--shard-ids", "0,0"], "distinct shard numbers"),
    (["run", "--shard-count", "0"], "from 1 to 10000"),
    (["worker", "--concurrency", "0"], "from 1 to 10000"),
    (["worker", "--concurrency", "many"], "from 1 to 10000"),
]


@pytest.mark.parametrize(("args", "says"), BAD, ids=[" ".join(a) for a, _ in BAD])
async def test_bad_role_flags_are_bad_usage_and_touch_nothing(tmp_path, args, says):
    env = {"DISCORD_TOKEN": "x", "KONTEXT_DB": str(tmp_path / "k.db")}
    code, _out, err = await run_cli(*args, env=env, cwd=tmp_path)
    assert code == 2, err
    assert says in err and "Traceback" not in err
    assert not (tmp_path / "k.db").exists()


async def test_a_worker_without_a_token_says_so_in_one_line(tmp_path):
    code, out, err = await run_cli("worker", env={"KONTEXT_DB": str(tmp_path / "k.db")}, cwd=tmp_path)
    assert code == 2 and out == ""
    assert "DISCORD_TOKEN is not set" in one_error_line(err)
    assert not (tmp_path / "k.db").exists()


def test_the_role_flags_parse_as_documented():
    parse = build_parser().parse_args
    run = parse(["run", "--no-worker", "--shard-count", "4", "--shard-ids", "3,1"])
    assert (run.no_worker, run.shard_count, run.shard_ids) == (True, 4, [1, 3])
    plain = parse(["run"])
    assert (plain.no_worker, plain.shard_count, plain.shard_ids) == (False, None, None)
    assert parse(["worker", "--concurrency", "16"]).concurrency == 16
    assert parse(["worker"]).concurrency is None
