"""The fake gateway: one websocket per client session, HELLO / IDENTIFY / READY / RESUME, heartbeats,
and the dispatch of events to the identified sessions, each frame in the order it was queued.

Sharding as Discord does it (discord-api-docs, topics/gateway "Sharding"): IDENTIFY may carry
``shard: [id, count]`` (absent means ``[0, 1]``); READY echoes it and lists only that shard's guilds;
an event about guild ``g`` goes to the sessions with ``(g >> 22) % count == id``, an event without a
guild (a DM interaction) to shard 0 only. Several sessions may hold the same shard (a deploy overlap):
each gets the event, as on Discord."""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiohttp import WSMsgType, web

if TYPE_CHECKING:
    from tests.fake_discord.fake import FakeDiscord


def shard_of(guild_id: int, shard_count: int) -> int:
    """The shard that gets a guild's events: ``(guild_id >> 22) % shard_count``."""
    return (int(guild_id) >> 22) % shard_count


def guild_on_shard(shard_id: int, shard_count: int, index: int = 0) -> int:
    """A guild id (the ``index``-th of its kind) whose events go to ``shard_id`` of ``shard_count``."""
    return (((5000 + index) * shard_count + shard_id) << 22) + 1


@dataclass(eq=False)
class GatewayConnection:
    ws: web.WebSocketResponse
    queue: asyncio.Queue[str | int] = field(default_factory=asyncio.Queue)
    seq: int = 0
    session_id: str | None = None
    identified: bool = False
    shard: tuple[int, int] = (0, 1)  # (shard id, shard count) from IDENTIFY

    def receives(self, guild_id: int | None) -> bool:
        """Whether events about this guild (None: no guild) belong to this session's shard."""
        if not self.identified:
            return False
        shard_id, count = self.shard
        return shard_id == (0 if guild_id is None else shard_of(guild_id, count))

    def send(self, frame: dict[str, Any]) -> None:
        # Serialise now: the payloads reference live message dicts that may change before delivery.
        self.queue.put_nowait(json.dumps(frame))

    def dispatch(self, event: str, data: Any) -> None:
        # Sequence numbers are assigned at enqueue time so they match delivery order.
        self.seq += 1
        self.send({"op": 0, "t": event, "s": self.seq, "d": data})

    def close(self, code: int) -> None:
        self.queue.put_nowait(code)


class Gateway:
    """Serves ``/gateway`` for the fake; ``identify_payloads`` and ``resumes`` record what clients did."""

    def __init__(self, fake: FakeDiscord) -> None:
        self.fake = fake
        self.identify_payloads: list[dict[str, Any]] = []
        self.resumes = 0
        self._conns: set[GatewayConnection] = set()
        self._sessions: dict[str, tuple[int, int]] = {}  # session id -> its shard, for RESUME
        self._tasks: set[asyncio.Task[Any]] = set()

    @property
    def sessions(self) -> int:
        """Open gateway connections that identified or resumed (1 for a healthy client)."""
        return sum(c.identified for c in self._conns)

    @property
    def shards(self) -> list[tuple[int, int]]:
        """``(shard id, shard count)`` of every identified session, sorted."""
        return sorted(c.shard for c in self._conns if c.identified)

    def receivers(self, guild_id: int | None) -> list[int]:
        """Shard ids of the sessions that get events about this guild (None: a DM)."""
        return sorted(c.shard[0] for c in self._conns if c.receives(guild_id))

    def dispatch(self, event: str, data: Any, guild_id: int | None = None) -> list[int]:
        """Queue an event for the sessions of its guild's shard; returns their shard ids.

        The guild is ``guild_id`` or else ``data["guild_id"]`` (GUILD_CREATE's guild is its ``id``)."""
        if guild_id is None and isinstance(data, Mapping) and data.get("guild_id"):
            guild_id = int(data["guild_id"])
        sent = []
        for conn in self._conns:
            if conn.receives(guild_id):
                conn.dispatch(event, data)
                sent.append(conn.shard[0])
        return sorted(sent)

    def request_reconnect(self) -> None:
        for conn in self._conns:
            if conn.identified:
                conn.send({"op": 7, "d": None})

    async def close(self) -> None:
        for conn in list(self._conns):
            with contextlib.suppress(Exception):
                await conn.ws.close(code=1001)  # going away: a live client would try to reconnect
        for task in list(self._tasks):
            task.cancel()

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def handler(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(max_msg_size=0)
        await ws.prepare(request)
        conn = GatewayConnection(ws)
        writer = self._spawn(self._writer(conn))
        self._conns.add(conn)
        conn.send({"op": 10, "d": {"heartbeat_interval": self.fake.heartbeat_interval_ms}})
        try:
            async for msg in ws:
                # discord.py sends JSON text frames; binary would mean ETF encoding, which we do not speak.
                if msg.type is WSMsgType.TEXT:
                    self._on_frame(conn, json.loads(msg.data))
        finally:
            self._conns.discard(conn)
            writer.cancel()
            self.fake._changed()
        return ws

    async def _writer(self, conn: GatewayConnection) -> None:
        # One writer per socket keeps frames in enqueue order even when tests send from many tasks.
        while True:
            frame = await conn.queue.get()
            if isinstance(frame, int):
                await conn.ws.close(code=frame)
                return
            await conn.ws.send_str(frame)

    def _on_frame(self, conn: GatewayConnection, frame: Mapping[str, Any]) -> None:
        fake = self.fake
        op, d = frame.get("op"), frame.get("d")
        if op == 1:
            conn.send({"op": 11})
        elif op == 2:
            self.identify_payloads.append(d)
            if d.get("token") != fake.token:
                conn.close(4004)  # Authentication failed: discord.py raises, does not reconnect
                return
            shard_id, count = (int(x) for x in d.get("shard") or (0, 1))
            if not 0 <= shard_id < count:
                conn.close(4010)  # Invalid shard
                return
            conn.shard = (shard_id, count)
            conn.session_id = secrets.token_hex(16)
            self._sessions[conn.session_id] = conn.shard
            conn.identified = True
            guilds = [g for g in fake.guilds.values() if conn.receives(g.id)]
            conn.dispatch(
                "READY",
                {
                    "v": 10,
                    "user": fake._bot_user_payload(),
                    "guilds": [{"id": str(g.id), "unavailable": True} for g in guilds],
                    "session_id": conn.session_id,
                    "resume_gateway_url": fake.gateway_url,
                    # discord.py's AutoShardedConnectionState.parse_ready reads data["shard"][0].
                    "shard": [shard_id, count],
                    "application": {"id": str(fake.app_id), "flags": 0},
                    "private_channels": [],
                    "relationships": [],
                },
            )
            for guild in guilds:
                conn.dispatch("GUILD_CREATE", fake._guild_payload(guild))
            fake._changed()
        elif op == 6:
            if d.get("token") != fake.token or d.get("session_id") not in self._sessions:
                conn.send({"op": 9, "d": False})
                return
            conn.session_id, conn.seq, conn.identified = d["session_id"], int(d.get("seq") or 0), True
            conn.shard = self._sessions[conn.session_id]
            # An object, not null: discord.py stores "__shard_id__" into it (types say Literal[None]).
            conn.dispatch("RESUMED", {"_trace": ["fake-discord"]})
            self.resumes += 1
            fake._changed()
        elif op == 8:
            guild = fake.guilds.get(int(d.get("guild_id") or 0))
            if guild is None:
                return
            members = [fake._member_payload(uid, guild) for uid in guild.members]
            conn.dispatch(
                "GUILD_MEMBERS_CHUNK",
                {
                    "guild_id": str(guild.id),
                    "members": members,
                    "chunk_index": 0,
                    "chunk_count": 1,
                    "nonce": d.get("nonce"),
                },
            )
        # op 3 (presence), 4 (voice state) and the rest need no answer from a fake.
