"""Money through the real discord.py client: sandbox jobs, refunds that cancel, who sees which usage."""

from __future__ import annotations

import storage
from tests.e2e.conftest import MEMBER
from tests.e2e.support import free_used, job_id_of


async def books_clean(stack) -> None:
    assert await storage.check(stack.svc.db) == []


async def test_a_sandbox_job_from_discord_is_charged_to_the_sandbox_and_the_books_balance(make_stack):
    stack = await make_stack()  # no provider key: the sandbox serves every model
    rec = await stack.fake.slash("create", {"prompt": "a lighthouse"}, user_id=MEMBER)
    await rec.wait_for("files", timeout=10)
    job = await stack.svc.jobs.get(job_id_of(rec))
    assert job is not None and job.status == "succeeded" and job.charged_to == "sandbox"
    assert await free_used(stack, MEMBER, job.model) == 0
    await books_clean(stack)
