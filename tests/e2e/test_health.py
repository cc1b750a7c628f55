"""/healthz of a process that serves Discord: the real bot on the fake Discord's gateway is healthy
while connected and not once its gateway is gone; a job it ran shows on /metrics."""

from __future__ import annotations

import json

import httpx

from bot.http_server import StatusServer
from tests.e2e.conftest import MEMBER, Stack
from tests.e2e.support import PRO_T2I, fast, until


async def serve_status(stack: Stack) -> StatusServer:
    svc = stack.svc
    server = StatusServer(svc.metrics, svc.health, svc.db, "127.0.0.1", 0)
    await server.start()
    return server


async def healthz(server: StatusServer) -> tuple[int, dict]:
    async with httpx.AsyncClient() as http:
        r = await http.get(f"{server.url}/healthz")
    return r.status_code, json.loads(r.text)


async def test_healthy_while_the_gateway_is_connected_and_not_once_it_is_gone(make_stack, emulator):
    stack = await make_stack(emulator)
    fast(stack)
    server = await serve_status(stack)
    try:
        assert await healthz(server) == (200, {"status": "ok"})
        rec = await stack.fake.slash("create", {"prompt": "a lighthouse", "model": PRO_T2I}, user_id=MEMBER)
        await rec.wait_for(lambda r: r.original is not None and bool(r.original.files), 20)
        async with httpx.AsyncClient() as http:
            text = (await http.get(f"{server.url}/metrics")).text
        assert 'kontext_jobs_total{model="' + PRO_T2I in text and 'status="succeeded"} 1.0' in text

        await stack.fake.stop()  # Discord goes away: the bot keeps trying to reconnect, in vain

        async def unhealthy() -> bool:
            return (await healthz(server))[0] == 503

        await until(unhealthy, timeout=10)
        assert await healthz(server) == (
            503,
            {"status": "unavailable", "reason": "the Discord gateway is not connected"},
        )
    finally:
        await server.stop()
