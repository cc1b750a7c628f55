"""The buttons on every result (Re-roll, Edit again, Use seed, Delete) and Cancel on a job in
progress, clicked through the real discord.py client."""

from __future__ import annotations

import io

from PIL import Image

from tests.e2e.conftest import ADMIN, MEMBER, OTHER, Stack
from tests.e2e.support import PRO, PRO_T2I, fast, free_used, job_id_of, wait_warning
from tests.emulator import make_png
from tests.fake_discord import InteractionRecord


def centre(data: bytes) -> tuple[int, ...]:
    img = Image.open(io.BytesIO(data)).convert("RGB")
    return img.getpixel((img.width // 2, img.height // 2))


def close(a: tuple[int, ...], b: tuple[int, ...]) -> bool:
    return all(abs(x - y) <= 4 for x, y in zip(a, b, strict=True))  # resampling rounds a little


async def edited(stack: Stack, prompt: str = "a hat", user_id: int = MEMBER, **options) -> InteractionRecord:
    rec = await stack.fake.slash(
        "edit", {"prompt": prompt, **options}, user_id=user_id, attachments={"image": stack.png()}
    )
    return await rec.wait_for("files", timeout=10)


async def test_reroll_keeps_the_settings_picks_a_new_seed_and_charges_whoever_clicks(make_stack, emulator):
    stack = await make_stack(emulator)
    rec = await edited(stack, guidance=4.5, seed=42)
    old = await stack.svc.jobs.get(job_id_of(rec))

    click = await stack.fake.click(rec, f"kx:reroll:{old.id}", user_id=OTHER)
    await click.wait_for("files", timeout=10)
    assert click.callback_type == 5 and not click.ephemeral  # a new public message, not an edit
    new = await stack.svc.jobs.get(job_id_of(click))
    assert new.id != old.id and (new.model, new.prompt) == (old.model, old.prompt)
    assert new.params["guidance"] == 4.5 and new.params["seed"] != 42
    assert new.user_id == OTHER and new.meta["source"] == "reroll"
    assert await free_used(stack, MEMBER) == 1 and await free_used(stack, OTHER) == 1
    # The same input image went to the provider again, read from the store, not from Discord.
    assert await stack.svc.jobs.stored_inputs(new) == await stack.svc.jobs.stored_inputs(old)
    assert [g.seed for g in emulator.generations][-2:] == [42, new.params["seed"]]


async def test_reroll_of_a_create_job_makes_a_new_image_from_text(make_stack, emulator):
    stack = await make_stack(emulator)
    rec = await stack.fake.slash("create", {"prompt": "a boat", "aspect_ratio": "3:2"}, user_id=MEMBER)
    await rec.wait_for("files", timeout=10)
    click = await stack.fake.click(rec, f"kx:reroll:{job_id_of(rec)}", user_id=MEMBER)
    await click.wait_for("files", timeout=10)
    new = await stack.svc.jobs.get(job_id_of(click))
    assert (new.model, new.params["aspect_ratio"], new.input_count) == (PRO_T2I, "3:2", 0)


async def test_edit_again_asks_for_a_prompt_and_edits_the_result_itself(make_stack, emulator):
    stack = await make_stack(emulator)
    rec = await edited(stack)
    click = await stack.fake.click(rec, f"kx:again:{job_id_of(rec)}", user_id=OTHER)
    await click.wait_for("modal")
    assert click.modal["title"] == "Edit again"
    sub = await stack.fake.submit_modal(click.modal["custom_id"], {"prompt": "now in blue"}, user_id=OTHER)
    await sub.wait_for("files", timeout=10)
    new = await stack.svc.jobs.get(job_id_of(sub))
    assert (new.model, new.prompt, new.user_id, new.meta["source"]) == (
        PRO,
        "now in blue",
        OTHER,
        "edit-again",
    )
    # What went to the provider is the result (its colour follows the seed), not the first input.
    (used,) = await stack.svc.jobs.stored_inputs(new)
    (result,) = rec.files
    assert close(centre(used), centre(result.data)) and not close(centre(used), centre(make_png(8, 8)))


async def test_use_seed_tells_the_seed_privately(make_stack, emulator):
    stack = await make_stack(emulator)
    rec = await edited(stack, seed=1234)
    click = await stack.fake.click(rec, f"kx:seed:{job_id_of(rec)}", user_id=OTHER)
    await click.wait_for("responded")
    assert (
        click.ephemeral
        and "Seed **1234**" in click.original.content
        and "`seed:1234`" in click.original.content
    )


async def test_delete_is_for_the_requester_or_an_admin(make_stack, emulator):
    stack = await make_stack(emulator)
    rec = await edited(stack)
    delete = f"kx:del:{job_id_of(rec)}"
    click = await stack.fake.click(rec, delete, user_id=OTHER)
    assert "Only the member who asked" in await wait_warning(click)
    assert not rec.original.deleted

    click = await stack.fake.click(rec, delete, user_id=ADMIN)
    await click.wait_for("deleted")
    assert rec.original.deleted

    mine = await edited(stack)
    click = await stack.fake.click(mine, f"kx:del:{job_id_of(mine)}", user_id=MEMBER)
    await click.wait_for("deleted")


async def test_cancel_stops_a_running_job_refunds_it_and_says_so(make_stack, emulator):
    stack = await make_stack(emulator)
    fast(stack)
    emulator.fault("modelverse", "hang", seconds=30)
    rec = await stack.fake.slash(
        "edit", {"prompt": "slow"}, user_id=MEMBER, attachments={"image": stack.png()}
    )
    await rec.wait_for(lambda r: "Generating" in (r.original.content if r.original else ""))
    job_id = job_id_of(rec)
    assert rec.original.custom_ids == [f"kx:cancel:{job_id}"]
    assert await free_used(stack, MEMBER) == 1  # reserved while it runs

    click = await stack.fake.click(rec, f"kx:cancel:{job_id}", user_id=OTHER)
    assert "Only the member who asked for this job" in await wait_warning(click)

    click = await stack.fake.click(rec, f"kx:cancel:{job_id}", user_id=MEMBER)
    await click.wait_for("responded")
    assert click.ephemeral and f"Cancelled job `{job_id}`" in click.original.content
    await rec.wait_for(lambda r: r.original.content.startswith("✖️ Cancelled"))
    assert "nobody was charged" in rec.original.content and not rec.original.custom_ids
    job = await stack.svc.jobs.get(job_id)
    assert (job.status, job.reservation) == ("cancelled", "refunded")
    assert await free_used(stack, MEMBER) == 0


async def test_a_button_whose_job_is_unknown_answers_clearly(make_stack, emulator):
    stack = await make_stack(emulator)
    msg = stack.fake.post_user_message(stack.fake.bot_user_id, content="an old result")
    button = {"type": 2, "style": 1, "label": "Re-roll", "custom_id": "kx:reroll:zzzzzzzzzzzz"}
    msg.payload["components"] = [{"type": 1, "components": [button]}]
    click = await stack.fake.click(msg, "kx:reroll:zzzzzzzzzzzz", user_id=MEMBER)
    text = await wait_warning(click)
    assert "Job zzzzzzzzzzzz is no longer on record" in text and click.callback_type == 4
