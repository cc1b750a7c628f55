"""/kontext-admin through the real discord.py client: each subcommand changes what the books say."""

from __future__ import annotations

import pytest

import storage
from bot.jobs import JobRequest
from tests.e2e.conftest import ADMIN, ART_ROLE, MEMBER, OTHER
from tests.emulator import make_png
from tests.fake_discord import InteractionRecord

MAX = "black-forest-labs/flux-kontext-max"
PRO = "black-forest-labs/flux-kontext-pro"
MAX_PRICE = 97_223  # 0.70 CNY on modelverse, the max model's first route, in micro-dollars


def shown(rec: InteractionRecord) -> str:
    parts = []
    for msg in rec.messages:
        parts.append(msg.content or "")
        for e in msg.embeds:
            parts += [e.get("title", ""), e.get("description", "")]
            for f in e.get("fields", []):
                parts += [f["name"], f["value"]]
    return "\n".join(parts)


async def admin(stack, path: str, options: dict | None = None, user_id: int = ADMIN) -> InteractionRecord:
    rec = await stack.fake.slash(f"kontext-admin {path}", options or {}, user_id=user_id)
    await rec.wait_for("responded")
    assert rec.callback_type == 4 and rec.ephemeral
    assert rec.original.allowed_mentions == {"parse": []}
    return rec


async def edit(stack, model: str = MAX, user_id: int = MEMBER, channel_id: int | None = None):
    """An /edit; returns (record, job or None) once it ended in an image or a refusal."""
    rec = await stack.fake.slash(
        "edit",
        {"prompt": "a hat", "model": model},
        user_id=user_id,
        channel_id=channel_id,
        attachments={"image": stack.png()},
    )
    await rec.wait_for(lambda r: bool(r.files) or "⚠️" in shown(r), timeout=10)
    if not rec.files:
        return rec, None
    job_id = next(c for c in rec.original.custom_ids if c.startswith("kx:reroll:")).rsplit(":", 1)[1]
    return rec, await stack.svc.jobs.get(job_id)


async def quota(stack, user_id: int = MEMBER, roles=()):
    return (await stack.svc.accounts.quota(user_id, stack.fake.guild_id, roles)).status


def free_of(status, model: str):
    return next(f for f in status.free if f.model == model)


async def audit(stack) -> list[storage.AuditEntry]:
    return await storage.audit_log(stack.svc.db, stack.fake.guild_id)


ALL_SUBCOMMANDS = [
    ("budget", {"usd": "10"}),
    ("team", {"role": ART_ROLE, "name": "artists", "usd": "5"}),
    ("cap", {"usd": "1"}),
    ("free-quota", {"model": "all", "images": 1}),
    ("rate", {"jobs": 1}),
    ("grant", {"user": MEMBER, "model": MAX, "images": 1}),
    ("refund", {"job_id": "0000000000ab"}),
    ("channel-allow", {"channel": 0}),
    ("channel-deny", {"channel": 0}),
    ("channels", {}),
    ("overview", {}),
    ("alerts", {"off": True}),  # tests/e2e/test_alerts.py
]


async def test_registration_has_manage_server_default_and_no_dms(make_stack):
    stack = await make_stack()
    (cmd,) = [c for c in stack.fake.registered_commands if c["name"] == "kontext-admin"]
    assert int(cmd["default_member_permissions"]) == 1 << 5
    assert cmd.get("contexts") in ([0], None) and cmd.get("dm_permission") in (False, None)
    names = {o["name"] for o in cmd["options"]}
    assert names == {name for name, _ in ALL_SUBCOMMANDS}
    for sub in cmd["options"]:
        for option in sub.get("options", []):
            assert option["description"]  # app_commands.describe on every option


@pytest.mark.parametrize(("path", "options"), ALL_SUBCOMMANDS)
async def test_a_member_without_manage_server_is_refused_by_the_code(make_stack, path, options):
    stack = await make_stack()
    if "channel" in options:
        options = {"channel": stack.fake.channel_id}
    # The fake, like a server owner who opened the command to everyone, lets MEMBER invoke it.
    rec = await admin(stack, path, options, user_id=MEMBER)
    assert "Only members with the Manage Server permission" in shown(rec)
    assert await audit(stack) == []
    config = await storage.get_guild_config(stack.svc.db, stack.fake.guild_id)
    assert config == storage.GuildConfig(stack.fake.guild_id)


async def test_budget_pays_for_a_model_without_free_quota(make_stack, emulator):
    stack = await make_stack(emulator)
    rec, job = await edit(stack)
    assert job is None and "no budget for paid images" in shown(rec)

    rec = await admin(stack, "budget", {"usd": "1.50", "period": "week"})
    assert "Server budget set to $1.50 per week" in shown(rec)
    rec, job = await edit(stack)
    assert job.status == "succeeded" and job.charged_to == "guild" and job.actual_micros == MAX_PRICE
    status = await quota(stack)
    assert status.guild.spent_micros == MAX_PRICE and status.guild.period == "week"
    assert status.guild.remaining_micros == 1_500_000 - MAX_PRICE
    (entry,) = await audit(stack)
    assert entry.actor_id == ADMIN and entry.action == "budget"


async def test_budget_refuses_a_bad_amount_in_the_options_words(make_stack):
    stack = await make_stack()
    text = shown(await admin(stack, "budget", {"usd": "lots"}))
    assert "usd must be an amount in USD" in text and "--usd" not in text
    assert await audit(stack) == []


@pytest.mark.parametrize(
    ("path", "options"),
    [
        ("budget", {"usd": "1e15"}),
        ("cap", {"usd": "5000000"}),
        ("team", {"role": ART_ROLE, "name": "a", "usd": "2e6"}),
    ],
)
async def test_amounts_past_the_upper_bound_are_refused_in_the_options_words(make_stack, path, options):
    stack = await make_stack()
    text = shown(await admin(stack, path, options))
    assert "usd must be at most $1,000,000 per period" in text and "--usd" not in text
    assert await audit(stack) == []


async def test_team_charges_the_teams_budget(make_stack, emulator):
    stack = await make_stack(emulator)
    rec = await admin(stack, "team", {"role": ART_ROLE, "name": "artists", "usd": "5"})
    assert f"<@&{ART_ROLE}> is team **artists** with $5.00 per month" in shown(rec)
    _, job = await edit(stack, user_id=MEMBER)  # MEMBER has the artists role
    assert job.charged_to == "team:artists"
    status = await quota(stack, roles=[ART_ROLE])
    assert status.teams[0].spent_micros == MAX_PRICE
    rec, job = await edit(stack, user_id=OTHER)  # no team, no server budget
    assert job is None
    (entry,) = await audit(stack)
    assert entry.actor_id == ADMIN and entry.details["role_id"] == ART_ROLE


async def test_cap_refuses_a_job_over_it_and_off_removes_it(make_stack, emulator):
    stack = await make_stack(emulator)
    await admin(stack, "budget", {"usd": "10"})
    rec = await admin(stack, "cap", {"usd": "0.05", "period": "day"})
    assert "at most $0.05 per day" in shown(rec)
    rec, job = await edit(stack)
    assert job is None and "spending cap" in shown(rec)
    assert (await quota(stack)).guild.spent_micros == 0

    assert "No per-member cap" in shown(await admin(stack, "cap", {"usd": "off"}))
    _, job = await edit(stack)
    assert job.charged_to == "guild"
    assert [e.actor_id for e in await audit(stack)] == [ADMIN, ADMIN, ADMIN]


async def test_free_quota_for_one_model_and_for_all(make_stack):
    stack = await make_stack()
    rec = await admin(stack, "free-quota", {"model": "flux-kontext-pro", "images": 2, "period": "day"})
    assert f"2 free image(s) per day of `{PRO}`" in shown(rec)
    pro = free_of(await quota(stack), PRO)
    assert (pro.limit, pro.period) == (2, "day")

    rec = await admin(stack, "free-quota", {"model": "all", "images": 3, "period": "week"})
    assert "every model without its own setting" in shown(rec)
    status = await quota(stack)
    assert free_of(status, MAX).limit == 3 and free_of(status, PRO).limit == 2

    await admin(stack, "free-quota", {"model": PRO, "images": 7, "period": "off"})
    assert free_of(await quota(stack), PRO).limit == 0
    rec = await stack.fake.slash("quota", user_id=MEMBER)
    assert "**FLUX.1 Kontext [pro]**: no free images" in shown(await rec.wait_for("responded"))

    text = shown(await admin(stack, "free-quota", {"model": "gpt-image", "images": 1}))
    assert "Unknown model" in text
    assert len(await audit(stack)) == 3


async def test_free_quota_autocompletes_all_and_the_models(make_stack):
    stack = await make_stack()
    choices = await stack.fake.autocomplete("kontext-admin free-quota", {"model": ""}, "model", user_id=ADMIN)
    values = [c["value"] for c in choices]
    assert values[0] == "all" and len(values) == 9 and MAX in values
    narrowed = await stack.fake.autocomplete("kontext-admin grant", {"model": "step"}, "model", user_id=ADMIN)
    assert [c["value"] for c in narrowed] == ["stepfun-ai/step1x-edit"]


async def test_grant_adds_free_images_the_next_job_uses(make_stack, emulator):
    stack = await make_stack(emulator)
    rec = await admin(stack, "grant", {"user": MEMBER, "model": "flux-kontext-max", "images": 2})
    assert f"Gave <@{MEMBER}> 2 extra free image(s) of `{MAX}`" in shown(rec)
    assert free_of(await quota(stack), MAX).remaining == 2
    assert free_of(await quota(stack, OTHER), MAX).remaining == 0

    _, job = await edit(stack)
    assert job.charged_to == "free"
    assert free_of(await quota(stack), MAX).remaining == 1
    (entry,) = await audit(stack)
    assert (entry.action, entry.actor_id, entry.details["user_id"]) == ("grant", ADMIN, MEMBER)

    rec = await admin(stack, "grant", {"user": MEMBER, "model": "nope", "images": 1})
    assert "Unknown model" in shown(rec)


async def test_refund_returns_the_money_once(make_stack, emulator):
    stack = await make_stack(emulator)
    await admin(stack, "budget", {"usd": "5"})
    _, job = await edit(stack)
    assert (await quota(stack)).guild.spent_micros == MAX_PRICE

    rec = await admin(stack, "refund", {"job_id": job.id, "reason": "blurry"})
    assert f"Refunded job `{job.id}`: $0.0972 back to the server budget" in shown(rec)  # a price: 4 decimals
    assert (await quota(stack)).guild.spent_micros == 0
    entry = (await audit(stack))[0]
    assert (entry.action, entry.actor_id, entry.details["reason"]) == ("refund", ADMIN, "blurry")

    assert "nothing left to refund" in shown(await admin(stack, "refund", {"job_id": job.id}))
    assert "No job" in shown(await admin(stack, "refund", {"job_id": "zzzzzzzzzzzz"}))


async def test_refund_is_limited_to_this_servers_jobs(make_stack):
    stack = await make_stack()
    elsewhere = await stack.svc.jobs.run(
        JobRequest(model=PRO, prompt="x", images=[make_png()], user_id=OTHER, guild_id=99)
    )
    text = shown(await admin(stack, "refund", {"job_id": elsewhere.job_id}))
    assert "No job" in text and "in this server" in text
    assert await storage.audit_log(stack.svc.db) == []


async def test_refund_of_a_free_job_gives_the_image_back(make_stack, emulator):
    stack = await make_stack(emulator)
    _, job = await edit(stack, model=PRO)
    assert free_of(await quota(stack), PRO).remaining == 4
    rec = await admin(stack, "refund", {"job_id": job.id})
    assert f"1 free image(s) back to <@{MEMBER}>" in shown(rec)
    assert free_of(await quota(stack), PRO).remaining == 5


async def test_channel_allow_list_blocks_image_commands_elsewhere(make_stack):
    stack = await make_stack()
    general, nsfw = stack.fake.channel_id, stack.fake.nsfw_channel_id
    assert "every channel" in shown(await admin(stack, "channels"))

    rec = await admin(stack, "channel-allow", {"channel": general})
    assert f"allowed in <#{general}>" in shown(rec)
    assert f"<#{general}>" in shown(await admin(stack, "channels"))
    rec, job = await edit(stack, model=PRO, channel_id=nsfw)
    assert job is None and "not enabled in this channel" in shown(rec)
    _, job = await edit(stack, model=PRO, channel_id=general)
    assert job is not None and job.status == "succeeded"

    rec = await admin(stack, "channel-deny", {"channel": general})
    assert "every channel again" in shown(rec)
    _, job = await edit(stack, model=PRO, channel_id=nsfw)
    assert job is not None
    actions = [(e.action, e.actor_id, e.details["allowed"]) for e in await audit(stack)]
    assert actions == [("channel", ADMIN, False), ("channel", ADMIN, True)]


async def test_overview_shows_what_was_set(make_stack):
    stack = await make_stack()
    await admin(stack, "budget", {"usd": "20"})
    await admin(stack, "cap", {"usd": "2", "period": "week"})
    await admin(stack, "team", {"role": ART_ROLE, "name": "art `team`", "usd": "5"})
    await admin(stack, "free-quota", {"model": "all", "images": 0, "period": "off"})
    await admin(stack, "channel-allow", {"channel": stack.fake.channel_id})
    text = shown(await admin(stack, "overview"))
    assert "$20.00 per month" in text and "$2.00 per week" in text
    assert f"<@&{ART_ROLE}> → **art \\`team\\`**: $5.00 per month" in text
    assert "every other model: off" in text and f"<#{stack.fake.channel_id}>" in text
