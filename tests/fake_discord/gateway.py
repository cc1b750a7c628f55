"""The fake gateway: one websocket per client session, HELLO / IDENTIFY / READY / RESUME, heartbeats,
and the dispatch of events to the identified sessions, each frame in the order it was queued."""

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


@dataclass(eq=False)
class GatewayConnection:
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


class Gateway:
    """Serves ``/gateway`` for the fake; ``identify_payloads`` and ``resumes`` record what clients did."""

    def __init__(self, fake: FakeDiscord) -> None:
        self.fake = fake
        self.identify_payloads: list[dict[str, Any]] = []
        self.resumes = 0
        self._conns: set[GatewayConnection] = set()
        self._sessions: set[str] = set()
        self._tasks: set[asyncio.Task[Any]] = set()

    @property
    def sessions(self) -> int:
        """Open gateway connections that identified or resumed (1 for a healthy client)."""
        return sum(c.identified for c in self._conns)

    def dispatch(self, event: str, data: Any) -> None:
        for conn in self._conns:
            if conn.identified:
                conn.dispatch(event, data)

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
            conn.session_id = secrets.token_hex(16)
            self._sessions.add(conn.session_id)
            conn.identified = True
            app = {"id": str(fake.app_id), "flags": 0}
            conn.dispatch(
                "READY",
                {
                    "v": 10,
                    "user": fake._bot_user_payload(),
                    "guilds": [{"id": str(fake.guild_id), "unavailable": True}],
                    "session_id": conn.session_id,
                    "resume_gateway_url": fake.gateway_url,
                    "shard": d.get("shard", [0, 1]),
                    "application": app,
                    "private_channels": [],
                    "relationships": [],
                },
            )
            conn.dispatch("GUILD_CREATE", fake._guild_payload())
            fake._changed()
        elif op == 6:
            if d.get("token") != fake.token or d.get("session_id") not in self._sessions:
                conn.send({"op": 9, "d": False})
                return
            conn.session_id, conn.seq, conn.identified = d["session_id"], int(d.get("seq") or 0), True
            # An object, not null: discord.py stores "__shard_id__" into it (types say Literal[None]).
            conn.dispatch("RESUMED", {"_trace": ["fake-discord"]})
            self.resumes += 1
            fake._changed()
        elif op == 8:
            members = [fake._member_payload(uid) for uid in fake._members]
            conn.dispatch(
                "GUILD_MEMBERS_CHUNK",
                {
                    "guild_id": str(fake.guild_id),
                    "members": members,
                    "chunk_index": 0,
                    "chunk_count": 1,
                    "nonce": d.get("nonce"),
                },
            )
        # op 3 (presence), 4 (voice state) and the rest need no answer from a fake.
