"""One redaction rule for every text the bot writes: log lines, error messages, provider text.

Secrets (the Discord token, provider keys) are replaced wherever they appear, by one marker, so a
reader of a log and a member reading an error see the same thing. Values shorter than
``MIN_SECRET_LENGTH`` are never treated as secrets: they would match ordinary text everywhere.
"""

from __future__ import annotations

from collections.abc import Iterable

REDACTED = "[redacted]"
MIN_SECRET_LENGTH = 4


def scrub(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every secret in ``secrets`` replaced by REDACTED."""
    for secret in secrets:
        if secret and len(secret) >= MIN_SECRET_LENGTH:
            text = text.replace(secret, REDACTED)
    return text
