"""Interaction drivers: what a member does in the Discord client (run a slash command, type into an
autocompleted option, use a context menu, click a component, submit a modal), turned into the
INTERACTION_CREATE Discord would send. Options are checked against the registered command."""

from __future__ import annotations

import secrets
from collections.abc import Mapping, Sequence
from typing import Any

from tests.fake_discord.messages import MessageBook
from tests.fake_discord.records import (
    ADMINISTRATOR,
    ALL_PERMISSIONS,
    FakeMessage,
    InteractionRecord,
    walk_components,
)
from tests.fake_discord.world import Guild

TOKEN_LIFETIME = 15 * 60.0  # seconds an interaction token is valid for webhook calls


class Drivers(MessageBook):
    """The world plus the ways a member acts on it; every driver returns the ``InteractionRecord``.

    Where: ``channel_id`` (a guild channel, or ``dm_channel(user)`` for a DM) decides the guild;
    without it, ``guild_id`` (default: the primary guild) and that guild's general channel."""

    token_lifetime: float = TOKEN_LIFETIME

    def _receivers(self, guild_id: int | None) -> list[int]:
        """Shard ids of the sessions that would get this guild's events (the server overrides this)."""
        return []

    def _where(self, guild_id: int | None, channel_id: int | None) -> tuple[Guild | None, dict[str, Any]]:
        if channel_id is None:
            guild = self._guild(guild_id)
            return guild, self._channels[guild.channel_id]
        guild = self._guild_of_channel(channel_id)
        if guild_id is not None and (guild is None or guild.id != int(guild_id)):
            raise ValueError(f"channel {channel_id} is not in guild {guild_id}")
        return guild, self._channels[int(channel_id)]

    def _find_command(self, name: str, ctype: int, guild: Guild | None) -> dict[str, Any]:
        scoped = self._guild_commands.get(guild.id, []) if guild is not None else []
        for cmd in scoped + self._global_commands:
            if cmd["name"] == name and cmd.get("type", 1) == ctype:
                return cmd
        known = [(c["name"], c.get("type", 1)) for c in self.registered_commands]
        where = f"guild {guild.id}" if guild is not None else "DMs (global commands only)"
        raise LookupError(
            f"command {name!r} of type {ctype} is not registered for {where} (registered: {known})"
        )

    def _send_interaction(
        self,
        itype: int,
        data: dict[str, Any] | None,
        *,
        user_id: int,
        guild: Guild | None,
        channel: dict[str, Any],
        message: FakeMessage | None = None,
        locale: str = "en-US",
    ) -> InteractionRecord:
        if not self._receivers(guild.id if guild else None):
            shard = "shard 0 (DMs)" if guild is None else f"the shard of guild {guild.id}"
            raise RuntimeError(
                f"no client is connected to the fake gateway for {shard} (call wait_ready first)"
            )
        iid = self._snowflake()
        payload: dict[str, Any] = {
            "id": str(iid),
            "application_id": str(self.app_id),
            "type": itype,
            "token": f"fake-interaction-{iid}-{secrets.token_hex(8)}",
            "version": 1,
            "channel_id": channel["id"],
            "app_permissions": str(ALL_PERMISSIONS & ~ADMINISTRATOR),
            "locale": locale,
            "entitlements": [],
            "attachment_size_limit": self.upload_limit,  # required by discord.py >= 2.6
        }
        if guild is not None:
            payload.update(
                guild_id=str(guild.id),
                guild={"id": str(guild.id), "locale": "en-US", "features": []},
                channel={**channel, "permissions": str(self._permissions(user_id, guild))},
                member=self._member_payload(user_id, guild, with_permissions=True),
                guild_locale="en-US",
                authorizing_integration_owners={"0": str(guild.id)},
                context=0,  # GUILD
            )
        else:  # a DM with the bot: a user instead of a member, the integration owner "0"
            payload.update(
                channel=dict(channel),
                user=self._user_payload(user_id),
                authorizing_integration_owners={"0": "0"},
                context=1,  # BOT_DM
            )
        if data is not None:
            payload["data"] = data
        if message is not None:
            payload["message"] = message.payload
        rec = InteractionRecord(iid, payload["token"], itype, payload, self, source_message=message)  # type: ignore[arg-type]
        rec.guild_id = guild.id if guild else None
        rec.expires_at = self.now() + self.token_lifetime
        self.interactions[iid] = rec
        self._by_token[rec.token] = rec
        rec.shards = self._dispatch("INTERACTION_CREATE", payload)
        self._changed()
        return rec

    def _command_data(
        self,
        name: str,
        options: Mapping[str, Any],
        attachments: Mapping[str, Any],
        guild: Guild | None,
        focused: str | None = None,
    ) -> dict[str, Any]:
        root, *path = name.split()
        cmd = self._find_command(root, 1, guild)
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
            self._option(spec_options, key, value, resolved, guild, key == focused)
            for key, value in values.items()
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

    def _resolve_user(self, uid: int, resolved: dict[str, dict[str, Any]], guild: Guild | None) -> None:
        resolved.setdefault("users", {})[str(uid)] = self._user_payload(uid)
        if guild is not None:  # in a DM there are users, no members
            member = self._member_payload(uid, guild, with_permissions=True)
            member.pop("user")
            resolved.setdefault("members", {})[str(uid)] = member

    def _option(
        self,
        specs: list[dict[str, Any]],
        name: str,
        value: Any,
        resolved: dict[str, dict[str, Any]],
        guild: Guild | None,
        focused: bool,
    ) -> dict[str, Any]:
        spec = next((o for o in specs if o["name"] == name), None)
        if spec is None:
            raise ValueError(f"option {name!r} is not declared; declared: {[o['name'] for o in specs]}")
        kind = spec["type"]
        if focused:  # Discord sends what the user has typed so far, always as a string
            return {"name": name, "type": kind, "value": str(value), "focused": True}
        roles = guild.roles if guild is not None else {}
        if kind == 11:
            att = dict(value)
            resolved.setdefault("attachments", {})[att["id"]] = att
            value = att["id"]
        elif kind == 6 or (kind == 9 and int(value) not in roles):  # mentionable: a member or a role
            self._resolve_user(int(value), resolved, guild)
            value = str(int(value))
        elif kind in (8, 9):
            resolved.setdefault("roles", {})[str(value)] = roles[int(value)]
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
        guild_id: int | None = None,
    ) -> InteractionRecord:
        """Invoke a registered slash command; ``name`` may be a path like "kontext-admin budget"."""
        guild, channel = self._where(guild_id, channel_id)
        data = self._command_data(name, options or {}, attachments or {}, guild)
        return self._send_interaction(2, data, user_id=user_id, guild=guild, channel=channel, locale=locale)

    async def autocomplete(
        self,
        name: str,
        options: Mapping[str, Any],
        focused: str,
        *,
        user_id: int | None = None,
        channel_id: int | None = None,
        timeout: float = 5.0,  # noqa: ASYNC109 -- see InteractionRecord.wait_for
        guild_id: int | None = None,
    ) -> list[dict[str, Any]]:
        """Send an autocomplete interaction for option ``focused`` and return the choices answered."""
        guild, channel = self._where(guild_id, channel_id)
        data = self._command_data(name, options, {}, guild, focused=focused)
        user = user_id or (guild.owner_id if guild is not None else self.owner_id)
        rec = self._send_interaction(4, data, user_id=user, guild=guild, channel=channel)
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
        guild_id: int | None = None,
    ) -> InteractionRecord:
        """Invoke a message (type 3) or, with ``target_user_id``, a user (type 2) context menu command."""
        resolved: dict[str, Any] = {}
        if target_user_id is not None:
            guild, channel = self._where(guild_id, channel_id)
            cmd = self._find_command(name, 2, guild)
            self._resolve_user(target_user_id, resolved, guild)
            target = str(target_user_id)
        else:
            msg = self.messages[message] if isinstance(message, int) else message
            if msg is None:
                raise ValueError("a message context menu needs a message")
            guild, channel = self._where(guild_id, channel_id or msg.channel_id)
            cmd = self._find_command(name, 3, guild)
            resolved, target = {"messages": {str(msg.id): msg.payload}}, str(msg.id)
        data = {"id": cmd["id"], "name": name, "type": cmd["type"], "target_id": target, "resolved": resolved}
        if "guild_id" in cmd:
            data["guild_id"] = cmd["guild_id"]
        return self._send_interaction(2, data, user_id=user_id, guild=guild, channel=channel)

    async def click(
        self,
        message: FakeMessage | InteractionRecord | int,
        custom_id: str,
        *,
        user_id: int,
        values: Sequence[str] | None = None,
    ) -> InteractionRecord:
        """Click a button (or pick ``values`` in a select) present on the message; the interaction
        comes from the message's channel (and so its guild's shard)."""
        if isinstance(message, InteractionRecord):
            message = message.original if message.original else None
        msg = self.messages[message] if isinstance(message, int) else message
        if msg is None:
            raise ValueError("no message to click on")
        comp = next((c for c in walk_components(msg.components) if c.get("custom_id") == custom_id), None)
        if comp is None:
            raise ValueError(f"message {msg.id} has no component {custom_id!r}; it has {msg.custom_ids}")
        data: dict[str, Any] = {"custom_id": custom_id, "component_type": comp["type"]}
        if comp["type"] != 2:
            data["values"] = list(values or [])
        guild, channel = self._where(None, msg.channel_id)
        return self._send_interaction(3, data, user_id=user_id, guild=guild, channel=channel, message=msg)

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
        guild, channel = self._where(None, int(shown.payload["channel_id"]))
        return self._send_interaction(
            5,
            {"custom_id": custom_id, "components": components},
            user_id=user_id,
            guild=guild,
            channel=channel,
            message=source,
        )
