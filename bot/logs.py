"""Logging set-up shared by the CLI and the bot: one format, and secrets scrubbed from every line.

Adapters already keep keys out of their messages; this filter is the second lock, for text we do not
control (a library's exception, a provider echoing a header back).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from bot.redact import scrub


class SecretFilter(logging.Filter):
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


def setup_logging(verbose: bool, secrets: Sequence[str] = ()) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(SecretFilter(secrets))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO if verbose else logging.WARNING)
