"""Many ``kontext-bot`` processes on one database: gateway shards and workers, as an operator runs them.

``Cluster`` starts the fake Discord (two shards, a guild on each) and the provider emulator as
subprocesses, registers the commands in both guilds, and starts and stops real ``kontext-bot run
--no-worker --shard-count 2 --shard-ids I`` and ``kontext-bot worker`` processes by name. The test
drives members through the fake's control API and reads the database beside the processes.
Every wait is bounded; every process is killed when the cluster closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx

import storage
from storage.opening import open_database
from tests.e2e.test_process import STARTUP, Fake, cli, fake_discord_env, kontext_bot, server, stop, tail
from tests.fake_discord import guild_on_shard

GUILDS = (guild_on_shard(0, 2), guild_on_shard(1, 2))  # one on each of two shards
MODEL = "black-forest-labs/flux-kontext-max/text-to-image"  # no free images: every job is paid
PRICE_MICROS = 80_000
PROVIDER_CAP = 3  # tasks each provider account runs at once; max_concurrency says the same
PROVIDERS = ("vtrix", "wavespeed")


def config_text() -> str:
    """Short leases and polls, so a dead process's jobs come back within seconds."""
    limits = {
        "allow_private_results": "true",  # the emulator serves results on loopback
        "job_lease": "3.0",
        "shutdown_grace": "1.0",
        "queue_poll": "0.2",
        "user_jobs_in_flight": "2",
    }
    lines = ["[limits]", *(f"{k} = {v}" for k, v in limits.items())]
    for name in PROVIDERS:
        lines += [f"[providers.{name}]", f"max_concurrency = {PROVIDER_CAP}", "poll_interval = 0.05"]
    return "\n".join(lines) + "\n"


class Cluster:
    def __init__(self, tmp_path: Path, db: str, fake: Fake, emu_url: str, env: dict[str, str]) -> None:
        self.tmp_path, self.db, self.fake, self.emu_url, self.env = tmp_path, db, fake, emu_url, env
        self.procs: dict[str, asyncio.subprocess.Process] = {}

    # --- processes ----------------------------------------------------------------------------

    def _log(self, name: str) -> Path:
        return self.tmp_path / f"{name}.log"

    async def start(self, name: str) -> None:
        """``gateway0`` / ``gateway1``: that shard's gateway only; ``worker...``: a worker."""
        if name.startswith("gateway"):
            args = ["run", "--no-worker", "--shard-count", "2", "--shard-ids", name.removeprefix("gateway")]
        else:
            args = ["worker", "--concurrency", "4"]
        said = self._said(name)
        self.procs[name] = await asyncio.create_subprocess_exec(
            *kontext_bot(), *args, env=self.env,
            stdout=asyncio.subprocess.DEVNULL, stderr=self._log(name).open("ab"),
        )  # fmt: skip
        if not name.startswith("gateway"):  # its signal handlers are in place once it says so
            async with asyncio.timeout(STARTUP):
                while self._said(name) <= said:  # noqa: ASYNC110 -- a subprocess: no event to wait on
                    await asyncio.sleep(0.05)

    def _said(self, name: str) -> int:
        log = self._log(name)
        return log.read_text(errors="replace").count("is running queued jobs") if log.exists() else 0

    async def stop(self, name: str, sig: signal.Signals = signal.SIGTERM) -> int:
        return await stop(self.procs.pop(name), sig=sig)

    async def wait_gateways(self) -> None:
        r = await self.fake.http.get(
            "/_fake/ready", params={"timeout": STARTUP, "shard_ids": "0,1"}, timeout=STARTUP + 5
        )
        assert r.status_code == 200, f"the gateways did not connect: {self.logs()}"

    async def wait_gateway_gone(self, shard: int) -> None:
        """Until the fake has seen the old session of ``shard`` go (before waiting for a new one)."""
        async with asyncio.timeout(STARTUP):
            while any(shard in s for s in (await self.fake.get("state"))["gateway_shards"]):  # noqa: ASYNC110
                await asyncio.sleep(0.05)

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{tail(p)}" for p in sorted(self.tmp_path.glob("*.log")))

    def tracebacks(self) -> list[str]:
        return [p.name for p in self.tmp_path.glob("*.log") if "Traceback" in p.read_text(errors="replace")]

    # --- members and jobs ---------------------------------------------------------------------

    async def create(self, user_id: int, guild_id: int, prompt: str) -> dict[str, Any]:
        options = {"prompt": prompt, "model": MODEL}
        return await self.fake.post(
            "slash", {"name": "create", "options": options, "user_id": user_id, "guild_id": guild_id}
        )

    async def interaction(self, rec: dict[str, Any]) -> dict[str, Any]:
        return await self.fake.get(f"interactions/{rec['id']}")

    async def accounts(self) -> dict[str, Any]:
        async with httpx.AsyncClient(base_url=self.emu_url) as http:
            return (await http.get("/_emulator/accounts", timeout=10)).json()

    async def emulator(self, what: str, body: dict[str, Any]) -> None:
        await emulator_post(self.emu_url, what, body)

    async def jobs(self) -> list[storage.Job]:
        async with await open_database(self.db) as db:
            return await storage.list_jobs(db, limit=100_000)

    async def settled(self, expected: int, timeout: float = 120.0) -> list[storage.Job]:  # noqa: ASYNC109
        """Until ``expected`` jobs are recorded, each finished and told; returns them."""
        async with asyncio.timeout(timeout):
            while True:
                jobs = await self.jobs()
                told = [j for j in jobs if j.finished and (j.delivered_at or j.status == "refused")]
                if len(jobs) >= expected and len(told) == len(jobs):
                    return jobs
                await asyncio.sleep(0.25)

    async def problems(self) -> list[str]:
        async with await open_database(self.db) as db:
            return await storage.check(db)


@contextlib.asynccontextmanager
async def cluster(tmp_path: Path, db: str, *, members: int, budget_usd: str) -> AsyncIterator[Cluster]:
    """The fake Discord and the emulator running, members in both guilds, both guilds' budget set
    and the commands registered; no kontext-bot process started yet."""
    config = tmp_path / "kontext.toml"
    config.write_text(config_text())
    fake_args = ["--shards", "2", "--guild-id", str(GUILDS[0]), "--guild", str(GUILDS[1])]
    async with (
        server("tests.fake_discord", "FAKE_DISCORD_URL", tmp_path / "fake.log", *fake_args) as fake_url,
        server("tests.emulator", "EMULATOR_URL", tmp_path / "emulator.log") as emu_url,
        httpx.AsyncClient(base_url=fake_url) as http,
    ):
        fake = Fake(http)
        env = await fake_discord_env(
            fake,
            KONTEXT_DB=db,
            KONTEXT_CONFIG=str(config),
            KONTEXT_FILES=str(tmp_path / "files"),  # every process on one database shares it
            VTRIX_API_KEY="vt-test-key",
            VTRIX_BASE_URL=emu_url,
            WAVESPEED_API_KEY="ws-test-key",
            WAVESPEED_BASE_URL=emu_url,
        )
        for name in PROVIDERS:
            await emulator_post(emu_url, "account", {"provider": name, "concurrency": PROVIDER_CAP})
        for i in range(members):
            await fake.post("members", {"user_id": member(i), "name": f"m{i}", "guild_id": guild_of(i)})
        for guild in GUILDS:
            code, _, err = await cli(["admin", "budget", "--guild", str(guild), "--usd", budget_usd], env)
            assert code == 0, err
            code, _, err = await cli(["sync", "--guild", str(guild)], env)
            assert code == 0, err
        group = Cluster(tmp_path, db, fake, emu_url, env)
        try:
            yield group
        finally:
            for name in list(group.procs):
                await group.stop(name, signal.SIGKILL)


async def emulator_post(url: str, what: str, body: dict[str, Any]) -> None:
    async with httpx.AsyncClient(base_url=url) as http:
        (await http.post(f"/_emulator/{what}", json=body, timeout=10)).raise_for_status()


def member(i: int) -> int:
    return 7000 + i


def guild_of(i: int) -> int:
    return GUILDS[i % 2]
