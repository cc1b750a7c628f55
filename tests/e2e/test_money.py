"""Money through the real discord.py client: sandbox jobs, refunds that cancel, who sees which usage."""

from __future__ import annotations

import storage
from tests.e2e.conftest import ADMIN, ART_ROLE, MEMBER, OTHER
from tests.e2e.support import PRO_T2I, fast, free_used, job_id_of, until, write_config


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


def shown(rec) -> str:
    parts = []
    for msg in rec.messages:
        parts.append(msg.content or "")
        for e in msg.embeds:
            parts += [e.get("title", ""), e.get("description", "")]
            parts += [f"{f['name']}: {f['value']}" for f in e.get("fields", [])]
    return "\n".join(parts)


async def admin(stack, path: str, options: dict | None = None):
    rec = await stack.fake.slash(f"kontext-admin {path}", options or {}, user_id=ADMIN)
    await rec.wait_for("responded")
    return rec


def vtrix_only(tmp_path) -> dict[str, str]:
    cfg = write_config(tmp_path, "[providers.vtrix]\npoll_interval = 0.02\n")
    return {"MODELVERSE_API_KEY": "", "WAVESPEED_API_KEY": "", "KONTEXT_CONFIG": cfg}


async def test_an_overrun_is_not_charged_and_the_admin_sees_it(make_stack, emulator, tmp_path):
    stack = await make_stack(emulator, **vtrix_only(tmp_path))
    await admin(stack, "budget", {"usd": "1"})
    await admin(stack, "cap", {"usd": "0.50"})
    await admin(stack, "free-quota", {"model": "all", "images": 0})
    assert "none (every job cost at most what it reserved)" in shown(await admin(stack, "overview"))
    emulator.fault("vtrix", "reported_cost", cost="250")  # Vtrix's usage.cost for a $0.04 job
    rec = await stack.fake.slash("create", {"prompt": "a lighthouse", "model": PRO_T2I}, user_id=MEMBER)
    await rec.wait_for("files", timeout=10)
    job = await stack.svc.jobs.get(job_id_of(rec))
    assert (job.charged_to, job.actual_micros, job.overrun_micros) == ("guild", 250_000_000, 249_960_000)
    quota = (await stack.svc.accounts.quota(MEMBER, stack.fake.guild_id)).status
    assert quota.guild.spent_micros == 40_000 and quota.spent_micros == 40_000  # within budget and cap
    assert "$249.96 reported beyond what jobs reserved; not charged" in shown(await admin(stack, "overview"))
    usage = await stack.fake.slash("usage", {"period": "today", "by": "user"}, user_id=ADMIN)
    await usage.wait_for("files", timeout=10)
    assert "Providers reported $249.96 more than these jobs reserved" in shown(usage)
    await books_clean(stack)


async def test_a_refund_of_a_running_job_cancels_it_and_the_member_is_told(make_stack, emulator):
    stack = await make_stack(emulator)
    fast(stack)
    emulator.latency = 60.0  # the job is held at the provider
    rec = await stack.fake.slash(
        "edit", {"prompt": "slow"}, user_id=MEMBER, attachments={"image": stack.png()}
    )
    await rec.wait_for(lambda r: "Generating" in (r.original.content if r.original else ""))
    job_id = job_id_of(rec)
    assert await free_used(stack, MEMBER) == 1  # reserved while it runs

    answer = await admin(stack, "refund", {"job_id": job_id, "reason": "wrong prompt"})
    assert f"Refunded job `{job_id}`" in shown(answer) and "it was cancelled" in shown(answer)
    emulator.latency = 0.0  # were it still polled, the provider would now hand the image over
    await rec.wait_for(lambda r: "Refunded by an admin" in r.original.content, timeout=10)
    assert not rec.original.custom_ids  # no Cancel button left
    await until(lambda: _told(stack, job_id))
    # The requester is also told privately, with the admin's reason.
    private = [m.content for m in rec.messages if m.ephemeral]
    assert any("Refunded by an admin (wrong prompt)" in c and "not charged" in c for c in private), private
    assert not rec.files  # no image posted, before or after
    job = await stack.svc.jobs.get(job_id)
    assert (job.status, job.reservation, job.images_delivered) == ("cancelled", "refunded", 0)
    assert await free_used(stack, MEMBER) == 0
    await books_clean(stack)


async def _told(stack, job_id: str) -> bool:
    job = await stack.svc.jobs.get(job_id)
    return job is not None and job.delivered_at is not None


SCULPT_ROLE = 888
DAVE = 4545


async def usage_text(stack, user_id: int, by: str) -> tuple[str, str]:
    """(what the member read, the CSV) of /usage all-time ``by``."""
    rec = await stack.fake.slash("usage", {"period": "all", "by": by}, user_id=user_id)
    await rec.wait_for("files", timeout=10)
    csv_file = next(f for f in rec.files if f.filename.endswith(".csv"))
    return shown(rec), csv_file.data.decode()


async def test_usage_shows_a_team_member_only_their_teams_and_their_own_jobs(make_stack, emulator):
    stack = await make_stack(emulator)
    stack.fake.add_role(SCULPT_ROLE, "sculptors")
    stack.fake.add_member(DAVE, name="dave", roles=[SCULPT_ROLE])
    await admin(stack, "budget", {"usd": "5"})
    await admin(stack, "free-quota", {"model": "all", "images": 0})
    await admin(stack, "team", {"role": ART_ROLE, "name": "artists", "usd": "5"})
    await admin(stack, "team", {"role": SCULPT_ROLE, "name": "sculptors", "usd": "5"})
    await admin(stack, "grant", {"user": MEMBER, "model": PRO_T2I, "images": 1})
    for user_id in (MEMBER, MEMBER, DAVE, OTHER):  # alice: free, then team artists; dave; bob: guild
        rec = await stack.fake.slash("create", {"prompt": "a cat", "model": PRO_T2I}, user_id=user_id)
        await rec.wait_for("files", timeout=10)
    payers = {j.charged_to for j in await storage.list_jobs(stack.svc.db, limit=10)}
    assert payers == {"free", "team:artists", "team:sculptors", "guild"}

    text, table = await usage_text(stack, MEMBER, "user")  # alice holds only the artists' role
    assert f"\n{MEMBER}," in table and f"\n{DAVE}," not in table and f"\n{OTHER}," not in table
    assert "2 job(s)" in text and "your teams" in text
    _, table = await usage_text(stack, MEMBER, "team")
    assert "team:artists" in table and "free" in table
    assert "team:sculptors" not in table and "guild" not in table
    _, table = await usage_text(stack, DAVE, "team")
    assert "team:sculptors" in table and "team:artists" not in table and "free" not in table

    text, table = await usage_text(stack, ADMIN, "user")  # Manage Server: the whole server
    assert all(f"\n{u}," in table for u in (MEMBER, DAVE, OTHER)) and "4 job(s)" in text
    rec = await stack.fake.slash("usage", {"period": "all"}, user_id=OTHER)  # no team, no Manage Server
    await rec.wait_for("responded")
    assert "Manage Server" in shown(rec) and not rec.files
