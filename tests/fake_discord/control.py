"""The control API: the fake's test-facing methods as JSON over HTTP under ``/_fake/``, for a bot
(or a test) running in another process. See the package docstring for the endpoints."""

from __future__ import annotations

import base64
from typing import TYPE_CHECKING, Any

from aiohttp import web

from tests.fake_discord.records import json_response

if TYPE_CHECKING:
    from tests.fake_discord.fake import FakeDiscord


class ControlApi:
    """Routes under ``/_fake/``; bad requests answer 400 ``{"error": ...}``, timed-out waits 504."""

    def __init__(self, fake: FakeDiscord) -> None:
        self.fake = fake

    def add_routes(self, r: web.UrlDispatcher) -> None:
        c = "/_fake"
        r.add_get(c + "/state", self._c_state)
        r.add_get(c + "/ready", self._c_ready)
        r.add_get(c + "/commands", self._c_commands)
        r.add_get(c + "/calls", self._c_calls)
        r.add_get(c + "/messages", self._c_messages)
        r.add_get(c + "/interactions/{iid}", self._c_interaction)
        r.add_post(c + "/{action}", self._c_action)

    async def _c_commands(self, _: web.Request) -> web.Response:
        return json_response(self.fake.registered_commands)

    async def _c_calls(self, _: web.Request) -> web.Response:
        return json_response([call.to_json() for call in self.fake.calls])

    async def _c_state(self, _: web.Request) -> web.Response:
        keys = "app_id bot_user_id guild_id owner_id channel_id nsfw_channel_id upload_limit url api_base"
        keys += " gateway_url token ready resumes"
        return json_response({k: getattr(self.fake, k) for k in keys.split()})

    async def _c_ready(self, request: web.Request) -> web.Response:
        try:
            await self.fake.wait_ready(float(request.query.get("timeout", 10)))
        except TimeoutError as exc:
            return json_response({"ready": False, "error": str(exc)}, 504)
        return json_response({"ready": True})

    async def _c_messages(self, request: web.Request) -> web.Response:
        cid = request.query.get("channel_id")
        msgs = self.fake.channel_messages(int(cid)) if cid else list(self.fake.messages.values())
        return json_response([m.to_json() for m in msgs])

    async def _c_interaction(self, request: web.Request) -> web.Response:
        rec = self.fake.interactions.get(int(request.match_info["iid"]))
        if rec is None:
            return json_response({"error": "unknown interaction"}, 404)
        if until := request.query.get("until"):
            try:
                await rec.wait_for(until, float(request.query.get("timeout", 5)))
            except TimeoutError as exc:
                return json_response({**rec.to_json(), "error": str(exc)}, 504)
        return json_response(rec.to_json())

    async def _c_action(self, request: web.Request) -> web.Response:
        b = await request.json()
        action = request.match_info["action"]
        try:
            result = await self._control_action(action, b)
        except (LookupError, ValueError, RuntimeError, TimeoutError) as exc:
            return json_response({"error": f"{type(exc).__name__}: {exc}"}, 400)
        return json_response(result)

    async def _control_action(self, action: str, b: dict[str, Any]) -> Any:
        msg = self.fake.messages[int(b["message_id"])] if b.get("message_id") else None
        if action == "members":
            return self.fake.add_member(
                int(b["user_id"]),
                name=b["name"],
                roles=[int(r) for r in b.get("roles", [])],
                permissions=int(b.get("permissions", 0)),
                nick=b.get("nick"),
            )
        if action == "roles":
            return self.fake.add_role(int(b["role_id"]), b["name"], int(b.get("permissions", 0)))
        if action == "attachments":
            data = base64.b64decode(b["data_b64"])
            return self.fake.add_attachment(b["filename"], data, b.get("content_type"))
        if action == "user_messages":
            return self.fake.post_user_message(
                int(b["user_id"]),
                content=b.get("content", ""),
                attachments=b.get("attachments", []),
                channel_id=int(b["channel_id"]) if b.get("channel_id") else None,
            ).to_json()
        if action == "slash":
            rec = await self.fake.slash(
                b["name"],
                b.get("options"),
                user_id=int(b["user_id"]),
                channel_id=int(b["channel_id"]) if b.get("channel_id") else None,
                attachments=b.get("attachments"),
            )
            return rec.to_json()
        if action == "autocomplete":
            choices = await self.fake.autocomplete(
                b["name"],
                b.get("options", {}),
                b["focused"],
                user_id=b.get("user_id"),
                timeout=float(b.get("timeout", 5)),
            )
            return {"choices": choices}
        if action == "context_menu":
            target = b.get("target_user_id")
            rec = await self.fake.context_menu(
                b["name"], msg, user_id=int(b["user_id"]), target_user_id=int(target) if target else None
            )
            return rec.to_json()
        if action == "click":
            if msg is None:
                raise ValueError("click needs message_id")
            return (
                await self.fake.click(msg, b["custom_id"], user_id=int(b["user_id"]), values=b.get("values"))
            ).to_json()
        if action == "submit_modal":
            return (
                await self.fake.submit_modal(
                    b["custom_id"], b.get("fields", {}), user_id=int(b["user_id"]), message=msg
                )
            ).to_json()
        if action == "expire_token":
            self.fake.expire_token(b["token"])
            return {"ok": True}
        if action == "reconnect":
            self.fake.request_reconnect()
            return {"ok": True}
        if action == "config":
            self.fake.upload_limit = int(b.get("upload_limit", self.fake.upload_limit))
            return {"upload_limit": self.fake.upload_limit}
        if action == "inject_error":
            self.fake.inject_error(
                b["method"],
                b["path_contains"],
                int(b["status"]),
                int(b.get("code", 0)),
                times=int(b.get("times", 1)),
                message=b.get("message", "injected error"),
            )
            return {"ok": True}
        raise LookupError(f"unknown control action {action!r}")
