"""``FakeDiscord``: the world and its drivers, served over HTTP — REST under /api/v10, the gateway at
/gateway, uploaded files, and the control API — plus the knobs tests turn (expiry, errors...)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiohttp import web

from tests.fake_discord.control import ControlApi
from tests.fake_discord.drivers import Drivers
from tests.fake_discord.gateway import Gateway
from tests.fake_discord.plumbing import RestPlumbing
from tests.fake_discord.records import API_PREFIX, MAX_ATTACHMENTS, FakeDiscordError, RestCall
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
    ) -> None:
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
        )
        self.token = token
        self.heartbeat_interval_ms = heartbeat_interval_ms
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

    def _dispatch(self, event: str, data: Any) -> None:
        self.gateway.dispatch(event, data)

    @property
    def ready(self) -> bool:
        return self.gateway_sessions > 0

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

    async def wait_ready(self, timeout: float = 10.0) -> None:  # noqa: ASYNC109 -- see wait_for
        """Wait until a client identified and its READY + GUILD_CREATE are queued."""
        await self.wait_until(lambda: self.ready, timeout=timeout, what="a client to IDENTIFY")

    # ---- knobs -----------------------------------------------------------------------------------

    def expire_token(self, token: str) -> None:
        """The interaction token passed its 15 minutes: webhook calls 401/50027, callbacks 404/10062."""
        self._by_token[token].expired = True

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
        """Answer the next ``times`` matching REST calls with this error (e.g. 429/500/403)."""
        self.plumbing.inject_error(method, path_contains, FakeDiscordError(status, code, message), times)
