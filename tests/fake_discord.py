"""A fake Discord (REST v10 + gateway) on 127.0.0.1 for end-to-end tests of the real discord.py client.

In-process use::

    async with FakeDiscord() as fake:                      # or: await fake.start(); ...; await fake.stop()
        restore = fake.configure_discord_py()              # sets Route.BASE and DEFAULT_GATEWAY
        fake.add_role(5, "artist"); fake.add_member(42, name="alice", roles=[5])
        ...start a discord.py client with fake.token...
        await fake.wait_ready()
        att = fake.add_attachment("cat.png", png_bytes, "image/png")
        rec = await fake.slash("edit", {"prompt": "hat"}, user_id=42, attachments={"image": att})
        await rec.wait_for("files")                        # or a predicate taking the record
        rec.original.files[0].data                         # bytes the bot uploaded

Interaction records (``InteractionRecord``) collect the callback (``callbacks``, ``callback_type``,
``modal``, ``choices``), the ``original`` message, ``followups``, ``files`` and the ``errors`` the fake
answered for their token. ``wait_for`` states: acked, deferred, responded (visible original),
edited, files, followup, modal, autocomplete, error, deleted. Messages (``FakeMessage``) carry the
payload as Discord would return it plus ``files`` (bytes), ``allowed_mentions`` as last sent,
``history`` (a payload snapshot per change) and helpers (``custom_ids``, ``ephemeral``...).
Every REST call lands in ``fake.calls`` (method, path below /api/v10, query, json, files, status).

Knobs: ``expire_token(token)`` (later webhook calls answer 401/50027, callbacks 404/10062),
``upload_limit`` (a bigger file answers 413/40005; more than 10 files answers 400/50035),
``expire_attachment(att)`` (CDN answers 404), ``inject_error(method, path_contains, status, code)``
(note discord.py itself retries 5xx with 1 s+ sleeps), ``request_reconnect()`` (op 7; the client
RESUMEs, counted in ``resumes``). World: ``add_role``, ``add_member``, ``add_channel``,
``post_user_message`` (a member's message, e.g. the target of a message context menu).

Discord behaviour mirrored on purpose: the first follow-up after a "thinking" defer (type 5) edits
the loading message instead of creating a new one; a second callback answers 400/40060; commands
are only invokable once registered (option types and choices come from the registration), and
guild-registered commands carry ``data.guild_id`` so discord.py finds them in the guild tree.

Standalone (for a bot running as a subprocess)::

    python -m tests.fake_discord [--port 0]   ->  prints ``FAKE_DISCORD_URL=http://127.0.0.1:PORT``

then run the bot with DISCORD_API_BASE=$URL/api/v10 and DISCORD_GATEWAY_URL=ws://127.0.0.1:PORT/gateway
(also listed by GET /_fake/state) and DISCORD_TOKEN=fake-token (``--token`` changes it).

The same API is served as JSON under ``/_fake/``: GET state, ready?timeout=, commands, calls,
messages?channel_id=, interactions/{id}?until=STATE&timeout=; POST members, roles, attachments
({filename, data_b64, content_type}), user_messages, slash, autocomplete, context_menu
({name, message_id | target_user_id, user_id}), click ({message_id, custom_id, user_id, values}),
submit_modal ({custom_id, fields, user_id, message_id}), expire_token, config ({upload_limit}),
inject_error, reconnect. Bad requests answer 400 ``{"error": ...}``; a wait that times out answers
504. Records and messages come back as JSON with file bytes in ``data_b64``.

Traps this fake encodes (discord.py 2.7.1):
- discord.py decodes a body as JSON only if Content-Type is exactly ``application/json``;
  aiohttp's ``json_response`` appends ``; charset=utf-8``, so responses are built by hand.
- Callbacks are posted with ``?with_response=1`` and need ``{"interaction": {...}, "resource"}``.
- INTERACTION_CREATE needs ``attachment_size_limit``; members need ``flags``; READY needs
  ``resume_gateway_url`` and ``application``; RESUMED's ``d`` must be an object, not null.
- The gateway is asked for ``compress=zlib-stream`` but discord.py only decompresses *binary*
  frames, so plain JSON text frames work.
- ``@original`` reaches the server percent-encoded (``%40original``); aiohttp decodes it before routing.
- aiohttp refuses bodies over 1 MiB by default: ``client_max_size`` is raised so the upload-limit
  knob, not aiohttp, decides what is too large.
- A client started with default intents waits ``guild_ready_timeout`` (2 s) after the last
  GUILD_CREATE before ``on_ready``; ``wait_ready`` here does not, since interactions can be sent
  as soon as GUILD_CREATE is queued (frames are delivered in order).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import copy
import json
import logging
import mimetypes
import re
import secrets
import signal
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp import WSMsgType, web

log = logging.getLogger(__name__)

API_PREFIX = "/api/v10"
DISCORD_EPOCH_MS = 1_420_070_400_000
EPHEMERAL = 1 << 6
LOADING = 1 << 7
SUPPRESS_EMBEDS = 1 << 2
SUPPRESS_NOTIFICATIONS = 1 << 12
IS_COMPONENTS_V2 = 1 << 15
MAX_ATTACHMENTS = 10
ADMINISTRATOR = 1 << 3
ALL_PERMISSIONS = (1 << 53) - 1
# @everyone in a typical community server: see, talk, attach, embed, use app commands.
DEFAULT_EVERYONE_PERMISSIONS = (
    (1 << 6) | (1 << 10) | (1 << 11) | (1 << 14) | (1 << 15) | (1 << 16) | (1 << 18) | (1 << 31)
)
# Parsed REST body (payload JSON, uploaded files), stashed on the request by the middleware.
BODY_KEY = web.RequestKey("fake_discord_body", tuple)
COMMAND_NAME_RE = re.compile(r"^[-_\w]{1,32}$")
# Which callback types Discord accepts per interaction type (1 ping, 2 command, 3 component,
# 4 autocomplete, 5 modal submit); 7 on a modal submit needs a source message (checked below).
ALLOWED_CALLBACKS = {1: {1}, 2: {4, 5, 9}, 3: {4, 5, 6, 7, 9}, 4: {8}, 5: {4, 5, 6, 7}}


class FakeDiscordError(Exception):
    """An error answer in Discord's shape: ``{"message": ..., "code": ...}`` with an HTTP status."""

    def __init__(self, status: int, code: int, message: str, errors: dict | None = None) -> None:
        super().__init__(f"{status} {code} {message}")
        self.status, self.code, self.message, self.errors = status, code, message, errors

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"message": self.message, "code": self.code}
        if self.errors:
            body["errors"] = self.errors
        return body


def _json(data: Any, status: int = 200) -> web.Response:
    # Exactly "application/json": discord.py's json_or_text treats anything else (charset!) as text.
    return web.Response(
        status=status, body=json.dumps(data).encode(), headers={"Content-Type": "application/json"}
    )


def _now_iso() -> str:
    return datetime.now(UTC).isoformat()


def _walk_components(components: Iterable[Mapping[str, Any]]) -> Iterable[Mapping[str, Any]]:
    for comp in components:
        yield comp
        yield from _walk_components(comp.get("components", ()))
        for key in ("component", "accessory"):
            if isinstance(comp.get(key), Mapping):
                yield from _walk_components([comp[key]])


@dataclass
class SentFile:
    """A file attached to a message (bytes as uploaded) and its attachment payload."""

    filename: str
    data: bytes
    content_type: str
    attachment: dict[str, Any] = field(default_factory=dict)
    description: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "filename": self.filename,
            "content_type": self.content_type,
            "size": len(self.data),
            "description": self.description,
            "attachment": self.attachment,
            "data_b64": base64.b64encode(self.data).decode(),
        }


@dataclass
class RestCall:
    """One REST request the client made (path relative to /api/v10)."""

    method: str
    path: str
    query: dict[str, str]
    json: Any
    files: list[SentFile]
    status: int = 0
    error: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        files = [{"filename": f.filename, "size": len(f.data)} for f in self.files]
        return {
            **{k: getattr(self, k) for k in ("method", "path", "query", "json", "status", "error")},
            "files": files,
        }


@dataclass
class FakeMessage:
    """A message as stored by the fake; ``payload`` is what Discord returns for it."""

    payload: dict[str, Any]
    files: list[SentFile] = field(default_factory=list)
    allowed_mentions: dict[str, Any] | None = None
    interaction_id: int | None = None
    edits: int = 0
    deleted: bool = False
    history: list[dict[str, Any]] = field(default_factory=list)

    @property
    def id(self) -> int:
        return int(self.payload["id"])

    @property
    def channel_id(self) -> int:
        return int(self.payload["channel_id"])

    @property
    def content(self) -> str:
        return self.payload.get("content", "")

    @property
    def embeds(self) -> list[dict[str, Any]]:
        return self.payload.get("embeds", [])

    @property
    def components(self) -> list[dict[str, Any]]:
        return self.payload.get("components", [])

    @property
    def custom_ids(self) -> list[str]:
        return [c["custom_id"] for c in _walk_components(self.components) if "custom_id" in c]

    @property
    def flags(self) -> int:
        return int(self.payload.get("flags", 0))

    @property
    def ephemeral(self) -> bool:
        return bool(self.flags & EPHEMERAL)

    @property
    def loading(self) -> bool:
        return bool(self.flags & LOADING)

    def to_json(self) -> dict[str, Any]:
        return {
            "payload": self.payload,
            "files": [f.to_json() for f in self.files],
            "allowed_mentions": self.allowed_mentions,
            "interaction_id": self.interaction_id,
            "edits": self.edits,
            "deleted": self.deleted,
        }


@dataclass
class InteractionRecord:
    """What happened to one interaction the fake sent: callback, original response, follow-ups."""

    id: int
    token: str
    type: int
    payload: dict[str, Any]
    fake: FakeDiscord = field(repr=False)
    source_message: FakeMessage | None = None
    callbacks: list[dict[str, Any]] = field(default_factory=list)
    original: FakeMessage | None = None
    followups: list[FakeMessage] = field(default_factory=list)
    modal: dict[str, Any] | None = None
    choices: list[dict[str, Any]] | None = None
    errors: list[dict[str, Any]] = field(default_factory=list)
    expired: bool = False

    @property
    def callback_type(self) -> int | None:
        return self.callbacks[0]["type"] if self.callbacks else None

    @property
    def messages(self) -> list[FakeMessage]:
        return [m for m in ([self.original] if self.original else []) + self.followups if not m.deleted]

    @property
    def files(self) -> list[SentFile]:
        return [f for m in self.messages for f in m.files]

    @property
    def ephemeral(self) -> bool:
        return bool(self.original and self.original.ephemeral)

    def is_(self, state: str) -> bool:
        orig = self.original
        checks: dict[str, Callable[[], bool]] = {
            "acked": lambda: bool(self.callbacks),
            "deferred": lambda: self.callback_type in (5, 6),
            "responded": lambda: orig is not None and not orig.loading and not orig.deleted,
            "edited": lambda: orig is not None and orig.edits > 0,
            "files": lambda: bool(self.files),
            "followup": lambda: bool(self.followups),
            "modal": lambda: self.modal is not None,
            "autocomplete": lambda: self.choices is not None,
            "error": lambda: bool(self.errors),
            "deleted": lambda: orig is not None and orig.deleted,
        }
        if state not in checks:
            raise ValueError(f"unknown state {state!r}; known: {sorted(checks)}")
        return checks[state]()

    async def wait_for(
        self,
        until: str | Callable[[InteractionRecord], bool] = "responded",
        timeout: float = 5.0,  # noqa: ASYNC109 -- a per-wait timeout keeps test call sites to one line
    ) -> InteractionRecord:
        """Wait until a state (see ``is_``) holds or ``until(record)`` is true; TimeoutError otherwise."""
        pred = (lambda: self.is_(until)) if isinstance(until, str) else (lambda: until(self))
        await self.fake.wait_until(
            pred, timeout=timeout, what=f"interaction {self.id} -> {until}: {self.summary()}"
        )
        return self

    def summary(self) -> str:
        return (
            f"callbacks={[c['type'] for c in self.callbacks]}"
            f" original={self.original and self.original.payload}"
            f" followups={len(self.followups)} errors={self.errors}"
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "id": str(self.id),
            "token": self.token,
            "type": self.type,
            "payload": self.payload,
            "callbacks": self.callbacks,
            "callback_type": self.callback_type,
            "original": self.original.to_json() if self.original else None,
            "followups": [m.to_json() for m in self.followups],
            "modal": self.modal,
            "choices": self.choices,
            "errors": self.errors,
            "expired": self.expired,
        }


@dataclass
class _Member:
    user_id: int
    name: str
    roles: list[int]
    permissions: int = 0
    nick: str | None = None
    bot: bool = False


@dataclass(eq=False)
class _GatewayConnection:
    ws: web.WebSocketResponse
    queue: asyncio.Queue[str | int] = field(default_factory=asyncio.Queue)
    seq: int = 0
    session_id: str | None = None
    identified: bool = False

    def send(self, frame: dict[str, Any]) -> None:
        # Serialise now: the payloads reference live message dicts that may change before delivery.
        self.queue.put_nowait(json.dumps(frame))

    def dispatch(self, event: str, data: Any) -> None:
        # Sequence numbers are assigned at enqueue time so they match delivery order.
        self.seq += 1
        self.send({"op": 0, "t": event, "s": self.seq, "d": data})

    def close(self, code: int) -> None:
        self.queue.put_nowait(code)


class FakeDiscord:
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
        self.app_id = app_id
        # Modern applications share their id with their bot user.
        self.bot_user_id = bot_user_id if bot_user_id is not None else app_id
        self.guild_id = guild_id
        self.owner_id = owner_id
        self.token = token
        self.upload_limit = upload_limit
        self.heartbeat_interval_ms = heartbeat_interval_ms
        self.channel_id = guild_id + 9
        self.nsfw_channel_id = guild_id + 10
        self.url = ""
        self.calls: list[RestCall] = []
        self.identify_payloads: list[dict[str, Any]] = []
        self.resumes = 0
        self.messages: dict[int, FakeMessage] = {}
        self.interactions: dict[int, InteractionRecord] = {}
        self._by_token: dict[str, InteractionRecord] = {}
        self._roles: dict[int, dict[str, Any]] = {}
        self._members: dict[int, _Member] = {}
        self._channels: dict[int, dict[str, Any]] = {}
        self._global_commands: list[dict[str, Any]] = []
        self._guild_commands: dict[int, list[dict[str, Any]]] = {}
        self._blobs: dict[int, SentFile] = {}
        self._expired_blobs: set[int] = set()
        self._injected: list[tuple[str, str, FakeDiscordError, list[int]]] = []
        self._conns: set[_GatewayConnection] = set()
        self._sessions: set[str] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._last_snowflake = 0
        self._change = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self.add_role(guild_id, "@everyone", DEFAULT_EVERYONE_PERMISSIONS)
        self.add_member(owner_id, name="owner")
        self.add_member(self.bot_user_id, name="kontext-bot", bot=True)
        self.add_channel(self.channel_id, "general")
        self.add_channel(self.nsfw_channel_id, "nsfw-art", nsfw=True)

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
        app.middlewares.append(self._middleware)
        self._add_routes(app.router)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        bound = site._server.sockets[0].getsockname()  # type: ignore[union-attr]  # port 0 -> real port
        self.url = f"http://{bound[0]}:{bound[1]}"
        return self.url

    async def stop(self) -> None:
        for conn in list(self._conns):
            with contextlib.suppress(Exception):
                await conn.ws.close(code=1001)  # going away: a live client would try to reconnect
        for task in list(self._tasks):
            task.cancel()
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

    # ---- waiting ---------------------------------------------------------------------------------

    def _changed(self) -> None:
        # Wake every waiter; each re-checks its own predicate (cheap, and avoids missed wake-ups).
        self._change.set()
        self._change = asyncio.Event()

    async def wait_until(
        self,
        predicate: Callable[[], bool],
        *,
        timeout: float = 5.0,  # noqa: ASYNC109 -- see InteractionRecord.wait_for
        what: str = "",
    ) -> None:
        """Wait until ``predicate()`` holds, re-checking after every change the fake sees."""
        try:
            async with asyncio.timeout(timeout):
                while not predicate():
                    await self._change.wait()
        except TimeoutError:
            raise TimeoutError(
                f"fake discord: timed out after {timeout}s waiting for {what or predicate}"
            ) from None

    @property
    def ready(self) -> bool:
        return self.gateway_sessions > 0

    @property
    def gateway_sessions(self) -> int:
        """Open gateway connections that identified or resumed (1 for a healthy client)."""
        return sum(c.identified for c in self._conns)

    def request_reconnect(self) -> None:
        """Send op 7 RECONNECT: discord.py closes and RESUMEs on resume_gateway_url (see ``resumes``)."""
        for conn in self._conns:
            if conn.identified:
                conn.send({"op": 7, "d": None})

    async def wait_ready(self, timeout: float = 10.0) -> None:  # noqa: ASYNC109 -- see wait_for
        """Wait until a client identified and its READY + GUILD_CREATE are queued."""
        await self.wait_until(lambda: self.ready, timeout=timeout, what="a client to IDENTIFY")

    async def wait_for_message(
        self,
        predicate: Callable[[FakeMessage], bool],
        *,
        timeout: float = 5.0,  # noqa: ASYNC109 -- see InteractionRecord.wait_for
    ) -> FakeMessage:
        found: list[FakeMessage] = []

        def check() -> bool:
            found[:] = [m for m in self.messages.values() if predicate(m)]
            return bool(found)

        await self.wait_until(check, timeout=timeout, what="a matching message")
        return found[0]

    # ---- world setup -----------------------------------------------------------------------------

    def add_role(self, role_id: int, name: str, permissions: int = 0) -> dict[str, Any]:
        role = {
            "id": str(role_id),
            "name": name,
            "permissions": str(permissions),
            "position": 0 if role_id == self.guild_id else len(self._roles),
            "color": 0,
            "colors": {"primary_color": 0, "secondary_color": None, "tertiary_color": None},
            "hoist": False,
            "managed": False,
            "mentionable": False,
            "icon": None,
            "unicode_emoji": None,
            "flags": 0,
        }
        self._roles[role_id] = role
        self._dispatch("GUILD_ROLE_CREATE", {"guild_id": str(self.guild_id), "role": role})
        return role

    def add_member(
        self,
        user_id: int,
        *,
        name: str,
        roles: Sequence[int] = (),
        permissions: int = 0,
        nick: str | None = None,
        bot: bool = False,
    ) -> dict[str, Any]:
        """Add a guild member; ``permissions`` adds to what @everyone and the roles grant."""
        self._members[user_id] = _Member(user_id, name, list(roles), permissions, nick, bot)
        payload = self._member_payload(user_id)
        self._dispatch("GUILD_MEMBER_ADD", {**payload, "guild_id": str(self.guild_id)})
        return payload

    def add_channel(self, channel_id: int, name: str, *, nsfw: bool = False) -> dict[str, Any]:
        self._channels[channel_id] = channel = {
            "id": str(channel_id),
            "type": 0,
            "guild_id": str(self.guild_id),
            "name": name,
            "position": len(self._channels),
            "nsfw": nsfw,
            "topic": None,
            "parent_id": None,
            "permission_overwrites": [],
            "rate_limit_per_user": 0,
            "last_message_id": None,
        }
        self._dispatch("CHANNEL_CREATE", channel)
        return channel

    def add_attachment(self, filename: str, data: bytes, content_type: str | None = None) -> dict[str, Any]:
        """Register bytes as a user upload; returns the attachment payload whose URL the fake serves."""
        ctype = content_type or mimetypes.guess_type(filename)[0] or "application/octet-stream"
        return self._store_blob(SentFile(filename, data, ctype), self.channel_id)

    def expire_attachment(self, attachment: Mapping[str, Any]) -> None:
        """Signed CDN links expire: later downloads of this attachment answer 404."""
        self._expired_blobs.add(int(attachment["id"]))

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
        self._injected.append(
            (method.upper(), path_contains, FakeDiscordError(status, code, message), [times])
        )

    def post_user_message(
        self,
        user_id: int,
        *,
        content: str = "",
        attachments: Sequence[Mapping[str, Any]] = (),
        channel_id: int | None = None,
    ) -> FakeMessage:
        """Store a message a member wrote (target for message context menus)."""
        msg = self._new_message(channel_id or self.channel_id, author_id=user_id)
        msg.payload.update(content=content, attachments=[dict(a) for a in attachments])
        msg.files = [self._blobs[int(a["id"])] for a in attachments if int(a["id"]) in self._blobs]
        self._snapshot(msg)
        self._changed()
        return msg

    @property
    def registered_commands(self) -> list[dict[str, Any]]:
        """Every registered command; guild commands carry ``guild_id``."""
        return self._global_commands + [c for cmds in self._guild_commands.values() for c in cmds]

    def channel_messages(self, channel_id: int | None = None) -> list[FakeMessage]:
        cid = channel_id or self.channel_id
        return [m for m in self.messages.values() if m.channel_id == cid and not m.deleted]

    # ---- payload builders ------------------------------------------------------------------------

    def _snowflake(self) -> int:
        # Time-based like Discord's (discord.py derives created_at and token expiry from it), unique.
        self._last_snowflake = max(
            self._last_snowflake + 1, (int(time.time() * 1000) - DISCORD_EPOCH_MS) << 22
        )
        return self._last_snowflake

    def _user_payload(self, user_id: int) -> dict[str, Any]:
        member = self._members.get(user_id)
        return {
            "id": str(user_id),
            "username": member.name if member else f"user{user_id}",
            "discriminator": "0",
            "global_name": None,
            "avatar": None,
            "bot": bool(member and member.bot),
            "public_flags": 0,
        }

    def _permissions(self, user_id: int) -> int:
        member = self._members.get(user_id)
        perms = int(self._roles[self.guild_id]["permissions"])
        if member:
            perms |= member.permissions
            for rid in member.roles:
                perms |= int(self._roles.get(rid, {}).get("permissions", 0))
        return ALL_PERMISSIONS if user_id == self.owner_id or perms & ADMINISTRATOR else perms

    def _member_payload(self, user_id: int, *, with_permissions: bool = False) -> dict[str, Any]:
        member = self._members.get(user_id) or _Member(user_id, f"user{user_id}", [])
        payload: dict[str, Any] = {
            "user": self._user_payload(user_id),
            "roles": [str(r) for r in member.roles],
            "nick": member.nick,
            "avatar": None,
            "joined_at": "2024-01-01T00:00:00+00:00",
            "deaf": False,
            "mute": False,
            "flags": 0,  # discord.py's Member reads data["flags"] unconditionally
        }
        if with_permissions:
            payload["permissions"] = str(self._permissions(user_id))
        return payload

    def _guild_payload(self) -> dict[str, Any]:
        return {
            "id": str(self.guild_id),
            "name": "Kontext Test Guild",
            "owner_id": str(self.owner_id),
            "icon": None,
            "features": [],
            "roles": list(self._roles.values()),
            "channels": list(self._channels.values()),
            "members": [self._member_payload(uid) for uid in self._members],
            "member_count": len(self._members),
            "large": False,
            "unavailable": False,
            "joined_at": "2024-01-01T00:00:00+00:00",
            # Guild.filesize_limit derives from the boost tier: 0 -> 10 MiB, like most community servers.
            "premium_tier": 0,
            "preferred_locale": "en-US",
            "system_channel_id": str(self.channel_id),
        }

    def _store_blob(self, file: SentFile, channel_id: int) -> dict[str, Any]:
        att_id = self._snowflake()
        url = (
            f"{self.url}/attachments/{channel_id}/{att_id}/{file.filename}"
            f"?ex={int(time.time()) + 86_400:x}&is={int(time.time()):x}&hm={secrets.token_hex(8)}&"
        )
        file.attachment = {
            "id": str(att_id),
            "filename": file.filename,
            "size": len(file.data),
            "url": url,
            "proxy_url": url,
            "content_type": file.content_type,
            "description": file.description,
        }
        self._blobs[att_id] = file
        return file.attachment

    def _new_message(
        self, channel_id: int, *, author_id: int, interaction: InteractionRecord | None = None, flags: int = 0
    ) -> FakeMessage:
        payload: dict[str, Any] = {
            "id": str(self._snowflake()),
            "channel_id": str(channel_id),
            "guild_id": str(self.guild_id),
            "type": 0,
            "content": "",
            "author": self._user_payload(author_id),
            "attachments": [],
            "embeds": [],
            "components": [],
            "mentions": [],
            "mention_roles": [],
            "mention_everyone": False,
            "pinned": False,
            "tts": False,
            "timestamp": _now_iso(),
            "edited_timestamp": None,
            "flags": flags,
        }
        if interaction is not None:
            # Interaction responses are webhook messages of the application; type 20 = slash, 23 = menu.
            ctype = interaction.payload.get("data", {}).get("type", 1) if interaction.type == 2 else 0
            payload.update(
                webhook_id=str(self.app_id),
                application_id=str(self.app_id),
                type={0: 0, 1: 20}.get(ctype, 23),
            )
        msg = FakeMessage(payload, interaction_id=interaction.id if interaction else None)
        self.messages[msg.id] = msg
        return msg

    @staticmethod
    def _snapshot(msg: FakeMessage) -> None:
        msg.history.append(copy.deepcopy(msg.payload))

    def _apply_body(
        self, msg: FakeMessage, data: Mapping[str, Any], files: list[SentFile], *, edit: bool
    ) -> None:
        """Apply a create/edit body to a message: Discord's keep-listed-attachments-plus-new-files rule."""
        p = msg.payload
        for key in ("content", "embeds", "components", "tts"):
            if key in data:
                p[key] = (
                    data[key] if data[key] is not None else ([] if key in ("embeds", "components") else "")
                )
        if "flags" in data and data["flags"] is not None:
            settable = (
                SUPPRESS_EMBEDS | SUPPRESS_NOTIFICATIONS | IS_COMPONENTS_V2 | (0 if edit else EPHEMERAL)
            )
            p["flags"] = (p["flags"] & ~settable) | (int(data["flags"]) & settable)
        if "allowed_mentions" in data:
            msg.allowed_mentions = data["allowed_mentions"]
        if data.get("message_reference"):
            p["message_reference"] = data["message_reference"]
        described = {str(a.get("id")): a for a in data.get("attachments") or []}
        new = []
        for index, file in enumerate(files):
            desc = described.get(str(index), {})
            file.description = desc.get("description")
            self._store_blob(file, msg.channel_id)
            new.append(file)
        if data.get("attachments") is not None:
            kept = [f for f in msg.files if f.attachment["id"] in described]
            msg.files = kept + new
        else:
            msg.files = msg.files + new
        p["attachments"] = [f.attachment for f in msg.files]
        if edit:
            msg.edits += 1
            p["edited_timestamp"] = _now_iso()
            p["flags"] &= ~LOADING  # editing a "thinking" message replaces the spinner
        self._snapshot(msg)

    # ---- gateway ---------------------------------------------------------------------------------

    def _dispatch(self, event: str, data: Any) -> None:
        for conn in self._conns:
            if conn.identified:
                conn.dispatch(event, data)

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _gateway(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(max_msg_size=0)
        await ws.prepare(request)
        conn = _GatewayConnection(ws)
        writer = self._spawn(self._gateway_writer(conn))
        self._conns.add(conn)
        conn.send({"op": 10, "d": {"heartbeat_interval": self.heartbeat_interval_ms}})
        try:
            async for msg in ws:
                # discord.py sends JSON text frames; binary would mean ETF encoding, which we do not speak.
                if msg.type is WSMsgType.TEXT:
                    self._on_gateway_frame(conn, json.loads(msg.data))
        finally:
            self._conns.discard(conn)
            writer.cancel()
            self._changed()
        return ws

    async def _gateway_writer(self, conn: _GatewayConnection) -> None:
        # One writer per socket keeps frames in enqueue order even when tests send from many tasks.
        while True:
            frame = await conn.queue.get()
            if isinstance(frame, int):
                await conn.ws.close(code=frame)
                return
            await conn.ws.send_str(frame)

    def _on_gateway_frame(self, conn: _GatewayConnection, frame: Mapping[str, Any]) -> None:
        op, d = frame.get("op"), frame.get("d")
        if op == 1:
            conn.send({"op": 11})
        elif op == 2:
            self.identify_payloads.append(d)
            if d.get("token") != self.token:
                conn.close(4004)  # Authentication failed: discord.py raises, does not reconnect
                return
            conn.session_id = secrets.token_hex(16)
            self._sessions.add(conn.session_id)
            conn.identified = True
            app = {"id": str(self.app_id), "flags": 0}
            conn.dispatch(
                "READY",
                {
                    "v": 10,
                    "user": self._bot_user_payload(),
                    "guilds": [{"id": str(self.guild_id), "unavailable": True}],
                    "session_id": conn.session_id,
                    "resume_gateway_url": self.gateway_url,
                    "shard": d.get("shard", [0, 1]),
                    "application": app,
                    "private_channels": [],
                    "relationships": [],
                },
            )
            conn.dispatch("GUILD_CREATE", self._guild_payload())
            self._changed()
        elif op == 6:
            if d.get("token") != self.token or d.get("session_id") not in self._sessions:
                conn.send({"op": 9, "d": False})
                return
            conn.session_id, conn.seq, conn.identified = d["session_id"], int(d.get("seq") or 0), True
            # An object, not null: discord.py stores "__shard_id__" into it (types say Literal[None]).
            conn.dispatch("RESUMED", {"_trace": ["fake-discord"]})
            self.resumes += 1
            self._changed()
        elif op == 8:
            members = [self._member_payload(uid) for uid in self._members]
            conn.dispatch(
                "GUILD_MEMBERS_CHUNK",
                {
                    "guild_id": str(self.guild_id),
                    "members": members,
                    "chunk_index": 0,
                    "chunk_count": 1,
                    "nonce": d.get("nonce"),
                },
            )
        # op 3 (presence), 4 (voice state) and the rest need no answer from a fake.

    # ---- sending interactions --------------------------------------------------------------------

    def _find_command(self, name: str, ctype: int) -> dict[str, Any]:
        for cmd in self._guild_commands.get(self.guild_id, []) + self._global_commands:
            if cmd["name"] == name and cmd.get("type", 1) == ctype:
                return cmd
        known = [(c["name"], c.get("type", 1)) for c in self.registered_commands]
        raise LookupError(f"command {name!r} of type {ctype} is not registered (registered: {known})")

    def _send_interaction(
        self,
        itype: int,
        data: dict[str, Any] | None,
        *,
        user_id: int,
        channel_id: int | None,
        message: FakeMessage | None = None,
        locale: str = "en-US",
    ) -> InteractionRecord:
        if not self.ready:
            raise RuntimeError("no client is connected to the fake gateway (call wait_ready first)")
        iid = self._snowflake()
        channel = self._channels[channel_id or self.channel_id]
        payload: dict[str, Any] = {
            "id": str(iid),
            "application_id": str(self.app_id),
            "type": itype,
            "token": f"fake-interaction-{iid}-{secrets.token_hex(8)}",
            "version": 1,
            "guild_id": str(self.guild_id),
            "guild": {"id": str(self.guild_id), "locale": "en-US", "features": []},
            "channel_id": channel["id"],
            "channel": {**channel, "permissions": str(self._permissions(user_id))},
            "member": self._member_payload(user_id, with_permissions=True),
            "app_permissions": str(ALL_PERMISSIONS & ~ADMINISTRATOR),
            "locale": locale,
            "guild_locale": "en-US",
            "entitlements": [],
            "authorizing_integration_owners": {"0": str(self.guild_id)},
            "context": 0,
            "attachment_size_limit": self.upload_limit,  # required by discord.py >= 2.6
        }
        if data is not None:
            payload["data"] = data
        if message is not None:
            payload["message"] = message.payload
        rec = InteractionRecord(iid, payload["token"], itype, payload, self, source_message=message)
        self.interactions[iid] = rec
        self._by_token[rec.token] = rec
        self._dispatch("INTERACTION_CREATE", payload)
        self._changed()
        return rec

    def _command_data(
        self,
        name: str,
        options: Mapping[str, Any],
        attachments: Mapping[str, Any],
        focused: str | None = None,
    ) -> dict[str, Any]:
        root, *path = name.split()
        cmd = self._find_command(root, 1)
        resolved: dict[str, dict[str, Any]] = {}
        spec_options = cmd.get("options", [])
        chain: list[tuple[str, int]] = []
        for part in path:  # walk "group sub" down to the leaf subcommand's option specs
            spec = next((o for o in spec_options if o["name"] == part and o["type"] in (1, 2)), None)
            if spec is None:
                raise LookupError(f"{name!r}: no subcommand or group {part!r} under {cmd['name']!r}")
            chain.append((part, spec["type"]))
            spec_options = spec.get("options", [])
        values = {**options, **attachments}
        leaf = [
            self._option(spec_options, key, value, resolved, key == focused) for key, value in values.items()
        ]
        missing = [o["name"] for o in spec_options if o.get("required") and o["name"] not in values]
        if missing and focused is None:
            raise ValueError(f"{name!r}: required options missing: {missing}")
        for part, kind in reversed(chain):
            leaf = [{"name": part, "type": kind, "options": leaf}]
        data: dict[str, Any] = {"id": cmd["id"], "name": root, "type": 1, "options": leaf}
        if resolved:
            data["resolved"] = resolved
        if "guild_id" in cmd:
            data["guild_id"] = cmd["guild_id"]  # discord.py looks guild commands up by this
        return data

    def _option(
        self,
        specs: list[dict[str, Any]],
        name: str,
        value: Any,
        resolved: dict[str, dict[str, Any]],
        focused: bool,
    ) -> dict[str, Any]:
        spec = next((o for o in specs if o["name"] == name), None)
        if spec is None:
            raise ValueError(f"option {name!r} is not declared; declared: {[o['name'] for o in specs]}")
        kind = spec["type"]
        if focused:  # Discord sends what the user has typed so far, always as a string
            return {"name": name, "type": kind, "value": str(value), "focused": True}
        if kind == 11:
            att = dict(value)
            resolved.setdefault("attachments", {})[att["id"]] = att
            value = att["id"]
        elif kind == 6 or (kind == 9 and int(value) in self._members):  # mentionable: a member or a role
            uid = int(value)
            resolved.setdefault("users", {})[str(uid)] = self._user_payload(uid)
            member = self._member_payload(uid, with_permissions=True)
            member.pop("user")
            resolved.setdefault("members", {})[str(uid)] = member
            value = str(uid)
        elif kind in (8, 9):
            resolved.setdefault("roles", {})[str(value)] = self._roles[int(value)]
            value = str(value)
        elif kind == 7:
            ch = self._channels[int(value)]
            resolved.setdefault("channels", {})[ch["id"]] = {**ch, "permissions": str(ALL_PERMISSIONS)}
            value = ch["id"]
        else:
            value = {3: str, 4: int, 5: bool, 10: float}.get(kind, lambda v: v)(value)
            choices = [c["value"] for c in spec.get("choices") or []]
            if choices and value not in choices:
                raise ValueError(f"option {name!r}: {value!r} is not one of the choices {choices}")
            low, high = spec.get("min_value"), spec.get("max_value")
            if (low is not None and value < low) or (high is not None and value > high):
                raise ValueError(f"option {name!r}: {value!r} outside [{low}, {high}]")
        return {"name": name, "type": kind, "value": value}

    async def slash(
        self,
        name: str,
        options: Mapping[str, Any] | None = None,
        *,
        user_id: int,
        channel_id: int | None = None,
        attachments: Mapping[str, Mapping[str, Any]] | None = None,
        locale: str = "en-US",
    ) -> InteractionRecord:
        """Invoke a registered slash command; ``name`` may be a path like "kontext-admin budget"."""
        data = self._command_data(name, options or {}, attachments or {})
        return self._send_interaction(2, data, user_id=user_id, channel_id=channel_id, locale=locale)

    async def autocomplete(
        self,
        name: str,
        options: Mapping[str, Any],
        focused: str,
        *,
        user_id: int | None = None,
        channel_id: int | None = None,
        timeout: float = 5.0,  # noqa: ASYNC109 -- see InteractionRecord.wait_for
    ) -> list[dict[str, Any]]:
        """Send an autocomplete interaction for option ``focused`` and return the choices answered."""
        data = self._command_data(name, options, {}, focused=focused)
        rec = self._send_interaction(4, data, user_id=user_id or self.owner_id, channel_id=channel_id)
        await rec.wait_for("autocomplete", timeout)
        return rec.choices or []

    async def context_menu(
        self,
        name: str,
        message: FakeMessage | int | None = None,
        *,
        user_id: int,
        target_user_id: int | None = None,
        channel_id: int | None = None,
    ) -> InteractionRecord:
        """Invoke a message (type 3) or, with ``target_user_id``, a user (type 2) context menu command."""
        if target_user_id is not None:
            cmd = self._find_command(name, 2)
            member = self._member_payload(target_user_id, with_permissions=True)
            member.pop("user")
            resolved: dict[str, Any] = {
                "users": {str(target_user_id): self._user_payload(target_user_id)},
                "members": {str(target_user_id): member},
            }
            target = str(target_user_id)
        else:
            cmd = self._find_command(name, 3)
            msg = self.messages[message] if isinstance(message, int) else message
            if msg is None:
                raise ValueError("a message context menu needs a message")
            resolved, target = {"messages": {str(msg.id): msg.payload}}, str(msg.id)
            channel_id = channel_id or msg.channel_id
        data = {"id": cmd["id"], "name": name, "type": cmd["type"], "target_id": target, "resolved": resolved}
        if "guild_id" in cmd:
            data["guild_id"] = cmd["guild_id"]
        return self._send_interaction(2, data, user_id=user_id, channel_id=channel_id)

    async def click(
        self,
        message: FakeMessage | InteractionRecord | int,
        custom_id: str,
        *,
        user_id: int,
        values: Sequence[str] | None = None,
    ) -> InteractionRecord:
        """Click a button (or pick ``values`` in a select) present on the message."""
        if isinstance(message, InteractionRecord):
            message = message.original if message.original else None
        msg = self.messages[message] if isinstance(message, int) else message
        if msg is None:
            raise ValueError("no message to click on")
        comp = next((c for c in _walk_components(msg.components) if c.get("custom_id") == custom_id), None)
        if comp is None:
            raise ValueError(f"message {msg.id} has no component {custom_id!r}; it has {msg.custom_ids}")
        data: dict[str, Any] = {"custom_id": custom_id, "component_type": comp["type"]}
        if comp["type"] != 2:
            data["values"] = list(values or [])
        return self._send_interaction(3, data, user_id=user_id, channel_id=msg.channel_id, message=msg)

    async def submit_modal(
        self,
        custom_id: str,
        fields: Mapping[str, Any],
        *,
        user_id: int,
        message: FakeMessage | None = None,
    ) -> InteractionRecord:
        """Submit a modal the bot showed (type 9 callback), mirroring its rows/labels with the values."""
        shown = next(
            (
                r
                for r in reversed(self.interactions.values())
                if r.modal and r.modal["custom_id"] == custom_id
            ),
            None,
        )
        if shown is None:
            raise ValueError(f"no modal with custom_id {custom_id!r} was shown")
        assert shown.modal is not None
        used: set[str] = set()

        def fill(comp: Mapping[str, Any]) -> dict[str, Any]:
            out: dict[str, Any] = {"type": comp["type"]}
            if "id" in comp:
                out["id"] = comp["id"]
            if "components" in comp:
                out["components"] = [fill(c) for c in comp["components"]]
            if "component" in comp:
                out["component"] = fill(comp["component"])
            if "custom_id" in comp:
                out["custom_id"] = cid = comp["custom_id"]
                value = fields.get(cid, comp.get("value") or "")
                used.add(cid)
                if comp["type"] == 4:
                    out["value"] = value
                else:
                    out["values"] = list(value) if isinstance(value, list | tuple) else [value]
            return out

        components = [fill(c) for c in shown.modal.get("components", [])]
        if unknown := set(fields) - used:
            raise ValueError(f"modal {custom_id!r} has no inputs {sorted(unknown)}")
        source = message or shown.source_message
        return self._send_interaction(
            5,
            {"custom_id": custom_id, "components": components},
            user_id=user_id,
            channel_id=int(shown.payload["channel_id"]),
            message=source,
        )

    # ---- HTTP plumbing ---------------------------------------------------------------------------

    def _add_routes(self, r: web.UrlDispatcher) -> None:
        a = API_PREFIX
        wh = a + "/webhooks/{app}/{token}"
        r.add_get("/gateway", self._gateway)
        r.add_get("/attachments/{channel}/{att}/{filename}", self._cdn)
        r.add_get(a + "/users/@me", self._me)
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
        r.add_route("*", a + "/{tail:.*}", self._unknown_route)
        self._add_control_routes(r)

    @web.middleware
    async def _middleware(
        self, request: web.Request, handler: Callable[[web.Request], Any]
    ) -> web.StreamResponse:
        if not request.path.startswith(API_PREFIX + "/"):
            return await handler(request)
        call = RestCall(request.method, request.path[len(API_PREFIX) :], dict(request.query), None, [])
        self.calls.append(call)
        try:
            call.json, call.files = await self._parse_body(request)
            request[BODY_KEY] = (call.json, call.files)
            self._check_injected(call)
            bot_route = not call.path.startswith(("/webhooks/", "/interactions/"))
            if bot_route and request.headers.get("Authorization") != f"Bot {self.token}":
                raise FakeDiscordError(401, 0, "401: Unauthorized")
            response = await handler(request)
        except FakeDiscordError as exc:
            call.error = exc.body()
            rec = self._record_for_path(call.path)
            if rec is not None:
                rec.errors.append(
                    {"status": exc.status, **exc.body(), "method": call.method, "path": call.path}
                )
            response = _json(exc.body(), exc.status)
        call.status = response.status
        self._changed()
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
            if any(len(f.data) > self.upload_limit for f in files):
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
            return self._by_token.get(parts[3])
        return None

    async def _unknown_route(self, request: web.Request) -> web.Response:
        log.warning("fake discord: unhandled %s %s", request.method, request.path)
        raise FakeDiscordError(404, 0, "404: Not Found")

    async def _cdn(self, request: web.Request) -> web.Response:
        att_id = int(request.match_info["att"])
        blob = self._blobs.get(att_id)
        if blob is None or att_id in self._expired_blobs:
            return web.Response(status=404, text="This content is no longer available.")
        return web.Response(body=blob.data, headers={"Content-Type": blob.content_type})

    def _bot_user_payload(self) -> dict[str, Any]:
        return {
            **self._user_payload(self.bot_user_id),
            "bot": True,
            "verified": True,
            "flags": 0,
            "mfa_enabled": False,
        }

    async def _me(self, _: web.Request) -> web.Response:
        return _json(self._bot_user_payload())

    async def _gateway_info(self, request: web.Request) -> web.Response:
        info: dict[str, Any] = {"url": self.gateway_url}
        if request.path.endswith("/bot"):
            info.update(
                shards=1,
                session_start_limit={"total": 1000, "remaining": 999, "reset_after": 0, "max_concurrency": 1},
            )
        return _json(info)

    async def _typing(self, request: web.Request) -> web.Response:
        self._channel(request)
        return web.Response(status=204)

    async def _application(self, _: web.Request) -> web.Response:
        return _json(
            {
                "id": str(self.app_id),
                "name": "kontext-bot",
                "description": "",
                "icon": None,
                "bot_public": True,
                "bot_require_code_grant": False,
                "owner": self._user_payload(self.owner_id),
                "verify_key": "0" * 64,
                "flags": 0,
                "team": None,
                "summary": "",
                "interactions_endpoint_url": None,
                "bot": self._user_payload(self.bot_user_id),
            }
        )

    # ---- REST: commands --------------------------------------------------------------------------

    def _check_app(self, request: web.Request) -> None:
        if int(request.match_info["app"]) != self.app_id:
            raise FakeDiscordError(404, 10002, "Unknown Application")

    def _command_scope(self, request: web.Request) -> tuple[int | None, list[dict[str, Any]]]:
        self._check_app(request)
        if "guild" not in request.match_info:
            return None, self._global_commands
        gid = int(request.match_info["guild"])
        if gid != self.guild_id:
            raise FakeDiscordError(403, 50001, "Missing Access")
        return gid, self._guild_commands.setdefault(gid, [])

    async def _get_commands(self, request: web.Request) -> web.Response:
        return _json(self._command_scope(request)[1])

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
                "id": old_ids.get((cmd["name"], kind)) or str(self._snowflake()),
                "application_id": str(self.app_id),
                "version": str(self._snowflake()),
            }
            if guild_id is not None:
                entry["guild_id"] = str(guild_id)
            stored.append(entry)
        current[:] = stored  # PUT is a bulk overwrite: commands left out are deleted
        return _json(stored)

    # ---- REST: interactions and webhooks ---------------------------------------------------------

    async def _callback(self, request: web.Request) -> web.Response:
        rec = self.interactions.get(int(request.match_info["iid"]))
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
            rec.original = self._new_message(
                channel_id, author_id=self.bot_user_id, interaction=rec, flags=flags
            )
            if kind == 4:
                self._apply_body(rec.original, data, files, edit=False)
            else:
                self._snapshot(rec.original)
        elif kind in (6, 7):
            rec.original = rec.source_message
            if kind == 7 and rec.original is not None:
                self._apply_body(rec.original, data, files, edit=True)
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
        return _json(answer)

    def _webhook_record(self, request: web.Request) -> InteractionRecord:
        self._check_app(request)
        rec = self._by_token.get(request.match_info["token"])
        if rec is None or rec.expired:
            raise FakeDiscordError(401, 50027, "Invalid Webhook Token")
        return rec

    async def _followup(self, request: web.Request) -> web.Response:
        rec = self._webhook_record(request)
        if not rec.callbacks:
            raise FakeDiscordError(404, 10015, "Unknown Webhook")
        data, files = request[BODY_KEY]
        data = data or {}
        orig = rec.original
        if orig is not None and orig.loading and not orig.deleted and rec.callback_type == 5:
            # Discord: the first follow-up after a thinking defer replaces the loading message
            # (once that message is deleted, a follow-up is a new message).
            msg = orig
            self._apply_body(msg, data, files, edit=True)
        else:
            msg = self._new_message(
                int(rec.payload["channel_id"]), author_id=self.bot_user_id, interaction=rec
            )
            self._apply_body(msg, data, files, edit=False)
            rec.followups.append(msg)
        if request.query.get("wait") in ("1", "true", "True"):
            return _json(msg.payload)
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
            self._apply_body(msg, data or {}, files, edit=True)
        return _json(msg.payload)

    # ---- REST: channels and guild ----------------------------------------------------------------

    def _channel(self, request: web.Request) -> dict[str, Any]:
        channel = self._channels.get(int(request.match_info["cid"]))
        if channel is None:
            raise FakeDiscordError(404, 10003, "Unknown Channel")
        return channel

    async def _get_channel(self, request: web.Request) -> web.Response:
        return _json(self._channel(request))

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
        msg = self._new_message(int(channel["id"]), author_id=self.bot_user_id)
        self._apply_body(msg, data, files, edit=False)
        return _json(msg.payload)

    async def _channel_message(self, request: web.Request) -> web.Response:
        channel = self._channel(request)
        msg = self.messages.get(int(request.match_info["mid"]))
        if msg is None or msg.deleted or msg.channel_id != int(channel["id"]):
            raise FakeDiscordError(404, 10008, "Unknown Message")
        if request.method != "GET" and msg.payload["author"]["id"] != str(self.bot_user_id):
            raise FakeDiscordError(403, 50005, "Cannot edit a message authored by another user")
        return self._message_op(request, msg)

    async def _get_member(self, request: web.Request) -> web.Response:
        uid = int(request.match_info["uid"])
        if int(request.match_info["gid"]) != self.guild_id:
            raise FakeDiscordError(404, 10004, "Unknown Guild")
        if uid not in self._members:
            raise FakeDiscordError(404, 10007, "Unknown Member")
        return _json(self._member_payload(uid))

    # ---- control API (JSON over HTTP, for a bot running as a subprocess) ---------------------------

    def _add_control_routes(self, r: web.UrlDispatcher) -> None:
        c = "/_fake"
        r.add_get(c + "/state", self._c_state)
        r.add_get(c + "/ready", self._c_ready)
        r.add_get(c + "/commands", self._c_commands)
        r.add_get(c + "/calls", self._c_calls)
        r.add_get(c + "/messages", self._c_messages)
        r.add_get(c + "/interactions/{iid}", self._c_interaction)
        r.add_post(c + "/{action}", self._c_action)

    async def _c_commands(self, _: web.Request) -> web.Response:
        return _json(self.registered_commands)

    async def _c_calls(self, _: web.Request) -> web.Response:
        return _json([call.to_json() for call in self.calls])

    async def _c_state(self, _: web.Request) -> web.Response:
        keys = "app_id bot_user_id guild_id owner_id channel_id nsfw_channel_id upload_limit url api_base"
        keys += " gateway_url token ready resumes"
        return _json({k: getattr(self, k) for k in keys.split()})

    async def _c_ready(self, request: web.Request) -> web.Response:
        try:
            await self.wait_ready(float(request.query.get("timeout", 10)))
        except TimeoutError as exc:
            return _json({"ready": False, "error": str(exc)}, 504)
        return _json({"ready": True})

    async def _c_messages(self, request: web.Request) -> web.Response:
        cid = request.query.get("channel_id")
        msgs = self.channel_messages(int(cid)) if cid else list(self.messages.values())
        return _json([m.to_json() for m in msgs])

    async def _c_interaction(self, request: web.Request) -> web.Response:
        rec = self.interactions.get(int(request.match_info["iid"]))
        if rec is None:
            return _json({"error": "unknown interaction"}, 404)
        if until := request.query.get("until"):
            try:
                await rec.wait_for(until, float(request.query.get("timeout", 5)))
            except TimeoutError as exc:
                return _json({**rec.to_json(), "error": str(exc)}, 504)
        return _json(rec.to_json())

    async def _c_action(self, request: web.Request) -> web.Response:
        b = await request.json()
        action = request.match_info["action"]
        try:
            result = await self._control_action(action, b)
        except (LookupError, ValueError, RuntimeError, TimeoutError) as exc:
            return _json({"error": f"{type(exc).__name__}: {exc}"}, 400)
        return _json(result)

    async def _control_action(self, action: str, b: dict[str, Any]) -> Any:
        msg = self.messages[int(b["message_id"])] if b.get("message_id") else None
        if action == "members":
            return self.add_member(
                int(b["user_id"]),
                name=b["name"],
                roles=[int(r) for r in b.get("roles", [])],
                permissions=int(b.get("permissions", 0)),
                nick=b.get("nick"),
            )
        if action == "roles":
            return self.add_role(int(b["role_id"]), b["name"], int(b.get("permissions", 0)))
        if action == "attachments":
            return self.add_attachment(b["filename"], base64.b64decode(b["data_b64"]), b.get("content_type"))
        if action == "user_messages":
            return self.post_user_message(
                int(b["user_id"]),
                content=b.get("content", ""),
                attachments=b.get("attachments", []),
                channel_id=int(b["channel_id"]) if b.get("channel_id") else None,
            ).to_json()
        if action == "slash":
            rec = await self.slash(
                b["name"],
                b.get("options"),
                user_id=int(b["user_id"]),
                channel_id=int(b["channel_id"]) if b.get("channel_id") else None,
                attachments=b.get("attachments"),
            )
            return rec.to_json()
        if action == "autocomplete":
            choices = await self.autocomplete(
                b["name"],
                b.get("options", {}),
                b["focused"],
                user_id=b.get("user_id"),
                timeout=float(b.get("timeout", 5)),
            )
            return {"choices": choices}
        if action == "context_menu":
            target = b.get("target_user_id")
            rec = await self.context_menu(
                b["name"], msg, user_id=int(b["user_id"]), target_user_id=int(target) if target else None
            )
            return rec.to_json()
        if action == "click":
            if msg is None:
                raise ValueError("click needs message_id")
            return (
                await self.click(msg, b["custom_id"], user_id=int(b["user_id"]), values=b.get("values"))
            ).to_json()
        if action == "submit_modal":
            return (
                await self.submit_modal(
                    b["custom_id"], b.get("fields", {}), user_id=int(b["user_id"]), message=msg
                )
            ).to_json()
        if action == "expire_token":
            self.expire_token(b["token"])
            return {"ok": True}
        if action == "reconnect":
            self.request_reconnect()
            return {"ok": True}
        if action == "config":
            self.upload_limit = int(b.get("upload_limit", self.upload_limit))
            return {"upload_limit": self.upload_limit}
        if action == "inject_error":
            self.inject_error(
                b["method"],
                b["path_contains"],
                int(b["status"]),
                int(b.get("code", 0)),
                times=int(b.get("times", 1)),
                message=b.get("message", "injected error"),
            )
            return {"ok": True}
        raise LookupError(f"unknown control action {action!r}")


async def _serve(args: argparse.Namespace) -> None:
    fake = FakeDiscord(
        app_id=args.app_id, guild_id=args.guild_id, token=args.token, upload_limit=args.upload_limit
    )
    await fake.start(args.host, args.port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    # The one line a parent process parses to find us; flush because stdout is a pipe there.
    print(f"FAKE_DISCORD_URL={fake.url}", flush=True)
    await stop.wait()
    await fake.stop()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.fake_discord", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--app-id", type=int, default=1_100_000_000_000_000_001)
    parser.add_argument("--guild-id", type=int, default=1_200_000_000_000_000_001)
    parser.add_argument("--token", default="fake-token")
    parser.add_argument("--upload-limit", type=int, default=10 * 1024 * 1024)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(args))


if __name__ == "__main__":
    main()
