"""The control API: the fake's test-facing methods as JSON over HTTP under ``/_fake/``, for a bot
(or a test) running in another process. See the package docstring for the endpoints."""

from __future__ import annotations

import base64
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web

from tests.fake_discord.gateway import shard_of
from tests.fake_discord.records import json_response
from tests.fake_discord.world import Guild

if TYPE_CHECKING:
    from tests.fake_discord.fake import FakeDiscord

CONFIG_KEYS = {
    "upload_limit": int,
    "shards": int,
    "max_concurrency": int,
    "token_lifetime": float,
    "channel_edits_interaction_responses": bool,
}


def _opt_int(b: dict[str, Any], key: str) -> int | None:
    return int(b[key]) if b.get(key) not in (None, "") else None


def _guild_json(guild: Guild, shard_count: int) -> dict[str, Any]:
    return {
        "id": guild.id,
        "shard": shard_of(guild.id, shard_count),  # for the recommended count (``shards``)
        "name": guild.name,
        "owner_id": guild.owner_id,
        "channel_id": guild.channel_id,
        "nsfw_channel_id": guild.nsfw_channel_id,
        "channel_ids": guild.channel_ids,
        "members": sorted(guild.members),
    }


class ControlApi:
    """Routes under ``/_fake/``; bad requests answer 400 ``{"error": ...}``, timed-out waits 504."""

    def __init__(self, fake: FakeDiscord) -> None:
        self.fake = fake
        self._actions: dict[str, Callable[[dict[str, Any]], Awaitable[Any]]] = {
            name.removeprefix("_a_"): getattr(self, name) for name in dir(self) if name.startswith("_a_")
        }

    def add_routes(self, r: web.UrlDispatcher) -> None:
        c = "/_fake"
        r.add_get(c + "/state", self._c_state)
        r.add_get(c + "/ready", self._c_ready)
        r.add_get(c + "/commands", self._c_commands)
        r.add_get(c + "/calls", self._c_calls)
        r.add_get(c + "/messages", self._c_messages)
        r.add_get(c + "/stats", self._c_stats)
        r.add_get(c + "/interactions", self._c_interactions)
        r.add_get(c + "/interactions/{iid}", self._c_interaction)
        r.add_post(c + "/{action}", self._c_action)

    # ---- reads -----------------------------------------------------------------------------------

    async def _c_commands(self, _: web.Request) -> web.Response:
        return json_response(self.fake.registered_commands)

    async def _c_calls(self, request: web.Request) -> web.Response:
        since = int(request.query.get("since", 0))  # skip the first N calls: poll without re-reading
        return json_response([call.to_json() for call in self.fake.calls[since:]])

    async def _c_state(self, _: web.Request) -> web.Response:
        fake = self.fake
        keys = "app_id bot_user_id guild_id owner_id channel_id nsfw_channel_id upload_limit url api_base"
        keys += " gateway_url token ready resumes shards max_concurrency token_lifetime"
        keys += " channel_edits_interaction_responses"
        state = {k: getattr(fake, k) for k in keys.split()}
        state["guilds"] = [_guild_json(g, fake.shards) for g in fake.guilds.values()]
        state["gateway_shards"] = [list(s) for s in fake.gateway_shards]
        state["now"] = fake.now()
        return json_response(state)

    async def _c_stats(self, _: web.Request) -> web.Response:
        return json_response(self.fake.stats())

    async def _c_ready(self, request: web.Request) -> web.Response:
        raw = request.query.get("shard_ids", "")
        shard_ids = [int(s) for s in raw.split(",") if s.strip()]
        try:
            await self.fake.wait_ready(float(request.query.get("timeout", 10)), shard_ids=shard_ids)
        except TimeoutError as exc:
            return json_response({"ready": False, "error": str(exc)}, 504)
        return json_response({"ready": True, "gateway_shards": [list(s) for s in self.fake.gateway_shards]})

    async def _c_messages(self, request: web.Request) -> web.Response:
        cid = request.query.get("channel_id")
        msgs = self.fake.channel_messages(int(cid)) if cid else list(self.fake.messages.values())
        return json_response([m.to_json() for m in msgs])

    async def _c_interactions(self, request: web.Request) -> web.Response:
        """A summary of every interaction sent (no payloads): which guild, which shard got it."""
        gid = request.query.get("guild_id")
        recs = [r for r in self.fake.interactions.values() if gid is None or str(r.guild_id) == gid]
        keys = ("id", "token", "type", "guild_id", "shards", "callback_type", "expired", "edits")
        return json_response([{k: v for k, v in r.to_json().items() if k in keys} for r in recs])

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

    # ---- actions (POST /_fake/{action}) ----------------------------------------------------------

    async def _c_action(self, request: web.Request) -> web.Response:
        b = await request.json()
        action = self._actions.get(request.match_info["action"])
        if action is None:
            return json_response({"error": f"unknown control action {request.match_info['action']!r}"}, 400)
        try:
            result = await action(b)
        except (LookupError, ValueError, RuntimeError, TimeoutError) as exc:
            return json_response({"error": f"{type(exc).__name__}: {exc}"}, 400)
        return json_response(result)

    def _message(self, b: dict[str, Any]) -> Any:
        return self.fake.messages[int(b["message_id"])] if b.get("message_id") else None

    async def _a_guilds(self, b: dict[str, Any]) -> Any:
        kwargs = {"name": b["name"]} if b.get("name") else {}
        guild = self.fake.add_guild(int(b["guild_id"]), owner_id=_opt_int(b, "owner_id"), **kwargs)
        return _guild_json(guild, self.fake.shards)

    async def _a_members(self, b: dict[str, Any]) -> Any:
        return self.fake.add_member(
            int(b["user_id"]),
            name=b["name"],
            roles=[int(r) for r in b.get("roles", [])],
            permissions=int(b.get("permissions", 0)),
            nick=b.get("nick"),
            guild_id=_opt_int(b, "guild_id"),
        )

    async def _a_roles(self, b: dict[str, Any]) -> Any:
        return self.fake.add_role(
            int(b["role_id"]), b["name"], int(b.get("permissions", 0)), guild_id=_opt_int(b, "guild_id")
        )

    async def _a_channels(self, b: dict[str, Any]) -> Any:
        return self.fake.add_channel(
            int(b["channel_id"]), b["name"], nsfw=bool(b.get("nsfw")), guild_id=_opt_int(b, "guild_id")
        )

    async def _a_dm_channel(self, b: dict[str, Any]) -> Any:
        return {"channel_id": self.fake.dm_channel(int(b["user_id"]))}

    async def _a_attachments(self, b: dict[str, Any]) -> Any:
        data = base64.b64decode(b["data_b64"])
        return self.fake.add_attachment(b["filename"], data, b.get("content_type"))

    async def _a_user_messages(self, b: dict[str, Any]) -> Any:
        return self.fake.post_user_message(
            int(b["user_id"]),
            content=b.get("content", ""),
            attachments=b.get("attachments", []),
            channel_id=_opt_int(b, "channel_id"),
            guild_id=_opt_int(b, "guild_id"),
        ).to_json()

    async def _a_slash(self, b: dict[str, Any]) -> Any:
        rec = await self.fake.slash(
            b["name"],
            b.get("options"),
            user_id=int(b["user_id"]),
            channel_id=_opt_int(b, "channel_id"),
            attachments=b.get("attachments"),
            guild_id=_opt_int(b, "guild_id"),
        )
        return rec.to_json()

    async def _a_autocomplete(self, b: dict[str, Any]) -> Any:
        choices = await self.fake.autocomplete(
            b["name"],
            b.get("options", {}),
            b["focused"],
            user_id=b.get("user_id"),
            channel_id=_opt_int(b, "channel_id"),
            timeout=float(b.get("timeout", 5)),
            guild_id=_opt_int(b, "guild_id"),
        )
        return {"choices": choices}

    async def _a_context_menu(self, b: dict[str, Any]) -> Any:
        rec = await self.fake.context_menu(
            b["name"],
            self._message(b),
            user_id=int(b["user_id"]),
            target_user_id=_opt_int(b, "target_user_id"),
            channel_id=_opt_int(b, "channel_id"),
            guild_id=_opt_int(b, "guild_id"),
        )
        return rec.to_json()

    async def _a_click(self, b: dict[str, Any]) -> Any:
        msg = self._message(b)
        if msg is None:
            raise ValueError("click needs message_id")
        rec = await self.fake.click(msg, b["custom_id"], user_id=int(b["user_id"]), values=b.get("values"))
        return rec.to_json()

    async def _a_submit_modal(self, b: dict[str, Any]) -> Any:
        rec = await self.fake.submit_modal(
            b["custom_id"], b.get("fields", {}), user_id=int(b["user_id"]), message=self._message(b)
        )
        return rec.to_json()

    async def _a_expire_token(self, b: dict[str, Any]) -> Any:
        self.fake.expire_token(b["token"])
        return {"ok": True}

    async def _a_advance_time(self, b: dict[str, Any]) -> Any:
        self.fake.advance_time(float(b["seconds"]))
        return {"now": self.fake.now()}

    async def _a_reconnect(self, b: dict[str, Any]) -> Any:
        self.fake.request_reconnect()
        return {"ok": True}

    async def _a_config(self, b: dict[str, Any]) -> Any:
        """Set any of CONFIG_KEYS; answers all of them."""
        for key, kind in CONFIG_KEYS.items():
            if key in b:
                setattr(self.fake, key, kind(b[key]))
        return {key: getattr(self.fake, key) for key in CONFIG_KEYS}

    async def _a_inject_error(self, b: dict[str, Any]) -> Any:
        self.fake.inject_error(
            b["method"],
            b["path_contains"],
            int(b["status"]),
            int(b.get("code", 0)),
            times=int(b.get("times", 1)),
            message=b.get("message", "injected error"),
        )
        return {"ok": True}

    async def _a_rate_limit(self, b: dict[str, Any]) -> Any:
        self.fake.inject_rate_limit(
            b.get("method", "PATCH"),
            b.get("path_contains", "/webhooks/"),
            times=int(b.get("times", 1)),
            retry_after=float(b.get("retry_after", 0.01)),
            is_global=bool(b.get("global", False)),
        )
        return {"ok": True}

    async def _a_webhook_edit_limit(self, b: dict[str, Any]) -> Any:
        limit = _opt_int(b, "limit")
        self.fake.limit_webhook_edits(limit, float(b.get("per", 5.0)))
        return {"limit": limit, "per": float(b.get("per", 5.0))}
