"""What the fake stores and answers with: Discord constants, the error shape, the JSON response,
and the records tests read (``SentFile``, ``RestCall``, ``FakeMessage``, ``InteractionRecord``)."""

from __future__ import annotations

import base64
import json
import math
import re
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from aiohttp import web

if TYPE_CHECKING:
    from tests.fake_discord.fake import FakeDiscord

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

    def __init__(
        self,
        status: int,
        code: int,
        message: str,
        errors: dict | None = None,
        *,
        extra: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(f"{status} {code} {message}")
        self.status, self.code, self.message, self.errors = status, code, message, errors
        self.extra, self.headers = extra or {}, headers or {}

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"message": self.message, "code": self.code, **self.extra}
        if self.errors:
            body["errors"] = self.errors
        return body


def rate_limited(
    retry_after: float, *, is_global: bool = False, bucket: str = "fake-bucket"
) -> FakeDiscordError:
    """A 429 as Discord sends it. discord.py retries a 429 only when it carries a ``Via`` header (its
    sign that Discord, not Cloudflare, answered) and a JSON body with ``retry_after`` (seconds)."""
    headers = {
        "Via": "1.1 google",
        "Retry-After": str(max(1, math.ceil(retry_after))),
        "X-RateLimit-Limit": "5",
        "X-RateLimit-Remaining": "0",
        "X-RateLimit-Reset-After": f"{retry_after:.3f}",
        "X-RateLimit-Bucket": bucket,
        "X-RateLimit-Scope": "global" if is_global else "user",
    }
    if is_global:
        headers["X-RateLimit-Global"] = "true"
    return FakeDiscordError(
        429,
        0,
        "You are being rate limited.",
        extra={"retry_after": retry_after, "global": is_global},
        headers=headers,
    )


def json_response(data: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> web.Response:
    # Exactly "application/json": discord.py's json_or_text treats anything else (charset!) as text.
    return web.Response(
        status=status,
        body=json.dumps(data).encode(),
        headers={**(headers or {}), "Content-Type": "application/json"},
    )


class RateMeter:
    """Events per sliding window (``window`` seconds): ``peak`` is the most seen in any window."""

    def __init__(self, window: float = 1.0) -> None:
        self.window = window
        self.count = 0
        self.peak = 0
        self._recent: deque[float] = deque()

    def hit(self, at: float) -> None:
        self.count += 1
        self._recent.append(at)
        while self._recent and self._recent[0] <= at - self.window:
            self._recent.popleft()
        self.peak = max(self.peak, len(self._recent))


def peak_rate(times: Iterable[float], window: float = 1.0) -> int:
    """The most events inside any ``window``-second sliding window (times in any order)."""
    meter = RateMeter(window)
    for at in sorted(times):
        meter.hit(at)
    return meter.peak


def now_iso() -> str:
    return datetime.now(UTC).isoformat()


def walk_components(components: Iterable[Mapping[str, Any]]) -> Iterable[Mapping[str, Any]]:
    for comp in components:
        yield comp
        yield from walk_components(comp.get("components", ()))
        for key in ("component", "accessory"):
            if isinstance(comp.get(key), Mapping):
                yield from walk_components([comp[key]])


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
    at: float = 0.0  # the fake's clock when the request arrived

    def to_json(self) -> dict[str, Any]:
        files = [{"filename": f.filename, "size": len(f.data)} for f in self.files]
        return {
            **{k: getattr(self, k) for k in ("method", "path", "query", "json", "status", "error", "at")},
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
    edit_times: list[float] = field(default_factory=list)  # the fake's clock at each edit
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
        return [c["custom_id"] for c in walk_components(self.components) if "custom_id" in c]

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
            "edit_times": self.edit_times,
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
    guild_id: int | None = None  # None for a DM
    shards: list[int] = field(default_factory=list)  # shard ids of the sessions it was sent to
    expires_at: float = math.inf  # on the fake's clock (``FakeDiscord.now``)

    @property
    def expired(self) -> bool:
        """Past the token's lifetime (or ``expire_token``): webhook calls answer 401/50027."""
        return self.fake.now() >= self.expires_at

    @property
    def shard(self) -> int | None:
        """The shard that received the INTERACTION_CREATE (the first, if sessions overlapped)."""
        return self.shards[0] if self.shards else None

    @property
    def edits(self) -> int:
        """Edits to the messages this interaction answered with (original and follow-ups)."""
        return sum(m.edits for m in ([self.original] if self.original else []) + self.followups)

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
            "guild_id": None if self.guild_id is None else str(self.guild_id),
            "shards": self.shards,
            "edits": self.edits,
        }
