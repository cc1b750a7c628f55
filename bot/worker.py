"""The worker: claims jobs from the durable queue, runs them, keeps their leases, finishes what
dead workers left behind, and hands every outcome to whoever tells the member.

Every process that runs jobs has one: ``kontext-bot run`` and ``kontext-bot worker`` (which claim
every job), and ``kontext-bot generate`` (which claims only the jobs it pinned to itself and waits
for them). Who tells the member: a job pinned to this worker goes to ``local`` (the caller waiting
in this process); any other job goes to the face's observer (the Discord presenter), and a worker
without one does not claim such jobs at all.

Leases: the worker renews, every ``lease/3`` seconds, the lease of every job it holds. A job it
no longer holds (another process took it over after this one stalled) is dropped silently; a job
someone else finished while it ran (a Cancel, an admin refund) is stopped and its end told. The
reaper runs in every worker, as often: whatever a dead process held comes back to the queue, is
refunded, or is told (see storage.queue.reap).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import storage
from bot.aio import LineGate, wait_event
from bot.errors import UserError
from bot.execution import Done, Executor, Failed, Lost
from bot.inputs import InputStore
from bot.logs import job_context
from bot.metrics import Metrics
from bot.outcomes import JobFailed, JobResult, failure_of, result_of
from bot.providers.base import OutputImage
from bot.requests import JobEvent
from storage import leases, queue, recovery

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Posted:
    """Where a face put a job's outcome, for /history links and the buttons."""

    channel_id: int | None = None
    message_id: int | None = None


class JobObserver(Protocol):
    """The face that tells members how their jobs go (the Discord presenter, or ``LocalRuns``)."""

    async def update(self, job: storage.Job, event: JobEvent) -> None: ...

    async def finish(self, job: storage.Job, outcome: JobResult | JobFailed) -> Posted | None: ...


EventSink = Callable[[JobEvent], Awaitable[None]]


class LocalRuns:
    """Jobs whose caller waits in this process (JobService.run: the CLI and the tests)."""

    def __init__(self) -> None:
        self._futures: dict[str, asyncio.Future[JobResult]] = {}
        self._listeners: dict[str, EventSink] = {}

    def expect(self, job_id: str, on_event: EventSink | None = None) -> asyncio.Future[JobResult]:
        if on_event is not None:
            self._listeners[job_id] = on_event
        return self._futures.setdefault(job_id, asyncio.get_running_loop().create_future())

    def forget(self, job_id: str) -> None:
        self._futures.pop(job_id, None)
        self._listeners.pop(job_id, None)

    async def update(self, job: storage.Job, event: JobEvent) -> None:
        listener = self._listeners.get(job.id)
        if listener is not None:
            await listener(event)

    async def finish(self, job: storage.Job, outcome: JobResult | JobFailed) -> Posted | None:
        future = self.expect(job.id)
        self._listeners.pop(job.id, None)
        if not future.done():
            if isinstance(outcome, JobFailed):
                future.set_exception(outcome)
            else:
                future.set_result(outcome)
        return None


def new_worker_id() -> str:
    return f"{socket.gethostname()[:40]}:{os.getpid()}:{secrets.token_hex(3)}"


class Worker:
    def __init__(
        self,
        *,
        db: storage.Database,
        executor: Executor,
        results: InputStore,
        worker_id: str,
        concurrency: int,
        per_user: int,
        ceilings: Mapping[str, int],
        lease_s: float,
        resumable: Iterable[str],
        identify: Callable[[bytes], Coroutine[Any, Any, OutputImage]],
        poll_s: float = 2.0,
        metrics: Metrics | None = None,
    ) -> None:
        self.db = db
        self.metrics = metrics or executor.metrics
        self.executor = executor
        self.results = results
        self.id = worker_id
        self.concurrency = max(1, concurrency)
        self.per_user = per_user
        self.ceilings = dict(ceilings)
        self.lease_s = lease_s
        self.poll_s = poll_s  # between claims when nothing wakes it ([limits] queue_poll)
        self.resumable = tuple(resumable)
        self._identify = identify
        self.local = LocalRuns()
        self.observer: JobObserver | None = None
        self.claim_all = False
        self.running = False
        self.stopping = False
        self.active: dict[str, asyncio.Task[None]] = {}
        self._held: set[str] = set()  # leases renewed: jobs running, waiting (pinned) or being told here
        self._telling: set[str] = set()
        self._finishing: set[asyncio.Task[Any]] = set()  # job tasks telling their member (past ``active``)
        self._wake = asyncio.Event()
        # Claims and enqueues change the line; the waiting room shows it (bot.aio.LineGate).
        self.line_gate = LineGate()
        self._reap_now = asyncio.Event()
        self._loops: list[asyncio.Task[None]] = []
        self._background: set[asyncio.Task[None]] = set()
        self._unlisten: list[Any] = []

    # --- starting and stopping ---------------------------------------------------------------

    async def start(self, *, claim_all: bool = False) -> None:
        """Start claiming: every job when ``claim_all`` (an observer must be attached), else only
        jobs pinned to this worker. Starting again with claim_all widens a running worker."""
        if claim_all and self.observer is None:
            raise RuntimeError("a worker that claims every job needs an observer to tell members")
        self.claim_all = self.claim_all or claim_all
        if self.running:
            self.wake()
            return
        self.running = True
        self._unlisten = [
            await self.db.listen(queue.QUEUE_CHANNEL, self._on_queue),
            await self.db.listen(queue.CANCEL_CHANNEL, self._on_cancel),
        ]
        self._loops = [
            asyncio.create_task(self._claiming(), name=f"claim-{self.id}"),
            asyncio.create_task(self._renewing(), name=f"renew-{self.id}"),
            asyncio.create_task(self._reaping(), name=f"reap-{self.id}"),
        ]

    async def stop(self, grace: float = 10.0) -> None:
        """Stop claiming; give running jobs ``grace`` seconds; hand back the rest (see Executor)."""
        if not self.running:
            return
        self.stopping = True
        # The claim loop leaves between two claims: cancelled inside one, its transaction may still
        # commit (SQLite runs it on a thread) and strand the jobs it took with a worker that is going.
        self.wake()
        await asyncio.wait({self._loops[0]}, timeout=10.0)
        self._loops[0].cancel()
        pending = [t for t in self.active.values() if not t.done()]
        if pending:
            await asyncio.wait(pending, timeout=grace)
        self.executor.stopping = True
        pending = [t for t in self.active.values() if not t.done()]
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending, timeout=5.0)
        # The reaper too leaves between passes (a pass may lease untold jobs to this worker and start
        # telling them); then every member being told gets to be told and recorded, or they would
        # be told again by the next process: those that started meanwhile too.
        self.reap_soon()
        await asyncio.wait({self._loops[2]}, timeout=10.0)
        loop = asyncio.get_running_loop()
        until = loop.time() + max(grace, 5.0)
        while (telling := self._finishing | self._background) and (left := until - loop.time()) > 0:
            await asyncio.wait(telling, timeout=left)
        for task in self._loops:
            task.cancel()
        await asyncio.gather(*self._loops, return_exceptions=True)
        for listening in self._unlisten:
            with contextlib.suppress(Exception):
                await listening.stop()
        self.running = False

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)  # asyncio keeps only a weak reference: we keep one
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def hold(self, job_id: str) -> None:
        """Keep renewing the lease of a job pinned to this worker while its caller waits for it."""
        self._held.add(job_id)

    def wake(self) -> None:
        self._wake.set()

    def reap_soon(self) -> None:
        self._reap_now.set()

    async def _on_queue(self, _payload: str) -> None:
        self.wake()

    async def _on_cancel(self, job_id: str) -> None:
        task = self.active.get(job_id)
        if task is not None and not task.done():
            task.cancel()
        self.reap_soon()  # a queued job cancelled elsewhere is told by whoever reaps first

    # --- claiming ----------------------------------------------------------------------------

    async def _claiming(self) -> None:
        wait = 0.0
        while True:
            await wait_event(self._wake, wait)
            self._wake.clear()
            if self.stopping:
                return
            wait = self.poll_s
            free = self.concurrency - len(self.active)
            if free <= 0:
                continue
            try:
                async with self.line_gate.changing():
                    claimed = await queue.claim(
                        self.db,
                        self.id,
                        max_jobs=free,
                        per_user=self.per_user,
                        ceilings=self.ceilings,
                        lease_s=self.lease_s,
                        pinned_only=not self.claim_all,
                    )
            except Exception:
                log.exception("claiming jobs failed; trying again shortly")
                wait = 1.0
                continue
            for job in claimed.jobs:
                if job.attempts == 1 and job.started_at is not None:  # its first claim: the wait in line
                    self.metrics.queued_for(job.provider, (job.started_at - job.created_at).total_seconds())
                self._held.add(job.id)
                self.active[job.id] = asyncio.create_task(self._run(job), name=f"job-{job.id}")
            if claimed.next_at is not None:
                until = (claimed.next_at - datetime.now(UTC)).total_seconds()
                wait = min(wait, max(until, 0.01))

    async def _run(self, job: storage.Job) -> None:
        with job_context(job.id, job.guild_id, job.user_id):  # every line logged on the way names it
            await self._run_job(job)

    async def _run_job(self, job: storage.Job) -> None:
        try:
            outcome = await self.executor.execute(job, lambda event: self._update(job, event))
        except asyncio.CancelledError:
            if not self.executor.stopping:  # cancelled by a member or an admin, even in the grace
                await self._told_elsewhere(job.id)
            return
        finally:
            self.active.pop(job.id, None)
            self.wake()
        this = asyncio.current_task()
        if this is not None:
            self._finishing.add(this)
        try:
            if isinstance(outcome, Done):
                await self._finish(outcome.job, outcome.result)
            elif isinstance(outcome, Failed):
                await self._finish(outcome.job, outcome.failure)
            elif isinstance(outcome, Lost):
                await self._told_elsewhere(job.id)
            else:
                self._held.discard(job.id)
        finally:
            self._finishing.discard(this)

    async def _told_elsewhere(self, job_id: str) -> None:
        """The job stopped being ours to run (cancelled, refunded, taken over). If we still hold its
        lease it is ours to tell; otherwise whoever holds it tells."""
        try:
            record = await storage.get_job(self.db, job_id)
            if record is not None and record.finished and record.lease_owner == self.id:
                await self._finish(record, failure_of(record) if record.status != "succeeded" else None)
                return
        except Exception:
            log.exception("job %s: could not read how it ended", job_id)
        self._held.discard(job_id)

    # --- telling the member ------------------------------------------------------------------

    def _target(self, job: storage.Job) -> JobObserver | None:
        return self.local if job.pinned_to == self.id else self.observer

    async def _update(self, job: storage.Job, event: JobEvent) -> None:
        target = self._target(job)
        if target is not None:
            await target.update(job, event)

    async def _finish(self, job: storage.Job, outcome: JobResult | JobFailed | None) -> None:
        """Hand the outcome to its face, then record it as told (which lets the lease go). If the
        face fails, the lease is left to expire and another process (or this one) tries again."""
        target = self._target(job)
        if target is None:
            self._held.discard(job.id)
            return
        self._telling.add(job.id)
        try:
            if outcome is None:
                outcome = await self._stored_result(job)
            posted = await target.finish(job, outcome)
            await leases.delivered(
                self.db,
                job.id,
                channel_id=posted.channel_id if posted else None,
                message_id=posted.message_id if posted else None,
            )
        except Exception:
            log.exception("job %s: telling the member failed; another attempt follows", job.id)
        finally:
            self._telling.discard(job.id)
            self._held.discard(job.id)

    async def _stored_result(self, job: storage.Job) -> JobResult | JobFailed:
        """A succeeded job delivered after a restart: its images come back from the result store."""
        blobs = await self.results.get_many(job.result_refs)
        if blobs is None:
            log.error("job %s: its stored images are gone; refunding it", job.id)
            await storage.refund_job(self.db, job.id, reason="result images lost before delivery")
            return JobFailed(job.id, UserError("The images were lost before they could be posted."))
        images = [await self._identify(b) for b in blobs]
        return result_of(job, images)

    # --- leases and recovery -----------------------------------------------------------------

    async def _renewing(self) -> None:
        while True:
            await asyncio.sleep(self.lease_s / 3)
            held = sorted(self._held)
            if not held:
                continue
            try:
                statuses = await leases.renew(self.db, self.id, held, lease_s=self.lease_s)
            except Exception:
                log.exception("renewing leases failed")
                continue
            for job_id in held:
                task = self.active.get(job_id)
                status = statuses.get(job_id)
                if job_id in self._telling or status in ("running", "queued"):
                    continue
                if task is not None:
                    task.cancel()  # taken over, or someone else ended it: _run sorts out which
                elif status is None:
                    self._held.discard(job_id)  # taken over while it waited
                else:
                    self._spawn(self._told_elsewhere(job_id))  # a waiting job ended elsewhere

    async def _reaping(self) -> None:
        while not self.stopping:
            try:
                reaped = await recovery.reap(
                    self.db,
                    self.id,
                    resumable=self.resumable,
                    lease_s=self.lease_s,
                    tell=self.observer is not None,
                )
            except Exception:
                log.exception("recovering abandoned jobs failed")
            else:
                if reaped.requeued or reaped.refunded:
                    log.info(
                        "recovered abandoned jobs: %d back in the queue, %d refunded",
                        len(reaped.requeued),
                        len(reaped.refunded),
                    )
                for job in reaped.finish:  # each its own task: a stopping worker waits for them
                    self._held.add(job.id)
                    outcome = None if job.status == "succeeded" else failure_of(job)
                    self._spawn(self._finish(job, outcome))
            if self.stopping:
                return
            await wait_event(self._reap_now, self.lease_s / 3)
            self._reap_now.clear()
