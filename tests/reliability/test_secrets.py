"""No key in any log line, error message, exception text, report or listing, on any error path.

Keys are recognisable values; every fault of the emulator is forced through the real JobService with
the root logger (httpx and httpcore included) at DEBUG, then the CLI runs its failing and reporting
commands, then /edit fails through the fake Discord. Each text the bot produced is searched.
"""

from __future__ import annotations

import asyncio
import json
import logging
import traceback
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.config import load_settings
from bot.jobs import JobFailed, JobRequest
from tests.e2e.conftest import MEMBER as DISCORD_MEMBER
from tests.emulator import PROVIDERS, ProviderEmulator, make_png
from tests.reliability.conftest import (
    FREE_MODEL,
    GUILD,
    MEMBER,
    PAID_MODEL,
    open_stack,
    run_cli,
    stack_env,
)
from tests.reliability.test_faults import FAILING

KEYS = {"modelverse": "mv-SECRET-123456", "vtrix": "vt-SECRET-654321", "wavespeed": "ws-SECRET-abcdef"}
WRONG = {name: f"{key}-WRONG" for name, key in KEYS.items()}  # what a mistyped key looks like
TOKEN = "discord-SECRET-token-999"
SECRETS = (*KEYS.values(), *WRONG.values(), TOKEN)


def leaks(text: str) -> list[str]:
    # The distinctive middle of each key: a truncated or reformatted echo is caught too.
    return [s for s in (*SECRETS, "SECRET-") if s in text]


def exception_texts(exc: BaseException) -> list[str]:
    """Everything an exception can show: str, repr, args, the formatted traceback, its causes."""
    out = ["".join(traceback.format_exception(exc))]
    seen: BaseException | None = exc
    while seen is not None:
        out += [str(seen), repr(seen), repr(seen.args), repr(vars(seen))]
        seen = seen.__cause__ or seen.__context__
    return out


def log_texts(caplog: pytest.LogCaptureFixture) -> list[str]:
    out = []
    for record in caplog.records:
        out.append(record.getMessage())
        out.append(repr(record.args))
        if record.exc_info:
            out.append("".join(traceback.format_exception(*record.exc_info)))
    return out


def files_holding_secrets(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and any(s.encode() in p.read_bytes() for s in SECRETS)]


@pytest.fixture
async def secret_emulator() -> AsyncIterator[ProviderEmulator]:
    emu = ProviderEmulator(keys=KEYS)
    await emu.start()
    try:
        yield emu
    finally:
        await emu.stop()


def echo(provider: str) -> str:
    """A provider (or a proxy) that echoes the request's Authorization header in its error text."""
    return f"upstream said: Authorization: Bearer {KEYS[provider]}; token={TOKEN}"


@pytest.mark.usefixtures("fast_backoff")
async def test_no_key_in_any_error_or_log_line_of_any_fault(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    for name in ("httpx", "httpcore", "aiosqlite", "asyncio"):
        logging.getLogger(name).setLevel(logging.DEBUG)
    extra = [
        ("echoed-refusal", (("*", "content_refused", {"times": -1, "message": echo("modelverse")}),), None),
        ("echoed-task-failure-vtrix", (("vtrix", "task_failed", {"message": echo("vtrix")}),), "vtrix"),
        (
            "echoed-task-failure-wavespeed",
            (("wavespeed", "task_failed", {"message": echo("wavespeed"), "wrapped": True}),),
            "wavespeed",
        ),
    ]
    cases = [(c.id, c.faults, c.provider, c.limits, c.providers) for c in FAILING]
    cases += [(name, faults, provider, {}, {}) for name, faults, provider in extra]

    async def one(index: int, faults, provider, limits, providers) -> JobFailed:
        # Its own emulator: a hung answer from one case must not eat another case's fault.
        emu = ProviderEmulator(keys=KEYS)
        await emu.start()
        try:
            for target, kind, options in faults:
                emu.fault(target, kind, **options)
            where = tmp_path / str(index)
            where.mkdir()
            env = {"DISCORD_TOKEN": TOKEN}
            async with open_stack(emu, where, limits=limits, providers=providers, env=env) as svc:
                assert not leaks(repr(svc.settings)) and not leaks(repr(svc.runner.client))
                req = JobRequest(
                    PAID_MODEL,
                    "a cat",
                    [make_png(256, 256)],
                    provider=provider,
                    user_id=MEMBER,
                    guild_id=GUILD,
                )
                with pytest.raises(JobFailed) as info:
                    await svc.jobs.run(req)
                job = await svc.jobs.get(info.value.job_id)
                assert not leaks(job.error or ""), job.error
                return info.value
        finally:
            await emu.stop()

    failures = await asyncio.gather(*(one(i, *case[1:]) for i, case in enumerate(cases)))
    # The provider's own words survive, minus the secrets.
    told = [f.user_message for f in failures]
    assert any("upstream said: Authorization: Bearer [redacted]" in t for t in told), told
    for failure in failures:
        for text in exception_texts(failure):
            assert not leaks(text), text
    for text in log_texts(caplog):
        assert not leaks(text), text
    assert any(r.name.startswith("httpx") for r in caplog.records)  # the HTTP logs were on
    # Nor is any key at rest: the database, its WAL and the stored inputs.
    assert await asyncio.to_thread(files_holding_secrets, tmp_path) == []


async def test_a_wrong_key_is_named_but_never_shown(
    secret_emulator: ProviderEmulator, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    env = stack_env(secret_emulator.env(), tmp_path)
    env.update({f"{p.upper()}_API_KEY": WRONG[p] for p in PROVIDERS} | {"DISCORD_TOKEN": TOKEN})
    settings = load_settings(env)
    assert not leaks(repr(settings)) and not leaks(str(settings))
    from bot.services import open_services

    async with open_services(settings) as svc:
        with pytest.raises(JobFailed) as info:
            await svc.jobs.run(
                JobRequest(FREE_MODEL, "a cat", [make_png(256, 256)], user_id=MEMBER, guild_id=GUILD)
            )
        assert info.value.user_message.startswith("Vtrix rejected the API key. (job ")
        for text in exception_texts(info.value):
            assert not leaks(text), text
    assert [r.status for r in secret_emulator.requests] == [401, 401, 401]
    for text in log_texts(caplog):
        assert not leaks(text), text


async def test_cli_errors_listings_and_reports_carry_no_key(
    secret_emulator: ProviderEmulator, tmp_path: Path
) -> None:
    env = stack_env(secret_emulator.env(), tmp_path) | {"DISCORD_TOKEN": TOKEN}
    image = tmp_path / "in.png"
    image.write_bytes(make_png(256, 256))
    async with open_stack(secret_emulator, tmp_path):  # the database, and a guild budget
        pass
    secret_emulator.fault("*", "bad_key", times=-1)
    secret_emulator.fault("*", "content_refused", times=-1, message=echo("modelverse"))
    generate = ["generate", "--model", PAID_MODEL, "--prompt", "a cat", "--image", str(image)]
    generate += ["--user", str(MEMBER), "--guild", str(GUILD), "--out", str(tmp_path / "out")]
    bad_file = tmp_path / "bad.toml"
    bad_file.write_text(f'[providers.modelverse]\napi_key = "{KEYS["modelverse"]}"\n')
    runs = await asyncio.gather(
        run_cli(env, "-v", *generate),  # every route: 401
        run_cli(env, "-v", *generate, "--json"),
        run_cli(env, "-v", "models"),
        run_cli(env, "models", "--json"),
        run_cli(env, "-v", "quota", "--user", str(MEMBER), "--guild", str(GUILD), "--json"),
        run_cli(env, "quota", "--user", str(MEMBER), "--guild", str(GUILD)),
        run_cli(env, "-v", "usage", "--guild", str(GUILD), "--format", "csv"),
        run_cli(env, "usage", "--by", "team", "--format", "json"),
        run_cli(env, "-v", "db", "check"),
        run_cli(env, "-v", "sync"),  # no Discord here: fails to connect
        run_cli({**env, "KONTEXT_CONFIG": str(bad_file)}, "models"),  # a key put in the config file
    )
    failed, failed_json, *_ = runs
    assert failed.code == 1 and "rejected the API key" in failed.err
    assert failed_json.code == 1 and json.loads(failed_json.out)["status"] == "failed"  # the failure object
    assert runs[3].code == 0 and '"provider": "vtrix"' in runs[3].out
    assert runs[10].code == 2 and "put the modelverse key in MODELVERSE_API_KEY" in runs[10].err
    for run in runs:
        assert not leaks(run.out) and not leaks(run.err), run


async def test_discord_errors_carry_no_key(make_stack, secret_emulator: ProviderEmulator) -> None:
    secret_emulator.fault("*", "content_refused", times=-1, message=echo("modelverse"))
    stack = await make_stack(secret_emulator)
    rec = await stack.fake.slash(
        "edit", {"prompt": "a hat"}, user_id=DISCORD_MEMBER, attachments={"image": stack.png()}
    )
    await rec.wait_for(lambda r: any("not charged" in m.content for m in r.messages), timeout=20)
    for message in stack.fake.messages.values():
        assert not leaks(repr(message.payload)), message.payload
    for call in stack.fake.calls:
        assert not leaks(repr(call.json)), call
    told = [m.content for m in rec.messages if "not charged" in m.content]
    assert "safety check refused" in told[0] and "[redacted]" not in told[0]  # the echo is not even shown
