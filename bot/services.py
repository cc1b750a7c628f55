"""Everything the faces share, opened and closed together: ``async with open_services(s) as svc``.

The slash commands (bot/client.py + cogs/) and the CLI (bot/__main__.py) both get their HTTP client,
database, providers, queue worker, job and account services from here, so neither holds logic the
other would need (discord.py's advanced_startup example is the model: resources injected, ``async with``).
The worker is created here but started by whoever runs jobs: the Discord face starts it for every
job (with its presenter attached), ``JobService.run`` starts it for this process's own jobs.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator
from concurrent.futures import Executor, ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
from httpx_aiohttp import AiohttpTransport

from bot import images
from bot.accounts import AccountService
from bot.catalog import SANDBOX
from bot.config import Settings
from bot.execution import Executor as JobExecutor
from bot.inputs import InputStore
from bot.jobs import JobService
from bot.providers.base import OutputImage
from bot.providers.http import ProviderClient
from bot.providers.registry import build_adapters
from bot.providers.runner import ProviderRunner
from bot.storage_errors import worded
from bot.worker import Worker, new_worker_id
from storage.db import Database
from storage.opening import open_database

log = logging.getLogger(__name__)

# Pool sized for many polling tasks at once; per-call timeouts are set by ProviderClient.
HTTP_LIMITS = httpx.Limits(max_connections=1000, max_keepalive_connections=200)
SANDBOX_CONCURRENCY = 8  # placeholders drawn at once; they queue on the Pillow threads anyway


@dataclass
class Services:
    settings: Settings
    http: httpx.AsyncClient
    db: Database
    jobs: JobService
    accounts: AccountService
    worker: Worker
    runner: ProviderRunner
    pillow: Executor  # image decode/encode; fewer threads than cores, so the event loop gets the GIL


def files_dir(settings: Settings) -> Path:
    """Where inputs and not-yet-delivered results are kept (KONTEXT_FILES, else beside a SQLite
    database, else ./data). Every process on one database must see the same folder."""
    return Path(settings.files_dir) if settings.files_dir else settings.data_dir / "inputs"


@asynccontextmanager
async def open_services(
    settings: Settings, *, create_db: bool = True, worker_id: str | None = None
) -> AsyncIterator[Services]:
    """``create_db=False``: a missing SQLite file is an error, not a new empty database (for
    commands that only read)."""
    if settings.sandbox_only:
        log.info("No provider API key is set: every model is served by the free local sandbox.")
    # httpx's API over aiohttp's connection pool: httpcore's pool rescans every connection on each
    # request, which at hundreds of jobs in flight costs more CPU than the jobs themselves.
    transport = AiohttpTransport(limits=HTTP_LIMITS)
    pillow = ThreadPoolExecutor(max_workers=max(1, (os.cpu_count() or 2) - 1), thread_name_prefix="pillow")
    limits = settings.limits
    async with httpx.AsyncClient(
        transport=transport, timeout=httpx.Timeout(30.0, connect=10.0), follow_redirects=False
    ) as http:
        with worded():
            db = await open_database(settings.db_path, create=create_db)
        worker: Worker | None = None
        try:
            client = ProviderClient(http, limits, secrets=settings.secrets())
            runner = ProviderRunner(client, build_adapters(settings), pillow)
            inputs = InputStore(files_dir(settings))
            ceilings = {name: p.max_concurrency for name, p in settings.providers.items() if p.enabled}
            ceilings[SANDBOX] = SANDBOX_CONCURRENCY
            wid = worker_id or new_worker_id()
            executor = JobExecutor(
                db=db,
                catalog=settings.catalog,
                runner=runner,
                inputs=inputs,
                limits=limits,
                ceilings=ceilings,
                worker_id=wid,
            )

            async def identify(data: bytes) -> OutputImage:
                info = await asyncio.get_running_loop().run_in_executor(
                    pillow, lambda: images.identify(data, max_pixels=limits.max_input_pixels)
                )
                return OutputImage(data=data, mime=info.mime, width=info.width, height=info.height)

            worker = Worker(
                db=db,
                executor=executor,
                results=inputs,
                worker_id=wid,
                concurrency=limits.max_running,
                per_user=limits.user_jobs_in_flight,
                ceilings=ceilings,
                lease_s=limits.job_lease,
                resumable=runner.resumable(),
                identify=identify,
            )
            accounts = AccountService(db, settings.catalog)
            jobs = JobService(
                catalog=settings.catalog,
                limits=limits,
                enabled=settings.enabled_providers,
                db=db,
                worker=worker,
                inputs=inputs,
                accounts=accounts,
                pillow=pillow,
            )
            yield Services(settings, http, db, jobs, accounts, worker, runner, pillow)
        finally:
            if worker is not None:
                await worker.stop(limits.shutdown_grace)
            await db.close()
            pillow.shutdown(wait=False, cancel_futures=True)
