"""What every command shares: exit statuses, how errors and fields are shown, the JSON failure object,
and opening the services for a command that only reads.

Output for people goes to stdout, errors to stderr as one line starting ``kontext-bot:``. With
``--json`` (or ``usage --format json``) stdout carries exactly one JSON object, on failure too.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bot.errors import (
    ConfigError,
    InputImageError,
    NoRouteError,
    QuotaExceeded,
    RateLimited,
    UserError,
    ValidationError,
)

if TYPE_CHECKING:
    from bot.config import Settings
    from bot.services import Services

# Every command is one of these: it gets the parsed command line and the settings and returns the
# exit status (raising UserError for anything the user should read).
Handler = Callable[[argparse.Namespace, "Settings"], Awaitable[int]]

EXIT_OK = 0
EXIT_FAILED = 1  # the job or operation was tried and failed, or was refused
EXIT_USAGE = 2  # the command as typed cannot work: a bad flag or value, a bad setting
EXIT_INTERRUPTED = 130

PROG = "kontext-bot"
# Canonical field names the command line takes as positional arguments rather than --flags.
POSITIONALS = {"path": "PATH", "job_id": "JOB_ID", "source": "SOURCE", "target": "TARGET"}


class UsageError(UserError):
    """The command line cannot work as typed (a --out folder that cannot be written, ...): exit 2."""

    code = "usage"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        if code:
            self.code = code


def spell(field: str) -> str:
    """A canonical field name as the command line spells it: ``usd`` -> ``--usd``."""
    return POSITIONALS.get(field, "--" + field.replace("_", "-"))


def message(exc: UserError) -> str:
    return exc.render(spell)


def exit_status(exc: BaseException) -> int:
    """2 for what the command line or the settings got wrong; 1 for what was tried and failed."""
    if isinstance(exc, (ConfigError, ValidationError, NoRouteError, UsageError)):
        return EXIT_USAGE
    return EXIT_FAILED


def failure_status(exc: BaseException) -> str:
    """``status`` of the JSON failure object: "refused" (a rule turned the request down: a value out
    of range, nothing to pay with, an unwritable --out, a content refusal), "failed" (it was tried and
    did not succeed) or "error" (it never became a request: a command line that does not parse, a bad
    setting, or a fault of ours)."""
    recorded = getattr(exc, "status", None)  # JobFailed: the status the job was recorded with
    if isinstance(recorded, str) and recorded:
        return recorded
    if isinstance(exc, ConfigError) or not isinstance(exc, UserError):
        return "error"
    if isinstance(
        exc, (ValidationError, NoRouteError, QuotaExceeded, RateLimited, InputImageError, UsageError)
    ):
        return "refused"
    return "failed"


def say_error(text: str) -> None:
    print(f"{PROG}: {text}", file=sys.stderr)


def print_json(obj: Any) -> None:
    print(json.dumps(obj))


def json_failure(exc: BaseException, text: str, code: str | None = None) -> dict[str, Any]:
    """The one JSON object a failing ``--json`` command prints: status, error (the same one line
    as on stderr), code, job_id when a job was recorded, and retry_at / retry_after_s when a rate
    limit refused it."""
    failure: dict[str, Any] = {
        "status": failure_status(exc),
        "error": text,
        "code": code or getattr(exc, "code", "error"),
    }
    job_id = getattr(exc, "job_id", None)
    if job_id:
        failure["job_id"] = job_id
    if isinstance(exc, RateLimited):
        failure.update(exc.json_fields())  # retry_at, retry_after_s
    return failure


# --- read-only commands --------------------------------------------------------------------------


def database_missing(settings: Settings) -> bool:
    """True when the configured SQLite file does not exist yet (a PostgreSQL database is the
    server's to have). Read-only commands (quota, usage, db check) must not create it; they then
    open it with ``create_db=False``, so a file removed meanwhile is an error, never a new one."""
    target = settings.db_target
    return target.dialect == "sqlite" and not target.path.exists()


@asynccontextmanager
async def services_for_reading(settings: Settings) -> AsyncIterator[tuple[Services, bool]]:
    """``(services, missing)``. When the database does not exist yet, the services run over an
    empty one in a temporary folder (removed afterwards): the answer is that of a fresh install,
    the same shape scripts parse, and nothing is created where KONTEXT_DB points."""
    from bot.services import open_services

    if not database_missing(settings):
        async with open_services(settings, create_db=False) as svc:
            yield svc, False
        return
    with tempfile.TemporaryDirectory(prefix="kontext-empty-") as tmp:
        async with open_services(replace(settings, db_path=str(Path(tmp) / "empty.db"))) as svc:
            yield svc, True
