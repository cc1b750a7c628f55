"""Messages and files on top of the world: the message store, uploaded bytes served back as CDN
attachments, and Discord's rules for creating and editing a message body (attachments kept or
replaced, settable flags, replies). Every edit is counted and timed for the rate assertions."""

from __future__ import annotations

import copy
import mimetypes
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from tests.fake_discord.records import (
    EPHEMERAL,
    IS_COMPONENTS_V2,
    LOADING,
    SUPPRESS_EMBEDS,
    SUPPRESS_NOTIFICATIONS,
    FakeDiscordError,
    FakeMessage,
    InteractionRecord,
    RateMeter,
    SentFile,
    now_iso,
)
from tests.fake_discord.world import World

REPLY = 19  # message type of a reply


class MessageBook(World):
    """The world plus its messages (``messages``), uploads and edit counters (``edit_meter``)."""

    def __init__(self, **world: Any) -> None:
        self.messages: dict[int, FakeMessage] = {}
        self._blobs: dict[int, SentFile] = {}
        self._expired_blobs: set[int] = set()
        self.edit_meter = RateMeter(1.0)  # every message edit, on the fake's clock
        super().__init__(**world)

    # ---- test API --------------------------------------------------------------------------------

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
        guild_id: int | None = None,
    ) -> FakeMessage:
        """Store a message a member wrote (target for message context menus); the channel defaults to
        the general channel of ``guild_id`` (the primary guild)."""
        msg = self._new_message(channel_id or self._guild(guild_id).channel_id, author_id=user_id)
        msg.payload.update(content=content, attachments=[dict(a) for a in attachments])
        msg.files = [self._blobs[int(a["id"])] for a in attachments if int(a["id"]) in self._blobs]
        self._snapshot(msg)
        self._changed()
        return msg

    def channel_messages(self, channel_id: int | None = None) -> list[FakeMessage]:
        cid = channel_id or self.channel_id
        return [m for m in self.messages.values() if m.channel_id == cid and not m.deleted]

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

    # ---- building messages -----------------------------------------------------------------------

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
        guild = self._guild_of_channel(channel_id)
        if guild is not None:  # DM messages carry no guild_id
            payload["guild_id"] = str(guild.id)
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

    def _referenced(self, channel_id: int, data: Mapping[str, Any] | None) -> FakeMessage | None:
        """The message a new message replies to (``message_reference``), checked before anything is
        created: a reply must point at a live message of the same channel, else 400/50035 — unless
        ``fail_if_not_exists`` is false, when Discord sends it as a plain message."""
        ref = (data or {}).get("message_reference")
        if not ref:
            return None
        target = self.messages.get(int(ref.get("message_id") or 0))
        ok = (
            target is not None
            and not target.deleted
            and not target.ephemeral
            and target.channel_id == channel_id == int(ref.get("channel_id") or channel_id)
        )
        if ok or ref.get("fail_if_not_exists") is False:
            return target if ok else None
        raise FakeDiscordError(
            400,
            50035,
            "Invalid Form Body",
            {
                "message_reference": {
                    "_errors": [{"code": "MESSAGE_REFERENCE_UNKNOWN_MESSAGE", "message": "Unknown message"}]
                }
            },
        )

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
        if not edit and (target := self._referenced(msg.channel_id, data)) is not None:
            # A reply: type 19, the reference as Discord normalises it, and the replied-to message
            # one level deep (its own referenced_message is left out, as Discord does).
            p["type"] = REPLY if p["type"] == 0 else p["type"]
            p["message_reference"] = {
                "type": 0,
                "message_id": str(target.id),
                "channel_id": str(target.channel_id),
                **({"guild_id": p["guild_id"]} if "guild_id" in p else {}),
            }
            p["referenced_message"] = {
                k: copy.deepcopy(v) for k, v in target.payload.items() if k != "referenced_message"
            }
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
            at = self.now()
            msg.edit_times.append(at)
            self.edit_meter.hit(at)
            p["edited_timestamp"] = now_iso()
            p["flags"] &= ~LOADING  # editing a "thinking" message replaces the spinner
        self._snapshot(msg)
