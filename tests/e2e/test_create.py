"""/edit, /combine, /create and the "Edit with Kontext" menu through the real discord.py client:
progress, delivery, limits and every way a job can fail, checked against what Discord would show
and what the ledger says."""

from __future__ import annotations

import io
import itertools
from datetime import datetime

from PIL import Image

from tests.e2e.conftest import ADMIN, MEMBER, OTHER
from tests.e2e.support import (
    PNG_MAGIC,
    PRO,
    PRO_MULTI,
    PRO_T2I,
    contents,
    embed_text,
    fast,
    free_used,
    job_id_of,
    posted_as,
    until,
    wait_warning,
    warning,
    wavespeed_only,
    write_config,
)


async def test_edit_shows_progress_then_the_image_with_its_embed_and_pings_nobody(make_stack, emulator):
    stack = await make_stack(emulator)
    fast(stack)
    emulator.latency = 0.3  # long enough for a "generating" edit to land first
    prompt = "@everyone give <@4343> and <@&777> a pencil-sketch look"
    rec = await stack.fake.slash(
        "edit", {"prompt": prompt}, user_id=MEMBER, attachments={"image": stack.png()}
    )
    await rec.wait_for("files", timeout=10)

    assert rec.callback_type == 5  # deferred ("thinking…") before any slow work
    job_id = job_id_of(rec)
    shown = contents(rec.original)
    assert any(c.startswith("🎨 Generating") and "flux-kontext-pro on UModelverse" in c for c in shown), shown
    assert any(f"`{job_id}`" in c for c in shown)
    msg = rec.original
    assert msg.content == ""  # the progress text is replaced by the result
    assert sorted(c.split(":")[1] for c in msg.custom_ids) == ["again", "del", "reroll", "seed"]

    # The image is uploaded, not linked.
    (sent,) = msg.files
    assert sent.filename == f"kontext-{job_id}-1.png" and sent.data.startswith(PNG_MAGIC)
    assert emulator.url not in str(msg.payload)
    (embed,) = msg.embeds
    assert embed["image"]["url"] == f"attachment://{sent.filename}"
    text = embed_text(msg)
    job = await stack.svc.jobs.get(job_id)
    assert f"Seed: {job.params['seed']}" in text and "Model: flux-kontext-pro" in text
    assert "Free quota (worth $0.0486), 4 free image(s) left" in text  # a price: at most 4 decimals
    assert f"job {job_id} · UModelverse" in text and f"Requested by: <@{MEMBER}>" in text
    assert "\u200beveryone" in embed["description"]  # shown as text, not as a mention

    # Nobody is pinged, whatever the prompt says: every message the bot wrote allowed no mention.
    bodies = [c.json for c in stack.fake.calls if isinstance(c.json, dict) and "content" in c.json]
    assert bodies and all(b.get("allowed_mentions") == {"parse": []} for b in bodies)
    assert job.status == "succeeded"
    await until(lambda: posted_as(stack, job_id, msg.id))
    assert await free_used(stack, MEMBER) == 1


async def test_progress_edits_are_spaced_by_the_configured_interval(make_stack, emulator):
    stack = await make_stack(emulator)
    stack.bot.progress_every, stack.bot.progress_refresh = 0.4, 0.4
    emulator.latency = 1.3  # the elapsed time changes every second: it would be re-shown each time
    rec = await stack.fake.slash(
        "edit", {"prompt": "hat"}, user_id=MEMBER, attachments={"image": stack.png()}
    )
    await rec.wait_for("files", timeout=10)
    progress = [h for h in rec.original.history if (h.get("content") or "").startswith("🎨")]
    assert len(progress) >= 2
    stamps = [datetime.fromisoformat(h["edited_timestamp"]) for h in progress]
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(stamps)]
    assert all(gap >= 0.35 for gap in gaps), gaps


async def test_create_makes_several_images_and_combine_takes_up_to_four(make_stack, emulator):
    stack = await make_stack(emulator)
    rec = await stack.fake.slash(
        "create", {"prompt": "a lighthouse", "aspect_ratio": "16:9", "count": 2}, user_id=MEMBER
    )
    await rec.wait_for("files", timeout=10)
    job = await stack.svc.jobs.get(job_id_of(rec))
    assert job.model == PRO_T2I and job.params["aspect_ratio"] == "16:9" and job.images_delivered == 2
    assert [f.filename for f in rec.files] == [f"kontext-{job.id}-1.png", f"kontext-{job.id}-2.png"]

    images = {f"image{i}": stack.png(f"{i}.png", 64 + i, 64) for i in (1, 2, 3)}
    rec = await stack.fake.slash(
        "combine", {"prompt": "all three on a sofa"}, user_id=MEMBER, attachments=images
    )
    await rec.wait_for("files", timeout=10)
    job = await stack.svc.jobs.get(job_id_of(rec))
    assert job.model == PRO_MULTI and job.input_count == 3


async def test_message_menu_asks_for_a_prompt_then_edits_one_image_or_combines_several(make_stack, emulator):
    stack = await make_stack(emulator)
    one = stack.fake.post_user_message(OTHER, content="my cat", attachments=[stack.png()])
    rec = await stack.fake.context_menu("Edit with Kontext", one, user_id=MEMBER)
    await rec.wait_for("modal")
    assert rec.modal["title"] == "Edit with Kontext"
    sub = await stack.fake.submit_modal(rec.modal["custom_id"], {"prompt": "give it a hat"}, user_id=MEMBER)
    await sub.wait_for("files", timeout=10)
    job = await stack.svc.jobs.get(job_id_of(sub))
    assert (job.model, job.prompt, job.user_id, job.meta["source"]) == (
        PRO,
        "give it a hat",
        MEMBER,
        "context-menu",
    )

    two = stack.fake.post_user_message(OTHER, attachments=[stack.png("a.png"), stack.png("b.png", 96, 64)])
    rec = await stack.fake.context_menu("Edit with Kontext", two, user_id=MEMBER)
    await rec.wait_for("modal")
    sub = await stack.fake.submit_modal(rec.modal["custom_id"], {"prompt": "side by side"}, user_id=MEMBER)
    await sub.wait_for("files", timeout=10)
    assert (await stack.svc.jobs.get(job_id_of(sub))).model == PRO_MULTI

    text_only = stack.fake.post_user_message(OTHER, content="no picture here")
    rec = await stack.fake.context_menu("Edit with Kontext", text_only, user_id=MEMBER)
    assert "has no image attached" in await wait_warning(rec)


async def test_model_autocomplete_lists_only_fitting_models_with_price_and_free_left(make_stack, emulator):
    stack = await make_stack(emulator)
    catalog = stack.svc.settings.catalog
    for command, fits in (("edit", "can_edit"), ("combine", "can_combine"), ("create", "can_create")):
        choices = await stack.fake.autocomplete(
            command, {"prompt": "x", "model": ""}, "model", user_id=MEMBER
        )
        assert choices, command
        expected = {m.id for m in catalog.models if getattr(m, fits)}
        assert {c["value"] for c in choices} == expected, command
        assert all("/image" in c["name"] for c in choices)
        # "free left" only where the model has free images at all (never "0 free left" on [max])
        free = {m.id for m in catalog.models if m.free_quota > 0}
        assert all(("free left" in c["name"]) == (c["value"] in free) for c in choices), choices
    choices = await stack.fake.autocomplete("edit", {"prompt": "x", "model": ""}, "model", user_id=MEMBER)
    pro = next(c for c in choices if c["value"] == PRO)
    assert pro["name"] == "FLUX.1 Kontext [pro] — $0.0486/image · 5 free left"
    typed = await stack.fake.autocomplete("edit", {"prompt": "x", "model": "max"}, "model", user_id=MEMBER)
    assert [c["value"] for c in typed] == ["black-forest-labs/flux-kontext-max"]


async def test_results_are_fitted_to_the_interactions_upload_limit(make_stack, emulator):
    stack = await make_stack(emulator)
    stack.fake.upload_limit = 200_000
    emulator.output_size, emulator.output_noise = (1024, 1024), True  # ~3 MB of incompressible PNG
    rec = await stack.fake.slash(
        "edit", {"prompt": "noise"}, user_id=MEMBER, attachments={"image": stack.png()}
    )
    await rec.wait_for("files", timeout=20)
    (sent,) = rec.files
    assert len(sent.data) <= 200_000
    assert Image.open(io.BytesIO(sent.data)).size[0] > 0
    assert not rec.errors  # nothing was refused with 413 on the way


async def test_a_job_that_outlives_its_token_is_posted_in_the_channel_mentioning_the_requester(
    make_stack, emulator
):
    stack = await make_stack(emulator)
    emulator.latency = 0.4
    rec = await stack.fake.slash(
        "edit", {"prompt": "@everyone look"}, user_id=MEMBER, attachments={"image": stack.png()}
    )
    await rec.wait_for("deferred")
    stack.fake.expire_token(rec.token)  # as if fifteen minutes had passed
    msg = await stack.fake.wait_for_message(lambda m: m.interaction_id is None and bool(m.files), timeout=10)
    assert msg.content.startswith(f"<@{MEMBER}> your image is ready")
    assert msg.allowed_mentions == {"users": [MEMBER], "parse": []}  # the requester only
    job_id = job_id_of(msg)
    await until(lambda: posted_as(stack, job_id, msg.id))
    # The reply answers the job's own message, which no longer says "Generating" or offers Cancel.
    assert msg.payload["message_reference"]["message_id"] == str(rec.original.id)
    await rec.wait_for(lambda r: r.original.content.startswith("✅ Finished"))
    assert not rec.original.custom_ids

    # A failure after the token expired is told the same way, with the job id and the refund.
    emulator.fault("*", "bad_key", times=-1)
    rec = await stack.fake.slash(
        "edit", {"prompt": "again"}, user_id=MEMBER, attachments={"image": stack.png()}
    )
    await rec.wait_for("deferred")
    stack.fake.expire_token(rec.token)
    msg = await stack.fake.wait_for_message(lambda m: "not charged" in m.content, timeout=10)
    assert msg.content.startswith(f"<@{MEMBER}> ⚠️") and msg.allowed_mentions["parse"] == []
    assert await free_used(stack, MEMBER) == 1


async def test_provider_refusal_is_told_privately_with_the_job_id_and_costs_nothing(make_stack, emulator):
    stack = await make_stack(emulator)
    emulator.fault("modelverse", "content_refused")
    rec = await stack.fake.slash(
        "edit", {"prompt": "hat"}, user_id=MEMBER, attachments={"image": stack.png()}
    )
    text = await wait_warning(rec)
    assert "safety check refused" in text and "you were not charged" in text
    # Everyone else sees a short neutral note where "thinking…" was, not a vanished message.
    assert rec.original.content.startswith("⚠️ This job did not finish") and not rec.original.custom_ids
    job_id = text.split("(job ")[1].split(";")[0]
    job = await stack.svc.jobs.get(job_id)
    assert (job.status, job.reservation) == ("refused", "refunded")
    assert await free_used(stack, MEMBER) == 0


async def test_a_job_nothing_can_pay_for_is_refused_with_its_job_id(make_stack, emulator):
    stack = await make_stack(emulator)  # [max] has no free images and the server has no budget
    rec = await stack.fake.slash(
        "edit",
        {"prompt": "hat", "model": "black-forest-labs/flux-kontext-max"},
        user_id=MEMBER,
        attachments={"image": stack.png()},
    )
    text = await wait_warning(rec)
    job = await stack.svc.jobs.get(text.split("(job ")[1].split(";")[0])
    assert job.status == "refused" and "you were not charged" in text
    assert emulator.requests == []  # refused before any provider was asked


async def test_every_route_failing_ends_in_one_clear_message_and_no_charge(make_stack, emulator):
    stack = await make_stack(emulator)
    emulator.fault("*", "bad_key", times=-1)
    rec = await stack.fake.slash("create", {"prompt": "a boat"}, user_id=MEMBER)
    text = await wait_warning(rec)
    assert "you were not charged" in text and "Traceback" not in text
    job = await stack.svc.jobs.get(text.split("(job ")[1].split(";")[0])
    assert (job.status, job.reservation) == ("failed", "refunded")
    assert await free_used(stack, MEMBER, PRO_T2I) == 0
    # The public message keeps a neutral note; the reason goes to the requester alone, once.
    assert sum(1 for m in rec.messages if m.ephemeral) == 1 and len(rec.messages) == 2
    assert rec.original.content.startswith("⚠️ This job did not finish") and not rec.original.ephemeral


async def test_flagged_result_is_a_spoiler_in_an_age_restricted_channel_and_refused_elsewhere(
    make_stack, emulator, tmp_path
):
    stack = await make_stack(emulator, **wavespeed_only(tmp_path))
    emulator.fault("wavespeed", "nsfw", times=2)
    rec = await stack.fake.slash("edit", {"prompt": "x"}, user_id=MEMBER, attachments={"image": stack.png()})
    text = await wait_warning(rec)
    assert "adult content" in text and "you were not charged" in text
    job = await stack.svc.jobs.get(text.split("(job ")[1].split(";")[0])
    assert (job.status, job.reservation) == ("refused", "refunded")
    assert await free_used(stack, MEMBER) == 0

    rec = await stack.fake.slash(
        "edit",
        {"prompt": "x"},
        user_id=MEMBER,
        channel_id=stack.fake.nsfw_channel_id,
        attachments={"image": stack.png()},
    )
    await rec.wait_for("files", timeout=10)
    (sent,) = rec.files
    assert sent.filename.startswith("SPOILER_kontext-")
    assert "image" not in rec.original.embeds[0]  # the embed would show it unblurred
    assert await free_used(stack, MEMBER) == 1


async def test_image_commands_are_refused_outside_the_allowed_channels(make_stack, emulator):
    stack = await make_stack(emulator)
    await stack.svc.accounts.set_channel(stack.fake.guild_id, stack.fake.nsfw_channel_id)
    rec = await stack.fake.slash("create", {"prompt": "a boat"}, user_id=MEMBER)
    text = await wait_warning(rec)
    assert rec.callback_type == 4 and "not enabled in this channel" in text
    assert await stack.svc.jobs.history(MEMBER, stack.fake.guild_id) == []
    rec = await stack.fake.slash(
        "create", {"prompt": "a boat"}, user_id=MEMBER, channel_id=stack.fake.nsfw_channel_id
    )
    await rec.wait_for("files", timeout=10)


async def test_jobs_beyond_the_per_user_cap_wait_in_line_and_a_full_queue_refuses(
    make_stack, emulator, tmp_path
):
    cfg = write_config(tmp_path, "[limits]\nuser_jobs_in_flight = 1\nmax_queue = 1\n")
    stack = await make_stack(emulator, KONTEXT_CONFIG=cfg)
    fast(stack)
    emulator.fault("modelverse", "hang", seconds=30)  # the first job holds the member's only slot
    first = await stack.fake.slash("create", {"prompt": "one"}, user_id=MEMBER)
    await first.wait_for(lambda r: "Generating" in (r.original.content if r.original else ""))
    second = await stack.fake.slash("create", {"prompt": "two"}, user_id=MEMBER)
    await second.wait_for(lambda r: "Queued — position 1" in (r.original.content if r.original else ""))
    third = await stack.fake.slash("create", {"prompt": "three"}, user_id=MEMBER)
    text = await wait_warning(third)
    # Refused before anything was recorded: a reference to quote, and no word about money.
    assert "queue is full" in text and f"(reference {third.id})" in text and "charged" not in text

    # An admin cancels the first job: the queued one gets the slot and finishes.
    first_id = job_id_of(first)
    click = await stack.fake.click(first, f"kx:cancel:{first_id}", user_id=ADMIN)
    await click.wait_for("responded")
    assert "Cancelled job" in click.original.content and click.ephemeral
    await second.wait_for("files", timeout=10)
    assert first.original.content.startswith("✖️ Cancelled") and not first.original.custom_ids
    assert (await stack.svc.jobs.get(first_id)).status == "cancelled"
    assert await free_used(stack, MEMBER, PRO_T2I) == 1


async def test_bad_inputs_are_refused_clearly(make_stack, emulator, tmp_path):
    stack = await make_stack(
        emulator, KONTEXT_CONFIG=write_config(tmp_path, "[limits]\nmax_input_bytes = 5000\n")
    )
    text_file = stack.fake.add_attachment("notes.png", b"this is not an image at all", "image/png")
    rec = await stack.fake.slash("edit", {"prompt": "hat"}, user_id=MEMBER, attachments={"image": text_file})
    text = await wait_warning(rec)
    assert "not an image" in text and f"(reference {rec.id})" in text and "charged" not in text

    big = stack.png("big.png", 512, 512)  # a few KB over the 5000-byte limit set above
    big["size"] = 2 * 1048576
    rec = await stack.fake.slash("edit", {"prompt": "hat"}, user_id=MEMBER, attachments={"image": big})
    text = await wait_warning(rec)
    assert rec.callback_type == 4 and "big.png is 2.0 MB" in text  # refused before deferring, unread

    gone = stack.png()
    stack.fake.expire_attachment(gone)
    rec = await stack.fake.slash("edit", {"prompt": "hat"}, user_id=MEMBER, attachments={"image": gone})
    assert "Could not read the attached image" in await wait_warning(rec)
    assert await stack.svc.jobs.history(MEMBER, stack.fake.guild_id) == []


async def test_an_unexpected_error_is_answered_never_left_hanging(make_stack, emulator, monkeypatch):
    stack = await make_stack(emulator)

    async def broken(*args, **kwargs):
        raise RuntimeError("database on fire")

    monkeypatch.setattr(stack.svc.accounts, "settings", broken)
    rec = await stack.fake.slash("create", {"prompt": "a boat"}, user_id=MEMBER)
    text = await wait_warning(rec)
    assert f"reference {rec.id}" in text and "database on fire" not in text
    monkeypatch.undo()

    monkeypatch.setattr(stack.svc.jobs, "submit", broken)
    rec = await stack.fake.slash("create", {"prompt": "a boat"}, user_id=MEMBER)
    text = await wait_warning(rec)
    assert "Something went wrong on our side" in text and "database on fire" not in text
    assert warning(rec) is not None and rec.original.deleted
