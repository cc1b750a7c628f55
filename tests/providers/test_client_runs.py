"""ProviderClient happy paths against the emulator: each provider, each output form, polling, resume."""

from __future__ import annotations

import pytest

from bot.providers.base import GenerationRequest, ProviderTimeout, TaskFailed
from tests.emulator import B64_PREFIX
from tests.providers.conftest import IMAGE, KEYS, Rig, edit_request


async def test_modelverse_url_result_is_downloaded_without_the_key(rig: Rig) -> None:
    out = await rig.client().run(
        rig.modelverse(), edit_request("modelverse", guidance=3.0, seed=42), deadline=rig.deadline()
    )
    assert out.provider == "modelverse" and out.task_id is None
    [image] = out.images
    assert (image.mime, image.width, image.height) == ("image/png", 64, 64)
    submit, download = rig.emu.requests
    assert submit.headers["authorization"] == f"Bearer {KEYS['modelverse']}"
    assert submit.json["guidance_scale"] == 3.0 and submit.json["seed"] == 42
    assert download.provider == "files" and "authorization" not in download.headers
    assert rig.emu.generations[0].seed == 42
    assert rig.time.sleeps == []


@pytest.mark.parametrize("prefix", [True, False])
async def test_modelverse_b64_with_and_without_data_prefix(rig: Rig, prefix: bool) -> None:
    rig.emu.fault("modelverse", "b64_output", prefix=prefix)
    out = await rig.client().run(rig.modelverse(), edit_request("modelverse"), deadline=rig.deadline())
    assert rig.emu.generations[0].outputs[0].startswith(B64_PREFIX) is prefix
    assert [i.mime for i in out.images] == ["image/png"]
    assert not rig.calls("files")  # nothing to fetch


async def test_modelverse_text_to_image_several_images(rig: Rig) -> None:
    req = GenerationRequest("black-forest-labs/flux-kontext-max/text-to-image", "a fox", (), {"n": 3})
    out = await rig.client().run(rig.modelverse(), req, deadline=rig.deadline())
    assert len(out.images) == 3 and len(rig.calls("files")) == 3
    assert "image" not in rig.calls("modelverse")[0].json


async def test_modelverse_multi_sends_an_images_array(rig: Rig) -> None:
    req = GenerationRequest("black-forest-labs/flux-kontext-pro/multi", "merge", (IMAGE, IMAGE), {})
    await rig.client().run(rig.modelverse(), req, deadline=rig.deadline())
    assert rig.calls("modelverse")[0].json["images"] == [IMAGE, IMAGE]


async def test_vtrix_task_is_recorded_before_polling_and_polls_back_off(rig: Rig) -> None:
    rig.emu.polls_until_done = 3
    seen: list[tuple[str, int]] = []
    progress: list[float | None] = []

    async def on_task(task_id: str) -> None:
        seen.append((task_id, len(rig.calls("vtrix", "GET"))))

    async def on_progress(value: float | None) -> None:
        progress.append(value)

    out = await rig.client().run(
        rig.vtrix(),
        edit_request("vtrix", guidance=2.5, aspect_ratio="16:9"),
        deadline=rig.deadline(),
        on_task=on_task,
        on_progress=on_progress,
    )
    assert seen == [(out.task_id, 0)]  # known, and stored, before the first poll
    assert len(rig.calls("vtrix", "GET")) == 3
    assert rig.time.sleeps == [3.0, 4.5, 6.75]
    assert all(p is None or 0 <= p <= 1 for p in progress) and len(progress) == 3
    assert out.cost_usd == "0.04"
    assert out.images[0].mime == "image/jpeg"
    params = rig.calls("vtrix", "POST")[0].json["input"][0]["params"]
    assert params["input_image"] == IMAGE and params["guidance_scale"] == 2.5


async def test_vtrix_completed_on_create_needs_no_poll(rig: Rig) -> None:
    rig.emu.fault("vtrix", "completed_on_create")
    tasks: list[str] = []

    async def on_task(task_id: str) -> None:
        tasks.append(task_id)

    out = await rig.client().run(rig.vtrix(), edit_request("vtrix"), deadline=rig.deadline(), on_task=on_task)
    assert tasks == [out.task_id] and not rig.calls("vtrix", "GET")
    assert len(out.images) == 1 and rig.time.sleeps == []


async def test_vtrix_multi_fills_input_image_slots(rig: Rig) -> None:
    req = GenerationRequest("flux_kontext_max", "merge", (IMAGE, IMAGE, IMAGE), {"seed": 9})
    await rig.client().run(rig.vtrix(), req, deadline=rig.deadline())
    params = rig.calls("vtrix", "POST")[0].json["input"][0]["params"]
    assert {k for k in params if k.startswith("input_image")} == {
        "input_image",
        "input_image_2",
        "input_image_3",
    }
    assert params["seed"] == 9


async def test_wavespeed_async_submit_then_poll(rig: Rig) -> None:
    req = GenerationRequest("wavespeed-ai/flux-kontext-max/text-to-image", "a fox", (), {"n": 2})
    out = await rig.client().run(rig.wavespeed(), req, deadline=rig.deadline())
    assert len(out.images) == 2 and out.task_id
    [submit] = rig.calls("wavespeed", "POST")
    assert submit.json == {"prompt": "a fox", "num_images": 2}
    [poll] = rig.calls("wavespeed", "GET")
    assert poll.path == f"/api/v3/predictions/{out.task_id}/result"


async def test_wavespeed_multi_endpoint_takes_images(rig: Rig) -> None:
    req = GenerationRequest("wavespeed-ai/flux-kontext-pro/multi", "merge", (IMAGE, IMAGE), {"guidance": 4})
    await rig.client().run(rig.wavespeed(), req, deadline=rig.deadline())
    body = rig.calls("wavespeed", "POST")[0].json
    assert body["images"] == [IMAGE, IMAGE] and body["guidance_scale"] == 4


async def test_wavespeed_sync_mode_answers_in_one_call(rig: Rig) -> None:
    out = await rig.client().run(
        rig.wavespeed(sync_mode=True), edit_request("wavespeed"), deadline=rig.deadline()
    )
    assert len(out.images) == 1
    assert rig.calls("wavespeed", "POST")[0].json["enable_sync_mode"] is True
    assert not rig.calls("wavespeed", "GET") and rig.time.sleeps == []


async def test_wavespeed_sync_504_with_an_id_is_polled_not_resubmitted(rig: Rig) -> None:
    rig.emu.fault("wavespeed", "sync_504")
    tasks: list[str] = []

    async def on_task(task_id: str) -> None:
        tasks.append(task_id)

    out = await rig.client().run(
        rig.wavespeed(sync_mode=True), edit_request("wavespeed"), deadline=rig.deadline(), on_task=on_task
    )
    assert len(out.images) == 1 and tasks == [out.task_id]
    assert len(rig.calls("wavespeed", "POST")) == 1 and len(rig.calls("wavespeed", "GET")) == 1


async def test_wavespeed_base64_output_and_nsfw_flags(rig: Rig) -> None:
    rig.emu.fault("wavespeed", "nsfw")
    out = await rig.client().run(
        rig.wavespeed(base64_output=True), edit_request("wavespeed"), deadline=rig.deadline()
    )
    assert [(i.mime, i.nsfw) for i in out.images] == [("image/png", True)]
    assert not rig.calls("files")


@pytest.mark.parametrize("provider", ["vtrix", "wavespeed"])
async def test_resume_polls_an_existing_task_to_the_end(rig: Rig, provider: str) -> None:
    rig.emu.polls_until_done = 2
    adapter = rig.vtrix() if provider == "vtrix" else rig.wavespeed()

    class Crash(Exception):
        pass

    async def crash(task_id: str) -> None:  # the bot dies right after storing the task id
        raise Crash(task_id)

    with pytest.raises(Crash) as info:
        await rig.client().run(adapter, edit_request(provider), deadline=rig.deadline(), on_task=crash)
    task_id = str(info.value)
    progress: list[float | None] = []

    async def on_progress(value: float | None) -> None:
        progress.append(value)

    out = await rig.client().resume(adapter, task_id, deadline=rig.deadline(), on_progress=on_progress)
    assert out.task_id == task_id and len(out.images) == 1
    assert len(rig.calls(provider, "POST")) == 1  # never resubmitted
    assert rig.time.sleeps[0] == pytest.approx(3.0) and len(progress) == 1


async def test_resume_of_an_unknown_task_fails_cleanly(rig: Rig) -> None:
    with pytest.raises(TaskFailed) as info:
        await rig.client().resume(rig.vtrix(), "task_gone", deadline=rig.deadline())
    assert info.value.status == 404 and info.value.provider == "vtrix"
    with pytest.raises(TaskFailed):
        await rig.client().resume(rig.modelverse(), "anything", deadline=rig.deadline())


async def test_resume_past_the_deadline_is_a_final_timeout(rig: Rig) -> None:
    with pytest.raises(ProviderTimeout) as info:
        await rig.client().resume(rig.vtrix(), "task_x", deadline=rig.time.now - 1)
    assert not info.value.retryable
