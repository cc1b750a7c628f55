"""The provider emulator itself: each API's happy path, its validation, and every fault kind."""

from __future__ import annotations

import asyncio
import base64
import io
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from tests.emulator import B64_PREFIX, ProviderEmulator, data_uri

MV = "/v1/images/generations"
VT = "/model/v1/generation"
KONTEXT_PRO = "black-forest-labs/flux-kontext-pro"
ROOT = Path(__file__).resolve().parent.parent  # where `python -m tests.emulator` runs


@pytest.fixture
async def http(emulator: ProviderEmulator) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=emulator.url, timeout=5) as client:
        yield client


def auth(provider: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {ProviderEmulator.KEYS[provider]}"}


def mv_body(png: bytes, **extra: Any) -> dict[str, Any]:
    return {"model": KONTEXT_PRO, "prompt": "make it blue", "image": data_uri(png), **extra}


def vt_body(png: bytes, **params: Any) -> dict[str, Any]:
    return {
        "model": "flux_kontext_max",
        "input": [{"params": {"prompt": "sketch", "input_image": data_uri(png), **params}}],
    }


def open_image(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


async def test_modelverse_answers_n_downloadable_pngs(
    emulator: ProviderEmulator, http: httpx.AsyncClient, png_bytes: Callable[..., bytes]
) -> None:
    r = await http.post(MV, headers=auth("modelverse"), json=mv_body(png_bytes(), n=2, seed=7))
    assert r.status_code == 200
    body = r.json()
    assert isinstance(body["created"], int) and body["usage"] == {"input_tokens_details": {}}
    assert len(body["data"]) == 2
    image = await http.get(body["data"][0]["url"])
    assert image.headers["content-type"] == "image/png"
    assert open_image(image.content).size == (64, 64)
    assert emulator.generations[-1].seed == 7
    # Result links are public: the provider key must not travel to them.
    download = emulator.requests[-1]
    assert download.provider == "files" and download.status == 200
    assert "authorization" not in download.headers
    assert emulator.requests[0].json["n"] == 2


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"n": 2, "model": "black-forest-labs/flux-kontext-max"}, "param_error"),  # n: not on kontext-max
        ({"guidance_scale": 20}, None),  # kontext-pro's own page allows up to 20
        ({"guidance_scale": 20.5}, "param_error"),
        ({"seed": 10_000_000_000}, "param_error"),
        ({"image": "data:image/png;base64,AAAA"}, "param_error"),  # base64, but not an image
        ({"image": "https://example.com/cat.png"}, None),  # public URLs are taken as they are
        ({"images": ["https://example.com/cat.png"]}, "param_error"),  # images is for /multi
        ({"model": "black-forest-labs/flux-kontext-ultra"}, "model_error"),
    ],
)
async def test_modelverse_validates_per_model(
    http: httpx.AsyncClient, png_bytes: Callable[..., bytes], change: dict[str, Any], code: str | None
) -> None:
    r = await http.post(MV, headers=auth("modelverse"), json={**mv_body(png_bytes()), **change})
    if code is None:
        assert r.status_code == 200
        return
    assert r.status_code == 400
    error = r.json()["error"]
    assert error["code"] == code and error["type"] == "invalid_request_error"
    assert len(error["param"]) == 36  # the request id, a UUID


async def test_modelverse_wrong_key_is_401(http: httpx.AsyncClient, png_bytes: Callable[..., bytes]) -> None:
    r = await http.post(MV, headers={"Authorization": "Bearer nope"}, json=mv_body(png_bytes()))
    assert r.status_code == 401 and r.json()["error"]["code"] == "auth_error"


async def test_modelverse_base64_outputs(
    emulator: ProviderEmulator, http: httpx.AsyncClient, png_bytes: Callable[..., bytes]
) -> None:
    r = await http.post(
        MV, headers=auth("modelverse"), json=mv_body(png_bytes(), n=2, response_format="b64_json")
    )
    texts = [item["b64_json"] for item in r.json()["data"]]
    # By default every other image carries the data: prefix, so adapters meet both forms.
    assert [t.startswith(B64_PREFIX) for t in texts] == [True, False]
    assert open_image(base64.b64decode(texts[1])).format == "PNG"

    emulator.fault("modelverse", "b64_output", prefix=False)
    r = await http.post(MV, headers=auth("modelverse"), json=mv_body(png_bytes()))
    assert "url" not in r.json()["data"][0]
    assert base64.b64decode(r.json()["data"][0]["b64_json"], validate=True).startswith(b"\x89PNG")

    emulator.fault("modelverse", "invalid_base64")
    r = await http.post(MV, headers=auth("modelverse"), json=mv_body(png_bytes()))
    with pytest.raises(ValueError):
        base64.b64decode(r.json()["data"][0]["b64_json"], validate=True)


async def test_vtrix_task_runs_through_both_status_vocabularies(
    emulator: ProviderEmulator, http: httpx.AsyncClient, png_bytes: Callable[..., bytes]
) -> None:
    emulator.polls_until_done = 2
    seen: list[list[str]] = []
    for _ in range(2):
        created = (await http.post(VT, headers=auth("vtrix"), json=vt_body(png_bytes()))).json()
        statuses = [created["status"]]
        for _ in range(2):
            task = (await http.get(f"{VT}/task/{created['id']}", headers=auth("vtrix"))).json()
            statuses.append(task["status"])
        seen.append(statuses)
    assert seen == [["pending", "processing", "completed"], ["in_progress", "in_progress", "completed"]]
    assert task["usage"] == {"cost": "0.08", "discount": 0}
    url = task["output"][0]["content"][0]["url"]
    image = await http.get(url)
    # Vtrix's default output_format is jpeg.
    assert image.headers["content-type"] == "image/jpeg" and open_image(image.content).format == "JPEG"


async def test_vtrix_failures_use_all_three_error_shapes(
    emulator: ProviderEmulator, http: httpx.AsyncClient, png_bytes: Callable[..., bytes]
) -> None:
    emulator.fault("vtrix", "content_refused", times=3)
    errors = []
    for _ in range(3):
        created = (await http.post(VT, headers=auth("vtrix"), json=vt_body(png_bytes()))).json()
        assert isinstance(created["created_at"], int)  # unix seconds, as Vtrix's client reads it
        task = (await http.get(f"{VT}/task/{created['id']}", headers=auth("vtrix"))).json()
        assert task["status"] == "failed" and "output" not in task
        errors.append(task["error"])
    assert errors[0] == {"code": "content_moderated", "message": errors[0]["message"]}  # the seed
    assert isinstance(errors[1], str) and "moderation" in errors[1]  # the client's plain string
    assert errors[2] == {"code": 400, "error_message": errors[1]}  # the client's object


async def test_vtrix_completed_on_create_and_validation(
    emulator: ProviderEmulator, http: httpx.AsyncClient, png_bytes: Callable[..., bytes]
) -> None:
    emulator.fault("vtrix", "completed_on_create")
    task = (await http.post(VT, headers=auth("vtrix"), json=vt_body(png_bytes(), output_format="png"))).json()
    assert task["status"] == "completed"
    assert task["output"][0]["content"][0]["url"].endswith(".png")

    # The submission completed, the generation not yet: no output until it is polled.
    emulator.fault("vtrix", "completed_on_create", output=False)
    task = (await http.post(VT, headers=auth("vtrix"), json=vt_body(png_bytes()))).json()
    assert task["status"] == "completed" and "output" not in task
    polled = (await http.get(f"{VT}/task/{task['id']}", headers=auth("vtrix"))).json()
    assert polled["status"] == "completed" and polled["output"]

    emulator.fault("vtrix", "no_task", message="Insufficient balance")
    r = await http.post(VT, headers=auth("vtrix"), json=vt_body(png_bytes()))
    assert r.status_code == 200 and r.json() == {"error": "Insufficient balance"}

    gap = vt_body(png_bytes(), input_image_3=data_uri(png_bytes()))  # input_image_2 missing
    r = await http.post(VT, headers=auth("vtrix"), json=gap)
    assert r.status_code == 400 and r.json()["code"] == "invalid_parameter" and r.json()["message"]
    r = await http.post(VT, headers=auth("vtrix"), json=vt_body(png_bytes(), guidance_scale=11))
    assert r.status_code == 400


async def test_wavespeed_async_then_poll(
    emulator: ProviderEmulator, http: httpx.AsyncClient, png_bytes: Callable[..., bytes]
) -> None:
    body = {"prompt": "merge", "images": [data_uri(png_bytes())] * 2, "guidance_scale": 15}
    r = await http.post("/api/v3/wavespeed-ai/flux-kontext-pro/multi", headers=auth("wavespeed"), json=body)
    submitted = r.json()
    assert submitted["code"] == 200 and submitted["data"]["status"] == "created"
    result = (await http.get(submitted["data"]["urls"]["get"], headers=auth("wavespeed"))).json()["data"]
    assert result["status"] == "completed" and result["has_nsfw_contents"] == [False]
    assert (await http.get(result["outputs"][0])).headers["content-type"] == "image/png"
    # The other poll path answers the same prediction.
    same = (await http.get(f"/api/v3/predictions/{result['id']}", headers=auth("wavespeed"))).json()
    assert same["data"]["outputs"] == result["outputs"]

    r = await http.post(
        "/api/v3/wavespeed-ai/flux-kontext-pro", headers=auth("wavespeed"), json={"prompt": "x"}
    )
    assert r.status_code == 400 and r.json()["code"] == 1400  # edit needs `image`


async def test_wavespeed_sync_base64_nsfw_and_sync_504(
    emulator: ProviderEmulator, http: httpx.AsyncClient
) -> None:
    path = "/api/v3/wavespeed-ai/flux-kontext-max/text-to-image"
    body = {"prompt": "a fox", "num_images": 2, "enable_sync_mode": True, "enable_base64_output": True}
    emulator.fault("wavespeed", "nsfw")
    data = (await http.post(path, headers=auth("wavespeed"), json=body)).json()["data"]
    assert data["status"] == "completed" and data["has_nsfw_contents"] == [True, True]
    assert base64.b64decode(data["outputs"][0], validate=True).startswith(b"\x89PNG")  # bare base64

    emulator.fault("wavespeed", "sync_504")
    r = await http.post(path, headers=auth("wavespeed"), json={"prompt": "a fox", "enable_sync_mode": True})
    assert r.status_code == 504 and r.json()["data"]["status"] == "processing"
    polled = (await http.get(r.json()["data"]["urls"]["get"], headers=auth("wavespeed"))).json()["data"]
    assert polled["status"] == "completed" and len(polled["outputs"]) == 1


async def test_wavespeed_failed_task_carries_code(
    emulator: ProviderEmulator, http: httpx.AsyncClient, png_bytes: Callable[..., bytes]
) -> None:
    emulator.fault("wavespeed", "content_refused")
    emulator.fault("wavespeed", "task_failed", code=1402, message="media URL not reachable")
    body = {"prompt": "x", "image": data_uri(png_bytes()), "enable_sync_mode": True}
    path = "/api/v3/wavespeed-ai/flux-kontext-pro"
    first = (await http.post(path, headers=auth("wavespeed"), json=body)).json()["data"]
    second = (await http.post(path, headers=auth("wavespeed"), json=body)).json()["data"]
    assert (first["status"], first["code"]) == ("failed", 1200) and "moderation" in first["error"].lower()
    assert (second["status"], second["code"], second["outputs"]) == ("failed", 1402, [])

    emulator.fault("wavespeed", "content_refused", wrapped=True)
    r = await http.post(path, headers=auth("wavespeed"), json=body)
    assert r.status_code == 400 and r.json() == {"code": 1200, "message": r.json()["message"]}


@pytest.mark.parametrize("status", ["cancelled", "timeout", "deleted"])
async def test_wavespeed_other_end_states(
    status: str, emulator: ProviderEmulator, http: httpx.AsyncClient, png_bytes: Callable[..., bytes]
) -> None:
    emulator.fault("wavespeed", "end_state", status=status, message=f"task {status}")
    body = {"prompt": "x", "image": data_uri(png_bytes())}
    path = "/api/v3/wavespeed-ai/flux-kontext-pro"
    submitted = (await http.post(path, headers=auth("wavespeed"), json=body)).json()["data"]
    assert submitted["status"] == "created"
    polled = (await http.get(submitted["urls"]["get"], headers=auth("wavespeed"))).json()["data"]
    assert (polled["status"], polled["error"], polled["outputs"]) == (status, f"task {status}", [])


@pytest.mark.parametrize("variant", ["code", "text"])
async def test_wavespeed_sync_mode_timing_out_as_http_200(
    variant: str, emulator: ProviderEmulator, http: httpx.AsyncClient
) -> None:
    emulator.fault("wavespeed", "sync_timeout", variant=variant)
    path = "/api/v3/wavespeed-ai/flux-kontext-pro/text-to-image"
    r = await http.post(path, headers=auth("wavespeed"), json={"prompt": "a fox", "enable_sync_mode": True})
    data = r.json()["data"]
    # As WaveSpeed's Go SDK tests show it: still processing, and the words "Sync mode timed out".
    assert r.status_code == 200 and r.json()["code"] == 200
    assert data["status"] == "processing" and data["error"].startswith("Sync mode timed out")
    assert data.get("code") == (5004 if variant == "code" else None) and data["outputs"] == []
    polled = (await http.get(data["urls"]["get"], headers=auth("wavespeed"))).json()["data"]
    assert polled["status"] == "completed" and len(polled["outputs"]) == 1


async def test_wavespeed_errors_carry_no_data(emulator: ProviderEmulator, http: httpx.AsyncClient) -> None:
    # The SDKs read a submit only from HTTP 200 with data.id; an error answer has no data at all.
    for fault in ("rate_limit", "bad_key", "out_of_balance", "server_error"):
        emulator.fault("wavespeed", fault)
        r = await http.post("/api/v3/wavespeed-ai/flux-kontext-pro/text-to-image", json={"prompt": "x"})
        assert r.status_code >= 400 and set(r.json()) == {"code", "message"}


async def test_modelverse_empty_error_beside_data(
    emulator: ProviderEmulator, http: httpx.AsyncClient, png_bytes: Callable[..., bytes]
) -> None:
    emulator.fault("modelverse", "empty_error")
    body = (await http.post(MV, headers=auth("modelverse"), json=mv_body(png_bytes()))).json()
    assert body["data"][0]["url"] and body["error"]["code"] == body["error"]["message"] == ""


async def test_gateway_faults_hit_the_next_calls_only(
    emulator: ProviderEmulator, http: httpx.AsyncClient, png_bytes: Callable[..., bytes]
) -> None:
    emulator.fault("*", "rate_limit", times=2, retry_after=1.5)
    emulator.fault("modelverse", "server_error", status=503)
    emulator.fault("modelverse", "malformed_json")
    emulator.fault("modelverse", "wrong_content_type")
    emulator.fault("modelverse", "out_of_balance")
    answers = [await http.post(MV, headers=auth("modelverse"), json=mv_body(png_bytes())) for _ in range(7)]
    assert [a.status_code for a in answers] == [429, 429, 503, 200, 200, 402, 200]
    assert answers[0].headers["retry-after"] == "1.5"
    assert answers[0].json()["error"]["code"] == "rate_limit_error"
    with pytest.raises(ValueError):
        answers[3].json()
    assert answers[4].headers["content-type"].startswith("text/html")
    assert answers[5].json()["error"]["code"] == "insufficient_balance"
    assert [r.status for r in emulator.requests] == [429, 429, 503, 200, 200, 402, 200]


async def test_connection_reset_and_hang(emulator: ProviderEmulator, png_bytes: Callable[..., bytes]) -> None:
    emulator.fault("modelverse", "connection_reset")
    emulator.fault("modelverse", "hang", seconds=3600)
    async with httpx.AsyncClient(base_url=emulator.url, timeout=0.15) as http:
        with pytest.raises(httpx.RemoteProtocolError):
            await http.post(MV, headers=auth("modelverse"), json=mv_body(png_bytes()))
        with pytest.raises(httpx.ReadTimeout):
            await http.post(MV, headers=auth("modelverse"), json=mv_body(png_bytes()))
    assert emulator.requests[0].status is None
    await emulator.stop()  # a hung handler must not hold the shutdown: stop() wakes it
    assert emulator.cut_short == 1 and emulator.requests[1].status is None


async def test_poll_faults_and_never_finish(
    emulator: ProviderEmulator, http: httpx.AsyncClient, png_bytes: Callable[..., bytes]
) -> None:
    emulator.fault("vtrix", "never_finish")
    emulator.fault("vtrix", "server_error", on="poll", times=-1)
    created = (await http.post(VT, headers=auth("vtrix"), json=vt_body(png_bytes()))).json()
    for _ in range(2):
        r = await http.get(f"{VT}/task/{created['id']}", headers=auth("vtrix"))
        assert r.status_code == 500
    emulator.clear_faults()
    for _ in range(3):
        task = (await http.get(f"{VT}/task/{created['id']}", headers=auth("vtrix"))).json()
        assert task["status"] == "processing"


async def test_output_file_faults(
    emulator: ProviderEmulator, http: httpx.AsyncClient, png_bytes: Callable[..., bytes]
) -> None:
    r = await http.post(MV, headers=auth("modelverse"), json=mv_body(png_bytes()))
    url = r.json()["data"][0]["url"]
    emulator.fault("modelverse", "expired_output")
    emulator.fault("*", "not_image")
    emulator.fault("modelverse", "huge_output", size_mb=2)
    expired, not_image, huge, fine = [await http.get(url) for _ in range(4)]
    assert expired.status_code == 404
    assert not_image.headers["content-type"] == "image/png" and not_image.content.startswith(b"<!DOCTYPE")
    assert int(huge.headers["content-length"]) == len(huge.content) == 2 * 1024 * 1024
    assert open_image(fine.content).size == (64, 64)


async def test_latency_and_output_size_knobs(
    emulator: ProviderEmulator, http: httpx.AsyncClient, png_bytes: Callable[..., bytes]
) -> None:
    emulator.latency = 0.1
    emulator.output_size = (300, 200)
    started = time.monotonic()
    r = await http.post(MV, headers=auth("modelverse"), json=mv_body(png_bytes()))
    assert time.monotonic() - started >= 0.1
    assert open_image((await http.get(r.json()["data"][0]["url"])).content).size == (300, 200)


def test_fault_refuses_kinds_that_cannot_apply() -> None:
    emulator = ProviderEmulator()
    for provider, kind, options in [
        ("modelverse", "sync_504", {}),
        ("vtrix", "b64_output", {}),
        ("wavespeed", "explode", {}),
        ("modelverse", "rate_limit", {"on": "poll"}),
        ("vtrix", "hang", {"secs": 3}),
    ]:
        with pytest.raises(ValueError):
            emulator.fault(provider, kind, **options)


async def test_standalone_process_with_control_endpoints(png_bytes: Callable[..., bytes]) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.emulator", "--port", "0", "--polls", "2",
        cwd=ROOT, stdout=asyncio.subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), 10)).decode().strip()
        assert line.startswith("EMULATOR_URL=http://127.0.0.1:")
        async with httpx.AsyncClient(base_url=line.split("=", 1)[1], timeout=5) as http:
            fault = {"provider": "vtrix", "kind": "bad_key"}
            assert (await http.post("/_emulator/fault", json=fault)).status_code == 200
            r = await http.post(VT, headers=auth("vtrix"), json=vt_body(png_bytes()))
            assert r.status_code == 401
            recorded = (await http.get("/_emulator/requests")).json()
            assert [(x["provider"], x["status"]) for x in recorded] == [("vtrix", 401)]
            await http.post("/_emulator/reset")
            assert (await http.get("/_emulator/requests")).json() == []
    finally:
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 10) == 0
