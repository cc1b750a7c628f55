"""The fake's world: guilds (roles, members, channels), DM channels, users, the clock, and the
payloads Discord builds from them. Messages and files are the next layer (``messages``).

Nothing here speaks HTTP or the gateway; events for the gateway go through ``_dispatch``, which the
server (``FakeDiscord``) fills in. The first guild is the *primary* one: ``guild_id``,
``channel_id``, ``nsfw_channel_id`` and every ``guild_id=None`` argument mean it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from tests.fake_discord.records import (
    ADMINISTRATOR,
    ALL_PERMISSIONS,
    DEFAULT_EVERYONE_PERMISSIONS,
    DISCORD_EPOCH_MS,
    InteractionRecord,
)


@dataclass
class Member:
    user_id: int
    name: str
    roles: list[int]
    permissions: int = 0
    nick: str | None = None
    bot: bool = False


@dataclass
class Guild:
    """One guild: its ``@everyone`` role has the guild's id; ``channel_id`` is its "general"."""

    id: int
    name: str
    owner_id: int
    channel_id: int
    nsfw_channel_id: int
    roles: dict[int, dict[str, Any]] = field(default_factory=dict)
    members: dict[int, Member] = field(default_factory=dict)
    channel_ids: list[int] = field(default_factory=list)
    # Set once GUILD_CREATE went out: events about a guild the client has not seen would be noise.
    announced: bool = False


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
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.app_id = app_id
        # Modern applications share their id with their bot user.
        self.bot_user_id = bot_user_id if bot_user_id is not None else app_id
        self.guild_id = guild_id
        self.owner_id = owner_id
        self.upload_limit = upload_limit
        self.clock = clock
        self._time_offset = 0.0
        self.url = ""
        self.guilds: dict[int, Guild] = {}
        self.interactions: dict[int, InteractionRecord] = {}
        self._by_token: dict[str, InteractionRecord] = {}
        self._channels: dict[int, dict[str, Any]] = {}  # every channel: guild channels and DMs
        self._dm_channels: dict[int, int] = {}  # user id -> DM channel id
        self._global_commands: list[dict[str, Any]] = []
        self._guild_commands: dict[int, list[dict[str, Any]]] = {}
        self._last_snowflake = 0
        self._change = asyncio.Event()
        self.add_guild(guild_id, owner_id=owner_id)

    def _dispatch(self, event: str, data: Any, guild_id: int | None = None) -> list[int]:
        """Send a gateway event to the sessions that should get it; returns their shard ids.

        ``guild_id`` defaults to ``data["guild_id"]``. The server overrides this."""
        return []

    # ---- time and waiting ------------------------------------------------------------------------

    def now(self) -> float:
        """The fake's clock (seconds): ``clock()`` plus whatever ``advance_time`` added."""
        return self.clock() + self._time_offset

    def advance_time(self, seconds: float) -> None:
        """Move the fake's clock forward, e.g. past an interaction token's 15 minutes."""
        self._time_offset += seconds
        self._changed()

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

    # ---- world setup -----------------------------------------------------------------------------

    @property
    def channel_id(self) -> int:
        """The primary guild's "general" channel."""
        return self.guilds[self.guild_id].channel_id

    @property
    def nsfw_channel_id(self) -> int:
        """The primary guild's age-restricted channel."""
        return self.guilds[self.guild_id].nsfw_channel_id

    def add_guild(
        self, guild_id: int, *, name: str = "Kontext Test Guild", owner_id: int | None = None
    ) -> Guild:
        """A guild the bot is in: @everyone, its owner, the bot, "general" (``guild_id + 9``) and
        "nsfw-art" (``guild_id + 10``). A connected client on its shard gets GUILD_CREATE."""
        if guild_id in self.guilds:
            raise ValueError(f"guild {guild_id} exists already")
        owner = self.owner_id if owner_id is None else owner_id
        guild = Guild(guild_id, name, owner, guild_id + 9, guild_id + 10)
        self.guilds[guild_id] = guild
        self.add_role(guild_id, "@everyone", DEFAULT_EVERYONE_PERMISSIONS, guild_id=guild_id)
        self.add_member(owner, name="owner", guild_id=guild_id)
        self.add_member(self.bot_user_id, name="kontext-bot", bot=True, guild_id=guild_id)
        self.add_channel(guild.channel_id, "general", guild_id=guild_id)
        self.add_channel(guild.nsfw_channel_id, "nsfw-art", nsfw=True, guild_id=guild_id)
        guild.announced = True
        # A join carries no "unavailable" (discord.py then fires on_guild_join, not guild_available).
        payload = self._guild_payload(guild)
        payload.pop("unavailable")
        self._dispatch("GUILD_CREATE", payload, guild_id)
        return guild

    def add_role(
        self, role_id: int, name: str, permissions: int = 0, *, guild_id: int | None = None
    ) -> dict[str, Any]:
        guild = self._guild(guild_id)
        role = {
            "id": str(role_id),
            "name": name,
            "permissions": str(permissions),
            "position": 0 if role_id == guild.id else len(guild.roles),
            "color": 0,
            "colors": {"primary_color": 0, "secondary_color": None, "tertiary_color": None},
            "hoist": False,
            "managed": False,
            "mentionable": False,
            "icon": None,
            "unicode_emoji": None,
            "flags": 0,
        }
        guild.roles[role_id] = role
        if guild.announced:
            self._dispatch("GUILD_ROLE_CREATE", {"guild_id": str(guild.id), "role": role})
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
        guild_id: int | None = None,
    ) -> dict[str, Any]:
        """Add a guild member; ``permissions`` adds to what @everyone and the roles grant."""
        guild = self._guild(guild_id)
        guild.members[user_id] = Member(user_id, name, list(roles), permissions, nick, bot)
        payload = self._member_payload(user_id, guild)
        if guild.announced:
            self._dispatch("GUILD_MEMBER_ADD", {**payload, "guild_id": str(guild.id)})
        return payload

    def add_channel(
        self, channel_id: int, name: str, *, nsfw: bool = False, guild_id: int | None = None
    ) -> dict[str, Any]:
        guild = self._guild(guild_id)
        self._channels[channel_id] = channel = {
            "id": str(channel_id),
            "type": 0,
            "guild_id": str(guild.id),
            "name": name,
            "position": len(guild.channel_ids),
            "nsfw": nsfw,
            "topic": None,
            "parent_id": None,
            "permission_overwrites": [],
            "rate_limit_per_user": 0,
            "last_message_id": None,
        }
        guild.channel_ids.append(channel_id)
        if guild.announced:
            self._dispatch("CHANNEL_CREATE", channel)
        return channel

    def dm_channel(self, user_id: int) -> int:
        """The id of the DM channel between the bot and ``user_id`` (made on first use). Pass it as
        ``channel_id`` to a driver for a DM interaction: no guild, so Discord sends it on shard 0."""
        if user_id not in self._dm_channels:
            cid = self._snowflake()
            self._channels[cid] = {
                "id": str(cid),
                "type": 1,
                "last_message_id": None,
                "recipients": [self._user_payload(user_id)],
            }
            self._dm_channels[user_id] = cid
        return self._dm_channels[user_id]

    @property
    def registered_commands(self) -> list[dict[str, Any]]:
        """Every registered command; guild commands carry ``guild_id``."""
        return self._global_commands + [c for cmds in self._guild_commands.values() for c in cmds]

    # ---- lookups ---------------------------------------------------------------------------------

    def _guild(self, guild_id: int | None) -> Guild:
        gid = self.guild_id if guild_id is None else int(guild_id)
        if gid not in self.guilds:
            raise LookupError(f"no guild {gid}; guilds: {sorted(self.guilds)}")
        return self.guilds[gid]

    def _guild_of_channel(self, channel_id: int) -> Guild | None:
        """The channel's guild, None for a DM; LookupError for an unknown channel."""
        channel = self._channels.get(int(channel_id))
        if channel is None:
            raise LookupError(f"no channel {channel_id}")
        return self.guilds[int(channel["guild_id"])] if "guild_id" in channel else None

    def _member(self, user_id: int) -> Member | None:
        """The user as a member of some guild (primary first): names and bot flags are global."""
        for guild in (self.guilds[self.guild_id], *self.guilds.values()):
            if user_id in guild.members:
                return guild.members[user_id]
        return None

    # ---- payload builders ------------------------------------------------------------------------

    def _snowflake(self) -> int:
        # Time-based like Discord's (discord.py derives created_at and token expiry from it), unique.
        self._last_snowflake = max(
            self._last_snowflake + 1, (int(time.time() * 1000) - DISCORD_EPOCH_MS) << 22
        )
        return self._last_snowflake

    def _user_payload(self, user_id: int) -> dict[str, Any]:
        member = self._member(user_id)
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

    def _permissions(self, user_id: int, guild: Guild) -> int:
        member = guild.members.get(user_id)
        perms = int(guild.roles[guild.id]["permissions"])
        if member:
            perms |= member.permissions
            for rid in member.roles:
                perms |= int(guild.roles.get(rid, {}).get("permissions", 0))
        return ALL_PERMISSIONS if user_id == guild.owner_id or perms & ADMINISTRATOR else perms

    def _member_payload(
        self, user_id: int, guild: Guild, *, with_permissions: bool = False
    ) -> dict[str, Any]:
        member = guild.members.get(user_id) or Member(user_id, f"user{user_id}", [])
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
            payload["permissions"] = str(self._permissions(user_id, guild))
        return payload

    def _guild_payload(self, guild: Guild) -> dict[str, Any]:
        return {
            "id": str(guild.id),
            "name": guild.name,
            "owner_id": str(guild.owner_id),
            "icon": None,
            "features": [],
            "roles": list(guild.roles.values()),
            "channels": [self._channels[cid] for cid in guild.channel_ids],
            "members": [self._member_payload(uid, guild) for uid in guild.members],
            "member_count": len(guild.members),
            "large": False,
            "unavailable": False,
            "joined_at": "2024-01-01T00:00:00+00:00",
            # Guild.filesize_limit derives from the boost tier: 0 -> 10 MiB, like most community servers.
            "premium_tier": 0,
            "preferred_locale": "en-US",
            "system_channel_id": str(guild.channel_id),
        }
