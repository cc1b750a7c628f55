"""/kontext-admin rate and per-role free images through the real discord.py client: a member over
the limit is told privately when the next job is allowed, and nothing is charged or sent."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import storage
from tests.e2e.conftest import ADMIN, ART_ROLE, MEMBER, OTHER
from tests.e2e.support import PRO, fast, free_used
from tests.e2e.test_admin import admin, audit, edit, free_of, quota, shown

RELATIVE = re.compile(r"<t:(\d+):R>")


async def _jobs(stack) -> int:
    return len(await storage.list_jobs(stack.svc.db, limit=1000))


async def test_an_edit_over_the_rate_limit_is_refused_privately_with_when_and_costs_nothing(
    make_stack, emulator
):
    stack = await make_stack(emulator)
    fast(stack)
    rec = await admin(stack, "rate", {"jobs": 1, "per": "1h"})
    text = shown(rec)
    assert "may start at most 1 job per hour each" in text and "Everyone else: 1 job per hour" in text
    (entry,) = await audit(stack)
    assert (entry.actor_id, entry.action, entry.details["jobs"], entry.details["window_s"]) == (
        ADMIN,
        "rate",
        1,
        3600,
    )

    _, job = await edit(stack, PRO)
    assert job.status == "succeeded"
    sent, jobs, used = len(emulator.requests), await _jobs(stack), await free_used(stack, MEMBER)
    started = datetime.now(UTC)

    rec, job = await edit(stack, PRO)
    assert job is None
    (warning,) = [m for m in rec.messages if m.ephemeral and m.content.startswith("⚠️")]
    assert "limit of 1 job per hour" in warning.content and "nothing was charged" in warning.content
    (stamp,) = RELATIVE.findall(warning.content)  # Discord shows it as "in 59 minutes", in their zone
    assert 3500 <= int(stamp) - started.timestamp() <= 3601
    assert not any(m.content and not m.ephemeral for m in rec.messages[1:])  # nothing public
    assert (len(emulator.requests), await _jobs(stack), await free_used(stack, MEMBER)) == (sent, jobs, used)
    assert await storage.check(stack.svc.db) == []

    rec = await stack.fake.slash("quota", {}, user_id=MEMBER)
    await rec.wait_for("responded")
    assert rec.ephemeral and "Jobs you can start" in shown(rec)
    assert re.search(r"0 left of 1 job per hour · next <t:\d+:R>", shown(rec))

    _, job = await edit(stack, PRO, user_id=OTHER)  # the limit is per member
    assert job.status == "succeeded"
    rec = await admin(stack, "rate", {"jobs": 0})
    assert "No rate limit for members without a limited role" in shown(rec)
    _, job = await edit(stack, PRO)
    assert job.status == "succeeded"


async def test_a_role_limit_more_generous_than_the_server_wide_one_wins(make_stack, emulator):
    stack = await make_stack(emulator)
    fast(stack)
    await admin(stack, "rate", {"jobs": 1, "per": "1d"})
    rec = await admin(stack, "rate", {"jobs": 2, "per": "10m", "role": ART_ROLE})
    assert f"<@&{ART_ROLE}>: 2 jobs per 10 minutes" in shown(rec)

    outcomes = [(await edit(stack, PRO, user_id=MEMBER))[1] for _ in range(3)]  # MEMBER holds ART_ROLE
    assert [j is not None for j in outcomes] == [True, True, False]
    others = [(await edit(stack, PRO, user_id=OTHER))[1] for _ in range(2)]
    assert [j is not None for j in others] == [True, False]

    overview = shown(await admin(stack, "overview"))
    assert "Rate limits" in overview and "Everyone else: 1 job per day" in overview


async def test_members_holding_a_role_get_its_free_images(make_stack):
    stack = await make_stack()
    await admin(stack, "free-quota", {"model": "all", "images": 1})
    rec = await admin(stack, "free-quota", {"model": PRO, "images": 7, "period": "week", "role": ART_ROLE})
    assert f"Members holding <@&{ART_ROLE}> now get 7 free image(s) per week" in shown(rec)

    mine = free_of(await quota(stack, MEMBER, (ART_ROLE,)), PRO)
    assert (mine.limit, mine.period) == (7, "week")
    theirs = free_of(await quota(stack, OTHER), PRO)
    assert (theirs.limit, theirs.period) == (1, "month")
    overview = shown(await admin(stack, "overview"))
    assert "Free images by role" in overview and "7 per week" in overview

    rec = await admin(stack, "free-quota", {"model": PRO, "images": 0, "period": "off", "role": ART_ROLE})
    assert "get the server's free images" in shown(rec)
    assert free_of(await quota(stack, MEMBER, (ART_ROLE,)), PRO).limit == 1
