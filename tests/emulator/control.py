"""The control API, for emulators running as ``python -m tests.emulator`` subprocesses.

    POST /_emulator/fault      {"provider", "kind", "times"?, ...options}: arm a fault
    POST /_emulator/reset      clear faults, recorded requests and generations
    POST /_emulator/config     {"latency"?, "polls_until_done"?, "output_size"?: [w, h]}
    POST /_emulator/account    {"provider", "concurrency"?, "latency"?, "retry_after"?}: a
                               provider account's knobs (null clears one); answers its snapshot
    GET  /_emulator/accounts   {provider: {"concurrency", "latency", "retry_after", "open",
                               "peak_open", "busy", "submits"}}
    GET  /_emulator/requests   every recorded call, as JSON
    GET  /_emulator/generations

These calls are not recorded. Bad input answers 400 ``{"error": "..."}``.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from tests.emulator.app import ProviderEmulator


def control_routes(emu: ProviderEmulator) -> list[web.RouteDef]:
    async def fault(request: web.Request) -> web.Response:
        try:
            spec = dict(await request.json())
            emu.fault(spec.pop("provider"), spec.pop("kind"), times=int(spec.pop("times", 1)), **spec)
        except (ValueError, KeyError, TypeError) as exc:
            return web.json_response({"error": str(exc)}, status=400)
        return web.json_response({"ok": True})

    async def reset(request: web.Request) -> web.Response:
        emu.reset()
        return web.json_response({"ok": True})

    async def config(request: web.Request) -> web.Response:
        spec = await request.json()
        if "latency" in spec:
            emu.latency = float(spec["latency"])
        if "polls_until_done" in spec:
            emu.polls_until_done = int(spec["polls_until_done"])
        if "output_size" in spec:
            emu.output_size = (int(spec["output_size"][0]), int(spec["output_size"][1]))
        return web.json_response({"ok": True})

    async def account(request: web.Request) -> web.Response:
        try:
            spec = dict(await request.json())
            configured = emu.account(spec.pop("provider"), **spec)
        except (ValueError, KeyError, TypeError) as exc:
            return web.json_response({"error": str(exc)}, status=400)
        return web.json_response(configured.snapshot(emu.latency))

    async def accounts(request: web.Request) -> web.Response:
        return web.json_response(
            {name: acc.snapshot(emu.latency) for name, acc in emu.accounts.by_provider.items()}
        )

    async def requests(request: web.Request) -> web.Response:
        return web.json_response([asdict(r) for r in emu.requests])

    async def generations(request: web.Request) -> web.Response:
        return web.json_response([asdict(g) for g in emu.generations])

    return [
        web.post("/_emulator/fault", fault),
        web.post("/_emulator/reset", reset),
        web.post("/_emulator/config", config),
        web.post("/_emulator/account", account),
        web.get("/_emulator/accounts", accounts),
        web.get("/_emulator/requests", requests),
        web.get("/_emulator/generations", generations),
    ]
