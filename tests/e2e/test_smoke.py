"""The core promise end to end: /edit with a PNG is deferred, answered with an image file, charged once."""

from tests.e2e.conftest import MEMBER


async def test_edit_is_deferred_then_answered_with_an_image_and_charged(make_stack, emulator):
    stack = await make_stack(emulator)
    names = {c["name"] for c in stack.fake.registered_commands}
    assert {"edit", "combine", "create", "Edit with Kontext"} <= names
    rec = await stack.fake.slash(
        "edit", {"prompt": "make it a pencil sketch"}, user_id=MEMBER, attachments={"image": stack.png()}
    )
    await rec.wait_for("files", timeout=20)
    assert rec.callback_type == 5  # deferred within 3 s
    sent = rec.files[0]
    assert sent.data[:8] == b"\x89PNG\r\n\x1a\n" or sent.data[:3] == b"\xff\xd8\xff"
    custom_ids = rec.original.custom_ids
    assert any(c.startswith("kx:reroll:") for c in custom_ids)
    job_id = custom_ids[0].rsplit(":", 1)[1]
    job = await stack.svc.jobs.get(job_id)
    assert job.status == "succeeded" and job.charged_to == "free" and job.user_id == MEMBER
    quota = await stack.svc.accounts.quota(MEMBER, stack.fake.guild_id)
    pro = next(f for f in quota.status.free if f.model == "black-forest-labs/flux-kontext-pro")
    assert pro.used == 1 and pro.remaining == 4
