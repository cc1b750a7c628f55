"""Adapters as pure translations: canonical request in, provider JSON out; answers in, states out."""

from __future__ import annotations

from typing import Any

import pytest

from bot.config import ProviderSettings, Settings
from bot.providers.base import (
    AuthError,
    BadResponse,
    ContentRefused,
    Finished,
    GenerationRequest,
    InvalidRequest,
    OutOfBalance,
    OutputRef,
    Pending,
    ProviderError,
    ProviderTimeout,
    RateLimited,
    TaskCancelled,
    TaskFailed,
    Unavailable,
)
from bot.providers.modelverse import ModelverseAdapter
from bot.providers.registry import build_adapters
from bot.providers.vtrix import VtrixAdapter
from bot.providers.wavespeed import WaveSpeedAdapter

KEY = "sk-adapter-secret-123"
IMG = "data:image/png;base64,iVBORw0KGgo="


def req(model: str, images: tuple[str, ...] = (), **params: Any) -> GenerationRequest:
    return GenerationRequest(model, "make it blue", images, params)


# --- UModelverse --------------------------------------------------------------------------------


def test_modelverse_submit_maps_params_and_single_image() -> None:
    mv = ModelverseAdapter(KEY, "https://mv.example/")
    call = mv.build_submit(
        req("black-forest-labs/flux-kontext-pro", (IMG,), guidance=3.0, steps=20, n=2, seed=7, strength=None)
    )
    assert (call.method, call.path) == ("POST", "/v1/images/generations")
    assert call.json == {
        "model": "black-forest-labs/flux-kontext-pro",
        "prompt": "make it blue",
        "image": IMG,
        "guidance_scale": 3.0,
        "steps": 20,
        "n": 2,
        "seed": 7,
    }
    assert mv.auth_headers() == {"Authorization": f"Bearer {KEY}"}
    assert mv.base_url == "https://mv.example"


def test_modelverse_multi_uses_images_array_and_random_seed_is_left_out() -> None:
    call = ModelverseAdapter(KEY, "https://mv").build_submit(
        req("black-forest-labs/flux-kontext-max/multi", (IMG, IMG), seed=-1)
    )
    assert call.json["images"] == [IMG, IMG]
    assert "image" not in call.json and "seed" not in call.json


def test_modelverse_parse_urls_and_b64() -> None:
    mv = ModelverseAdapter(KEY, "https://mv")
    state = mv.parse_submit(200, {"created": 1, "data": [{"url": "https://x/1.png"}, {"b64_json": "AAAA"}]})
    assert state == Finished((OutputRef(url="https://x/1.png"), OutputRef(b64="AAAA")))


@pytest.mark.parametrize(
    ("status", "code", "etype", "expected"),
    [
        (400, "param_error", "invalid_request_error", InvalidRequest),
        (400, "model_error", "invalid_request_error", InvalidRequest),
        (400, "sensitive_check_error", "invalid_request_error", ContentRefused),
        (401, "auth_error", "auth_error", AuthError),
        (402, "x", "", OutOfBalance),
        (400, "insufficient_balance", "", OutOfBalance),
        (408, "timeout", "", ProviderTimeout),
        (429, "rate_limit_error", "rate_limit_error", RateLimited),
        (500, "internal_error", "", Unavailable),
        (500, "model_server_error", "", TaskFailed),  # the model ran and failed
        (503, "", "", Unavailable),
        (504, "gateway_timeout_error", "", ProviderTimeout),
    ],
)
def test_modelverse_error_table(status: int, code: str, etype: str, expected: type[ProviderError]) -> None:
    body = {"error": {"message": "nope", "type": etype, "param": "req-42", "code": code}}
    with pytest.raises(expected) as info:
        ModelverseAdapter(KEY, "https://mv").parse_submit(status, body)
    assert info.value.provider == "modelverse"
    assert info.value.status == status
    assert info.value.request_id == "req-42"


def test_modelverse_empty_error_object_beside_data_is_no_failure() -> None:
    mv = ModelverseAdapter(KEY, "https://mv")
    body = {
        "data": [{"url": "https://x/1.png"}],
        "error": {"code": "", "message": "", "param": "r", "type": ""},
    }
    assert mv.parse_submit(200, body) == Finished((OutputRef(url="https://x/1.png"),))
    with pytest.raises(InvalidRequest):
        mv.parse_submit(200, {"data": [], "error": {"code": "param_error", "message": "bad", "param": "r"}})


def test_modelverse_has_nothing_to_resume() -> None:
    with pytest.raises(TaskFailed):
        ModelverseAdapter(KEY, "https://mv").build_poll("x")


# --- Vtrix --------------------------------------------------------------------------------------


def test_vtrix_submit_fills_input_image_slots() -> None:
    call = VtrixAdapter(KEY, "https://vt").build_submit(
        req("flux_kontext_max", ("a", "b", "c"), guidance=2.5, aspect_ratio="16:9", seed=3, n=1)
    )
    assert call.path == "/model/v1/generation"
    assert call.json == {
        "model": "flux_kontext_max",
        "input": [
            {
                "params": {
                    "prompt": "make it blue",
                    "input_image": "a",
                    "input_image_2": "b",
                    "input_image_3": "c",
                    "aspect_ratio": "16:9",
                    "guidance_scale": 2.5,
                    "seed": 3,
                }
            }
        ],
    }
    assert VtrixAdapter(KEY, "https://vt").build_poll("t1").path == "/model/v1/generation/task/t1"


@pytest.mark.parametrize("status_word", ["pending", "processing", "in_progress", "queued", ""])
def test_vtrix_every_non_terminal_status_is_running(status_word: str) -> None:
    state = VtrixAdapter(KEY, "https://vt").parse_poll(
        200, {"id": "t1", "status": status_word, "progress": 0.4}
    )
    assert isinstance(state, Pending)
    assert (state.task_id, state.progress) == ("t1", 0.4)


def test_vtrix_completed_carries_cost() -> None:
    body = {
        "id": "t1",
        "status": "completed",
        "output": [{"content": [{"type": "image", "url": "https://x/1.jpg"}]}],
        "usage": {"cost": "0.08", "discount": 0},
    }
    state = VtrixAdapter(KEY, "https://vt").parse_submit(200, body)
    assert state == Finished((OutputRef(url="https://x/1.jpg"),), task_id="t1", cost_usd="0.08")


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        ({"code": "content_moderated", "message": "Request Moderated"}, ContentRefused),
        ("NSFW content detected", ContentRefused),
        ({"code": 400, "error_message": "Content moderation: prompt flagged"}, ContentRefused),
        ({"code": "internal", "message": "worker crashed"}, TaskFailed),
        ({"code": 500, "error_message": "worker crashed"}, TaskFailed),
        ("out of memory", TaskFailed),
        (None, TaskFailed),
    ],
)
def test_vtrix_failed_task_both_error_shapes(error: Any, expected: type[ProviderError]) -> None:
    with pytest.raises(expected) as info:
        VtrixAdapter(KEY, "https://vt").parse_poll(200, {"id": "t9", "status": "failed", "error": error})
    assert info.value.request_id == "t9"


def test_vtrix_error_message_is_what_the_member_reads() -> None:
    body = {"id": "t9", "status": "failed", "error": {"code": 500, "error_message": "worker crashed"}}
    with pytest.raises(TaskFailed) as info:
        VtrixAdapter(KEY, "https://vt").parse_poll(200, body)
    assert info.value.user_message == "The Vtrix task failed: worker crashed"


def test_vtrix_create_status_is_the_submissions() -> None:
    vt = VtrixAdapter(KEY, "https://vt")
    # completed without output on create: the task runs on, poll it
    assert vt.parse_submit(200, {"id": "t1", "status": "completed", "created_at": 1750667997}) == Pending(
        "t1", status="completed"
    )
    # ... while a poll that says so has truly finished without any image
    assert vt.parse_poll(200, {"id": "t1", "status": "completed"}) == Finished((), task_id="t1")
    with pytest.raises(TaskFailed) as info:
        vt.parse_submit(200, {"error": "Insufficient balance"})
    assert info.value.user_message == "Vtrix did not create the task: Insufficient balance"
    with pytest.raises(ContentRefused):
        vt.parse_submit(200, {"error": {"code": 400, "error_message": "blocked by content moderation"}})
    with pytest.raises(BadResponse):
        vt.parse_submit(200, {"status": "pending"})


@pytest.mark.parametrize(
    ("status", "expected"),
    [(401, AuthError), (403, OutOfBalance), (429, RateLimited), (500, Unavailable), (400, InvalidRequest)],
)
def test_vtrix_http_errors(status: int, expected: type[ProviderError]) -> None:
    with pytest.raises(expected):
        VtrixAdapter(KEY, "https://vt").parse_submit(status, {"code": "x", "message": "m"})


# --- WaveSpeedAI ----------------------------------------------------------------------------------


def test_wavespeed_input_shape_follows_the_endpoint() -> None:
    ws = WaveSpeedAdapter(KEY, "https://ws", sync_mode=True)
    edit = ws.build_submit(req("wavespeed-ai/flux-kontext-pro", (IMG,), guidance=3.5, n=1))
    multi = ws.build_submit(req("wavespeed-ai/flux-kontext-max/multi", (IMG, IMG), seed=5))
    t2i = ws.build_submit(req("wavespeed-ai/flux-kontext-pro/text-to-image", n=3, aspect_ratio="1:1"))
    assert edit.path == "/api/v3/wavespeed-ai/flux-kontext-pro"
    assert edit.json == {
        "prompt": "make it blue",
        "image": IMG,
        "guidance_scale": 3.5,
        "enable_sync_mode": True,
    }
    assert multi.json["images"] == [IMG, IMG] and multi.json["seed"] == 5
    assert t2i.json["num_images"] == 3 and "image" not in t2i.json and "images" not in t2i.json
    assert ws.build_poll("p1").path == "/api/v3/predictions/p1/result"


def test_wavespeed_completed_with_nsfw_flags_and_base64() -> None:
    body = {
        "code": 200,
        "message": "success",
        "data": {
            "id": "p1",
            "status": "completed",
            "outputs": ["https://x/1.png", "iVBORw0KGgo="],
            "has_nsfw_contents": [False, True],
        },
    }
    state = WaveSpeedAdapter(KEY, "https://ws").parse_poll(200, body)
    assert state == Finished(
        (OutputRef(url="https://x/1.png"), OutputRef(b64="iVBORw0KGgo=", nsfw=True)), task_id="p1"
    )


def test_wavespeed_sync_504_with_id_means_keep_polling() -> None:
    ws = WaveSpeedAdapter(KEY, "https://ws", sync_mode=True)
    state = ws.parse_submit(
        504, {"code": 504, "message": "timeout", "data": {"id": "p7", "status": "processing"}}
    )
    assert state == Pending("p7", status="processing")
    with pytest.raises(Unavailable):
        ws.parse_submit(504, {"code": 504, "message": "gateway timeout"})
    with pytest.raises(Unavailable):
        ws.parse_submit(504, "<html>gateway timeout</html>")


@pytest.mark.parametrize(
    ("code", "text", "expected"),
    [
        (1200, "content moderation", ContentRefused),
        (None, "Your input was flagged by content moderation", ContentRefused),
        (1400, "missing parameter", InvalidRequest),
        (1401, "invalid parameter", InvalidRequest),
        (1402, "media url not reachable", TaskFailed),
        (1403, "task failed", TaskFailed),
        (1405, "task failed", TaskFailed),
        (5000, "internal", Unavailable),
        (5003, "unavailable", Unavailable),
        (5004, "timeout", Unavailable),
        (None, "1200: blocked", ContentRefused),
        (None, "something broke", TaskFailed),
    ],
)
@pytest.mark.parametrize("shape", ["text_and_data_code", "error_object"])
def test_wavespeed_task_codes(code: int | None, text: str, expected: type[ProviderError], shape: str) -> None:
    data: dict[str, Any] = {"id": "p1", "status": "failed", "error": text}
    if code is not None and shape == "text_and_data_code":
        data["code"] = code
    elif code is not None:
        data["error"] = {"code": code, "message": text}
    with pytest.raises(expected) as info:
        WaveSpeedAdapter(KEY, "https://ws").parse_poll(200, {"code": 200, "message": "success", "data": data})
    assert info.value.request_id == "p1"


@pytest.mark.parametrize(
    ("status", "expected"),
    [(401, AuthError), (403, OutOfBalance), (429, RateLimited), (500, Unavailable), (400, InvalidRequest)],
)
def test_wavespeed_http_errors(status: int, expected: type[ProviderError]) -> None:
    with pytest.raises(expected):
        WaveSpeedAdapter(KEY, "https://ws").parse_submit(
            status, {"code": status, "message": "m", "data": None}
        )


@pytest.mark.parametrize(
    ("state", "expected", "failover"),
    [("cancelled", TaskCancelled, False), ("deleted", TaskCancelled, False), ("timeout", TaskFailed, True)],
)
def test_wavespeed_every_end_state_ends_the_task(
    state: str, expected: type[ProviderError], failover: bool
) -> None:
    body = {"code": 200, "data": {"id": "p1", "status": state, "error": "content policy", "outputs": []}}
    with pytest.raises(expected) as info:
        WaveSpeedAdapter(KEY, "https://ws").parse_poll(200, body)
    assert info.value.failover is failover and info.value.request_id == "p1"


@pytest.mark.parametrize(
    "data",
    [
        {"id": "p7", "status": "processing", "code": 5004, "error": "Sync mode timed out after 90 seconds."},
        {"id": "p7", "status": "processing", "error": "Sync mode timed out after 90 seconds."},
        {"id": "p7", "status": "failed", "code": 5004, "error": "Sync mode timed out"},
    ],
)
def test_wavespeed_sync_timeout_in_a_200_means_poll_that_task(data: dict[str, Any]) -> None:
    ws = WaveSpeedAdapter(KEY, "https://ws", sync_mode=True)
    assert ws.parse_submit(200, {"code": 200, "message": "success", "data": data}) == Pending(
        "p7", status="processing"
    )


def test_wavespeed_503_says_nothing_was_done_and_500_does_not() -> None:
    ws = WaveSpeedAdapter(KEY, "https://ws")
    assert ws.map_error(503, {"code": 5003, "message": "busy"}, None).resend_safe
    assert not ws.map_error(500, {"code": 5000, "message": "boom"}, None).resend_safe
    assert ws.map_error(429, {"code": 429, "message": "too many tasks"}, None).resend_safe


def test_wavespeed_wrapped_task_code_in_a_200_answer() -> None:
    with pytest.raises(ContentRefused):
        WaveSpeedAdapter(KEY, "https://ws").parse_submit(
            200, {"code": 1200, "message": "moderated", "data": None}
        )


def test_wavespeed_unwrapped_garbage_is_bad_response() -> None:
    with pytest.raises(BadResponse):
        WaveSpeedAdapter(KEY, "https://ws").parse_poll(200, {"code": 200, "data": "nope"})
    with pytest.raises(BadResponse):
        WaveSpeedAdapter(KEY, "https://ws").parse_poll(200, ["not", "an", "object"])


# --- secrets and the registry -------------------------------------------------------------------


@pytest.mark.parametrize("adapter_cls", [ModelverseAdapter, VtrixAdapter, WaveSpeedAdapter])
def test_echoed_key_is_scrubbed_and_repr_hides_it(adapter_cls: type) -> None:
    adapter = adapter_cls(KEY, "https://p")
    echoed = f"bad header Authorization: Bearer {KEY}"
    body = {"error": {"message": echoed, "code": "param_error", "param": "r"}, "message": echoed}
    err = adapter.map_error(400, body, None)
    assert KEY not in str(err) and KEY not in repr(err)
    assert KEY not in repr(adapter)


def test_build_adapters_only_enabled() -> None:
    settings = Settings(
        providers={
            "modelverse": ProviderSettings("modelverse", KEY, "https://mv"),
            "vtrix": ProviderSettings("vtrix", "", "https://vt"),
            "wavespeed": ProviderSettings("wavespeed", KEY, "https://ws", sync_mode=True, read_timeout=9),
        }
    )
    adapters = build_adapters(settings)
    assert sorted(adapters) == ["modelverse", "wavespeed"]
    ws = adapters["wavespeed"]
    assert isinstance(ws, WaveSpeedAdapter) and ws.sync_mode and ws.read_timeout == 9
