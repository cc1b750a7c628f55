"""What the README promises of the command line itself: --version, help on everything, exit statuses,
the JSON failure object, read-only commands that create nothing, and no discord in the CLI.

Through the real ``kontext-bot`` process (the console script), as an operator or a script runs it.
"""

from __future__ import annotations

import argparse
import ast
import json
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

from bot.cli.parser import build_parser
from tests.cli_support import ROOT, emulator, one_error_line, provider_env, run_cli, run_cli_sync

CLI_FILES = [*sorted((ROOT / "bot" / "cli").glob("*.py")), ROOT / "bot" / "__main__.py"]


# --- version and help ------------------------------------------------------------------------------


def test_version_is_the_installed_package_version(tmp_path):
    proc = run_cli_sync("--version", env={}, cwd=tmp_path)
    assert proc.returncode == 0
    assert proc.stdout.strip() == f"kontext-bot {metadata.version('kontext-bot')}"
    module = subprocess.run(
        [sys.executable, "-m", "bot", "--version"], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert module.stdout == proc.stdout  # python -m bot is the same command


def _parsers(parser: argparse.ArgumentParser, path: str = "kontext-bot"):
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help for a in action._choices_actions}
            for name, sub in action.choices.items():
                assert helps.get(name), f"{path} {name} has no help line"
                yield from _parsers(sub, f"{path} {name}")


def test_every_command_and_every_flag_has_help():
    seen = 0
    for path, parser in _parsers(build_parser()):
        assert parser.description, f"{path} has no description"
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                continue
            assert action.help and action.help != argparse.SUPPRESS, (
                f"{path} {action.option_strings} has no help"
            )
            seen += 1
    assert seen > 60  # every flag of every command was looked at


def test_the_top_level_help_is_written_for_operators(tmp_path):
    proc = run_cli_sync("--help", env={}, cwd=tmp_path)
    assert proc.returncode == 0
    for command in ("kontext-bot run", "kontext-bot sync --guild", "kontext-bot generate", "db backup"):
        assert command in proc.stdout
    assert "Exit status: 0 done, 1 the job or operation failed, 2 bad usage" in proc.stdout
    assert "thin face" not in proc.stdout and "bot/services" not in proc.stdout


# --- discord stays out of the CLI ----------------------------------------------------------------


def test_no_module_of_the_cli_imports_discord():
    for path in CLI_FILES:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            for name in names:
                assert name.split(".")[0] != "discord", (
                    f"{path.relative_to(ROOT)}:{node.lineno} imports {name}"
                )


def test_commands_other_than_run_and_sync_never_load_discord(tmp_path):
    code = (
        "import sys; from bot.cli import main; status = main(['models', '--json']); "
        "assert 'discord' not in sys.modules, 'discord was imported'; sys.exit(status)"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["models"]


def test_sync_says_so_in_one_line_when_discord_cannot_be_reached(tmp_path):
    env = {
        "DISCORD_TOKEN": "not-a-real-token",
        "DISCORD_API_BASE": "http://127.0.0.1:9/api/v10",  # the discard port: nothing listens
        "KONTEXT_DB": str(tmp_path / "k.db"),
    }
    proc = run_cli_sync("sync", "--guild", "1", env=env, cwd=tmp_path)
    assert proc.returncode == 1
    assert one_error_line(proc.stderr).startswith("Cannot reach Discord (http://127.0.0.1:9/api/v10)")


# --- exit statuses and the JSON failure object -----------------------------------------------------

T2I = ["generate", "--model", "flux-kontext-pro/text-to-image", "--prompt", "a fox"]


@pytest.mark.parametrize(
    ("args", "env", "status", "code"),
    [
        (["generate", "--model", "x"], {}, 2, "usage"),  # --prompt missing: argparse
        (["quota", "--user", "abc"], {}, 2, "usage"),
        (["quota", "--user", str(2**64)], {}, 2, "usage"),  # no Discord id is that large
        (["admin", "budget", "--guild", "7", "--usd", "lots"], {}, 2, "invalid_request"),
        (
            ["admin", "grant", "--guild", "7", "--user", "1", "--model", "flux-kontext-pro", "--images", "0"],
            {},
            2,
            "invalid_request",
        ),
        (["usage", "--since", "yesterday"], {}, 2, "invalid_request"),
        ([*T2I, "--n", "9"], {}, 2, "invalid_request"),
        ([*T2I, "--provider", "vtrix"], {}, 2, "no_route"),
        (["models"], {"WAVESPEED_BASE_URL": "not a url"}, 2, "config"),
        (["run"], {}, 2, "config"),  # no DISCORD_TOKEN
        (["admin", "refund", "no-such-job"], {}, 1, "not_found"),
    ],
)
async def test_exit_status_is_2_for_bad_usage_and_1_for_a_failure(tmp_path, args, env, status, code):
    env = {"KONTEXT_DB": str(tmp_path / "k.db"), **env}
    got, out, err = await run_cli(*args, env=env, cwd=tmp_path, module=False)
    assert got == status, err
    assert out == ""
    one_error_line(err)


def _failure(out: str, err: str) -> dict:
    (line,) = out.splitlines()  # exactly one JSON object on stdout
    failure = json.loads(line)
    assert failure["error"] == one_error_line(err)  # the same one line as on stderr
    return failure


async def test_json_failures_before_anything_is_recorded(tmp_path):
    env = {"KONTEXT_DB": str(tmp_path / "k.db")}
    code, out, err = await run_cli(*T2I, "--n", "9", "--json", env=env, cwd=tmp_path)
    assert code == 2
    assert _failure(out, err) == {
        "status": "refused",
        "error": one_error_line(err),
        "code": "invalid_request",
    }
    code, out, err = await run_cli("generate", "--model", "x", "--json", env=env, cwd=tmp_path)
    assert code == 2
    failure = _failure(out, err)
    assert (failure["status"], failure["code"]) == ("error", "usage") and "--prompt" in failure["error"]
    code, out, err = await run_cli("models", "--json", env={"VTRIX_BASE_URL": "ftp://x"}, cwd=tmp_path)
    assert code == 2
    failure = _failure(out, err)
    assert (failure["status"], failure["code"]) == ("error", "config") and "VTRIX_BASE_URL" in failure[
        "error"
    ]
    code, out, err = await run_cli(
        "usage", "--format", "json", "--by", "user", "--until", "x", env=env, cwd=tmp_path
    )
    assert code == 2 and _failure(out, err)["error"].startswith("--until must be a date")


async def test_json_failures_of_recorded_jobs_carry_the_job_id(tmp_path):
    with emulator() as url:
        env = provider_env(url, tmp_path)
        # No free quota for max, no budget: refused by the books, and the refusal is recorded.
        max_t2i = ["generate", "--model", "flux-kontext-max/text-to-image", "--prompt", "a fox", "--json"]
        code, out, err = await run_cli(*max_t2i, "--user", "5", "--guild", "7", env=env, cwd=tmp_path)
        assert code == 1
        refused = _failure(out, err)
        assert (refused["status"], refused["code"]) == ("refused", "quota_exceeded") and refused["job_id"]

        import httpx

        async with httpx.AsyncClient(base_url=url) as http:
            await http.post("/_emulator/fault", json={"provider": "modelverse", "kind": "content_refused"})
            code, out, err = await run_cli(*T2I, "--json", env=env, cwd=tmp_path)
            assert code == 1
            content = _failure(out, err)
            assert (content["status"], content["code"]) == ("refused", "job_failed") and content["job_id"]
            await http.post("/_emulator/fault", json={"provider": "wavespeed", "kind": "task_failed"})
            code, out, err = await run_cli(*T2I, "--provider", "wavespeed", "--json", env=env, cwd=tmp_path)
            await http.post("/_emulator/reset")
        assert code == 1
        failed = _failure(out, err)
        assert (failed["status"], failed["code"]) == ("failed", "job_failed") and failed["job_id"]
        assert failed["job_id"] in failed["error"]
        code, out, _ = await run_cli("usage", "--by", "user", "--format", "json", env=env, cwd=tmp_path)
        rows = {row["user"]: row for row in json.loads(out)}
        assert rows["5"]["refused"] == 1 and rows["5"]["cost_usd"] == 0
        code, out, _ = await run_cli("db", "check", env=env, cwd=tmp_path)
        assert code == 0, out


# --- read-only commands create nothing -------------------------------------------------------------


async def test_read_only_commands_never_create_the_database(tmp_path):
    db = tmp_path / "data" / "kontext.db"
    env = {"KONTEXT_DB": str(db)}

    async def cli(*args: str) -> tuple[int, str, str]:
        return await run_cli(*args, env=env, cwd=tmp_path, module=False)

    code, out, err = await cli("quota", "--user", "42", "--guild", "7")
    assert (code, out.strip()) == (0, f"No database at {db} yet: nothing used yet."), err
    code, out, err = await cli("usage", "--guild", "7")
    assert (code, out.strip()) == (0, f"No database at {db} yet: no jobs."), err
    # Scripts get the shape they always parse (that of a fresh install); the note goes to stderr.
    code, out, err = await cli("quota", "--user", "42", "--guild", "7", "--json")
    assert code == 0 and "nothing used yet" in err
    pro = json.loads(out)["models"]["black-forest-labs/flux-kontext-pro"]
    assert (pro["free_used"], pro["free_remaining"]) == (0, 5)
    code, out, err = await cli("usage", "--format", "json")
    assert (code, json.loads(out)) == (0, []) and "no jobs" in err
    code, out, _ = await cli("usage", "--format", "csv", "--by", "team")
    assert (
        code == 0
        and out.strip() == "team,jobs,succeeded,images,cost_usd,refused,failed,cancelled,overrun_micros"
    )
    code, out, _ = await cli("models", "--json")
    assert code == 0 and json.loads(out)["models"]
    code, _, err = await cli("usage", "--since", "yesterday")  # still checked by the service as usual
    assert code == 2 and "--since must be a date" in err
    assert not db.exists() and not db.parent.exists()
    assert list(tmp_path.iterdir()) == []


def test_read_only_commands_read_an_existing_database(tmp_path):
    db = tmp_path / "k.db"
    env = {"KONTEXT_DB": str(db)}
    assert (
        run_cli_sync("admin", "budget", "--guild", "7", "--usd", "3", env=env, cwd=tmp_path).returncode == 0
    )
    proc = run_cli_sync("quota", "--user", "42", "--guild", "7", "--json", env=env, cwd=tmp_path)
    assert proc.returncode == 0 and proc.stderr == ""
    assert json.loads(proc.stdout)["guild_budget"]["budget_usd"] == 3
    assert Path(db).exists()
