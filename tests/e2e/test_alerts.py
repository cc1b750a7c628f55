"""Budget alerts and period reports through the real discord.py client and the fake Discord: set by
/kontext-admin alerts, posted in the chosen channel by the Alerts cog once each, whatever restarts
or second processes do. Jobs run through the provider emulator; period ends come from the alert
service's injected clock."""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
from datetime import UTC, datetime, timedelta

import storage
from bot.client import KontextBot
from bot.services import open_services
from storage.periods import period_at
from tests.e2e.conftest import ADMIN, MEMBER, Stack, run_stack
from tests.e2e.support import PNG_MAGIC
from tests.fake_discord import FakeMessage, InteractionRecord

MAX = "black-forest-labs/flux-kontext-max"  # no free images: every job is paid
MAX_PRICE = 97_223  # micro-dollars, its first route
ALERTS = 9_000_001  # the admins' channel


def shown(rec: InteractionRecord) -> str:
    return "\n".join(m.content or "" for m in rec.messages)


async def admin_alerts(stack: Stack, options: dict, user_id: int = ADMIN) -> str:
    rec = await stack.fake.slash("kontext-admin alerts", options, user_id=user_id)
    await rec.wait_for("responded")
    assert rec.ephemeral and rec.original.allowed_mentions == {"parse": []}
    return shown(rec)


def posted(stack: Stack) -> list[FakeMessage]:
    return stack.fake.channel_messages(ALERTS)


async def paid_edit(stack: Stack) -> None:
    rec = await stack.fake.slash(
        "edit", {"prompt": "a hat", "model": MAX}, user_id=MEMBER, attachments={"image": stack.png()}
    )
    await rec.wait_for("files", timeout=10)


async def alerting_stack(make_stack, emulator, at: str = "30,70") -> Stack:
    stack = await make_stack(emulator)
    stack.fake.add_channel(ALERTS, "budget-alerts")
    await stack.svc.accounts.set_budget(stack.fake.guild_id, "0.25", "week")
    said = await admin_alerts(stack, {"channel": ALERTS, "at": at})
    assert f"Budget alerts: in <#{ALERTS}>, alerts at" in said
    return stack


def cog(stack: Stack):
    return stack.bot.get_cog("Alerts")


async def test_the_slash_command_sets_shows_and_turns_off(make_stack):
    stack = await make_stack()
    stack.fake.add_channel(ALERTS, "budget-alerts")
    assert await admin_alerts(stack, {}) == "Budget alerts: budget alerts and reports are off."
    said = await admin_alerts(stack, {"channel": ALERTS, "at": "50,90", "report": "monthly"})
    assert said == (
        f"✅ Budget alerts: in <#{ALERTS}>, alerts at 50%, 90% of each budget and on provider "
        "overruns; a monthly usage report."
    )
    assert "alerts at 50%, 90%" in await admin_alerts(stack, {})
    said = await admin_alerts(stack, {"channel": ALERTS, "at": "90,50"})
    assert said.startswith("⚠️ at must be up to 10 whole percentages from 1 to 1000 in rising order")
    assert "is required: the channel" in await admin_alerts(stack, {"at": "50"})
    assert await admin_alerts(stack, {"off": True}) == "✅ Budget alerts: budget alerts and reports are off."
    said = await admin_alerts(stack, {"channel": ALERTS}, user_id=MEMBER)
    assert "Only members with the Manage Server permission" in said
    entries = [e for e in await storage.audit_log(stack.svc.db, stack.fake.guild_id) if e.action == "alerts"]
    assert [e.actor_id for e in entries] == [ADMIN, ADMIN]


async def test_each_threshold_crossed_by_jobs_posts_exactly_one_message(make_stack, emulator):
    stack = await alerting_stack(make_stack, emulator)
    await paid_edit(stack)  # $0.097 of $0.25: past 30%
    first = await stack.fake.wait_for_message(lambda m: m.channel_id == ALERTS, timeout=10)
    assert "The server budget passed **30%** this week: $0.10 of $0.25 spent (38%)." in first.content
    assert f"Top spenders: <@{MEMBER}> $0.10." in first.content
    resets = period_at("week", datetime.now(UTC)).end
    assert f"<t:{int(resets.timestamp())}:f>" in first.content
    assert first.allowed_mentions == {"parse": []}  # names a member, pings nobody
    await paid_edit(stack)  # $0.19: past 70%
    await stack.fake.wait_for_message(lambda m: m.channel_id == ALERTS and "**70%**" in m.content, timeout=10)
    for _ in range(3):  # looking again, however often, posts nothing more
        assert await cog(stack).check() == 0
    assert [("30%" in m.content, "70%" in m.content) for m in posted(stack)] == [(True, False), (False, True)]


async def test_a_restarted_bot_and_a_second_process_post_nothing_twice(tmp_path, make_stack, emulator):
    stack = await alerting_stack(make_stack, emulator, at="30")
    await paid_edit(stack)
    await stack.fake.wait_for_message(lambda m: m.channel_id == ALERTS, timeout=10)
    settings = stack.svc.settings
    # A second process on the same database, talking to the same Discord: its checker finds nothing.
    async with open_services(settings) as svc2:
        other = KontextBot(svc2, run_jobs=False, commands_enabled=False)
        try:
            await other.login(settings.discord_token)  # loads the delivery cogs, Alerts among them
            assert await other.get_cog("Alerts").check() == 0
            # A new threshold, and both processes look at once: one posts it.
            await stack.svc.alerts.configure(stack.fake.guild_id, channel_id=ALERTS, at="10,30")
            counts = await asyncio.gather(cog(stack).check(), other.get_cog("Alerts").check())
        finally:
            await other.close()
    assert sorted(counts) == [0, 1]
    assert len(posted(stack)) == 2 and "**10%**" in posted(stack)[1].content
    await cog(stack).check()
    # A restart: a new bot (and a new Discord session) over the same database posts nothing again.
    async with run_stack(tmp_path / "restart", None, {"KONTEXT_DB": str(stack.db_path)}) as again:
        again.fake.add_channel(ALERTS, "budget-alerts")
        assert await cog(again).check() == 0
        assert again.fake.channel_messages(ALERTS) == []


async def test_a_weekly_report_is_posted_once_at_the_weeks_end(tmp_path, make_stack, emulator):
    stack = await make_stack(emulator)
    stack.fake.add_channel(ALERTS, "budget-alerts")
    await stack.svc.accounts.set_budget(stack.fake.guild_id, "5", "month")
    said = await admin_alerts(stack, {"channel": ALERTS, "at": "off", "report": "weekly"})
    assert said == f"✅ Budget alerts: in <#{ALERTS}>, a weekly usage report."
    await paid_edit(stack)
    await paid_edit(stack)
    week = period_at("week", datetime.now(UTC))
    clock = [week.end - timedelta(seconds=1)]
    stack.svc.alerts.clock = lambda: clock[0]
    assert await cog(stack).check() == 0  # the week is not over yet
    clock[0] = week.end
    assert await cog(stack).check() == 1
    (report,) = posted(stack)
    last = (week.end - timedelta(days=1)).date()
    assert report.content.startswith(
        f"📈 **Weekly usage report**, {week.start.date()} to {last} (UTC): 2 job(s), $0.19 spent"
    )
    assert f"<@{MEMBER}>" in report.content and report.allowed_mentions == {"parse": []}
    files = {f.filename: f.data for f in report.files}
    name = f"weekly-{week.start.date()}"
    rows = list(csv.DictReader(io.StringIO(files[f"usage-{name}-by-user.csv"].decode())))
    assert [(r["user"], r["jobs"], r["cost_usd"]) for r in rows] == [(str(MEMBER), "2", "0.194446")]
    assert files[f"spend-per-day-{name}.png"].startswith(PNG_MAGIC)
    clock[0] = week.end + timedelta(hours=1)
    assert await cog(stack).check() == 0  # once
    with contextlib.suppress(Exception):
        await stack.bot.close()  # a restart at the same moment posts it no second time
    async with run_stack(tmp_path / "restart", None, {"KONTEXT_DB": str(stack.db_path)}) as again:
        again.fake.add_channel(ALERTS, "budget-alerts")
        again.svc.alerts.clock = lambda: clock[0]
        assert await cog(again).check() == 0
