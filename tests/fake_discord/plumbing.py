"""The HTTP layer under every REST route: the call log and its rate meter, the bot-token check,
injected errors and rate limits, body parsing (JSON or multipart ``payload_json`` + ``files[n]``)
and the upload limits."""

from __future__ import annotations

import json
import logging
import mimetypes
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web

from tests.fake_discord.records import (
    API_PREFIX,
    BODY_KEY,
    MAX_ATTACHMENTS,
    FakeDiscordError,
    InteractionRecord,
    RateMeter,
    RestCall,
    SentFile,
    json_response,
    rate_limited,
)

if TYPE_CHECKING:
    from tests.fake_discord.fake import FakeDiscord

log = logging.getLogger("tests.fake_discord")


class RestPlumbing:
    """Middleware state: ``calls`` (every REST request) with ``meter`` (calls per second), the errors
    queued by ``inject_error``, the webhook-edit limit and ``rate_limited`` (429s answered)."""

    def __init__(self, fake: FakeDiscord) -> None:
        self.fake = fake
        self.calls: list[RestCall] = []
        self.meter = RateMeter(1.0)
        self.rate_limited = 0
        self.webhook_edit_limit: tuple[int, float] | None = None  # (edits, per seconds) per token
        self._webhook_edits: dict[str, deque[float]] = {}
        self._injected: list[tuple[str, str, FakeDiscordError, list[int]]] = []

    def inject_error(self, method: str, path_contains: str, error: FakeDiscordError, times: int) -> None:
        self._injected.append((method.upper(), path_contains, error, [times]))

    def _check_webhook_edit_limit(self, call: RestCall) -> None:
        """Discord limits each interaction webhook (app id + token) like a webhook: a bucket of edits per
        window (numbers unpublished; ``webhook_edit_limit`` sets them). Over it: 429, nothing changes."""
        parts = call.path.split("/")  # "", "webhooks", app, token, "messages", id
        if self.webhook_edit_limit is None or call.method != "PATCH" or parts[1:2] != ["webhooks"]:
            return
        limit, per = self.webhook_edit_limit
        now = self.fake.now()
        recent = self._webhook_edits.setdefault(parts[3], deque())
        while recent and recent[0] <= now - per:
            recent.popleft()
        if len(recent) >= limit:
            raise rate_limited(recent[0] + per - now, bucket=f"webhook:{parts[2]}:{parts[3][:12]}")
        recent.append(now)

    @web.middleware
    async def middleware(
        self, request: web.Request, handler: Callable[[web.Request], Any]
    ) -> web.StreamResponse:
        if not request.path.startswith(API_PREFIX + "/"):
            return await handler(request)
        fake = self.fake
        call = RestCall(request.method, request.path[len(API_PREFIX) :], dict(request.query), None, [])
        call.at = fake.now()
        self.calls.append(call)
        self.meter.hit(call.at)
        try:
            call.json, call.files = await self._parse_body(request)
            request[BODY_KEY] = (call.json, call.files)
            self._check_injected(call)
            bot_route = not call.path.startswith(("/webhooks/", "/interactions/"))
            if bot_route and request.headers.get("Authorization") != f"Bot {fake.token}":
                raise FakeDiscordError(401, 0, "401: Unauthorized")
            self._check_webhook_edit_limit(call)
            response = await handler(request)
        except FakeDiscordError as exc:
            call.error = exc.body()
            rec = self._record_for_path(call.path)
            if exc.status == 429:
                self.rate_limited += 1  # a retry is expected: not one of the record's errors
            elif rec is not None:
                rec.errors.append(
                    {"status": exc.status, **exc.body(), "method": call.method, "path": call.path}
                )
            response = json_response(exc.body(), exc.status, exc.headers)
        call.status = response.status
        fake._changed()
        return response

    async def _parse_body(self, request: web.Request) -> tuple[Any, list[SentFile]]:
        if request.content_type == "multipart/form-data":
            payload, files = None, []
            async for part in await request.multipart():
                if part.name == "payload_json":  # type: ignore[union-attr]
                    payload = json.loads(await part.text())  # type: ignore[union-attr]
                elif part.name and part.name.startswith("files["):
                    data = await part.read()  # type: ignore[union-attr]
                    name = part.filename or "file"  # type: ignore[union-attr]
                    # discord.py labels every file octet-stream; Discord infers the type from the name.
                    files.append(
                        SentFile(
                            name, bytes(data), mimetypes.guess_type(name)[0] or "application/octet-stream"
                        )
                    )
            if len(files) > MAX_ATTACHMENTS:
                raise FakeDiscordError(
                    400,
                    50035,
                    "Invalid Form Body",
                    {
                        "files": {
                            "_errors": [
                                {
                                    "code": "BASE_TYPE_MAX_LENGTH",
                                    "message": f"Must be {MAX_ATTACHMENTS} or fewer in length.",
                                }
                            ]
                        }
                    },
                )
            if any(len(f.data) > self.fake.upload_limit for f in files):
                raise FakeDiscordError(413, 40005, "Request entity too large")
            return payload, files
        text = await request.text()
        return (json.loads(text) if text else None), []

    def _check_injected(self, call: RestCall) -> None:
        for method, needle, error, left in self._injected:
            if left[0] > 0 and method in (call.method, "*") and needle in call.path:
                left[0] -= 1
                raise error

    def _record_for_path(self, path: str) -> InteractionRecord | None:
        parts = path.split("/")
        if len(parts) > 3 and parts[1] in ("webhooks", "interactions"):
            return self.fake._by_token.get(parts[3])
        return None

    async def unknown_route(self, request: web.Request) -> web.Response:
        log.warning("fake discord: unhandled %s %s", request.method, request.path)
        raise FakeDiscordError(404, 0, "404: Not Found")
