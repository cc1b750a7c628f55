"""Small helpers the adapters share for reading provider answers safely.

Provider text ends up in user-facing messages and logs, so it is cut short, stripped of control
characters and scrubbed of the adapter's own key before use (a proxy or a buggy provider may echo
request headers back in an error body).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any, Self

from bot.config import ProviderSettings
from bot.providers.base import BadResponse, OutputRef
from bot.redact import scrub

MAX_TEXT = 200
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")
# Words providers use when a safety filter, not a fault, stopped the task.
_MODERATION = re.compile(
    r"moderat|nsfw|sensitive|safety|unsafe|content[ _-]?polic|inappropriate|flagged|prohibited|"
    r"violat|censor|not allowed content",
    re.IGNORECASE,
)


def safe_text(value: Any, secrets: Iterable[str] = (), limit: int = MAX_TEXT) -> str:
    """Provider-supplied text fit for a message: a string, one line, short, without secrets."""
    if value is None:
        return ""
    text = value if isinstance(value, str) else str(value)
    text = scrub(_CONTROL.sub(" ", text), secrets).strip()
    return text if len(text) <= limit else text[: limit - 3] + "..."


def looks_like_moderation(*texts: Any) -> bool:
    return any(isinstance(t, str) and _MODERATION.search(t) for t in texts)


def require_dict(provider: str, value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise BadResponse(f"{provider} sent an unexpected {what}.", provider=provider)
    return value


def error_parts(body: Any) -> tuple[Any, str]:
    """(code, message) from the shapes providers use: {"error": {code, message}},
    {"error": {code, error_message}} (Vtrix's client), {"error": "text"}, {"code", "message"}, or a
    bare string body. Missing parts come back as None / ""."""
    if isinstance(body, str):
        return None, body
    if not isinstance(body, Mapping):
        return None, ""
    err = body.get("error")
    if isinstance(err, Mapping):
        message = err.get("error_message") or err.get("message") or ""
        return err.get("code") or err.get("type"), str(message)
    if isinstance(err, str) and err:
        return body.get("code"), err
    return body.get("code"), str(body.get("message") or body.get("msg") or "")


def ref_from_text(text: str, nsfw: bool = False) -> OutputRef:
    """An output given as one string: an http(s) link, or base64 (with or without a data: prefix)."""
    stripped = text.strip()
    if stripped.startswith(("http://", "https://")):
        return OutputRef(url=stripped, nsfw=nsfw)
    return OutputRef(b64=stripped, nsfw=nsfw)


def progress_fraction(value: Any) -> float | None:
    """0..1 from a provider's progress, which may be a fraction or a percentage."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    fraction = value / 100 if value > 1 else value
    return min(max(float(fraction), 0.0), 1.0)


def optional_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    return None


def cost_text(value: Any) -> str | None:
    """A reported charge kept as decimal text (money is never a float here)."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        return repr(value) if isinstance(value, float) else str(value)
    if isinstance(value, str) and re.fullmatch(r"\s*\d+(\.\d+)?\s*", value):
        return value.strip()
    return None


class BearerKeyAdapter:
    """What every adapter here shares: a bearer key, a base URL, explicit timeouts, and a repr
    that never shows the key. Subclasses set ``name`` and ``label`` and do the translating."""

    name = ""
    label = ""

    def __init__(
        self,
        api_key: str,
        base_url: str,
        *,
        connect_timeout: float = 10.0,
        read_timeout: float = 120.0,
        poll_interval: float = 3.0,
    ) -> None:
        self._api_key = api_key
        self.base_url = base_url.rstrip("/")
        self.connect_timeout = connect_timeout
        # A synchronous API answers only when the images exist: the read timeout covers a generation.
        self.read_timeout = read_timeout
        self.poll_interval = poll_interval

    @classmethod
    def from_settings(cls, s: ProviderSettings) -> Self:
        return cls(
            s.api_key,
            s.base_url,
            connect_timeout=s.connect_timeout,
            read_timeout=s.read_timeout,
            poll_interval=s.poll_interval,
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}(base_url={self.base_url!r})"

    def auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._api_key}"}
