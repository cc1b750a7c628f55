"""Where the database is: a SQLite path or a PostgreSQL URL, and how to show it without its password.

``KONTEXT_DB`` (and ``db copy``'s arguments) are either a URL -- ``postgresql://`` or
``postgres://`` selects PostgreSQL, any other ``scheme://`` is refused -- or else a SQLite path, as
they always were. A URL's password is a secret: every message, log line and ``repr`` uses
``label``, where it reads ``[redacted]``, and ``scrub`` removes it from text we do not control
(a driver's exception).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

from storage.errors import UnsupportedTarget

POSTGRES_SCHEMES = ("postgresql", "postgres")
REDACTED = "[redacted]"  # the same word bot/logs.py puts in place of a secret
_URL = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")


@dataclass(frozen=True)
class Target:
    dialect: str  # "sqlite" | "postgres"
    value: str = field(repr=False)  # the path, or the whole URL (password included)
    label: str  # for people and logs: the path, or the URL with its password redacted
    secrets: tuple[str, ...] = field(default=(), repr=False)  # the password, as written and decoded

    @property
    def path(self) -> Path:
        assert self.dialect == "sqlite"
        return Path(self.value)

    def scrub(self, text: str) -> str:
        """``text`` with the URL and the password replaced (for a driver's error message)."""
        if self.dialect == "postgres":
            text = text.replace(self.value, self.label)
        for secret in self.secrets:
            text = text.replace(secret, REDACTED)
        return text


def is_url(text: str) -> bool:
    return bool(_URL.match(text))


def parse_target(target: str | Path | Target) -> Target:
    """A Target from a path or URL. Raises UnsupportedTarget for a URL of another scheme."""
    if isinstance(target, Target):
        return target
    if isinstance(target, Path):
        return Target("sqlite", str(target), str(target))
    text = target.strip()
    match = _URL.match(text)
    if match is None:
        return Target("sqlite", text, text)
    scheme = match.group(1).lower()
    if scheme not in POSTGRES_SCHEMES:
        raise UnsupportedTarget(scheme)
    label, secrets = _redact(text)
    return Target("postgres", text, label, secrets)


def _redact(url: str) -> tuple[str, tuple[str, ...]]:
    parts = urlsplit(url)
    secrets: list[str] = []
    netloc = parts.netloc
    userinfo, at, host = netloc.rpartition("@")
    if at and ":" in userinfo:
        user, _, password = userinfo.partition(":")
        secrets += [password, unquote(password)]
        netloc = f"{user}:{REDACTED}@{host}"
    query = parse_qsl(parts.query, keep_blank_values=True)
    if any(k == "password" for k, _ in query):
        secrets += [v for k, v in query if k == "password"]
        query = [(k, REDACTED if k == "password" else v) for k, v in query]
    label = urlunsplit((parts.scheme, netloc, parts.path, urlencode(query, safe="[]"), parts.fragment))
    # Longest first, so a password containing a shorter one is replaced whole.
    return label, tuple(sorted({s for s in secrets if s}, key=len, reverse=True))


def redact(target: str | Path) -> str:
    """The label of a path or URL (a URL of an unsupported scheme is shown without its userinfo)."""
    try:
        return parse_target(target).label
    except UnsupportedTarget:
        parts = urlsplit(str(target))
        return urlunsplit((parts.scheme, parts.hostname or "", parts.path, "", ""))
