"""The emulator's account knob: at most N tasks open at once per provider, each provider's busy answer
beyond that, the task duration, and the counters (busy answers, most tasks open at once).

Tasks are held open with a long latency and released by setting it to 0, so no test depends on how
fast the machine is.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.emulator import ProviderEmulator, data_uri

ROOT = Path(__file__).resolve().parent.parent
HOLD = 3600.0  # a task duration no test waits for
WS = "/api/v3/wavespeed-ai/flux-kontext-pro/text-to-image"
VT = "/model/v1/generation"
MV = "/v1/images/generations"


def auth(provider: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {ProviderEmulator.KEYS[provider]}"}


def vt_body(png: bytes) -> dict[str, Any]:
    return {"model": "flux_kontext_pro", "input": [{"params": {"prompt": "x", "input_image": data_uri(png)}}]}


def mv_body(png: bytes) -> dict[str, Any]:
    return {"model": "black-forest-labs/flux-kontext-pro", "prompt": "x", "image": data_uri(png)}


@pytest.fixture
async def http(emulator: ProviderEmulator) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=emulator.url, timeout=10) as client:
        yield client


async def test_wavespeed_account_runs_n_tasks_then_answers_429(
    emulator: ProviderEmulator, http: httpx.AsyncClient
) -> None:
    account = emulator.account("wavespeed", concurrency=2, latency=HOLD)
    answers = [await http.post(WS, headers=auth("wavespeed"), json={"prompt": "x"}) for _ in range(4)]
    assert [a.status_code for a in answers] == [200, 200, 429, 429]
    assert answers[2].json() == {"code": 429, "message": answers[2].json()["message"]}
    assert "retry-after" not in answers[2].headers
    assert (account.busy, account.peak_open, account.submits) == (2, 2, 2)
    assert len(emulator.generations) == 2 and emulator.open_tasks("wavespeed") == 2  # busy: no task

    emulator.account("wavespeed", latency=0)  # the two tasks are done now: their slots are free
    again = await http.post(WS, headers=auth("wavespeed"), json={"prompt": "x"})
    assert again.status_code == 200 and account.busy == 2 and account.peak_open == 2
    # A finished task is still fetched as usual.
    first = answers[0].json()["data"]["urls"]["get"]
    assert (await http.get(first, headers=auth("wavespeed"))).json()["data"]["status"] == "completed"


async def test_the_latency_knob_is_the_task_duration_per_provider(
    emulator: ProviderEmulator, http: httpx.AsyncClient, png_bytes: Callable[..., bytes]
) -> None:
    emulator.account("vtrix", latency=HOLD)  # wavespeed keeps the emulator-wide latency, 0
    assert (emulator.latency_of("vtrix"), emulator.latency_of("wavespeed")) == (HOLD, 0.0)
    task = (await http.post(VT, headers=auth("vtrix"), json=vt_body(png_bytes()))).json()
    polled = (await http.get(f"{VT}/task/{task['id']}", headers=auth("vtrix"))).json()
    assert polled["status"] in ("processing", "in_progress")
    pred = (await http.post(WS, headers=auth("wavespeed"), json={"prompt": "x"})).json()["data"]
    assert (await http.get(pred["urls"]["get"], headers=auth("wavespeed"))).json()["data"][
        "status"
    ] == "completed"
    emulator.account("vtrix", latency=None)  # back to the emulator-wide latency
    polled = (await http.get(f"{VT}/task/{task['id']}", headers=auth("vtrix"))).json()
    assert polled["status"] == "completed"


async def test_vtrix_busy_answer_with_retry_after(
    emulator: ProviderEmulator, http: httpx.AsyncClient, png_bytes: Callable[..., bytes]
) -> None:
    account = emulator.account("vtrix", concurrency=1, latency=HOLD, retry_after=2.5)
    first = await http.post(VT, headers=auth("vtrix"), json=vt_body(png_bytes()))
    busy = await http.post(VT, headers=auth("vtrix"), json=vt_body(png_bytes()))
    assert first.status_code == 200 and busy.status_code == 429
    assert busy.json() == {"code": "rate_limit_exceeded", "message": busy.json()["message"]}
    assert busy.headers["retry-after"] == "2.5" and account.busy == 1


async def test_modelverse_counts_requests_in_flight(
    emulator: ProviderEmulator, png_bytes: Callable[..., bytes]
) -> None:
    account = emulator.account("modelverse", concurrency=1, latency=HOLD)
    async with httpx.AsyncClient(base_url=emulator.url, timeout=None) as http:
        held = asyncio.create_task(http.post(MV, headers=auth("modelverse"), json=mv_body(png_bytes())))
        for _ in range(3000):  # until the first request is inside its generation
            if account.peak_open:
                break
            await asyncio.sleep(0.01)
        busy = await http.post(MV, headers=auth("modelverse"), json=mv_body(png_bytes()))
        assert busy.status_code == 429 and busy.json()["error"]["code"] == "rate_limit_error"
        assert busy.json()["error"]["param"]  # the request id, as in every error of theirs
        emulator.account("modelverse", latency=0)
        assert emulator.open_tasks("modelverse") == 1  # held until its answer is sent
        await emulator.stop()  # wakes the held generation
        with pytest.raises(httpx.HTTPError):
            await held
    assert (account.busy, account.peak_open) == (1, 1)


async def test_a_task_that_never_finishes_holds_its_slot(
    emulator: ProviderEmulator, http: httpx.AsyncClient
) -> None:
    emulator.account("wavespeed", concurrency=1, latency=0)
    emulator.fault("wavespeed", "never_finish")
    assert (await http.post(WS, headers=auth("wavespeed"), json={"prompt": "x"})).status_code == 200
    assert (await http.post(WS, headers=auth("wavespeed"), json={"prompt": "x"})).status_code == 429


async def test_reset_clears_the_counters_not_the_knobs(
    emulator: ProviderEmulator, http: httpx.AsyncClient
) -> None:
    account = emulator.account("wavespeed", concurrency=1, latency=HOLD)
    for _ in range(2):
        await http.post(WS, headers=auth("wavespeed"), json={"prompt": "x"})
    assert (account.busy, account.peak_open) == (1, 1)
    emulator.reset()
    assert (account.busy, account.peak_open, account.submits) == (0, 0, 0)
    assert (account.concurrency, account.latency) == (1, HOLD)
    with pytest.raises(ValueError):
        emulator.account("wavespeed", concurrency=0)
    with pytest.raises(ValueError):
        emulator.account("wavespeed", slots=3)
    with pytest.raises(ValueError):
        emulator.account("bfl", concurrency=3)


async def test_the_control_api_sets_and_reads_accounts() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.emulator", "--port", "0",
        cwd=ROOT, stdout=asyncio.subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), 10)).decode().strip()
        async with httpx.AsyncClient(base_url=line.split("=", 1)[1], timeout=5) as http:
            spec = {"provider": "wavespeed", "concurrency": 1, "latency": HOLD, "retry_after": 3}
            set_ = await http.post("/_emulator/account", json=spec)
            assert set_.status_code == 200 and set_.json()["concurrency"] == 1
            for _ in range(3):
                await http.post(WS, headers=auth("wavespeed"), json={"prompt": "x"})
            accounts = (await http.get("/_emulator/accounts")).json()
            assert accounts["wavespeed"] == {
                "concurrency": 1,
                "latency": HOLD,
                "retry_after": 3.0,
                "open": 1,
                "peak_open": 1,
                "busy": 2,
                "submits": 1,
            }
            assert accounts["vtrix"]["concurrency"] is None and accounts["vtrix"]["busy"] == 0
            bad = await http.post("/_emulator/account", json={"provider": "wavespeed", "concurrency": -1})
            assert bad.status_code == 400
    finally:
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 10) == 0
