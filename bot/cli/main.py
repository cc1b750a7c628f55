"""``main``: parse, load the settings, call the command's handler, and turn every failure into one
line on stderr (plus the JSON failure object under ``--json``) and the exit status the README
promises: 0 done, 1 the job or operation failed, 2 bad usage or configuration."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence

from bot.cli.common import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    exit_status,
    json_failure,
    message,
    print_json,
    say_error,
)
from bot.cli.parser import BadUsage, build_parser, wants_json
from bot.config import Settings, load_settings
from bot.errors import UserError
from bot.gc_tuning import tune_gc
from bot.logs import setup_logging

log = logging.getLogger(__name__)

# Long-running processes log at INFO unless KONTEXT_LOG_LEVEL says otherwise; one-shot commands keep
# stderr for their one error line (scripts read it) and log WARNING and up, INFO with --verbose.
SERVICES = ("run", "worker")


def log_level(args: argparse.Namespace, settings: Settings) -> str:
    level = settings.log_level or ("INFO" if args.command in SERVICES else "WARNING")
    if args.verbose and level in ("WARNING", "ERROR"):
        return "INFO"
    return level


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    as_json = wants_json(argv)
    try:
        args = build_parser().parse_args(argv)
    except BadUsage as exc:
        exc.parser.print_usage(sys.stderr)
        say_error(exc.message)
        if as_json:
            print_json(json_failure(exc, exc.message))
        return EXIT_USAGE
    try:
        settings = load_settings()
        setup_logging(log_level(args, settings), settings.log_format, settings.secrets())
        tune_gc()  # start-up is done: what exists now lives as long as the process (bot/gc_tuning.py)
        return asyncio.run(args.handler(args, settings))
    except UserError as exc:
        text = message(exc)
        say_error(text)
        if as_json:
            print_json(json_failure(exc, text))
        return exit_status(exc)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except Exception as exc:
        # A fault of ours: one line (no exception text, which could carry what it should not), the
        # traceback in the log (secrets scrubbed) with --verbose.
        text = f"internal error ({type(exc).__name__}); run with --verbose for the traceback."
        if args.verbose:
            log.error("internal error", exc_info=exc)
        say_error(text)
        if as_json:
            print_json(json_failure(exc, text, code="internal"))
        return EXIT_FAILED
