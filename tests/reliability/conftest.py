"""The real services (open_services) over a SQLite file and the provider emulator, tuned to be quick.

``open_stack(emulator, tmp_path, limits=..., providers=...)`` writes a KONTEXT_CONFIG file with short
poll intervals and timeouts, loads settings exactly as the bot does (``load_settings(env)``) and
yields ``Services``. ``books(svc)`` reads what a member was charged, the way /quota and /usage do.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import storage
from bot.config import load_settings
from bot.services import Services, open_services
from tests.e2e.conftest import make_stack  # noqa: F401  (the in-process Discord harness, as a fixture)
from tests.emulator import PROVIDERS, ProviderEmulator

MEMBER = 4242
GUILD = 9001
FREE_MODEL = "black-forest-labs/flux-kontext-pro"  # 5 free images per member
PAID_MODEL = "black-forest-labs/flux-kontext-max"  # no free images: the guild budget pays
BUDGET_USD = "10"
# Fast, but real: the client's own timeouts and poll loop run, only with smaller numbers.
FAST_PROVIDER = {"poll_interval": 0.05, "read_timeout": 2.0, "connect_timeout": 2.0}
FAST_LIMITS = {"max_retries": 1, "allow_private_results": True}  # the emulator serves results on loopback


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    return repr(value)


def write_config(
    path: Path,
    limits: Mapping[str, Any] | None = None,
    providers: Mapping[str, Mapping[str, Any]] | None = None,
) -> Path:
    """A KONTEXT_CONFIG file: FAST_LIMITS + ``limits``; FAST_PROVIDER + ``providers[name]`` each."""
    lines = ["[limits]"]
    lines += [f"{k} = {_toml_value(v)}" for k, v in {**FAST_LIMITS, **(limits or {})}.items()]
    for name in PROVIDERS:
        lines.append(f"[providers.{name}]")
        values = {**FAST_PROVIDER, **(providers or {}).get(name, {})}
        lines += [f"{k} = {_toml_value(v)}" for k, v in values.items()]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def stack_env(
    emulator_env: Mapping[str, str],
    tmp_path: Path,
    limits: Mapping[str, Any] | None = None,
    providers: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict[str, str]:
    config = write_config(tmp_path / "kontext.toml", limits, providers)
    return {**emulator_env, "KONTEXT_DB": str(tmp_path / "kontext.db"), "KONTEXT_CONFIG": str(config)}


@contextlib.asynccontextmanager
async def open_stack(
    emulator: ProviderEmulator,
    tmp_path: Path,
    *,
    limits: Mapping[str, Any] | None = None,
    providers: Mapping[str, Mapping[str, Any]] | None = None,
    budget: str | None = BUDGET_USD,
    env: Mapping[str, str] | None = None,
) -> AsyncIterator[Services]:
    settings = load_settings({**stack_env(emulator.env(), tmp_path, limits, providers), **(env or {})})
    async with open_services(settings) as svc:
        if budget is not None:
            await svc.accounts.set_budget(GUILD, budget)
        yield svc


@dataclass(frozen=True)
class Books:
    problems: list[str]
    guild_spent: int  # micro-dollars this period
    member_spent: int
    free_used: dict[str, int]
    usage_cost: int  # the usage report's total for the guild
    succeeded: int
    failed: int  # failed + refused + cancelled, as the usage report counts them


async def books(svc: Services, user_id: int = MEMBER, guild_id: int = GUILD) -> Books:
    quota = await svc.accounts.quota(user_id, guild_id)
    usage = await svc.accounts.usage(guild_id, by="user")
    return Books(
        problems=await storage.check(svc.db),
        guild_spent=quota.status.guild.spent_micros,
        member_spent=quota.status.spent_micros,
        free_used={f.model: f.used for f in quota.status.free if f.used},
        usage_cost=sum(r.cost_micros for r in usage.rows),
        succeeded=sum(r.succeeded for r in usage.rows),
        failed=sum(r.failed + r.refused + r.cancelled for r in usage.rows),
    )


@pytest.fixture
def fast_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    """Retries without Retry-After back off from 20 ms instead of 0.5 s (the sleeps stay real)."""
    monkeypatch.setattr("bot.providers.http.INITIAL_BACKOFF", 0.02)


ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Cli:
    code: int
    out: str
    err: str


async def run_cli(env: Mapping[str, str], *args: str, wait: float = 60) -> Cli:
    """``kontext-bot ARGS`` in a subprocess (``python -m bot``), with ``env`` over this environment."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", *args,
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT), **env},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), wait)
    assert proc.returncode is not None
    return Cli(proc.returncode, out.decode(), err.decode())
