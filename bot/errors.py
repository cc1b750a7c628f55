"""The errors a user can cause or meet. Each carries a message that is safe to show as it is.

Every face (slash command, CLI) prints ``user_message``; nothing else about an exception is shown.
``charged`` is False for every error here: a job that ends in one of them costs nothing.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import UTC, datetime, timedelta


class UserError(Exception):
    """A failure the user is told about in plain words (never a traceback, never a secret)."""

    code = "error"
    field: str | None = None  # the input the error is about, by its canonical name (see ValidationError)

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.user_message = message

    def render(self, spell: Callable[[str], str] | None = None) -> str:
        """The message as a face shows it; ``spell`` turns a canonical field name into the face's
        word for that input (the CLI's ``--usd``, Discord's option ``usd``)."""
        return self.user_message


class ValidationError(UserError):
    """The request breaks a rule: unknown model, wrong image count, a value out of range.

    With ``field`` (the canonical name of the input: "usd", "images", "guild", "aspect_ratio"),
    ``message`` is what is wrong with it ("must be at most ...") and the field's name goes in
    front: ``user_message`` reads "usd must be at most ...", and each face renders the name its
    own way with ``render`` (the CLI as ``--usd``, Discord as the option ``usd``).
    """

    code = "invalid_request"

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(f"{field} {message}" if field else message)
        self.field = field
        self.detail = message

    def render(self, spell: Callable[[str], str] | None = None) -> str:
        if self.field is None or spell is None:
            return self.user_message
        return f"{spell(self.field)} {self.detail}"


class InputImageError(UserError):
    """An input image is not an image, is too large, is corrupt, or is a decompression bomb."""

    code = "bad_image"


class ConfigError(UserError):
    """A setting has a bad value. The message names the setting, never its value when secret."""

    code = "config"


class QuotaExceeded(UserError):
    """Nothing (free quota, team budget, guild budget, user cap) can pay for the job."""

    code = "quota_exceeded"


class RateLimited(UserError):
    """The member reached a rate limit: the job was not recorded, nothing was charged. ``lead`` says
    which limit; ``retry_at`` (to the second, rounded up) is when their next job is allowed."""

    code = "rate_limited"

    def __init__(self, lead: str, retry_at: datetime, now: datetime) -> None:
        self.lead = lead
        late = retry_at.astimezone(UTC)
        self.retry_at = late.replace(microsecond=0) + (
            timedelta(seconds=1) if late.microsecond else timedelta()
        )
        self.retry_after_s = max(1, math.ceil((self.retry_at - now).total_seconds()))
        super().__init__(self.saying(lambda at: f"at {self.retry_iso} (in {self.retry_after_s} s)"))

    @property
    def retry_iso(self) -> str:
        return self.retry_at.strftime("%Y-%m-%dT%H:%M:%SZ")

    def saying(self, when: Callable[[datetime], str]) -> str:
        """The message with the moment in a face's own words (Discord: a relative timestamp)."""
        return f"{self.lead} Your next job is allowed {when(self.retry_at)}; nothing was charged."

    def json_fields(self) -> dict[str, object]:
        return {"retry_at": self.retry_iso, "retry_after_s": self.retry_after_s}


class NoRouteError(UserError):
    """No enabled provider serves the model with the requested parameters."""

    code = "no_route"


class NotFound(UserError):
    """What was asked for does not exist (a job id, here or in this server)."""

    code = "not_found"


class StorageProblem(UserError):
    """The database cannot be used as it is: busy, full, unreachable, newer than this release."""

    code = "storage"
