"""Logging set-up shared by the CLI and the bot: the level and format (KONTEXT_LOG_LEVEL,
KONTEXT_LOG_FORMAT), the job a line is about, and secrets scrubbed from every line.

Adapters already keep keys out of their messages; the formatters are the second lock, for text we do
not control (a library's exception, a provider echoing a header back). Both formats go through the
one rule of bot/redact.py, applied to the whole line (message, traceback and every field).

The job a line is about comes from ``job_context``: the worker sets it while it runs a job, so every
line logged on the way (execution, the provider client, the presenter) carries ``job_id``,
``guild_id`` and ``user_id`` without each call naming them; ``extra={"job_id": ...}`` overrides it.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator, Sequence
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

from bot.redact import scrub

LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
FORMATS = ("text", "json")
CONTEXT_FIELDS = ("job_id", "guild_id", "user_id")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

_job: ContextVar[dict[str, Any] | None] = ContextVar("kontext_job", default=None)


@contextlib.contextmanager
def job_context(job_id: str, guild_id: int | None = None, user_id: int | None = None) -> Iterator[None]:
    """Every line logged inside (and in tasks started inside) is about this job. A guild of 0 is no
    guild (the CLI, DMs); a user of None is the operator."""
    fields = {"job_id": job_id, "guild_id": guild_id or None, "user_id": user_id}
    token = _job.set({k: v for k, v in fields.items() if v is not None})
    try:
        yield
    finally:
        _job.reset(token)


def context_of(record: logging.LogRecord) -> dict[str, Any]:
    """The job fields of a record: ``extra=`` first, else the job being run."""
    found = dict(_job.get() or {})
    for name in CONTEXT_FIELDS:
        value = getattr(record, name, None)
        if value is not None:
            found[name] = value
    return {name: found[name] for name in CONTEXT_FIELDS if name in found}


class SecretFilter(logging.Filter):
    """Scrubs a record in place (for handlers that do not use the formatters below)."""

    def __init__(self, secrets: Sequence[str]) -> None:
        super().__init__()
        self._secrets = tuple(s for s in secrets if s)

    def filter(self, record: logging.LogRecord) -> bool:
        if not self._secrets:
            return True
        text = record.getMessage()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        scrubbed = scrub(text, self._secrets)
        exc_text = scrub(record.exc_text, self._secrets) if record.exc_text else record.exc_text
        if scrubbed != text or exc_text != record.exc_text:
            record.msg, record.args, record.exc_text = scrubbed, None, exc_text
        return True


class TextFormatter(logging.Formatter):
    """``time LEVEL logger: message [job=... guild=... user=...]``, scrubbed."""

    def __init__(self, secrets: Sequence[str] = ()) -> None:
        super().__init__(TEXT_FORMAT)
        self._secrets = tuple(secrets)

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        context = context_of(record)
        if context:
            tags = " ".join(f"{k.removesuffix('_id')}={v}" for k, v in context.items())
            first, nl, rest = line.partition("\n")  # before a traceback, on the message's line
            line = f"{first} [{tags}]{nl}{rest}"
        return scrub(line, self._secrets)


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time (UTC, ISO 8601), level, logger, message, the job fields where
    known, and ``exc`` (the traceback) when there is one. Every string is scrubbed before encoding,
    so a secret is caught however JSON would escape it."""

    def __init__(self, secrets: Sequence[str] = ()) -> None:
        super().__init__()
        self._secrets = tuple(secrets)

    def format(self, record: logging.LogRecord) -> str:
        obj: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            **context_of(record),
        }
        if record.exc_info:
            obj["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            obj["exc"] = record.exc_text
        if record.stack_info:
            obj["stack"] = self.formatStack(record.stack_info)
        return json.dumps({k: scrub(v, self._secrets) if isinstance(v, str) else v for k, v in obj.items()})


def level_of(name: str) -> int:
    return logging.getLevelName(name)  # one of LEVELS: checked by bot.config


def setup_logging(level: str = "WARNING", fmt: str = "text", secrets: Sequence[str] = ()) -> None:
    """Every line to stderr at ``level`` and above, as ``fmt`` (text or json), secrets scrubbed."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter(secrets) if fmt == "json" else TextFormatter(secrets))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level_of(level))
