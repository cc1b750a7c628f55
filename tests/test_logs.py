"""Logs: KONTEXT_LOG_LEVEL and KONTEXT_LOG_FORMAT, the job a line is about, and the one redaction rule
in both formats. The job test is a real ``kontext-bot generate`` process against the emulator."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from bot.config import load_settings
from bot.errors import ConfigError
from bot.logs import job_context, setup_logging
from bot.redact import REDACTED
from tests.cli_support import emulator, provider_env, run_cli

SECRET = "sk-live-0123456789abcdef"
PRO_T2I = "black-forest-labs/flux-kontext-pro/text-to-image"


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    """The root logger as setup_logging left it, writing into a buffer; restored afterwards."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    buffer = io.StringIO()
    yield buffer
    root.handlers[:] = handlers
    root.setLevel(level)


def configure(buffer: io.StringIO, level: str, fmt: str) -> None:
    setup_logging(level, fmt, secrets=(SECRET,))
    logging.getLogger().handlers[0].setStream(buffer)  # type: ignore[attr-defined]


def test_the_level_and_format_are_read_and_checked():
    settings = load_settings({"KONTEXT_LOG_LEVEL": "debug", "KONTEXT_LOG_FORMAT": "JSON"})
    assert (settings.log_level, settings.log_format) == ("DEBUG", "json")
    unset = load_settings({})
    assert (unset.log_level, unset.log_format) == (None, "text")
    with pytest.raises(ConfigError, match=r"KONTEXT_LOG_LEVEL must be one of DEBUG, INFO, WARNING, ERROR"):
        load_settings({"KONTEXT_LOG_LEVEL": "LOUD"})
    with pytest.raises(ConfigError, match=r"KONTEXT_LOG_FORMAT must be one of text, json \(got 'xml'\)"):
        load_settings({"KONTEXT_LOG_FORMAT": "xml"})


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_a_secret_is_redacted_in_the_message_the_traceback_and_the_fields(captured, fmt):
    configure(captured, "INFO", fmt)
    log = logging.getLogger("bot.test")
    log.info("provider echoed the key %s back", SECRET)
    try:
        raise RuntimeError(f"Authorization: Bearer {SECRET}")
    except RuntimeError:
        log.exception("call failed", extra={"job_id": f"job-{SECRET}"})
    log.debug("below the level: not written %s", "at all")
    text = captured.getvalue()
    assert SECRET not in text
    assert text.count(REDACTED) == 3  # message, traceback, job field
    assert "not written" not in text
    if fmt == "json":
        first, second = (json.loads(line) for line in text.splitlines())
        assert first["message"] == f"provider echoed the key {REDACTED} back"
        assert first["level"] == "INFO" and first["logger"] == "bot.test" and first["time"].endswith("+00:00")
        assert second["job_id"] == f"job-{REDACTED}" and f"Bearer {REDACTED}" in second["exc"]
    else:
        assert f"provider echoed the key {REDACTED} back" in text
        assert f"call failed [job=job-{REDACTED}]\nTraceback" in text


def test_lines_inside_a_job_carry_its_ids_and_lines_outside_do_not(captured):
    configure(captured, "INFO", "json")
    log = logging.getLogger("bot.test")
    with job_context("abc123", guild_id=7, user_id=42):
        log.warning("inside")
        log.warning("overridden", extra={"user_id": 43})
    with job_context("op1", guild_id=0, user_id=None):  # the CLI's operator job: no guild, no user
        log.warning("operator")
    log.warning("outside")
    inside, overridden, operator, outside = (json.loads(line) for line in captured.getvalue().splitlines())
    assert (inside["job_id"], inside["guild_id"], inside["user_id"]) == ("abc123", 7, 42)
    assert overridden["user_id"] == 43
    assert operator["job_id"] == "op1" and "guild_id" not in operator and "user_id" not in operator
    assert not {"job_id", "guild_id", "user_id"} & set(outside)


async def test_a_job_run_from_the_cli_logs_json_lines_naming_it(tmp_path):
    with emulator() as url:
        env = provider_env(url, tmp_path)
        env.update(KONTEXT_LOG_LEVEL="DEBUG", KONTEXT_LOG_FORMAT="json")
        code, out, err = await run_cli(
            "generate",
            "--model",
            PRO_T2I,
            "--prompt",
            "a red fox",
            "--provider",
            "wavespeed",
            "--user",
            "42",
            "--guild",
            "7",
            "--json",
            env=env,
            cwd=tmp_path,
        )
    assert code == 0, err
    job_id = json.loads(out)["job_id"]
    lines = [json.loads(line) for line in err.splitlines()]  # every line is one JSON object
    about = [line for line in lines if line.get("job_id") == job_id]
    # The provider client's DEBUG line for each exchange (submit, polls) runs inside the job.
    assert any(line["logger"] == "bot.providers.http" for line in about), err[-2000:]
    assert all(line["guild_id"] == 7 and line["user_id"] == 42 for line in about)
    for key in (env["WAVESPEED_API_KEY"], env["VTRIX_API_KEY"], env["MODELVERSE_API_KEY"]):
        assert key not in err


async def test_a_bad_log_level_stops_the_command_with_a_config_error(tmp_path):
    code, out, err = await run_cli("models", env={"KONTEXT_LOG_LEVEL": "verbose"}, cwd=tmp_path)
    assert code == 2 and out == ""
    assert err.strip() == (
        "kontext-bot: KONTEXT_LOG_LEVEL must be one of DEBUG, INFO, WARNING, ERROR (got 'verbose')."
    )


async def test_one_shot_commands_keep_stderr_quiet_by_default_and_obey_the_level(tmp_path):
    code, _, err = await run_cli("models", env={}, cwd=tmp_path)
    assert code == 0 and err == ""  # the sandbox notice is INFO: not shown to scripts by default
    code, _, err = await run_cli("models", env={"KONTEXT_LOG_LEVEL": "INFO"}, cwd=tmp_path)
    assert code == 0 and "INFO bot.services: No provider API key is set" in err
