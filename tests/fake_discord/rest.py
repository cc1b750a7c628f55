"""REST v10 routes: login and application info, the gateway URL, application commands, interaction
callbacks, the interaction webhook (follow-ups and edits by token), channel messages, guild members,
and the CDN that serves uploaded files back.

A process that only called ``client.login(token)`` (no gateway) can deliver everything through
these: the interaction webhook needs no Authorization header, only the application id and the
token, which lives ``token_lifetime`` (15 min) and then answers 401/50027 to every webhook call;
channel endpoints need the bot token and do not care about interaction tokens.

What Discord does with channel-endpoint edits of *interaction responses* (the sources disagree):
- discord/discord-api-docs#3090 (2021): a non-ephemeral interaction response can be edited with
  PATCH /channels/{c}/messages/{m}; an ephemeral one answers "Unknown Message".
- DisnakeDev/disnake#469 (merged 2022): disnake's InteractionMessage falls back to those channel
  endpoints once the token expired, i.e. a library relies on them working.
- discord/discord-api-docs#6253 (2023, advaith1): "The standard edit message endpoint is not
  supported for interaction responses, and it does not work for ephemeral messages."
All agree on ephemeral messages (404/10008 here). For the rest, ``channel_edits_interaction_responses``
(default True: it works, as #3090 observed and disnake relies on; False: 404/10008 like ephemerals)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web

from tests.fake_discord.records import (
    ALLOWED_CALLBACKS,
    API_PREFIX,
    BODY_KEY,
    COMMAND_NAME_RE,
    EPHEMERAL,
    LOADING,
    FakeDiscordError,
    FakeMessage,
    InteractionRecord,
    json_response,
)

if TYPE_CHECKING:
    from tests.fake_discord.fake import FakeDiscord


class RestRoutes:
    """The request handlers; state lives in the fake's world, the HTTP layer in ``RestPlumbing``."""

    def __init__(self, fake: FakeDiscord) -> None:
        self.fake = fake

    def add_routes(self, r: web.UrlDispatcher) -> None:
        """REST under /api/v10 (anything unknown answers 404) and the CDN path for uploaded files."""
        a = API_PREFIX
        wh = a + "/webhooks/{app}/{token}"
        r.add_get("/attachments/{channel}/{att}/{filename}", self._cdn)
        r.add_get(a + "/users/@me", self._me)
        r.add_post(a + "/users/@me/channels", self._open_dm)
        r.add_get(a + "/users/{uid}", self._get_user)
        r.add_get(a + "/oauth2/applications/@me", self._application)
        r.add_get(a + "/gateway", self._gateway_info)
        r.add_get(a + "/gateway/bot", self._gateway_info)
        for path in (a + "/applications/{app}/commands", a + "/applications/{app}/guilds/{guild}/commands"):
            r.add_put(path, self._put_commands)
            r.add_get(path, self._get_commands)
        r.add_post(a + "/interactions/{iid}/{token}/callback", self._callback)
        r.add_post(wh, self._followup)
        r.add_get(wh + "/messages/{mid}", self._webhook_message)
        r.add_patch(wh + "/messages/{mid}", self._webhook_message)
        r.add_delete(wh + "/messages/{mid}", self._webhook_message)
        r.add_get(a + "/channels/{cid}", self._get_channel)
        r.add_post(a + "/channels/{cid}/messages", self._channel_send)
        r.add_post(a + "/channels/{cid}/typing", self._typing)
        r.add_get(a + "/channels/{cid}/messages/{mid}", self._channel_message)
        r.add_patch(a + "/channels/{cid}/messages/{mid}", self._channel_message)
        r.add_delete(a + "/channels/{cid}/messages/{mid}", self._channel_message)
        r.add_get(a + "/guilds/{gid}/members/{uid}", self._get_member)
        r.add_route("*", a + "/{tail:.*}", self.fake.plumbing.unknown_route)

    async def _cdn(self, request: web.Request) -> web.Response:
        att_id = int(request.match_info["att"])
        blob = self.fake._blobs.get(att_id)
        if blob is None or att_id in self.fake._expired_blobs:
            return web.Response(status=404, text="This content is no longer available.")
        return web.Response(body=blob.data, headers={"Content-Type": blob.content_type})

    async def _me(self, _: web.Request) -> web.Response:
        return json_response(self.fake._bot_user_payload())

    async def _get_user(self, request: web.Request) -> web.Response:
        return json_response(self.fake._user_payload(int(request.match_info["uid"])))

    async def _open_dm(self, request: web.Request) -> web.Response:
        # User.send / create_dm from a process without the gateway: the DM channel with that user.
        body = request[BODY_KEY][0] or {}
        cid = self.fake.dm_channel(int(body["recipient_id"]))
        return json_response(self.fake._channels[cid])

    async def _gateway_info(self, request: web.Request) -> web.Response:
        fake = self.fake
        info: dict[str, Any] = {"url": fake.gateway_url}
        if request.path.endswith("/bot"):
            # discord.py's AutoShardedClient without shard_count starts ``shards`` shards at ``url``.
            total = 1000  # IDENTIFYs per day; RESUMEs do not count
            info.update(
                shards=fake.shards,
                session_start_limit={
                    "total": total,
                    "remaining": max(0, total - len(fake.identify_payloads)),
                    "reset_after": 86_400_000,
                    "max_concurrency": fake.max_concurrency,
                },
            )
        return json_response(info)

    async def _typing(self, request: web.Request) -> web.Response:
        self._channel(request)
        return web.Response(status=204)

    async def _application(self, _: web.Request) -> web.Response:
        return json_response(
            {
                "id": str(self.fake.app_id),
                "name": "kontext-bot",
                "description": "",
                "icon": None,
                "bot_public": True,
                "bot_require_code_grant": False,
                "owner": self.fake._user_payload(self.fake.owner_id),
                "verify_key": "0" * 64,
                "flags": 0,
                "team": None,
                "summary": "",
                "interactions_endpoint_url": None,
                "bot": self.fake._user_payload(self.fake.bot_user_id),
            }
        )

    # ---- REST: commands --------------------------------------------------------------------------

    def _check_app(self, request: web.Request) -> None:
        if int(request.match_info["app"]) != self.fake.app_id:
            raise FakeDiscordError(404, 10002, "Unknown Application")

    def _command_scope(self, request: web.Request) -> tuple[int | None, list[dict[str, Any]]]:
        self._check_app(request)
        if "guild" not in request.match_info:
            return None, self.fake._global_commands
        gid = int(request.match_info["guild"])
        if gid not in self.fake.guilds:
            raise FakeDiscordError(403, 50001, "Missing Access")
        return gid, self.fake._guild_commands.setdefault(gid, [])

    async def _get_commands(self, request: web.Request) -> web.Response:
        return json_response(self._command_scope(request)[1])

    async def _put_commands(self, request: web.Request) -> web.Response:
        guild_id, current = self._command_scope(request)
        body = request[BODY_KEY][0] or []
        errors = {}
        for i, cmd in enumerate(body):
            kind, name, desc = cmd.get("type", 1), cmd.get("name", ""), cmd.get("description", "")
            # Slash names are lowercase words; context menu names may hold spaces and capitals.
            bad_name = (
                not COMMAND_NAME_RE.match(name) or name != name.lower()
                if kind == 1
                else not 1 <= len(name) <= 32
            )
            if bad_name:
                errors[str(i)] = {"name": {"_errors": [{"code": "APPLICATION_COMMAND_INVALID_NAME"}]}}
            elif (kind == 1 and not 1 <= len(desc) <= 100) or len(cmd.get("options") or []) > 25:
                errors[str(i)] = {"description": {"_errors": [{"code": "BASE_TYPE_BAD_LENGTH"}]}}
        if errors:
            raise FakeDiscordError(400, 50035, "Invalid Form Body", errors)
        old_ids = {(c["name"], c["type"]): c["id"] for c in current}
        stored = []
        for cmd in body:
            kind = cmd.get("type", 1)
            entry = {
                "description": "",
                "options": [],
                "default_member_permissions": None,
                "nsfw": False,
                **cmd,
                "type": kind,
                "id": old_ids.get((cmd["name"], kind)) or str(self.fake._snowflake()),
                "application_id": str(self.fake.app_id),
                "version": str(self.fake._snowflake()),
            }
            if guild_id is not None:
                entry["guild_id"] = str(guild_id)
            stored.append(entry)
        current[:] = stored  # PUT is a bulk overwrite: commands left out are deleted
        return json_response(stored)

    # ---- REST: interactions and webhooks ---------------------------------------------------------

    async def _callback(self, request: web.Request) -> web.Response:
        rec = self.fake.interactions.get(int(request.match_info["iid"]))
        if rec is None or rec.token != request.match_info["token"] or rec.expired:
            raise FakeDiscordError(404, 10062, "Unknown interaction")
        if rec.callbacks:
            raise FakeDiscordError(400, 40060, "Interaction has already been acknowledged.")
        body, files = request[BODY_KEY]
        kind, data = body["type"], body.get("data") or {}
        if kind not in ALLOWED_CALLBACKS[rec.type] or (kind == 7 and rec.source_message is None):
            raise FakeDiscordError(
                400,
                50035,
                "Invalid Form Body",
                {
                    "type": {
                        "_errors": [
                            {
                                "code": "INTERACTION_RESPONSE_TYPE_INVALID",
                                "message": f"type {kind} for interaction {rec.type}",
                            }
                        ]
                    }
                },
            )
        rec.callbacks.append({"type": kind, "data": data, "files": [f.filename for f in files]})
        channel_id = int(rec.payload["channel_id"])
        if kind in (4, 5):
            flags = (LOADING if kind == 5 else 0) | (int(data.get("flags") or 0) & EPHEMERAL)
            rec.original = self.fake._new_message(
                channel_id, author_id=self.fake.bot_user_id, interaction=rec, flags=flags
            )
            if kind == 4:
                self.fake._apply_body(rec.original, data, files, edit=False)
            else:
                self.fake._snapshot(rec.original)
        elif kind in (6, 7):
            rec.original = rec.source_message
            if kind == 7 and rec.original is not None:
                self.fake._apply_body(rec.original, data, files, edit=True)
        elif kind == 8:
            rec.choices = list(data.get("choices", []))
        elif kind == 9:
            rec.modal = data
        if request.query.get("with_response") not in ("1", "true", "True"):
            return web.Response(status=204)
        answer: dict[str, Any] = {
            "interaction": {
                "id": str(rec.id),
                "type": rec.type,
                "response_message_loading": kind == 5,
                "response_message_ephemeral": bool(rec.original and rec.original.ephemeral),
            },
            "resource": {"type": kind},
        }
        if kind in (4, 5, 6, 7) and rec.original is not None:
            answer["interaction"]["response_message_id"] = str(rec.original.id)
            answer["resource"]["message"] = rec.original.payload
        return json_response(answer)

    def _webhook_record(self, request: web.Request) -> InteractionRecord:
        self._check_app(request)
        rec = self.fake._by_token.get(request.match_info["token"])
        if rec is None or rec.expired:
            raise FakeDiscordError(401, 50027, "Invalid Webhook Token")
        return rec

    async def _followup(self, request: web.Request) -> web.Response:
        rec = self._webhook_record(request)
        if not rec.callbacks:
            raise FakeDiscordError(404, 10015, "Unknown Webhook")
        data, files = request[BODY_KEY]
        data = data or {}
        self.fake._referenced(int(rec.payload["channel_id"]), data)
        orig = rec.original
        if orig is not None and orig.loading and not orig.deleted and rec.callback_type == 5:
            # Discord: the first follow-up after a thinking defer replaces the loading message
            # (once that message is deleted, a follow-up is a new message).
            msg = orig
            self.fake._apply_body(msg, data, files, edit=True)
        else:
            msg = self.fake._new_message(
                int(rec.payload["channel_id"]), author_id=self.fake.bot_user_id, interaction=rec
            )
            self.fake._apply_body(msg, data, files, edit=False)
            rec.followups.append(msg)
        if request.query.get("wait") in ("1", "true", "True"):
            return json_response(msg.payload)
        return web.Response(status=204)

    async def _webhook_message(self, request: web.Request) -> web.Response:
        rec = self._webhook_record(request)
        mid = request.match_info["mid"]
        candidates = ([rec.original] if rec.original else []) + rec.followups
        if mid == "@original":
            msg = rec.original
        else:
            msg = next((m for m in candidates if str(m.id) == mid), None)
        if msg is None or msg.deleted:
            raise FakeDiscordError(404, 10008, "Unknown Message")
        return self._message_op(request, msg)

    def _message_op(self, request: web.Request, msg: FakeMessage) -> web.Response:
        if request.method == "DELETE":
            msg.deleted = True
            return web.Response(status=204)
        if request.method == "PATCH":
            data, files = request[BODY_KEY]
            self.fake._apply_body(msg, data or {}, files, edit=True)
        return json_response(msg.payload)

    # ---- REST: channels and guild ----------------------------------------------------------------

    def _channel(self, request: web.Request) -> dict[str, Any]:
        channel = self.fake._channels.get(int(request.match_info["cid"]))
        if channel is None:
            raise FakeDiscordError(404, 10003, "Unknown Channel")
        return channel

    async def _get_channel(self, request: web.Request) -> web.Response:
        return json_response(self._channel(request))

    async def _channel_send(self, request: web.Request) -> web.Response:
        channel = self._channel(request)
        data, files = request[BODY_KEY]
        data = data or {}
        if not (
            data.get("content")
            or data.get("embeds")
            or data.get("components")
            or files
            or data.get("sticker_ids")
        ):
            raise FakeDiscordError(400, 50006, "Cannot send an empty message")
        self.fake._referenced(int(channel["id"]), data)  # a reply to a message that is gone: 400
        msg = self.fake._new_message(int(channel["id"]), author_id=self.fake.bot_user_id)
        self.fake._apply_body(msg, data, files, edit=False)
        return json_response(msg.payload)

    async def _channel_message(self, request: web.Request) -> web.Response:
        channel = self._channel(request)
        msg = self.fake.messages.get(int(request.match_info["mid"]))
        if msg is None or msg.deleted or msg.channel_id != int(channel["id"]):
            raise FakeDiscordError(404, 10008, "Unknown Message")
        # Ephemeral messages can be changed only through their interaction's webhook (see the
        # module docstring); reading them stays allowed (discord/discord-api-docs#6007 fetched one).
        hidden = msg.ephemeral or (
            msg.interaction_id is not None and not self.fake.channel_edits_interaction_responses
        )
        if hidden and request.method != "GET":
            raise FakeDiscordError(404, 10008, "Unknown Message")
        if request.method != "GET" and msg.payload["author"]["id"] != str(self.fake.bot_user_id):
            raise FakeDiscordError(403, 50005, "Cannot edit a message authored by another user")
        return self._message_op(request, msg)

    async def _get_member(self, request: web.Request) -> web.Response:
        uid = int(request.match_info["uid"])
        guild = self.fake.guilds.get(int(request.match_info["gid"]))
        if guild is None:
            raise FakeDiscordError(404, 10004, "Unknown Guild")
        if uid not in guild.members:
            raise FakeDiscordError(404, 10007, "Unknown Member")
        return json_response(self.fake._member_payload(uid, guild))
