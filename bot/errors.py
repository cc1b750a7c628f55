"""The errors a user can cause or meet. Each carries a message that is safe to show as it is.

Every face (slash command, CLI) prints ``user_message``; nothing else about an exception is shown.
``charged`` is False for every error here: a job that ends in one of them costs nothing.
"""

from __future__ import annotations


class UserError(Exception):
    """A failure the user is told about in plain words (never a traceback, never a secret)."""

    code = "error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.user_message = message


class ValidationError(UserError):
    """The request breaks a catalog rule: unknown model, wrong image count, parameter out of range."""

    code = "invalid_request"


class InputImageError(UserError):
    """An input image is not an image, is too large, is corrupt, or is a decompression bomb."""

    code = "bad_image"


class ConfigError(UserError):
    """A setting has a bad value. The message names the setting, never its value when secret."""

    code = "config"


class QuotaExceeded(UserError):
    """Nothing (free quota, team budget, guild budget, user cap) can pay for the job."""

    code = "quota_exceeded"


class NoRouteError(UserError):
    """No enabled provider serves the model with the requested parameters."""

    code = "no_route"


class NotFound(UserError):
    """What was asked for does not exist (a job id, here or in this server)."""

    code = "not_found"


class StorageProblem(UserError):
    """The database cannot be used as it is: busy, full, unreachable, newer than this release."""

    code = "storage"
