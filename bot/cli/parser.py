"""The command line's grammar: every command, flag and help text, in one place.

The names here are a contract (README "The command line"): add, never rename. Each command's
parser sets ``handler`` (an async function ``(args, settings) -> exit status`` from a module beside
this one); bot/cli/main.py calls it.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from importlib import metadata
from typing import Any, NoReturn

from bot.checks import MAX_ID, PERIODS
from bot.cli import accounts, database, jobs, rates, serve
from bot.cli import alerts as cli_alerts
from bot.cli.common import PROG

DESCRIPTION = """\
kontext-bot: a Discord bot that edits, combines and creates images with FLUX.1 Kontext and
friends, charging each member's free quota first and the team's or server's budget after.
This command starts the bot, registers its slash commands, runs image jobs from the terminal,
and manages quotas, budgets and the database (KONTEXT_DB: SQLite by default, or PostgreSQL).

commonly used:
  kontext-bot sync --guild ID              register the slash commands in one server (instant)
  kontext-bot run                          start the bot (needs DISCORD_TOKEN)
  kontext-bot run --no-worker / worker     the gateway and the job runners as separate processes
  kontext-bot generate --model M --prompt TEXT [--image FILE] [--out DIR]
                                           one job from the terminal (free sandbox without keys)
  kontext-bot models                       models, providers, prices and free quotas
  kontext-bot quota --user ID --guild ID   what a member has left
  kontext-bot usage --guild ID --by team   who spent what
  kontext-bot admin budget --guild ID --usd 25
                                           the server's monthly budget for paid images
  kontext-bot db backup DIR                a consistent copy, safe while the bot runs
  kontext-bot db copy SOURCE TARGET        move a server, e.g. SQLite -> postgresql://...
"""

EPILOG = """\
Settings come from the environment: DISCORD_TOKEN, KONTEXT_DB, KONTEXT_CONFIG and
<PROVIDER>_API_KEY (MODELVERSE, WAVESPEED, VTRIX); see the README.
Exit status: 0 done, 1 the job or operation failed, 2 bad usage or configuration.
Run `kontext-bot COMMAND --help` for a command's options.
"""


ROLE_HELP = "as a member holding this role: its team, free allowance and rate limit (repeatable)"
ROLE_FREE_HELP = "for members holding this role, in place of the server's ('off' removes the role's own)"


class BadUsage(Exception):
    """The command line does not parse; main() shows ``parser``'s usage and the message (exit 2)."""

    code = "usage"

    def __init__(self, parser: argparse.ArgumentParser, message: str) -> None:
        super().__init__(message)
        self.parser = parser
        self.message = message


class Parser(argparse.ArgumentParser):
    """argparse, raising BadUsage instead of exiting, so main() prints the JSON failure object too."""

    def error(self, message: str) -> NoReturn:
        raise BadUsage(self, message)


def version() -> str:
    try:
        return metadata.version("kontext-bot")
    except metadata.PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown"


def discord_id(text: str) -> int:
    """A Discord id (snowflake): a positive whole number the database can hold."""
    try:
        number = int(text)
    except ValueError:
        number = 0
    if not 0 < number <= MAX_ID:
        raise argparse.ArgumentTypeError(f"must be a Discord id (a positive whole number), not {text!r}")
    return number


def _sub(sub: Any, name: str, help: str, handler: Any | None, description: str | None = None) -> Parser:
    p = sub.add_parser(name, help=help, description=description or help[:1].upper() + help[1:] + ".")
    if handler is not None:
        p.set_defaults(handler=handler)
    return p


def _json_flag(p: argparse.ArgumentParser, what: str = "the result") -> None:
    p.add_argument(
        "--json", action="store_true", help=f"print {what} as one JSON object (a failure too, with its code)"
    )


def _add_generate(sub: Any) -> None:
    p = _sub(
        sub,
        "generate",
        "run one image job from the terminal",
        jobs.generate,
        "Run one image job through the same queue, providers and books as a slash command. Without "
        "--user it runs as the local operator (recorded and costed, never limited by members' "
        "quotas); without provider keys it runs on the free local sandbox. Values a model does not "
        "take are refused before anything is sent; `kontext-bot models` lists what each one takes.",
    )
    p.add_argument("--model", required=True, help="model id, e.g. black-forest-labs/flux-kontext-pro")
    p.add_argument("--prompt", required=True, help="what to make, or how to change the input image")
    p.add_argument(
        "--image",
        action="append",
        default=[],
        metavar="PATH_OR_URL",
        help="an input image, a file or a public http(s) URL (repeat for multi-image models)",
    )
    p.add_argument(
        "--aspect-ratio", dest="aspect_ratio", metavar="W:H", help="shape of the result, e.g. 16:9"
    )
    p.add_argument("--seed", type=int, help="the same seed and settings repeat a result (default: random)")
    p.add_argument("--steps", type=int, help="inference steps, for models that take them")
    p.add_argument("--guidance", type=float, help="how closely to follow the prompt, for models that take it")
    p.add_argument("--negative-prompt", dest="negative_prompt", metavar="TEXT", help="what should not appear")
    p.add_argument("--strength", type=float, help="how much of the input image to keep, 0 to 1 (flux.1-dev)")
    p.add_argument("--size", metavar="WIDTHxHEIGHT", help="pixel size of the result (flux.1-dev)")
    p.add_argument("--n", type=int, metavar="COUNT", help="how many images to make (default 1)")
    p.add_argument(
        "--provider", metavar="NAME", help="use only this provider: modelverse, wavespeed, vtrix or sandbox"
    )
    p.add_argument(
        "--user",
        type=discord_id,
        metavar="ID",
        help="the Discord user to charge (default: the local operator)",
    )
    p.add_argument(
        "--guild", type=discord_id, metavar="ID", help="the Discord server whose quotas and budgets apply"
    )
    p.add_argument("--role", type=discord_id, action="append", default=[], metavar="ROLE_ID", help=ROLE_HELP)
    p.add_argument(
        "--out",
        default="out",
        metavar="DIR",
        help="folder for the images, made if needed and checked before the job starts (default: ./out)",
    )
    _json_flag(p, "the job (job_id, status, images, cost_usd, charged_to, ...)")


def _add_accounts(sub: Any) -> None:
    p = _sub(sub, "models", "list the models, their routes, prices and free quotas", jobs.models)
    _json_flag(p, "the catalog")
    p = _sub(
        sub,
        "quota",
        "a member's free images, spending and budgets left",
        accounts.quota,
        "What a member has left: free images per model, spending against the per-member cap, team and "
        "server budgets, and when each resets. Reads only; never creates the database.",
    )
    p.add_argument(
        "--user", type=discord_id, required=True, metavar="ID", help="the member's Discord user id"
    )
    p.add_argument(
        "--guild", type=discord_id, metavar="ID", help="the Discord server (its budgets and teams)"
    )
    p.add_argument("--role", type=discord_id, action="append", default=[], metavar="ROLE_ID", help=ROLE_HELP)
    _json_flag(p, "the quota")
    p = _sub(
        sub,
        "usage",
        "usage report by user, team, model or day",
        accounts.usage,
        "Jobs, images and cost, grouped. Reads only; never creates the database.",
    )
    p.add_argument("--guild", type=discord_id, metavar="ID", help="one Discord server (default: all)")
    p.add_argument("--since", metavar="YYYY-MM-DD", help="first day of the report, UTC (default: the start)")
    p.add_argument("--until", metavar="YYYY-MM-DD", help="last day of the report, inclusive (default: today)")
    p.add_argument(
        "--by",
        choices=("user", "team", "model", "day"),
        default="user",
        help="one row per ... (default: user)",
    )
    p.add_argument(
        "--format", choices=("table", "csv", "json"), default="table", help="output format (default: table)"
    )


def _add_admin(sub: Any) -> None:
    p = _sub(
        sub,
        "admin",
        "budgets, quotas, teams, caps, grants and refunds",
        None,
        "What /kontext-admin does, from the terminal. Every change is audited. Amounts are USD per "
        "period (at most 1,000,000); periods are calendar periods in UTC.",
    )
    admin = p.add_subparsers(dest="admin_command", required=True, metavar="SUBCOMMAND")

    def guild(q: argparse.ArgumentParser) -> None:
        q.add_argument("--guild", type=discord_id, required=True, metavar="ID", help="the Discord server")

    def period(q: argparse.ArgumentParser, what: str, choices: Sequence[str] = PERIODS) -> None:
        q.add_argument("--period", choices=choices, default="month", help=f"{what} (default: month)")

    q = _sub(admin, "budget", "set the server's budget for paid images", accounts.budget)
    guild(q)
    q.add_argument(
        "--usd", required=True, metavar="AMOUNT", help="USD per period, e.g. 25 or 12.50 (0: none)"
    )
    period(q, "when the budget starts over")
    q = _sub(admin, "free-quota", "free images per member for a model (or 'all')", accounts.free_quota)
    guild(q)
    q.add_argument("--model", required=True, help="a model id, or 'all' for every model without its own")
    q.add_argument("--images", type=int, required=True, metavar="N", help="free images per member per period")
    period(q, "when free images start over, or 'off' for none", (*PERIODS, "off"))
    q.add_argument("--role", type=discord_id, metavar="ROLE_ID", help=ROLE_FREE_HELP)
    q = _sub(admin, "team", "map a role to a team with its own budget", accounts.team)
    guild(q)
    q.add_argument(
        "--role", type=discord_id, required=True, metavar="ROLE_ID", help="the team's Discord role"
    )
    q.add_argument("--name", required=True, help="the team's name in reports (1 to 100 characters)")
    q.add_argument("--usd", required=True, metavar="AMOUNT", help="the team's USD per period (0 retires it)")
    period(q, "when the team's budget starts over")
    q = _sub(admin, "cap", "what one member may spend per period ('off' for no cap)", accounts.cap)
    guild(q)
    q.add_argument("--usd", required=True, metavar="AMOUNT", help="USD per member per period, or 'off'")
    period(q, "when members' spending starts over")
    q = _sub(admin, "grant", "extra free images for a member, this period", accounts.grant)
    guild(q)
    q.add_argument(
        "--user", type=discord_id, required=True, metavar="ID", help="the member's Discord user id"
    )
    q.add_argument("--model", required=True, help="the model the images are for")
    q.add_argument("--images", type=int, required=True, metavar="N", help="how many (1 to 10,000)")
    q = _sub(admin, "refund", "give a job's charge back (an unfinished job is cancelled)", accounts.refund)
    q.add_argument("job_id", metavar="JOB_ID", help="the job's id, as generate, /history or usage show it")
    q.add_argument("--reason", default="refunded by the operator", help="why, for the audit log")
    cli_alerts.add_parser(admin, discord_id)
    rates.add_rate(admin, _sub, discord_id)


def _add_db(sub: Any) -> None:
    p = _sub(sub, "db", "database maintenance: backup, check, migrate, copy", None)
    db = p.add_subparsers(dest="db_command", required=True, metavar="SUBCOMMAND")
    q = _sub(
        db,
        "backup",
        "a consistent copy while the bot runs (SQLite online backup)",
        database.backup,
        "Copy the database while the bot runs (SQLite's online backup). PATH is the file to write, "
        "or a folder (an existing one, or one given with a trailing slash) to write "
        "kontext-<UTC timestamp>.db into. A copy is written whole or not at all.",
    )
    q.add_argument("path", metavar="PATH", help="the backup file, or a folder for a timestamped one")
    _sub(db, "check", "prove every balance agrees with the append-only ledger", database.check)
    _sub(db, "migrate", "apply pending migrations and print the schema version", database.migrate)
    q = _sub(
        db,
        "copy",
        "copy everything into an empty database: SQLite <-> PostgreSQL",
        database.copy,
        "Copy every table (jobs, ledger, balances, guild settings, teams, audit, member settings) "
        "from one consistent snapshot of SOURCE, safe while a bot runs on it, into TARGET, which "
        "must hold no data. Ids are kept; the copy is committed only once every table has the "
        "source's row count and db check finds nothing new on the target. KONTEXT_DB is not used.",
    )
    q.add_argument(
        "source", metavar="SOURCE", help="the database to copy: a SQLite path or a postgresql:// URL"
    )
    q.add_argument(
        "target", metavar="TARGET", help="where to: a SQLite path or a postgresql:// URL, with no data in it"
    )
    # More db subcommands go here: _sub(db, "NAME", "help", database.NAME), then their arguments.


def shard_ids(text: str) -> list[int]:
    """--shard-ids 0,1,2: distinct shard numbers, in order."""
    try:
        ids = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        ids = []
    if not ids or min(ids) < 0 or len(set(ids)) != len(ids):
        raise argparse.ArgumentTypeError(f"must be distinct shard numbers like 0,1,2, not {text!r}")
    return sorted(ids)


def _count(text: str) -> int:
    try:
        number = int(text)
    except ValueError:
        number = 0
    if not 1 <= number <= 10_000:
        raise argparse.ArgumentTypeError(f"must be a whole number from 1 to 10000, not {text!r}")
    return number


def _add_serve(sub: Any) -> None:
    p = _sub(
        sub,
        "run",
        "start the Discord bot (needs DISCORD_TOKEN)",
        serve.run,
        "Connect to Discord and serve the slash commands until SIGTERM or Ctrl-C; this process also runs "
        "queued jobs unless --no-worker. Any number of `run` and `worker` processes may share one "
        "database (PostgreSQL for more than one machine). Jobs in flight at a stop go back to the queue "
        "and are resumed by the next worker, or refunded when their provider cannot be asked again.",
    )
    p.add_argument(
        "--no-worker",
        action="store_true",
        help="the gateway only: acknowledge, check, record and queue jobs for `kontext-bot worker` processes",
    )
    p.add_argument(
        "--shard-count",
        type=_count,
        metavar="N",
        help="the gateway is split over N shards (every process given the same N); default: one connection",
    )
    p.add_argument(
        "--shard-ids",
        type=shard_ids,
        metavar="0,1,...",
        help="connect only these shards, numbered from 0 (needs --shard-count); default: all of them",
    )
    p = _sub(
        sub,
        "worker",
        "run queued jobs, with no Discord gateway (needs DISCORD_TOKEN)",
        serve.worker,
        "Run jobs that `kontext-bot run` processes queued, until SIGTERM or Ctrl-C, showing their progress "
        "and results through Discord's REST API with the same buttons and messages. Start as many as "
        "the providers' limits are worth: those limits hold across all processes together.",
    )
    p.add_argument(
        "--concurrency",
        type=_count,
        metavar="N",
        help="jobs this worker runs at once (default: [limits] max_running)",
    )
    p = _sub(
        sub,
        "sync",
        "register the slash commands with Discord",
        serve.sync,
        "Register the slash commands: in one server (instant) or globally (up to an hour). Needed once "
        "after an install or an upgrade, not at every start.",
    )
    p.add_argument(
        "--guild",
        type=discord_id,
        metavar="ID",
        help="register in this server only (instant) instead of globally",
    )


def build_parser() -> Parser:
    parser = Parser(
        prog=PROG,
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--version", action="version", version=f"{PROG} {version()}", help="print the version"
    )
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="log more (INFO), and tracebacks of faults"
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_generate(sub)
    _add_accounts(sub)
    _add_admin(sub)
    _add_db(sub)
    _add_serve(sub)
    return parser


def wants_json(argv: Sequence[str]) -> bool:
    """Whether this command line asked for JSON, judged from the raw words (for a line that does not
    parse, the parsed value is not there to ask)."""
    words = list(argv)
    pairs = zip(words, [*words[1:], ""], strict=True)
    return "--json" in words or "--format=json" in words or ("--format", "json") in pairs
