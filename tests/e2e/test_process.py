"""The real ``kontext-bot`` processes: ``sync`` registers the commands, ``run`` serves them, SIGTERM
stops it cleanly, and the buttons on a result still work after a restart. The fake Discord and the
provider emulator run as processes too and are driven through their HTTP control APIs.

Every wait is bounded and every process is killed in ``finally``, so a hang fails the test quickly
instead of stalling the suite.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import signal
import sys
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest

from bot.config import load_settings
from bot.services import open_services
from tests.emulator import make_png

MEMBER = 4242
OTHER = 4343
STARTUP = 20.0  # seconds for a process to print its URL line or for the bot to connect
STOP = 10.0  # seconds a process may take to exit after SIGTERM
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def kontext_bot() -> list[str]:
    """The installed console script when there is one, else the module (same code either way)."""
    script = Path(sys.executable).with_name("kontext-bot")
    return [str(script)] if script.exists() else [sys.executable, "-m", "bot"]


def clean_env(**extra: str) -> dict[str, str]:
    """The test's environment without anything that could point the bot at a real service."""
    drop = ("DISCORD_", "KONTEXT_", "MODELVERSE_", "VTRIX_", "WAVESPEED_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    return {**env, "PYTHONUNBUFFERED": "1", **extra}


async def fake_discord_env(fake: Fake, **extra: str) -> dict[str, str]:
    """``clean_env`` pointing a kontext-bot process at this fake Discord (its token, REST, gateway)."""
    state = await fake.get("state")
    return clean_env(
        DISCORD_TOKEN=state["token"],
        DISCORD_API_BASE=state["api_base"],
        DISCORD_GATEWAY_URL=state["gateway_url"],
        **extra,
    )


def tail(log: Path) -> str:
    """The end of a process's log, for a failure message."""
    return log.read_text(errors="replace")[-3000:] if log.exists() else ""


async def stop(
    proc: asyncio.subprocess.Process,
    timeout: float = STOP,  # noqa: ASYNC109
    sig: signal.Signals = signal.SIGTERM,
) -> int:
    """A signal (SIGTERM), then SIGKILL if it does not go in time. Returns the exit status."""
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(sig)
        try:
            await asyncio.wait_for(proc.wait(), timeout)
        except TimeoutError:
            proc.kill()
            await proc.wait()
    assert proc.returncode is not None
    return proc.returncode


@contextlib.asynccontextmanager
async def server(module: str, marker: str, log: Path, *args: str) -> AsyncIterator[str]:
    """``python -m <module> ARGS`` printing ``<marker>=<url>``; yields the URL, stops it on exit."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", module, *args,
        stdout=asyncio.subprocess.PIPE, stderr=log.open("wb"), env=clean_env(),
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), STARTUP)
        text = line.decode().strip()
        assert text.startswith(marker + "="), f"{module} printed {text!r}; log: {tail(log)}"
        yield text.split("=", 1)[1]
    finally:
        await stop(proc)


class Bot:
    """One ``kontext-bot run`` process, its log kept for the failure message."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.env, self.log = env, log
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            *kontext_bot(), "run", env=self.env, stdout=asyncio.subprocess.DEVNULL, stderr=self.log.open("ab")
        )

    async def stop(self, sig: signal.Signals = signal.SIGTERM) -> int:
        assert self.proc is not None
        return await stop(self.proc, sig=sig)

    def tail(self) -> str:
        return tail(self.log)


async def cli(args: Sequence[str], env: dict[str, str], timeout: float = 60.0) -> tuple[int, str, str]:  # noqa: ASYNC109
    proc = await asyncio.create_subprocess_exec(
        *kontext_bot(), *args, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    finally:
        await stop(proc)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


class Fake:
    """The fake Discord's control API (/_fake/...)."""

    def __init__(self, http: httpx.AsyncClient) -> None:
        self.http = http

    async def get(self, path: str, **params: Any) -> Any:
        r = await self.http.get(f"/_fake/{path}", params=params, timeout=60)
        assert r.status_code == 200, r.text[-2000:]
        return r.json()

    async def post(self, action: str, body: dict[str, Any]) -> Any:
        r = await self.http.post(f"/_fake/{action}", json=body, timeout=30)
        assert r.status_code == 200, r.text[-2000:]
        return r.json()

    async def until(self, rec: dict[str, Any], state: str, timeout: float = 20.0) -> dict[str, Any]:  # noqa: ASYNC109
        return await self.get(f"interactions/{rec['id']}", until=state, timeout=timeout)

    async def wait_ready(self, bot: Bot) -> None:
        r = await self.http.get("/_fake/ready", params={"timeout": STARTUP}, timeout=STARTUP + 5)
        assert r.status_code == 200, f"the bot did not connect: {bot.tail()}"


def custom_ids(message: dict[str, Any]) -> list[str]:
    return [c["custom_id"] for row in message["payload"]["components"] for c in row["components"]]


async def recorded_job(env: dict[str, str], job_id: str) -> Any:
    """The job as the database holds it (read while the bot is stopped)."""
    async with open_services(load_settings(env)) as svc:
        return await svc.jobs.get(job_id)


async def test_sync_run_edit_reroll_then_restart_and_the_old_buttons_still_work(tmp_path):
    config = tmp_path / "kontext.toml"
    # The emulator serves results on loopback, which the bot refuses unless told otherwise.
    config.write_text("[limits]\nallow_private_results = true\n[providers.wavespeed]\npoll_interval = 0.05\n")
    async with (
        server("tests.fake_discord", "FAKE_DISCORD_URL", tmp_path / "fake.log") as fake_url,
        server("tests.emulator", "EMULATOR_URL", tmp_path / "emulator.log") as emu_url,
        httpx.AsyncClient(base_url=fake_url) as http,
    ):
        fake = Fake(http)
        state = await fake.get("state")
        env = await fake_discord_env(
            fake,
            KONTEXT_DB=str(tmp_path / "kontext.db"),
            KONTEXT_CONFIG=str(config),
            WAVESPEED_API_KEY="ws-test-key",  # a polled API: a job in flight has a task to resume
            WAVESPEED_BASE_URL=emu_url,
        )
        await fake.post("members", {"user_id": MEMBER, "name": "alice"})
        await fake.post("members", {"user_id": OTHER, "name": "bob"})

        # sync registers the commands in the guild, once.
        code, out, err = await cli(["sync", "--guild", str(state["guild_id"])], env)
        assert code == 0, err
        assert out.startswith("Registered ") and f"guild {state['guild_id']}" in out
        names = {c["name"] for c in await fake.get("commands")}
        assert {"edit", "combine", "create", "Edit with Kontext"} <= names

        bot = Bot(env, tmp_path / "bot.log")
        await bot.start()
        try:
            await fake.wait_ready(bot)
            png = base64.b64encode(make_png(128, 96)).decode()
            image = {"filename": "cat.png", "data_b64": png, "content_type": "image/png"}
            edit = {"name": "edit", "options": {"prompt": "a hat"}, "user_id": MEMBER}
            rec = await fake.post(
                "slash", {**edit, "attachments": {"image": await fake.post("attachments", image)}}
            )
            rec = await fake.until(rec, "files")
            assert rec["callback_type"] == 5, bot.tail()
            original = rec["original"]
            assert base64.b64decode(original["files"][0]["data_b64"]).startswith(PNG_MAGIC)
            reroll = next(c for c in custom_ids(original) if c.startswith("kx:reroll:"))
            old_message = original["payload"]["id"]

            click = await fake.post(
                "click", {"message_id": old_message, "custom_id": reroll, "user_id": OTHER}
            )
            click = await fake.until(click, "files")
            assert click["original"]["files"], bot.tail()

            # The bot never registers commands by itself: only the sync above did.
            puts = [c for c in await fake.get("calls") if c["method"] == "PUT" and "/commands" in c["path"]]
            assert len(puts) == 1

            # A job still running at SIGTERM is handed back to the queue with its task id; the
            # next start resumes polling it (no second submit) and delivers it to the same message.
            await http.post(f"{emu_url}/_emulator/config", json={"polls_until_done": 1_000_000})
            rec = await fake.post(
                "slash", {**edit, "attachments": {"image": await fake.post("attachments", image)}}
            )
            rec = await fake.until(rec, "edited")
            in_flight = custom_ids(rec["original"])[0].rsplit(":", 1)[1]
            # The task id is recorded before the first poll: once the emulator is polled, a stop
            # cannot lose it.
            async with asyncio.timeout(STARTUP):
                while not await polled(http, emu_url):  # noqa: ASYNC110 -- a subprocess: no event
                    await asyncio.sleep(0.05)
            assert await bot.stop() == 0, bot.tail()  # SIGTERM: a clean stop
            job = await recorded_job(env, in_flight)
            assert (job.status, job.reservation, job.lease_owner) == ("queued", "open", None) and job.task_id
            submits = await count_submits(http, emu_url)

            # Wait for the fake to see the old gateway connection go before waiting for the new one.
            async with asyncio.timeout(STOP):
                while (await fake.get("state"))["ready"]:  # noqa: ASYNC110 -- a subprocess: no event
                    await asyncio.sleep(0.05)
            await http.post(f"{emu_url}/_emulator/config", json={"polls_until_done": 1})
            await bot.start()
            await fake.wait_ready(bot)
            click = await fake.post(
                "click", {"message_id": old_message, "custom_id": reroll, "user_id": MEMBER}
            )
            click = await fake.until(click, "files")  # a button from before the restart still works
            assert click["original"]["files"], bot.tail()

            done = await fake.until(rec, "files")  # the interrupted job, finished in its own message
            assert custom_ids(done["original"])[0] == f"kx:reroll:{in_flight}"
            fields = {f["name"]: f["value"] for f in done["original"]["payload"]["embeds"][0]["fields"]}
            assert fields["Requested by"] == f"<@{MEMBER}>"  # named, after a restart too
            assert fields["Time"] != "0.0s"  # the real times, from the job's record
            assert await count_submits(http, emu_url) == submits + 1  # only the Re-roll's
            assert await bot.stop(signal.SIGINT) == 0, bot.tail()  # Ctrl-C stops it cleanly too
            assert (await recorded_job(env, in_flight)).status == "succeeded"
        finally:
            await bot.stop()
        assert "Traceback" not in bot.tail(), bot.tail()


async def polled(http: httpx.AsyncClient, emu_url: str) -> bool:
    """Whether the emulator has been asked for the state of the task just submitted."""
    requests = (await http.get(f"{emu_url}/_emulator/requests", timeout=10)).json()
    last_submit = max(i for i, r in enumerate(requests) if r["method"] == "POST")
    return any(r["method"] == "GET" and "/predictions/" in r["path"] for r in requests[last_submit:])


async def count_submits(http: httpx.AsyncClient, emu_url: str) -> int:
    requests = (await http.get(f"{emu_url}/_emulator/requests", timeout=10)).json()
    return sum(1 for r in requests if r["method"] == "POST")


@pytest.mark.parametrize("command", [["run"], ["sync", "--guild", "1"]])
async def test_without_a_token_the_command_says_so_in_one_line_and_exits_2(tmp_path, command):
    env = clean_env(KONTEXT_DB=str(tmp_path / "kontext.db"))
    code, out, err = await cli(command, env, timeout=30)
    assert code == 2
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "DISCORD_TOKEN is not set" in lines[0]
    assert not (tmp_path / "kontext.db").exists()  # refused before touching anything
