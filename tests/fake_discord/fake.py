"""``FakeDiscord``: the world and its drivers, served over HTTP — REST under /api/v10, the gateway at
/gateway, uploaded files, and the control API — plus the knobs tests turn (expiry, errors, rate
limits...) and the counters they read (edits, calls per second)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

from aiohttp import web

from tests.fake_discord.control import ControlApi
from tests.fake_discord.drivers import TOKEN_LIFETIME, Drivers
from tests.fake_discord.gateway import Gateway
from tests.fake_discord.plumbing import RestPlumbing
from tests.fake_discord.records import (
    API_PREFIX,
    MAX_ATTACHMENTS,
    FakeDiscordError,
    RestCall,
    peak_rate,
    rate_limited,
)
from tests.fake_discord.rest import RestRoutes


class FakeDiscord(Drivers):
    """The fake: an aiohttp app serving REST under /api/v10, the gateway at /gateway and CDN files."""

    def __init__(
        self,
        *,
        app_id: int = 1_100_000_000_000_000_001,
        bot_user_id: int | None = None,
        guild_id: int = 1_200_000_000_000_000_001,
        owner_id: int = 1_300_000_000_000_000_001,
        token: str = "fake-token",
        upload_limit: int = 10 * 1024 * 1024,
        heartbeat_interval_ms: int = 41_250,
        shards: int = 1,
        max_concurrency: int = 1,
        token_lifetime: float = TOKEN_LIFETIME,
        channel_edits_interaction_responses: bool = True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``shards`` and ``max_concurrency`` are what GET /gateway/bot recommends; ``token_lifetime``
        is how long interaction tokens answer webhook calls (on ``clock``, which ``advance_time``
        moves); ``channel_edits_interaction_responses``: see ``tests.fake_discord.rest``."""
        self.gateway = Gateway(self)
        self.plumbing = RestPlumbing(self)
        self.rest = RestRoutes(self)
        self.control = ControlApi(self)
        super().__init__(
            app_id=app_id,
            bot_user_id=bot_user_id,
            guild_id=guild_id,
            owner_id=owner_id,
            upload_limit=upload_limit,
            clock=clock,
        )
        self.token = token
        self.heartbeat_interval_ms = heartbeat_interval_ms
        self.shards = shards
        self.max_concurrency = max_concurrency
        self.token_lifetime = token_lifetime
        self.channel_edits_interaction_responses = channel_edits_interaction_responses
        self.calls: list[RestCall] = self.plumbing.calls
        self._runner: web.AppRunner | None = None

    # ---- lifecycle -------------------------------------------------------------------------------

    @property
    def api_base(self) -> str:
        return self.url + API_PREFIX

    @property
    def gateway_url(self) -> str:
        return self.url.replace("http://", "ws://", 1) + "/gateway"

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        # Uploads up to the configured limit must reach the handler so it can answer 413/40005 itself.
        app = web.Application(client_max_size=max(self.upload_limit * (MAX_ATTACHMENTS + 1), 64 << 20))
        app.middlewares.append(self.plumbing.middleware)
        app.router.add_get("/gateway", self.gateway.handler)
        self.rest.add_routes(app.router)
        self.control.add_routes(app.router)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        bound = site._server.sockets[0].getsockname()  # type: ignore[union-attr]  # port 0 -> real port
        self.url = f"http://{bound[0]}:{bound[1]}"
        return self.url

    async def stop(self) -> None:
        await self.gateway.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeDiscord:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def configure_discord_py(self) -> Callable[[], None]:
        """Point discord.py's REST base and gateway at this fake; returns a function that undoes it."""
        import discord.gateway
        import discord.http
        import yarl

        old = discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY
        discord.http.Route.BASE = self.api_base
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(self.gateway_url)

        def restore() -> None:
            discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = old

        return restore

    # ---- gateway ---------------------------------------------------------------------------------

    def _dispatch(self, event: str, data: Any, guild_id: int | None = None) -> list[int]:
        return self.gateway.dispatch(event, data, guild_id)

    def _receivers(self, guild_id: int | None) -> list[int]:
        return self.gateway.receivers(guild_id)

    @property
    def ready(self) -> bool:
        """A client session identified (any shard)."""
        return self.gateway_sessions > 0

    @property
    def gateway_shards(self) -> list[tuple[int, int]]:
        """``(shard id, shard count)`` of each identified session, sorted."""
        return self.gateway.shards

    @property
    def gateway_sessions(self) -> int:
        """Open gateway connections that identified or resumed (1 for a healthy client)."""
        return self.gateway.sessions

    @property
    def identify_payloads(self) -> list[dict[str, Any]]:
        return self.gateway.identify_payloads

    @property
    def resumes(self) -> int:
        return self.gateway.resumes

    def request_reconnect(self) -> None:
        """Send op 7 RECONNECT: discord.py closes and RESUMEs on resume_gateway_url (see ``resumes``)."""
        self.gateway.request_reconnect()

    async def wait_ready(
        self,
        timeout: float = 10.0,  # noqa: ASYNC109 -- see wait_for
        *,
        shard_ids: Iterable[int] | None = None,
    ) -> None:
        """Wait until a client identified (with ``shard_ids``: a session for each of those shards) and
        its READY + GUILD_CREATEs are queued."""
        wanted = set(shard_ids or ())

        def ready() -> bool:
            return self.ready and wanted <= {shard for shard, _ in self.gateway_shards}

        what = f"sessions for shards {sorted(wanted)}" if wanted else "a client to IDENTIFY"
        await self.wait_until(ready, timeout=timeout, what=what)

    # ---- knobs -----------------------------------------------------------------------------------

    def expire_token(self, token: str) -> None:
        """The interaction token passed its 15 minutes: webhook calls 401/50027, callbacks 404/10062.
        (``advance_time(token_lifetime)`` expires every token the same way.)"""
        rec = self._by_token[token]
        rec.expires_at = min(rec.expires_at, self.now())
        self._changed()

    def inject_error(
        self,
        method: str,
        path_contains: str,
        status: int,
        code: int = 0,
        *,
        times: int = 1,
        message: str = "injected error",
    ) -> None:
        """Answer the next ``times`` matching REST calls with this error (e.g. 500/403; a 429 comes
        with Discord's rate-limit headers, see ``inject_rate_limit``). ``method`` may be "*"."""
        if status == 429:
            self.inject_rate_limit(method, path_contains, times=times)
            return
        self.plumbing.inject_error(method, path_contains, FakeDiscordError(status, code, message), times)

    def inject_rate_limit(
        self,
        method: str = "PATCH",
        path_contains: str = "/webhooks/",
        *,
        times: int = 1,
        retry_after: float = 0.01,
        is_global: bool = False,
    ) -> None:
        """Answer the next ``times`` matching calls (default: interaction-webhook edits) with 429 and
        ``retry_after`` seconds; it carries ``Via``, so discord.py sleeps and retries (up to 5 tries)."""
        error = rate_limited(retry_after, is_global=is_global)
        self.plumbing.inject_error(method, path_contains, error, times)

    def limit_webhook_edits(self, limit: int | None, per: float = 5.0) -> None:
        """Allow at most ``limit`` PATCHes per interaction token in any ``per`` seconds (fake clock);
        more answer 429 with the wait left. ``None`` lifts the limit."""
        self.plumbing.webhook_edit_limit = None if limit is None else (limit, per)

    # ---- counters --------------------------------------------------------------------------------

    @property
    def rest_peak_per_s(self) -> int:
        """The most REST calls (any route, any status) seen in one sliding second."""
        return self.plumbing.meter.peak

    @property
    def edit_peak_per_s(self) -> int:
        """The most message edits (any message, webhook or channel route) seen in one sliding second."""
        return self.edit_meter.peak

    def peak_rate(self, predicate: Callable[[RestCall], bool], window: float = 1.0) -> int:
        """The most calls matching ``predicate`` seen in one sliding ``window``-second window."""
        return peak_rate((c.at for c in self.calls if predicate(c)), window)

    def stats(self) -> dict[str, Any]:
        """The counters as one JSON-able dict (also GET /_fake/stats)."""
        messages = list(self.messages.values())
        by_shard: dict[str, int] = {}
        for rec in self.interactions.values():
            key = "none" if rec.shard is None else str(rec.shard)
            by_shard[key] = by_shard.get(key, 0) + 1
        return {
            "rest_calls": len(self.calls),
            "rest_peak_per_s": self.rest_peak_per_s,
            "rate_limited": self.plumbing.rate_limited,
            "messages": len(messages),
            "edits": self.edit_meter.count,
            "edit_peak_per_s": self.edit_peak_per_s,
            "max_edits_per_message": max((m.edits for m in messages), default=0),
            "interactions": len(self.interactions),
            "interactions_by_shard": by_shard,
            "gateway_shards": [list(s) for s in self.gateway_shards],
            "identifies": len(self.identify_payloads),
            "resumes": self.resumes,
        }
