"""A member's account through the real discord.py client: /quota, /models, /history, /settings, /usage."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from storage import capacity
from tests.e2e.conftest import ADMIN, ART_ROLE, MEMBER, OTHER
from tests.fake_discord import InteractionRecord

PRO = "black-forest-labs/flux-kontext-pro"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def shown(rec: InteractionRecord) -> str:
    """Everything a member reads in the interaction's messages: content and embeds."""
    parts = []
    for msg in rec.messages:
        parts.append(msg.content or "")
        for e in msg.embeds:
            parts += [e.get("title", ""), e.get("description", ""), e.get("footer", {}).get("text", "")]
            for f in e.get("fields", []):
                parts += [f["name"], f["value"]]
    return "\n".join(parts)


async def answered(rec: InteractionRecord) -> InteractionRecord:
    await rec.wait_for("responded")
    assert rec.callback_type in (4, 5)
    return rec


async def make_image(stack, user_id: int = MEMBER, **options) -> InteractionRecord:
    rec = await stack.fake.slash("create", {"prompt": "a lighthouse at dusk", **options}, user_id=user_id)
    return await rec.wait_for("files", timeout=10)


def job_id_of(rec: InteractionRecord) -> str:
    return next(c for c in rec.original.custom_ids if c.startswith("kx:reroll:")).rsplit(":", 1)[1]


async def test_commands_are_registered_with_every_option_described(make_stack):
    stack = await make_stack()
    commands = {c["name"]: c for c in stack.fake.registered_commands}
    assert {"quota", "models", "history", "settings", "usage"} <= set(commands)
    for name in ("quota", "models", "history", "settings", "usage"):
        for option in commands[name].get("options", []):
            assert option["description"] and option["description"] != "…"
    assert commands["usage"]["contexts"] == [0]  # servers only
    assert {o["name"] for o in commands["settings"]["options"]} == {
        "default_model",
        "aspect_ratio",
        "private_results",
    }
    assert {o["name"] for o in commands["usage"]["options"]} == {"period", "by"}


async def test_quota_shows_the_free_image_a_job_used(make_stack, emulator):
    stack = await make_stack(emulator)
    before = shown(await answered(await stack.fake.slash("quota", user_id=MEMBER)))
    assert "**FLUX.1 Kontext [pro]**: **5** of 5 left" in before
    rec = await stack.fake.slash(
        "edit", {"prompt": "a hat"}, user_id=MEMBER, attachments={"image": stack.png()}
    )
    await rec.wait_for("files", timeout=10)

    rec = await answered(await stack.fake.slash("quota", user_id=MEMBER))
    assert rec.callback_type == 4 and rec.ephemeral
    text = shown(rec)
    assert "**FLUX.1 Kontext [pro]**: **4** of 5 left" in text
    assert "**FLUX.1 Kontext [max]**: no free images" in text
    assert "Server budget" in text and "no spending cap" in text
    assert "<t:" in text  # reset times as Discord timestamps
    assert rec.original.allowed_mentions == {"parse": []}


async def test_quota_shows_the_teams_of_the_members_roles(make_stack):
    stack = await make_stack()
    await answered(
        await stack.fake.slash(
            "kontext-admin team", {"role": ART_ROLE, "name": "artists", "usd": "5"}, user_id=ADMIN
        )
    )
    assert "**artists**: $5.00 left of $5.00" in shown(
        await answered(await stack.fake.slash("quota", user_id=MEMBER))
    )
    assert "Your teams" not in shown(await answered(await stack.fake.slash("quota", user_id=OTHER)))


async def test_models_lists_the_catalog_with_prices_and_no_key(make_stack, emulator):
    stack = await make_stack(emulator)
    rec = await answered(await stack.fake.slash("models", user_id=MEMBER))
    assert rec.ephemeral
    (embed,) = rec.original.embeds
    assert len(embed["fields"]) == 1 + 8  # what each provider runs at once, then the models
    text = shown(rec)
    assert "WaveSpeedAI: 8 at once (not busy yet; at most 8)" in text
    assert "`black-forest-labs/flux-kontext-max/multi`" in text
    assert "Free: 5 of 5 free per month" in text and "no free images" in text
    assert "per image via modelverse" in text and "sandbox" not in text
    raw = json.dumps(rec.original.payload)
    for key in emulator.keys.values():
        assert key not in raw


async def test_models_show_what_each_provider_was_learned_to_run_and_its_pause(make_stack, emulator):
    stack = await make_stack(emulator)
    later = datetime.now(UTC) + timedelta(minutes=2)
    await capacity.adjust_capacity(
        stack.svc.db,
        "wavespeed",
        ceiling=8,
        rule=lambda s, open_now, waiting: replace(s, limit=2, paused_until=later, busy_total=6),
    )
    text = shown(await answered(await stack.fake.slash("models", user_id=MEMBER)))
    learned = "WaveSpeedAI: 2 at once (learned; at most 8), 6 busy answers so far"
    assert f"{learned}, paused until {later:%H:%M:%S} UTC" in text


async def test_models_in_sandbox_mode_says_so(make_stack):
    stack = await make_stack()
    text = shown(await answered(await stack.fake.slash("models", user_id=MEMBER)))
    assert "free (sandbox)" in text and "🧪 sandbox" in text and "No provider key is set" in text


async def test_history_shows_only_own_jobs_with_a_link_to_the_result(make_stack):
    stack = await make_stack()
    mine = await make_image(stack, MEMBER)
    theirs = await make_image(stack, OTHER)

    rec = await answered(await stack.fake.slash("history", user_id=MEMBER))
    assert rec.ephemeral
    text = shown(rec)
    assert job_id_of(mine) in text and job_id_of(theirs) not in text
    link = f"https://discord.com/channels/{stack.fake.guild_id}/{mine.original.channel_id}/{mine.original.id}"
    assert f"[open result]({link})" in text
    assert "a lighthouse at dusk" in text and "succeeded" in text and "free (sandbox)" in text

    empty = shown(await answered(await stack.fake.slash("history", user_id=ADMIN)))
    assert "No jobs yet" in empty


async def test_history_escapes_prompts(make_stack):
    stack = await make_stack()
    await make_image(stack, MEMBER, prompt="@everyone **bold** `tick`")
    rec = await answered(await stack.fake.slash("history", user_id=MEMBER))
    text = shown(rec)
    assert "@\u200beveryone" in text and "\\*\\*bold\\*\\*" in text
    assert rec.original.allowed_mentions == {"parse": []}


async def test_settings_round_trip_and_private_results_make_the_next_result_ephemeral(make_stack):
    stack = await make_stack()
    rec = await answered(
        await stack.fake.slash(
            "settings",
            {
                "default_model": "flux-kontext-max/text-to-image",
                "aspect_ratio": "16:9",
                "private_results": True,
            },
            user_id=MEMBER,
        )
    )
    assert rec.ephemeral and "Settings saved" in shown(rec)

    text = shown(await answered(await stack.fake.slash("settings", user_id=MEMBER)))
    assert "Your settings" in text
    assert "`black-forest-labs/flux-kontext-max/text-to-image`" in text
    assert "16:9" in text and "on: results are shown only to you" in text

    result = await make_image(stack, MEMBER)
    assert result.ephemeral
    job = await stack.svc.jobs.get(job_id_of(result))
    assert job.model == "black-forest-labs/flux-kontext-max/text-to-image"
    assert job.params["aspect_ratio"] == "16:9"

    await answered(await stack.fake.slash("settings", {"private_results": False}, user_id=MEMBER))
    assert not (await make_image(stack, MEMBER)).ephemeral
    # Settings are the member's own.
    assert "the command's own default" in shown(
        await answered(await stack.fake.slash("settings", user_id=OTHER))
    )


async def test_settings_autocompletes_models_and_refuses_an_unknown_one(make_stack):
    stack = await make_stack()
    choices = await stack.fake.autocomplete(
        "settings", {"default_model": "max"}, "default_model", user_id=MEMBER
    )
    values = [c["value"] for c in choices]
    assert values and all("max" in v for v in values)
    assert "black-forest-labs/flux-kontext-max" in values

    rec = await answered(await stack.fake.slash("settings", {"default_model": "dall-e"}, user_id=MEMBER))
    assert rec.ephemeral and "Unknown model" in shown(rec)
    assert (await stack.svc.accounts.settings(MEMBER)).default_model is None


async def test_usage_is_refused_for_a_plain_member(make_stack):
    stack = await make_stack()
    rec = await answered(await stack.fake.slash("usage", user_id=OTHER))
    assert rec.ephemeral and not rec.files
    assert "Manage Server" in shown(rec)


async def test_usage_for_a_manager_has_table_csv_and_chart(make_stack, emulator):
    stack = await make_stack(emulator)
    rec = await stack.fake.slash(
        "edit", {"prompt": "a hat"}, user_id=MEMBER, attachments={"image": stack.png()}
    )
    await rec.wait_for("files", timeout=10)

    rec = await stack.fake.slash("usage", {"period": "today", "by": "user"}, user_id=ADMIN)
    await rec.wait_for("files", timeout=10)
    assert rec.callback_type == 5 and rec.ephemeral
    text = shown(rec)
    assert "**Usage today, by user**: 1 job(s)" in text
    assert "```\nuser " in text and f"\n{MEMBER} " in text
    assert f"Who: `{MEMBER}` <@{MEMBER}>" in text  # shown as a name, pinging nobody
    assert rec.original.allowed_mentions == {"parse": []}
    csv_file = next(f for f in rec.files if f.filename.endswith(".csv"))
    png_file = next(f for f in rec.files if f.filename.endswith(".png"))
    rows = list(csv.reader(io.StringIO(csv_file.data.decode())))
    assert rows[0] == [
        "user",
        "jobs",
        "succeeded",
        "images",
        "cost_usd",
        "refused",
        "failed",
        "cancelled",
        "overrun_micros",
    ]
    assert rows[1][0] == str(MEMBER) and rows[1][1] == "1"
    assert png_file.data[:8] == PNG_MAGIC


async def test_usage_by_model_and_day_over_every_window(make_stack):
    stack = await make_stack()
    await make_image(stack, MEMBER)
    for period in ("today", "week", "month", "last-30-days", "all"):
        for by in ("model", "day", "team"):
            rec = await stack.fake.slash("usage", {"period": period, "by": by}, user_id=ADMIN)
            await rec.wait_for("files", timeout=10)
            header = next(f for f in rec.files if f.filename.endswith(".csv")).data.decode().splitlines()[0]
            assert header.startswith(f"{by},jobs,")
    text = shown(rec)
    assert "**Usage all time, by team**" in text and "free" in text
    # Who paid, in words: no bare "free" or "-" keys in the table (the CSV keeps them for scripts).
    assert "paid by" in text and "nobody (refused)" not in text


async def test_usage_is_not_opened_to_everyone_by_a_server_wide_team(make_stack):
    stack = await make_stack()
    everyone = stack.fake.guild_id
    await answered(
        await stack.fake.slash(
            "kontext-admin team", {"role": everyone, "name": "all", "usd": "5"}, user_id=ADMIN
        )
    )
    assert "Manage Server" in shown(await answered(await stack.fake.slash("usage", user_id=OTHER)))


async def test_usage_is_open_to_a_team_role(make_stack):
    stack = await make_stack()
    assert "Manage Server" in shown(await answered(await stack.fake.slash("usage", user_id=MEMBER)))
    await answered(
        await stack.fake.slash(
            "kontext-admin team", {"role": ART_ROLE, "name": "artists", "usd": "5"}, user_id=ADMIN
        )
    )
    rec = await stack.fake.slash("usage", {"by": "team"}, user_id=MEMBER)
    await rec.wait_for("files", timeout=10)
    assert len(rec.files) == 2
