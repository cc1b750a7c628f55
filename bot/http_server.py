"""KONTEXT_HTTP=host:port: GET /metrics (Prometheus text format) and GET /healthz (200, or 503 with a
one-line JSON reason), on a small aiohttp server in the process's own event loop.

Started by open_services for the processes that run for a long time (``kontext-bot run``, a worker);
one-shot commands never bind the port, so ``kontext-bot quota`` beside a running bot still works.
"""

from __future__ import annotations

import json
import logging

from aiohttp import web

from bot.errors import ConfigError
from bot.health import Health
from bot.metrics import CONTENT_TYPE, Metrics
from storage import Database

log = logging.getLogger(__name__)


class StatusServer:
    def __init__(self, metrics: Metrics, health: Health, db: Database, host: str, port: int) -> None:
        self.metrics = metrics
        self.health = health
        self.db = db
        self.host = host
        self.port = port  # the bound port once started (port 0 asks for a free one)
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/healthz", self._healthz)
        self._runner = web.AppRunner(app, access_log=None)  # a scrape every 15 s is not news

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    async def start(self) -> None:
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        try:
            await site.start()
        except OSError as exc:
            await self._runner.cleanup()
            raise ConfigError(
                f"KONTEXT_HTTP: cannot listen on {self.host}:{self.port} ({exc.strerror or exc})."
            ) from None
        server = site._server  # aiohttp keeps the listening sockets there; the only way to port 0's
        sockets = getattr(server, "sockets", None) or ()
        if sockets:
            self.port = sockets[0].getsockname()[1]
        log.info("serving /metrics and /healthz on %s", self.url)

    async def stop(self) -> None:
        await self._runner.cleanup()

    async def _metrics(self, request: web.Request) -> web.Response:
        await self.metrics.refresh(self.db)
        return web.Response(body=self.metrics.render(), headers={"Content-Type": CONTENT_TYPE})

    async def _healthz(self, request: web.Request) -> web.Response:
        problem = await self.health.problem(self.db)
        if problem is None:
            return _json(200, {"status": "ok"})
        log.warning("health check failed: %s", problem)
        return _json(503, {"status": "unavailable", "reason": problem})


def _json(status: int, obj: dict[str, str]) -> web.Response:
    return web.Response(status=status, text=json.dumps(obj) + "\n", content_type="application/json")
