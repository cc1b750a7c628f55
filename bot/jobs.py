"""JobService: the one path every image job takes, from a slash command or from the CLI.

validate against the catalog -> read and normalise inputs -> record the job and reserve its cost
(one transaction) -> wait for a fair slot -> run the first route, failing over to the next when
another provider could do better -> settle at the real cost, or refund on any failure.
Nothing here knows about Discord.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import storage
from bot import images
from bot.catalog import SANDBOX, Catalog, Route, ValidatedJob
from bot.config import Limits
from bot.dispatch import Dispatcher
from bot.errors import UserError
from bot.inputs import InputStore
from bot.money import usd_to_micros
from bot.providers.base import GenerationRequest, OutputImage, ProviderError, ProviderOutput
from bot.providers.runner import ProviderRunner
from bot.storage_errors import speaks_for_storage
from storage import Database

log = logging.getLogger(__name__)

SEED_RANGE = 2**31  # seeds the bot picks itself; small enough to read and type back
RESUME_GRACE = 15.0  # seconds a resumed job past its deadline still gets: a few polls


class Stage(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    FAILOVER = "failover"


@dataclass(frozen=True)
class JobEvent:
    job_id: str
    stage: Stage
    model: str
    provider: str | None = None
    position: int = 0
    progress: float | None = None
    elapsed: float = 0.0


# Reads one input image when called (a Discord attachment's ``read``, a CLI source), its size
# already checked. Failures should be UserErrors: run() raises them before anything is recorded.
InputLoader = Callable[[], Awaitable[bytes]]


@dataclass(frozen=True)
class JobRequest:
    model: str
    prompt: str
    # The inputs: raw bytes already in hand, or loaders that run() calls only inside its intake gate,
    # so a burst of uploads never holds more than a few raw camera files at once. A list is handed
    # over: run() empties it, so a queued job holds compact normalised copies, not 3 MB files.
    images: Sequence[bytes | InputLoader] = ()
    params: Mapping[str, Any] = field(default_factory=dict)  # canonical names; None = not set
    provider: str | None = None  # force one route
    user_id: int | None = None  # None: the local operator (CLI without --user)
    guild_id: int | None = None
    channel_id: int | None = None
    role_ids: Sequence[int] = ()
    source: str = "cli"  # where it came from: cli, slash, reroll, edit-again, context-menu
    # False where flagged results must not be shown (a Discord channel that is not age-restricted):
    # such a result is then refused and refunded rather than posted.
    nsfw_allowed: bool = True


@dataclass(frozen=True)
class JobResult:
    job_id: str
    status: str
    model: str
    provider: str
    images: tuple[OutputImage, ...]
    seed: int | None
    cost_micros: int  # what the job cost (the provider's bill or list price)
    charged_micros: int  # what was taken from a budget: 0 when the free quota paid
    charged_to: str
    free_remaining: int | None
    elapsed: float
    prompt: str
    params: Mapping[str, Any]

    @property
    def sandbox(self) -> bool:
        return self.provider == SANDBOX

    @property
    def nsfw(self) -> bool:
        return any(img.nsfw for img in self.images)


class JobFailed(UserError):
    """A recorded job ended without images. The message names the job and says it was not charged."""

    code = "job_failed"

    def __init__(self, job_id: str, cause: UserError, status: str = "failed") -> None:
        super().__init__(f"{cause.user_message} (job {job_id}; you were not charged)")
        self.job_id = job_id
        self.cause = cause
        self.status = status  # as the job was recorded: "failed" or "refused"


EventSink = Callable[[JobEvent], Awaitable[None]]


@speaks_for_storage  # storage's facts leave every public method as UserErrors
class JobService:
    def __init__(
        self,
        *,
        catalog: Catalog,
        limits: Limits,
        enabled: Sequence[str],
        runner: ProviderRunner,
        db: Database,
        dispatcher: Dispatcher,
        inputs: InputStore,
        pillow: Executor | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.catalog = catalog
        self.limits = limits
        self.enabled = tuple(enabled)
        self.runner = runner
        self.db = db
        self.dispatcher = dispatcher
        self.inputs = inputs
        self.pillow = pillow
        self._rng = rng or random.Random()
        self._stopping = False
        # Reading and normalising inputs happens under this gate: raw uploads exist for only a
        # few inputs at a time, however many jobs arrive at once.
        self._intake = asyncio.Semaphore(max(1, limits.max_inputs_in_flight))

    def begin_shutdown(self) -> None:
        """From now on, a cancelled job is being interrupted by a stop, not by its user: it keeps its
        recorded state (running + task id, or queued) so ``recover`` resumes or refunds it on start."""
        self._stopping = True

    def check(self, req: JobRequest, image_count: int | None = None) -> tuple[ValidatedJob, list[Route]]:
        """Validate a request and find its routes, with no side effect. Raises UserError.
        ``image_count`` lets a face check before it has read the images."""
        count = len(req.images) if image_count is None else image_count
        job = self.catalog.validate(req.model, req.prompt, count, req.params)
        return job, self.catalog.routes_for(job, self.enabled, req.provider)

    async def run(self, req: JobRequest, on_event: EventSink | None = None) -> JobResult:
        """Run one job to the end. Raises UserError (nothing recorded) or JobFailed (recorded, refunded)."""
        started = time.monotonic()
        job, routes = self.check(req)
        raw: list[bytes | InputLoader | None] = list(req.images)
        if isinstance(req.images, list):
            req.images.clear()  # handed over: the raw uploads are freed once normalised (see JobRequest)
        prepared = await asyncio.gather(*(self._intake_one(raw, i) for i in range(len(raw))))
        del raw
        params = dict(job.params)
        if "seed" in params and params["seed"] == -1:
            params["seed"] = self._rng.randrange(SEED_RANGE)
        # While it waits, a job keeps only references to its normalised inputs on disk; the data
        # URIs are built again when its turn comes (a deep queue would otherwise hold them all).
        input_refs = await self.inputs.put_data_uris([p.data_uri for p in prepared])
        del prepared
        reservation = await storage.accept_job(
            self.db,
            storage.NewJob(
                model=job.model.id,
                prompt=job.prompt,
                images=job.count,
                price_micros=max(r.price_micros for r in routes),  # reserve enough for any route
                free_quota=job.model.free_quota,
                user_id=req.user_id,
                guild_id=req.guild_id,
                channel_id=req.channel_id,
                roles=tuple(req.role_ids),
                params=params,
                meta={"input_refs": list(input_refs), "source": req.source},
                kind=str(job.model.kind),
                input_count=len(input_refs),
                deadline_s=self.limits.job_deadline,
            ),
        )
        job_id = reservation.job_id

        async def emit(stage: Stage, **kw: Any) -> None:
            if on_event is None:
                return
            try:
                await on_event(
                    JobEvent(job_id, stage, job.model.id, elapsed=time.monotonic() - started, **kw)
                )
            except Exception:  # showing progress is best effort; the job goes on
                log.exception("job %s: progress callback failed", job_id)

        async def on_position(position: int) -> None:
            await emit(Stage.QUEUED, position=position)

        try:
            async with self.dispatcher.slot(req.user_id, on_position if on_event is not None else None):
                output, route = await self._dispatch(job_id, job, params, input_refs, routes, emit, started)
        except UserError as exc:
            status = "refused" if _is_refusal(exc) else "failed"
            await storage.fail_job(self.db, job_id, status=status, error=_error_text(exc))
            raise JobFailed(job_id, exc, status) from exc
        except asyncio.CancelledError:
            if not self._stopping:
                await asyncio.shield(
                    storage.fail_job(self.db, job_id, status="cancelled", error="cancelled by the user")
                )
            raise
        except Exception as exc:
            log.exception("job %s failed unexpectedly", job_id)
            await storage.fail_job(
                self.db, job_id, status="failed", error=f"internal error: {type(exc).__name__}"
            )
            raise JobFailed(job_id, UserError("Something went wrong on our side.")) from exc

        if not req.nsfw_allowed and any(img.nsfw for img in output.images):
            await storage.fail_job(
                self.db, job_id, status="refused", error="content_refused: flagged as adult content"
            )
            raise JobFailed(
                job_id,
                UserError(
                    "The provider flagged this result as adult content, which can only be posted "
                    "in age-restricted channels."
                ),
                "refused",
            )
        settlement = await self._settle(job_id, output, route)
        free_left = reservation.free_remaining
        if free_left is not None and reservation.charged_to == "free":
            free_left += settlement.returned_images  # fewer images delivered than reserved
        return JobResult(
            job_id=job_id,
            status="succeeded",
            model=job.model.id,
            provider=route.provider,
            images=output.images,
            seed=params.get("seed"),
            cost_micros=settlement.cost_micros,
            charged_micros=settlement.charged_micros,
            charged_to=reservation.charged_to,
            free_remaining=free_left,
            elapsed=time.monotonic() - started,
            prompt=job.prompt,
            params=params,
        )

    async def _intake_one(self, raw: list[bytes | InputLoader | None], i: int) -> images.PreparedImage:
        """Read (if it is a loader) and normalise input ``i`` inside the intake gate, then let go of
        the raw bytes: only the compact normalised copy outlives this."""
        async with self._intake:
            source, raw[i] = raw[i], None
            assert source is not None
            data = await source() if callable(source) else source
            del source
            return await images.prepare_input(data, self.limits, self.pillow)

    async def _settle(self, job_id: str, output: ProviderOutput, route: Route) -> storage.Settlement:
        actual = _actual_cost(output, route, len(output.images))
        return await storage.complete_job(
            self.db, job_id, images_delivered=len(output.images), actual_micros=actual
        )

    async def _dispatch(
        self,
        job_id: str,
        job: ValidatedJob,
        params: dict[str, Any],
        input_refs: Sequence[str],
        routes: list[Route],
        emit: Callable[..., Awaitable[None]],
        started: float,
    ) -> tuple[ProviderOutput, Route]:
        # The same deadline the job was recorded with at acceptance: time in the queue counts too.
        deadline = started + self.limits.job_deadline
        inputs = await self.inputs.data_uris(input_refs)
        if inputs is None:
            raise UserError("This job's input images could not be read back; please send them again.")
        last: ProviderError | None = None
        for i, route in enumerate(routes):
            if i:
                await emit(Stage.FAILOVER, provider=route.provider)
            await storage.mark_running(
                self.db, job_id, route.provider, route.provider_model, price_micros=route.price_micros
            )
            await emit(Stage.RUNNING, provider=route.provider)
            req = GenerationRequest(
                provider_model=route.provider_model,
                prompt=job.prompt,
                images=tuple(inputs),
                params={k: v for k, v in params.items() if v is not None and k in route.params},
            )

            async def on_task(task_id: str, _route: Route = route) -> None:
                await storage.set_task_id(self.db, job_id, task_id)

            async def on_progress(progress: float | None, _route: Route = route) -> None:
                await emit(Stage.RUNNING, provider=_route.provider, progress=progress)

            try:
                output = await self.runner.run(
                    route, req, deadline=deadline, on_task=on_task, on_progress=on_progress
                )
            except ProviderError as exc:
                log.warning("job %s: %s failed: %s (%s)", job_id, route.provider, exc.code, exc.user_message)
                last = exc
                if exc.failover and time.monotonic() < deadline:
                    continue
                raise
            if not output.images:
                last = ProviderError("The provider finished without any image.", provider=route.provider)
                continue
            return output, route
        assert last is not None
        raise last

    async def get(self, job_id: str) -> storage.Job | None:
        return await storage.get_job(self.db, job_id)

    async def history(self, user_id: int, guild_id: int | None, limit: int = 10) -> list[storage.Job]:
        return await storage.list_jobs(self.db, user_id=user_id, guild_id=guild_id, limit=limit)

    async def set_posted(self, job_id: str, channel_id: int, message_id: int) -> None:
        await storage.set_posted(self.db, job_id, channel_id, message_id)

    async def stored_inputs(self, record: storage.Job) -> list[bytes]:
        """A recorded job's input images, for a Re-roll. Raises UserError when they are gone."""
        data = await self.inputs.get_many(record.meta.get("input_refs", []))
        if data is None:
            raise UserError("This job's input images are no longer stored, so it cannot be re-rolled.")
        return data

    async def recover(
        self, deliver: Callable[[str, JobResult | JobFailed], Awaitable[None]] | None = None
    ) -> int:
        """After a restart: resume jobs whose provider task can still be polled, refund the rest.
        ``deliver`` is told each outcome (the bot posts it to the job's channel). Returns how many."""
        unfinished = await storage.unfinished_jobs(self.db)
        tasks = [self._recover_one(rec, deliver) for rec in unfinished]
        await asyncio.gather(*tasks)
        return len(tasks)

    async def _recover_one(self, rec: storage.Job, deliver: Callable[..., Awaitable[None]] | None) -> None:
        outcome: JobResult | JobFailed
        try:
            if not rec.provider or rec.status == "queued":
                raise UserError("The bot restarted before this job reached the provider.")
            if not rec.task_id or rec.provider not in self.runner.enabled():
                # A synchronous API (UModelverse) answers inside the request the restart cut off.
                raise UserError(
                    "The bot restarted while the provider was working on this job, and this "
                    "provider cannot be asked for it again."
                )
            route = self.catalog.get(rec.model).route(rec.provider)
            if route is None:
                raise UserError("This model is no longer served by that provider.")
            # The job keeps the deadline it was accepted with: a restart does not buy it another
            # job_deadline. Past it, a short grace still collects a task that finished meanwhile.
            left = (rec.deadline_at - datetime.now(UTC)).total_seconds()
            output = await self.runner.resume(
                rec.provider, rec.task_id, deadline=time.monotonic() + max(left, RESUME_GRACE)
            )
            settlement = await self._settle(rec.id, output, route)
            outcome = JobResult(
                job_id=rec.id,
                status="succeeded",
                model=rec.model,
                provider=route.provider,
                images=output.images,
                seed=rec.params.get("seed"),
                cost_micros=settlement.cost_micros,
                charged_micros=settlement.charged_micros,
                charged_to=settlement.charged_to or "",
                free_remaining=None,
                elapsed=0.0,
                prompt=rec.prompt,
                params=rec.params,
            )
        except UserError as exc:
            await storage.fail_job(self.db, rec.id, status="failed", error=_error_text(exc))
            outcome = JobFailed(rec.id, exc)
        except Exception as exc:
            log.exception("recovering job %s failed", rec.id)
            await storage.fail_job(
                self.db, rec.id, status="failed", error=f"recovery failed: {type(exc).__name__}"
            )
            outcome = JobFailed(rec.id, UserError("The bot restarted and could not finish this job."))
        if deliver is not None:
            try:
                await deliver(rec.id, outcome)
            except Exception:
                log.exception("could not deliver recovered job %s", rec.id)

    async def refund_undelivered(self, job_id: str, reason: str) -> storage.Refund:
        """A face could not hand a finished job's images over (the CLI could not write them): nobody
        received them, so the job's charge goes back. Audited with ``reason``; a second call is a
        no-op (``already``)."""
        return await storage.refund_job(self.db, job_id, reason=reason)


def _actual_cost(output: ProviderOutput, route: Route, delivered: int) -> int:
    """The provider's reported charge when it gives one, else the list price of what was delivered."""
    if output.cost_usd is not None:
        try:
            return usd_to_micros(output.cost_usd)
        except ValueError:
            log.warning(
                "%s reported an unreadable cost %r; using the list price", route.provider, output.cost_usd
            )
    return route.price_micros * delivered


def _is_refusal(exc: UserError) -> bool:
    return exc.code in ("content_refused", "invalid_request")


def _error_text(exc: UserError) -> str:
    return f"{exc.code}: {exc.user_message}"[:500]
