"""Whether this process can do its job, for GET /healthz (bot/http_server.py).

The database must answer; a process that serves Discord (``kontext-bot run``) must also have its
gateway connected. bot/client.py reports the gateway here (so nothing else needs discord); a
process without a gateway never sets it, and only the database counts for it.
"""

from __future__ import annotations

import asyncio
import logging

from storage import Database, schema_version

log = logging.getLogger(__name__)

DB_TIMEOUT = 2.0  # seconds the database gets to answer a health check


class Health:
    def __init__(self) -> None:
        self.gateway: bool | None = None  # None: no gateway in this process; False: not connected

    def expect_gateway(self) -> None:
        """This process serves Discord: healthy only while connected (not yet, at first)."""
        if self.gateway is None:
            self.gateway = False

    def gateway_connected(self, connected: bool) -> None:
        if self.gateway is None:  # a process without a gateway: only the database counts
            return
        if self.gateway != connected:
            log.info("Discord gateway %s", "connected" if connected else "disconnected")
        self.gateway = connected

    async def problem(self, db: Database) -> str | None:
        """None when healthy, else one line saying what is wrong."""
        if self.gateway is False:
            return "the Discord gateway is not connected"
        try:
            await asyncio.wait_for(schema_version(db), DB_TIMEOUT)
        except TimeoutError:
            return f"the database did not answer within {DB_TIMEOUT:g} s"
        except Exception as exc:  # closed, unreachable, refused: the kind is enough (no URL, no secret)
            return f"the database is unreachable ({type(exc).__name__})"
        return None
