"""Shapes the real clients know (WaveSpeed's SDKs, Vtrix's vtrix-cli, the OpenAI SDK for UModelverse),
each read through the adapters and the client over real HTTP to the emulator (issue 16, items 5-10)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from bot.providers.base import ContentRefused, RateLimited, TaskCancelled, TaskFailed
from tests.providers.conftest import Rig, edit_request


def submits(rig: Rig, provider: str) -> int:
    return len(rig.calls(provider, "POST"))


def polls(rig: Rig, provider: str) -> int:
    return len(rig.calls(provider, "GET"))


# --- WaveSpeed: every end state ends the task at once -----------------------------------------


@pytest.mark.parametrize("status", ["cancelled", "deleted"])
async def test_wavespeed_cancelled_or_deleted_ends_at_once_and_is_no_refusal(rig: Rig, status: str) -> None:
    # Words a moderation filter would use: a cancelled task is still not a content refusal.
    rig.emu.fault("wavespeed", "end_state", status=status, message="stopped: content policy review")
    with pytest.raises(TaskCancelled) as info:
        await rig.client().run(rig.wavespeed(), edit_request("wavespeed"), deadline=rig.deadline())
    err = info.value
    assert err.user_message == f"The WaveSpeedAI task was {status} at the provider (not by the bot)."
    assert not err.failover and not err.retryable and err.request_id
    assert (submits(rig, "wavespeed"), polls(rig, "wavespeed")) == (1, 1)


async def test_wavespeed_timeout_state_ends_at_once_and_fails_over(rig: Rig) -> None:
    rig.emu.fault("wavespeed", "end_state", status="timeout")
    with pytest.raises(TaskFailed) as info:
        await rig.client().run(rig.wavespeed(), edit_request("wavespeed"), deadline=rig.deadline())
    assert info.value.failover and not info.value.retryable
    assert "ran out of time" in info.value.user_message
    assert (submits(rig, "wavespeed"), polls(rig, "wavespeed")) == (1, 1)
    assert rig.time.sleeps == [3.0]  # one poll interval, not the job's deadline


# --- WaveSpeed sync mode: a wait that gave up is polled, never resubmitted ----------------------


@pytest.mark.parametrize("variant", ["code", "text"])
async def test_wavespeed_sync_timeout_keeps_polling_the_same_task(rig: Rig, variant: str) -> None:
    rig.emu.fault("wavespeed", "sync_timeout", variant=variant)
    tasks: list[str] = []

    async def on_task(task_id: str) -> None:
        tasks.append(task_id)

    out = await rig.client().run(
        rig.wavespeed(sync_mode=True), edit_request("wavespeed"), deadline=rig.deadline(), on_task=on_task
    )
    assert len(out.images) == 1 and tasks == [out.task_id]
    [poll] = rig.calls("wavespeed", "GET")
    assert poll.path == f"/api/v3/predictions/{out.task_id}/result"
    assert submits(rig, "wavespeed") == 1


# --- Vtrix: error shapes, create status, create without a task ----------------------------------


@pytest.mark.parametrize("style", ["object", "string", "error_message"])
async def test_vtrix_refusal_in_every_error_shape(rig: Rig, style: str) -> None:
    rig.emu.vtrix_error_style = style
    rig.emu.fault("vtrix", "content_refused", message="Content moderation: the prompt was flagged")
    with pytest.raises(ContentRefused) as info:
        await rig.client().run(rig.vtrix(), edit_request("vtrix"), deadline=rig.deadline())
    assert not info.value.failover and info.value.request_id  # the task id


@pytest.mark.parametrize("style", ["object", "string", "error_message"])
async def test_vtrix_failure_text_in_every_error_shape(rig: Rig, style: str) -> None:
    rig.emu.vtrix_error_style = style
    rig.emu.fault("vtrix", "task_failed", message="worker out of memory")
    with pytest.raises(TaskFailed) as info:
        await rig.client().run(rig.vtrix(), edit_request("vtrix"), deadline=rig.deadline())
    assert info.value.user_message == "The Vtrix task failed: worker out of memory"
    assert info.value.failover


async def test_vtrix_completed_without_output_on_create_means_poll(rig: Rig) -> None:
    rig.emu.fault("vtrix", "completed_on_create", output=False)
    tasks: list[str] = []

    async def on_task(task_id: str) -> None:
        tasks.append(task_id)

    out = await rig.client().run(rig.vtrix(), edit_request("vtrix"), deadline=rig.deadline(), on_task=on_task)
    assert len(out.images) == 1 and tasks == [out.task_id] and out.cost_usd == "0.04"
    assert (submits(rig, "vtrix"), polls(rig, "vtrix")) == (1, 1)


@pytest.mark.parametrize(
    ("message", "expected", "told"),
    [
        ("Insufficient balance", TaskFailed, "Vtrix did not create the task: Insufficient balance"),
        ("Prompt rejected by content moderation", ContentRefused, "Vtrix's moderation refused"),
    ],
)
async def test_vtrix_create_without_an_id_tells_its_error(
    rig: Rig, message: str, expected: type[Exception], told: str
) -> None:
    rig.emu.fault("vtrix", "no_task", message=message)
    with pytest.raises(expected) as info:
        await rig.client().run(rig.vtrix(), edit_request("vtrix"), deadline=rig.deadline())
    assert str(info.value).startswith(told)
    assert (submits(rig, "vtrix"), polls(rig, "vtrix")) == (1, 0)


# --- UModelverse: an empty error object beside data is no failure -------------------------------


async def test_modelverse_empty_error_beside_data_is_a_success(rig: Rig) -> None:
    rig.emu.fault("modelverse", "empty_error")
    out = await rig.client().run(rig.modelverse(), edit_request("modelverse"), deadline=rig.deadline())
    assert len(out.images) == 1 and submits(rig, "modelverse") == 1


# --- a busy account (the emulator's account knob) -----------------------------------------------


@pytest.mark.parametrize("provider", ["modelverse", "vtrix", "wavespeed"])
async def test_a_busy_account_is_rate_limited_and_safe_to_send_again(rig: Rig, provider: str) -> None:
    rig.emu.account(provider, concurrency=1, latency=3600, retry_after=4)
    adapter: Any = getattr(rig, provider)()
    call = adapter.build_submit(edit_request(provider))
    # Another job holds the account's only slot (a UModelverse generation answers when it is done).
    holder = asyncio.create_task(
        rig.http.post(
            f"{rig.emu.url}{call.path}", json=call.json, headers=adapter.auth_headers(), timeout=None
        )
    )
    for _ in range(3000):
        if rig.emu.accounts[provider].peak_open:
            break
        await asyncio.sleep(0.01)
    try:
        with pytest.raises(RateLimited) as info:
            await rig.client(max_retries=2).run(adapter, edit_request(provider), deadline=rig.deadline())
    finally:
        if provider == "modelverse":
            holder.cancel()
        await asyncio.gather(holder, return_exceptions=True)
    # Handed to the queue at once (it waits, for every job at that provider), not retried here.
    assert info.value.resend_safe and info.value.retry_after == 4
    assert rig.time.sleeps == [] and rig.emu.accounts[provider].busy == 1
    assert rig.emu.accounts[provider].peak_open == 1
