"""Everything the two faces share, opened and closed together: ``async with open_services(s) as svc``.

The slash commands (bot/client.py + cogs/) and the CLI (bot/__main__.py) both get their HTTP client,
database, providers, queue, job and account services from here, so neither holds logic the other
would need (discord.py's advanced_startup example is the model: resources injected, ``async with``).
"""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator
from concurrent.futures import Executor, ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass

import httpx
from httpx_aiohttp import AiohttpTransport

from bot.accounts import AccountService
from bot.config import Settings
from bot.dispatch import Dispatcher
from bot.inputs import InputStore
from bot.jobs import JobService
from bot.providers.http import ProviderClient
from bot.providers.registry import build_adapters
from bot.providers.runner import ProviderRunner
from bot.storage_errors import worded
from storage.db import Database, open_database

log = logging.getLogger(__name__)

# Pool sized for many polling tasks at once; per-call timeouts are set by ProviderClient.
HTTP_LIMITS = httpx.Limits(max_connections=1000, max_keepalive_connections=200)


@dataclass
class Services:
    settings: Settings
    http: httpx.AsyncClient
    db: Database
    jobs: JobService
    accounts: AccountService
    dispatcher: Dispatcher
    runner: ProviderRunner
    pillow: Executor  # image decode/encode; fewer threads than cores, so the event loop gets the GIL


@asynccontextmanager
async def open_services(settings: Settings, *, create_db: bool = True) -> AsyncIterator[Services]:
    """``create_db=False``: a missing SQLite file is an error, not a new empty database (for
    commands that only read)."""
    if settings.sandbox_only:
        log.info("No provider API key is set: every model is served by the free local sandbox.")
    # httpx's API over aiohttp's connection pool: httpcore's pool rescans every connection on each
    # request, which at hundreds of jobs in flight costs more CPU than the jobs themselves.
    transport = AiohttpTransport(limits=HTTP_LIMITS)
    pillow = ThreadPoolExecutor(max_workers=max(1, (os.cpu_count() or 2) - 1), thread_name_prefix="pillow")
    async with httpx.AsyncClient(
        transport=transport, timeout=httpx.Timeout(30.0, connect=10.0), follow_redirects=False
    ) as http:
        with worded():
            db = await open_database(settings.db_path, create=create_db)
        try:
            client = ProviderClient(http, settings.limits, secrets=settings.secrets())
            adapters = build_adapters(settings)
            runner = ProviderRunner(
                client, adapters, {name: p.max_concurrency for name, p in settings.providers.items()}, pillow
            )
            limits = settings.limits
            dispatcher = Dispatcher(
                max_running=limits.max_running,
                per_user=limits.user_jobs_in_flight,
                max_queue=limits.max_queue,
            )
            jobs = JobService(
                catalog=settings.catalog,
                limits=settings.limits,
                enabled=settings.enabled_providers,
                runner=runner,
                db=db,
                dispatcher=dispatcher,
                inputs=InputStore(settings.data_dir / "inputs"),
                pillow=pillow,
            )
            accounts = AccountService(db, settings.catalog)
            yield Services(settings, http, db, jobs, accounts, dispatcher, runner, pillow)
        finally:
            await db.close()
            pillow.shutdown(wait=False, cancel_futures=True)
