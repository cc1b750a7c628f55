"""The fake's world: the guild (roles, members, channels), messages and uploaded files, the
interaction records, and the rules for building payloads and applying message bodies.

Nothing here speaks HTTP or the gateway; events for the gateway go through ``_dispatch``, which the
server (``FakeDiscord``) fills in."""

from __future__ import annotations

import asyncio
import copy
import mimetypes
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tests.fake_discord.records import (
    ADMINISTRATOR,
    ALL_PERMISSIONS,
    DEFAULT_EVERYONE_PERMISSIONS,
    DISCORD_EPOCH_MS,
    EPHEMERAL,
    IS_COMPONENTS_V2,
    LOADING,
    SUPPRESS_EMBEDS,
    SUPPRESS_NOTIFICATIONS,
    FakeMessage,
    InteractionRecord,
    SentFile,
    now_iso,
)


@dataclass
class _Member:
    user_id: int
    name: str
    roles: list[int]
    permissions: int = 0
    nick: str | None = None
    bot: bool = False


class World:
    """State of the fake Discord and the world-building API tests call (``add_member``...)."""

    def __init__(
        self,
        *,
        app_id: int,
        bot_user_id: int | None,
        guild_id: int,
        owner_id: int,
        upload_limit: int,
    ) -> None:
        self.app_id = app_id
        # Modern applications share their id with their bot user.
        self.bot_user_id = bot_user_id if bot_user_id is not None else app_id
        self.guild_id = guild_id
        self.owner_id = owner_id
        self.upload_limit = upload_limit
        self.channel_id = guild_id + 9
        self.nsfw_channel_id = guild_id + 10
        self.url = ""
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
        self._last_snowflake = 0
        self._change = asyncio.Event()
        self.add_role(guild_id, "@everyone", DEFAULT_EVERYONE_PERMISSIONS)
        self.add_member(owner_id, name="owner")
        self.add_member(self.bot_user_id, name="kontext-bot", bot=True)
        self.add_channel(self.channel_id, "general")
        self.add_channel(self.nsfw_channel_id, "nsfw-art", nsfw=True)

    def _dispatch(self, event: str, data: Any) -> None:
        """Send a gateway event to the connected clients (the server overrides this)."""

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

    def _bot_user_payload(self) -> dict[str, Any]:
        return {
            **self._user_payload(self.bot_user_id),
            "bot": True,
            "verified": True,
            "flags": 0,
            "mfa_enabled": False,
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
            "timestamp": now_iso(),
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
            p["edited_timestamp"] = now_iso()
            p["flags"] &= ~LOADING  # editing a "thinking" message replaces the spinner
        self._snapshot(msg)
