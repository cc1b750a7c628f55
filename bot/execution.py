"""Runs one claimed job on the route the queue granted, and records how it ended.

The queue (storage/queue.py) already chose the provider and counted the slot; this module sends
the job there and turns each way it can end into one recorded transition, every one of them
checked against this worker's lease in the same transaction:

- images          -> stored (for delivery after a crash), settled at the real cost   -> Done
- provider busy   -> back in line, place kept; the provider's learned limit drops   -> Requeued
- failover error  -> back in line without that provider (the next route is tried)    -> Requeued
- final error     -> refunded (refused for content refusals)                         -> Failed
- no longer ours  -> nothing written (cancelled, refunded by an admin, taken over)   -> Lost

A submit whose outcome is unknown is never sent again: once a submit may have reached the
provider, the job is resumed by its task id or refunded, never resubmitted.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import storage
from bot import capacity
from bot.catalog import Catalog
from bot.config import Limits
from bot.errors import UserError
from bot.inputs import InputStore
from bot.metrics import Metrics
from bot.money import usd_to_micros
from bot.outcomes import JobFailed, JobResult, busy_text, result_of
from bot.providers.base import GenerationRequest, ProviderError, ProviderOutput, RateLimited
from bot.providers.runner import ProviderRunner
from bot.requests import JobEvent, Stage
from storage import capacity as capacity_store
from storage import leases

log = logging.getLogger(__name__)

RESUME_GRACE = 15.0  # seconds a resumed job past its deadline still gets: a few polls
ADULT = (
    "The provider flagged this result as adult content, which can only be posted in age-restricted channels."
)


@dataclass(frozen=True)
class Done:
    job: storage.Job
    result: JobResult


@dataclass(frozen=True)
class Failed:
    job: storage.Job
    failure: JobFailed


@dataclass(frozen=True)
class Requeued:
    reason: str


@dataclass(frozen=True)
class Lost:
    """The job stopped being this worker's while it ran; someone else tells the member."""


Outcome = Done | Failed | Requeued | Lost
EventSink = Callable[[JobEvent], Awaitable[None]]


class _Lost(Exception):
    pass


def error_text(exc: UserError) -> str:
    """How a failure is recorded: ``<code>: <message>`` (bot.outcomes.failure_of reads it back)."""
    return f"{exc.code}: {exc.user_message}"[:500]


def is_refusal(exc: UserError) -> bool:
    return exc.code in ("content_refused", "invalid_request")


class Executor:
    def __init__(
        self,
        *,
        db: storage.Database,
        catalog: Catalog,
        runner: ProviderRunner,
        inputs: InputStore,
        limits: Limits,
        ceilings: Mapping[str, int],
        worker_id: str,
        clock: Callable[[], float] = time.monotonic,
        metrics: Metrics | None = None,
    ) -> None:
        self.db = db
        self.metrics = metrics or Metrics(catalog)  # a registry of its own unless the services share one
        self.catalog = catalog
        self.runner = runner
        self.inputs = inputs
        self.limits = limits
        self.ceilings = dict(ceilings)
        self.worker_id = worker_id
        self.clock = clock
        self.stopping = False  # set by a stopping worker: cancelled jobs are handed back, not dropped

    async def execute(self, job: storage.Job, emit: EventSink) -> Outcome:
        phase = ["ready"]  # ready -> submitting -> task (a provider task id is recorded)
        try:
            return await self._execute(job, emit, phase)
        except asyncio.CancelledError:
            if self.stopping:
                await asyncio.shield(self._hand_back(job))
            raise
        except _Lost:
            return Lost()

    async def _hand_back(self, job: storage.Job) -> None:
        """A stopping worker lets go of a job it cannot finish: back to the queue when no submit
        of unknown outcome is in flight (a recorded task is resumed by its id), else refunded. The
        record decides (leases.release), not this process's idea of how far the job got: a task id
        whose write was cut off by the stop is not recorded, and the job was being sent."""
        try:
            await leases.release(self.db, self.worker_id, [job.id])
        except Exception:
            log.exception("job %s: could not hand it back while stopping", job.id)

    async def _execute(self, job: storage.Job, emit: EventSink, phase: list[str]) -> Outcome:
        provider = job.provider or ""
        now = datetime.now(UTC)
        left = (job.deadline_at - now).total_seconds()
        if left <= 0 and job.task_id:
            # Back after a long stop with a task at the provider: a few polls still collect a task
            # that finished meanwhile (the job keeps the deadline it was accepted with otherwise).
            left = RESUME_GRACE
        elif left <= 0 and (job.waiting_reason or "").startswith("provider_busy:"):
            busy = job.waiting_reason.split(":", 1)[1]  # type: ignore[union-attr]
            return await self._fail(job, _Busy(busy), f"provider_busy: {busy}")
        elif left <= 0:
            return await self._fail(
                job,
                UserError("The job waited past its deadline."),
                "timeout: the job waited past its deadline",
            )
        deadline = self.clock() + left
        started = self.clock()
        waited = (now - job.created_at).total_seconds()

        async def event(stage: Stage, **kw: Any) -> None:
            try:
                await emit(JobEvent(job.id, stage, job.model, provider, waited=waited, started=started, **kw))
            except Exception:  # showing progress is best effort; the job goes on
                log.exception("job %s: progress callback failed", job.id)

        async def on_task(task_id: str) -> None:
            phase[0] = "task"
            if not await leases.set_task(self.db, job.id, self.worker_id, task_id):
                raise _Lost

        async def on_progress(progress: float | None) -> None:
            await event(Stage.RUNNING, progress=progress)

        await event(Stage.RUNNING)
        try:
            if job.task_id:
                phase[0] = "task"
                output = await self.runner.resume(
                    provider, job.task_id, deadline=deadline, on_progress=on_progress
                )
            else:
                request = await self._request(job)
                if not await leases.sending(self.db, job.id, self.worker_id):
                    raise _Lost
                phase[0] = "submitting"
                route = self.catalog.get(job.model).route(provider)
                assert route is not None
                output = await self.runner.run(
                    route, request, deadline=deadline, on_task=on_task, on_progress=on_progress
                )
        except ProviderError as exc:
            return await self._provider_failed(job, exc, phase[0], event)
        except UserError as exc:
            return await self._fail(job, exc)
        except (_Lost, asyncio.CancelledError):
            raise
        except Exception as exc:
            log.exception("job %s failed unexpectedly", job.id)
            return await self._fail(
                job, UserError("Something went wrong on our side."), f"internal error: {type(exc).__name__}"
            )
        return await self._succeeded(job, output, self.clock() - started)

    async def _request(self, job: storage.Job) -> GenerationRequest:
        inputs = await self.inputs.data_uris(job.meta.get("input_refs", []))
        if inputs is None:
            raise UserError("This job's input images could not be read back; please send them again.")
        route = self.catalog.get(job.model).route(job.provider or "")
        if route is None:
            raise UserError("This model is no longer served by that provider.")
        return GenerationRequest(
            provider_model=route.provider_model,
            prompt=job.prompt,
            images=tuple(inputs),
            params={k: v for k, v in job.params.items() if v is not None and k in route.params},
        )

    async def _provider_failed(
        self, job: storage.Job, exc: ProviderError, phase: str, event: Callable[..., Awaitable[None]]
    ) -> Outcome:
        provider = job.provider or ""
        log.warning("job %s: %s failed: %s (%s)", job.id, provider, exc.code, exc.user_message)
        now = datetime.now(UTC)
        if isinstance(exc, RateLimited) and phase != "task":
            # The account is busy: nothing was done. Back in line, its place kept and no back-off
            # of its own: the provider is what is held back (its learned limit drops, or it is
            # paused), for every process, so the job may go to another route at once.
            if not await leases.requeue_busy(
                self.db,
                job.id,
                self.worker_id,
                ceiling=self.ceilings.get(provider, 1),
                rule=lambda s, open_now, waiting: capacity.on_busy(s, open_now, now, exc.retry_after),
            ):
                raise _Lost
            await event(Stage.WAITING)
            return Requeued(f"provider_busy:{provider}")
        untried = [r for r in job.routes if r.provider != provider and r.provider not in job.tried]
        # A submit that may have reached the provider is not sent anywhere else either: the first
        # provider may still make (and bill) the images.
        unknown = getattr(exc, "outcome_unknown", False)
        if exc.failover and untried and job.deadline_at > now and not unknown:
            if not await leases.requeue(self.db, job.id, self.worker_id, tried=provider, reason="failover"):
                raise _Lost
            self.metrics.request(provider, "failover")
            await event(Stage.FAILOVER)
            return Requeued("failover")
        return await self._fail(job, exc)

    async def _fail(self, job: storage.Job, exc: UserError, error: str | None = None) -> Outcome:
        status = "refused" if is_refusal(exc) else "failed"
        if not await leases.fail(
            self.db, job.id, self.worker_id, status=status, error=error or error_text(exc)
        ):
            raise _Lost
        self.metrics.job_ended(job.model, job.provider, status)
        return Failed(replace(job, status=status), JobFailed(job.id, exc, status))

    async def _succeeded(self, job: storage.Job, output: ProviderOutput, seconds: float) -> Outcome:
        if not job.meta.get("nsfw_allowed", True) and any(img.nsfw for img in output.images):
            return await self._fail(job, _AdultContent(ADULT), "content_refused: flagged as adult content")
        refs: tuple[str, ...] = ()
        if job.delivery is not None:  # kept until delivered, so a restart can still post them
            refs = await self.inputs.put_many([img.data for img in output.images])
        delivered = len(output.images)
        settlement = await leases.settle(
            self.db,
            job.id,
            self.worker_id,
            images_delivered=delivered,
            actual_micros=_reported_cost(output, job.provider or ""),
            result_refs=refs,
        )
        if settlement is None:
            raise _Lost
        self.metrics.job_ended(
            job.model, job.provider, "succeeded", seconds=seconds, cost_micros=settlement.cost_micros
        )
        now = datetime.now(UTC)
        await capacity_store.adjust_capacity(
            self.db,
            job.provider or "",
            ceiling=self.ceilings.get(job.provider or "", 1),
            rule=lambda s, open_now, waiting: capacity.on_success(s, waiting, now),
        )
        done = replace(
            job,
            status="succeeded",
            images_delivered=delivered,
            actual_micros=settlement.cost_micros,
            finished_at=now,
        )
        return Done(done, result_of(done, output.images, settlement))


class _AdultContent(UserError):
    code = "content_refused"


class _Busy(UserError):
    code = "provider_busy"

    def __init__(self, provider: str) -> None:
        super().__init__(busy_text(provider))


def _reported_cost(output: ProviderOutput, provider: str) -> int | None:
    """The provider's reported charge when it gives a readable one; None: charge the list price."""
    if output.cost_usd is None:
        return None
    try:
        return usd_to_micros(output.cost_usd)
    except ValueError:
        log.warning("%s reported an unreadable cost %r; using the list price", provider, output.cost_usd)
        return None
