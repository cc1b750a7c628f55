"""Small helpers for the creating and button tests: read what a member saw, find the job behind it."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

from tests.e2e.conftest import Stack
from tests.fake_discord import FakeMessage, InteractionRecord

PRO = "black-forest-labs/flux-kontext-pro"
PRO_MULTI = "black-forest-labs/flux-kontext-pro/multi"
PRO_T2I = "black-forest-labs/flux-kontext-pro/text-to-image"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
FAST = {"progress_every": 0.0, "progress_refresh": 0.05}  # bot attributes: no throttling in tests


def fast(stack: Stack) -> None:
    """Progress edits as soon as anything changes, so a test can see every state without waiting."""
    for name, value in FAST.items():
        setattr(stack.bot, name, value)


def write_config(tmp_path: Path, text: str) -> str:
    """A KONTEXT_CONFIG file; returns its path for ``make_stack(KONTEXT_CONFIG=...)``."""
    path = tmp_path / "kontext.toml"
    path.write_text(text, encoding="utf-8")
    return str(path)


def wavespeed_only(tmp_path: Path) -> dict[str, str]:
    """Env for a stack whose only provider is WaveSpeed, polled quickly."""
    cfg = write_config(tmp_path, "[providers.wavespeed]\npoll_interval = 0.02\n")
    return {"MODELVERSE_API_KEY": "", "VTRIX_API_KEY": "", "KONTEXT_CONFIG": cfg}


def job_id_of(msg: FakeMessage | InteractionRecord) -> str:
    """The job id in a result's (or progress message's) button custom ids."""
    if isinstance(msg, InteractionRecord):
        assert msg.original is not None
        msg = msg.original
    return msg.custom_ids[0].rsplit(":", 1)[1]


def warning(rec: InteractionRecord) -> FakeMessage | None:
    """The ephemeral "⚠️ ..." message the interaction ended with, if any."""
    return next((m for m in rec.messages if m.ephemeral and m.content.startswith("⚠️")), None)


async def wait_warning(rec: InteractionRecord, timeout: float = 10.0) -> str:  # noqa: ASYNC109
    await rec.wait_for(lambda r: warning(r) is not None, timeout)
    msg = warning(rec)
    assert msg is not None
    return msg.content


def contents(msg: FakeMessage) -> list[str]:
    """Every content the message showed, in order (the fake keeps a snapshot per change)."""
    return [h.get("content") or "" for h in msg.history]


def embed_text(msg: FakeMessage) -> str:
    parts = []
    for e in msg.embeds:
        parts += [e.get("description", ""), e.get("footer", {}).get("text", "")]
        parts += [f"{f['name']}: {f['value']}" for f in e.get("fields", [])]
    return "\n".join(parts)


async def free_used(stack: Stack, user_id: int, model: str = PRO) -> int:
    quota = await stack.svc.accounts.quota(user_id, stack.fake.guild_id)
    return next(f.used for f in quota.status.free if f.model == model)


async def until(check: Callable[[], Awaitable[bool]], timeout: float = 5.0) -> None:  # noqa: ASYNC109
    """Wait for a database fact the fake cannot see (e.g. a job recorded as posted right after the
    upload it did see): re-check every 20 ms, up to ``timeout``."""
    async with asyncio.timeout(timeout):
        while not await check():  # noqa: ASYNC110 -- the database has no change event to wait on
            await asyncio.sleep(0.02)


async def posted_as(stack: Stack, job_id: str, message_id: int) -> bool:
    job = await stack.svc.jobs.get(job_id)
    return job is not None and job.posted_message_id == message_id
