"""Every emulator fault comes out as the right typed error, retried only when retrying can help, and
a submit sent again only when the answer says nothing was done."""

from __future__ import annotations

import socket
import time
from email.utils import formatdate
from typing import Any

import pytest

from bot.config import Limits
from bot.downloads import parse_retry_after as _retry_after
from bot.providers.base import (
    AuthError,
    BadResponse,
    ContentRefused,
    InvalidRequest,
    OutcomeUnknown,
    OutOfBalance,
    ProviderError,
    ProviderTimeout,
    RateLimited,
    TaskFailed,
    Unavailable,
)
from bot.providers.http import MAX_RETRY_AFTER, ProviderClient
from bot.providers.modelverse import ModelverseAdapter
from tests.providers.conftest import KEYS, Rig, edit_request

PROVIDERS = ("modelverse", "vtrix", "wavespeed")


def adapter(rig: Rig, provider: str, **kw: Any) -> Any:
    return getattr(rig, provider)(**kw)


def submits(rig: Rig, provider: str) -> int:
    return len(rig.calls(provider, "POST"))


# --- final errors: one call, no retry ---------------------------------------------------------


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("bad_key", AuthError),
        ("out_of_balance", OutOfBalance),
        ("malformed_json", BadResponse),
        ("wrong_content_type", BadResponse),
        ("content_refused", ContentRefused),
    ],
)
async def test_final_errors_are_typed_and_not_retried(
    rig: Rig, provider: str, kind: str, expected: type[ProviderError]
) -> None:
    rig.emu.fault(provider, kind)
    with pytest.raises(expected) as info:
        await rig.client().run(adapter(rig, provider), edit_request(provider), deadline=rig.deadline())
    err = info.value
    assert err.provider == provider and not err.retryable
    assert submits(rig, provider) == 1
    if provider == "modelverse" and kind in ("bad_key", "out_of_balance", "content_refused"):
        assert err.request_id  # error.param carries it


@pytest.mark.parametrize("provider", ["vtrix", "wavespeed"])
async def test_failed_task_is_task_failed(rig: Rig, provider: str) -> None:
    rig.emu.fault(provider, "task_failed")
    with pytest.raises(TaskFailed) as info:
        await rig.client().run(adapter(rig, provider), edit_request(provider), deadline=rig.deadline())
    assert info.value.request_id  # the task id
    assert submits(rig, provider) == 1


async def test_wavespeed_refusals_before_any_task(rig: Rig) -> None:
    # An HTTP 400 with the task code in the wrapper: no task was made.
    rig.emu.fault("wavespeed", "content_refused", wrapped=True)
    with pytest.raises(ContentRefused):
        await rig.client().run(rig.wavespeed(), edit_request("wavespeed"), deadline=rig.deadline())
    rig.emu.fault("wavespeed", "task_failed", wrapped=True, code=1402, message="media URL not reachable")
    with pytest.raises(TaskFailed):
        await rig.client().run(rig.wavespeed(), edit_request("wavespeed"), deadline=rig.deadline())


@pytest.mark.parametrize("code", [5000, 5003, 5004])
async def test_wavespeed_internal_task_failure_is_resubmitted(rig: Rig, code: int) -> None:
    rig.emu.fault("wavespeed", "task_failed", code=code, message="internal")
    out = await rig.client().run(rig.wavespeed(), edit_request("wavespeed"), deadline=rig.deadline())
    assert len(out.images) == 1 and submits(rig, "wavespeed") == 2


async def test_modelverse_model_server_error_is_a_failed_generation(rig: Rig) -> None:
    rig.emu.fault("modelverse", "task_failed")  # 500 model_server_error: after the model ran
    with pytest.raises(TaskFailed) as info:
        await rig.client().run(rig.modelverse(), edit_request("modelverse"), deadline=rig.deadline())
    assert info.value.failover and submits(rig, "modelverse") == 1


async def test_invalid_parameters_are_invalid_request(rig: Rig) -> None:
    with pytest.raises(InvalidRequest):  # Vtrix takes guidance 1-10
        await rig.client().run(rig.vtrix(), edit_request("vtrix", guidance=30), deadline=rig.deadline())
    with pytest.raises(InvalidRequest) as info:
        await rig.client().run(
            rig.modelverse(), edit_request("modelverse", guidance=99), deadline=rig.deadline()
        )
    assert info.value.request_id and "guidance" in info.value.user_message


# --- answers that say nothing was done: sent again with backoff, at most max_retries times -----


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_a_busy_answer_is_handed_to_the_queue_at_once(rig: Rig, provider: str) -> None:
    # Waiting out a busy account is the queue's job (bot/execution.py): it holds the provider back
    # for every job and may send this one elsewhere. The client does not sit on it.
    rig.emu.fault(provider, "rate_limit", times=-1, retry_after=2)
    with pytest.raises(RateLimited) as info:
        await rig.client(max_retries=2).run(
            adapter(rig, provider), edit_request(provider), deadline=rig.deadline()
        )
    assert info.value.resend_safe and info.value.retry_after == 2
    assert submits(rig, provider) == 1 and rig.time.sleeps == []


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize(("kind", "options", "expected"), [("server_error", {"status": 503}, Unavailable)])
async def test_retryable_errors_give_up_after_max_retries(
    rig: Rig, provider: str, kind: str, options: dict[str, Any], expected: type[ProviderError]
) -> None:
    rig.emu.fault(provider, kind, times=-1, **options)
    with pytest.raises(expected) as info:
        await rig.client(max_retries=2).run(
            adapter(rig, provider), edit_request(provider), deadline=rig.deadline()
        )
    assert info.value.retryable and info.value.failover
    assert submits(rig, provider) == 3
    # Jittered exponential backoff: 0.5 s then 1 s, each cut by up to a quarter.
    first, second = rig.time.sleeps
    assert 0.375 <= first <= 0.5 and 0.75 <= second <= 1.0


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_transient_error_then_success(rig: Rig, provider: str) -> None:
    rig.emu.fault(provider, "server_error", status=503, times=2)
    out = await rig.client().run(adapter(rig, provider), edit_request(provider), deadline=rig.deadline())
    assert len(out.images) == 1 and submits(rig, provider) == 3


async def test_retry_after_is_honoured_and_capped(rig: Rig) -> None:
    # A 503 "come back in 7 s" is waited out here; a busy 429 goes to the queue (test above).
    rig.emu.fault("vtrix", "server_error", status=503, times=2, retry_after=7)
    await rig.client().run(rig.vtrix(), edit_request("vtrix"), deadline=rig.deadline(600))
    assert rig.time.sleeps[:2] == [7.0, 7.0]
    rig.time.sleeps.clear()
    rig.emu.fault("wavespeed", "server_error", status=503, retry_after=3600)
    await rig.client().run(rig.wavespeed(), edit_request("wavespeed"), deadline=rig.deadline(600))
    assert rig.time.sleeps[0] == MAX_RETRY_AFTER


async def test_retry_after_past_the_deadline_is_not_waited_for(rig: Rig) -> None:
    rig.emu.fault("modelverse", "rate_limit", retry_after=30)
    with pytest.raises(RateLimited) as info:
        await rig.client().run(rig.modelverse(), edit_request("modelverse"), deadline=rig.deadline(10))
    assert info.value.retry_after == 30 and rig.time.sleeps == []


def test_retry_after_header_forms() -> None:
    assert _retry_after("12") == 12.0
    assert 8 <= (_retry_after(formatdate(time.time() + 10, usegmt=True)) or 0) <= 10
    assert _retry_after(formatdate(0, usegmt=True)) == 0.0
    assert _retry_after("soon") is None


# --- after the submit was sent, no answer to say what became of it: never sent again -----------


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize(
    ("kind", "options", "told"),
    [
        ("server_error", {"status": 500}, "failed (HTTP 500) after the job was sent"),
        ("server_error", {"status": 502}, "failed (HTTP 502) after the job was sent"),
        ("server_error", {"status": 504}, "failed (HTTP 504) after the job was sent"),
        ("connection_reset", {}, "broke after the job was sent"),
        ("hang", {"seconds": 5}, "did not answer in time after the job was sent"),
    ],
)
async def test_a_submit_whose_outcome_is_unknown_is_sent_once(
    rig: Rig, provider: str, kind: str, options: dict[str, Any], told: str
) -> None:
    rig.emu.fault(provider, kind, times=-1, **options)
    with pytest.raises(OutcomeUnknown) as info:
        await rig.client(max_retries=3).run(
            adapter(rig, provider, read_timeout=0.2), edit_request(provider), deadline=rig.deadline()
        )
    err = info.value
    assert told in err.user_message and err.user_message.endswith("it was not sent again.")
    assert err.failover and not err.retryable and err.provider == provider
    assert submits(rig, provider) == 1 and rig.time.sleeps == []


async def test_modelverse_408_is_an_unknown_outcome(rig: Rig) -> None:
    rig.emu.fault("modelverse", "server_error", status=408, times=-1)  # its "timeout": the model may have run
    with pytest.raises(OutcomeUnknown):
        await rig.client().run(rig.modelverse(), edit_request("modelverse"), deadline=rig.deadline())
    assert submits(rig, "modelverse") == 1


async def test_a_refused_connection_is_tried_again(rig: Rig) -> None:
    # Nothing listens there: the request was never written, so sending it again is safe.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{sock.getsockname()[1]}"
    with pytest.raises(Unavailable) as info:
        await rig.client(max_retries=2).run(
            ModelverseAdapter(KEYS["modelverse"], closed), edit_request("modelverse"), deadline=rig.deadline()
        )
    assert info.value.resend_safe and len(rig.time.sleeps) == 2


async def test_a_provider_that_never_answers_is_asked_once(rig: Rig) -> None:
    rig.emu.fault("modelverse", "never_finish", seconds=5, times=-1)
    with pytest.raises(OutcomeUnknown) as info:
        await rig.client(max_retries=1).run(
            rig.modelverse(read_timeout=0.2), edit_request("modelverse"), deadline=rig.deadline()
        )
    assert info.value.failover  # another provider may serve it; this one may already be working
    assert submits(rig, "modelverse") == 1


async def test_a_submit_cut_short_by_the_deadline_says_so(rig: Rig) -> None:
    # The real clock: the read timeout is the time left, and when it fires that time is up.
    rig.emu.fault("modelverse", "hang", seconds=5)
    client = ProviderClient(rig.http, Limits(max_retries=3))
    with pytest.raises(ProviderTimeout) as info:
        await client.run(rig.modelverse(), edit_request("modelverse"), deadline=time.monotonic() + 0.2)
    assert "took longer than" in info.value.user_message and not info.value.retryable
    assert submits(rig, "modelverse") == 1


# --- polling -----------------------------------------------------------------------------------


@pytest.mark.parametrize("provider", ["vtrix", "wavespeed"])
@pytest.mark.parametrize("kind", ["server_error", "rate_limit", "connection_reset", "hang"])
async def test_poll_errors_are_retried_without_resubmitting(rig: Rig, provider: str, kind: str) -> None:
    options: dict[str, Any] = {"seconds": 5} if kind == "hang" else {}
    rig.emu.fault(provider, kind, times=2, on="poll", **options)
    out = await rig.client(max_retries=0).run(
        adapter(rig, provider, read_timeout=0.2), edit_request(provider), deadline=rig.deadline()
    )
    assert len(out.images) == 1
    assert submits(rig, provider) == 1 and len(rig.calls(provider, "GET")) == 3


async def test_poll_rate_limit_retry_after_slows_polling(rig: Rig) -> None:
    rig.emu.fault("wavespeed", "rate_limit", on="poll", retry_after=20)
    await rig.client().run(rig.wavespeed(), edit_request("wavespeed"), deadline=rig.deadline())
    assert rig.time.sleeps == [3.0, 20.0]


@pytest.mark.parametrize("provider", ["vtrix", "wavespeed"])
async def test_deadline_ends_polling_with_a_final_timeout(rig: Rig, provider: str) -> None:
    rig.emu.fault(provider, "never_finish")
    with pytest.raises(ProviderTimeout) as info:
        await rig.client().run(adapter(rig, provider), edit_request(provider), deadline=rig.deadline(60))
    err = info.value
    assert "took longer than 60 s" in err.user_message
    assert not err.retryable
    assert sum(rig.time.sleeps) == pytest.approx(60)
    assert max(rig.time.sleeps) <= 10.0  # polling backs off, but gently
    assert submits(rig, provider) == 1


async def test_poll_errors_until_the_deadline_end_in_a_timeout(rig: Rig) -> None:
    rig.emu.fault("vtrix", "server_error", times=-1, on="poll")
    with pytest.raises(ProviderTimeout) as info:
        await rig.client().run(rig.vtrix(), edit_request("vtrix"), deadline=rig.deadline(30))
    assert not info.value.retryable and submits(rig, "vtrix") == 1


async def test_wavespeed_sync_gateway_504_without_an_id_is_not_resubmitted(rig: Rig) -> None:
    rig.emu.fault("wavespeed", "server_error", status=504, times=-1)
    with pytest.raises(OutcomeUnknown):
        await rig.client(max_retries=1).run(
            rig.wavespeed(sync_mode=True), edit_request("wavespeed"), deadline=rig.deadline()
        )
    assert submits(rig, "wavespeed") == 1
