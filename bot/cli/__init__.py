"""The ``kontext-bot`` command (and ``python -m bot``): a thin face over the services in bot/.

It parses, calls the same services the slash commands use, and prints; it decides nothing another
face would need. No module here imports discord (bot/client.py does the Discord work of ``run`` and
``sync``).

    parser.py    every command, flag and help text (the contract), each command's handler
    main.py      main(): settings, the handler, one line and the exit status for every failure
    common.py    exit statuses, field spelling, the JSON failure object, read-only opening
    jobs.py      generate, models
    accounts.py  quota, usage, admin ...
    database.py  db backup, check, migrate, copy
    serve.py     run, sync

A new command: a handler ``async def name(args, settings) -> int`` in the module of its group (or a
new module), and its parser in parser.py with ``set_defaults(handler=...)`` (``_sub`` does it).
"""

from bot.cli.main import main

__all__ = ["main"]
