"""JobService: the one path every image job takes, from a slash command, a button or the CLI.

compose (the server's rules and the member's preferences) -> check against the catalog -> read and
normalise the inputs -> record the job, reserve its cost and queue it (one transaction) -> a worker
claims it with a provider slot (bot/worker.py, bot/execution.py) -> settled or refunded -> told.
Nothing here knows about Discord: both faces call these methods and only render what they return.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import storage
from bot import images
from bot.catalog import SANDBOX, Catalog, Model, Route, ValidatedJob
from bot.config import Limits
from bot.errors import UserError
from bot.execution import error_text
from bot.inputs import InputStore
from bot.outcomes import JobFailed, JobResult
from bot.providers.base import label_of
from bot.requests import DEFAULT_MODEL, Delivery, InputLoader, JobEvent, JobRequest, Stage
from bot.storage_errors import speaks_for_storage
from bot.worker import EventSink, Worker
from storage import capacity as capacity_store
from storage import queue

if TYPE_CHECKING:
    from bot.accounts import AccountService

log = logging.getLogger(__name__)

__all__ = ["InputLoader", "JobEvent", "JobFailed", "JobRequest", "JobResult", "JobService", "Stage"]

SEED_RANGE = 2**31  # seeds the bot picks itself; small enough to read and type back


class QueueFull(UserError):
    code = "queue_full"


@dataclass(frozen=True)
class ProviderStatus:
    """How much of a provider the queue uses now: its learned limit under the configured ceiling."""

    provider: str
    limit: int
    ceiling: int
    learned: bool  # False: never busy yet, so the ceiling is all we know
    paused_until: datetime | None
    busy_total: int

    def describe(self) -> str:
        """One line for people: "WaveSpeedAI: 2 at once (learned; at most 8), 6 busy answers"."""
        how = "learned" if self.learned else "not busy yet"
        text = f"{label_of(self.provider)}: {self.limit} at once ({how}; at most {self.ceiling})"
        if self.busy_total:
            text += f", {self.busy_total} busy answer{'s' if self.busy_total != 1 else ''} so far"
        if self.paused_until is not None:
            text += f", paused until {self.paused_until:%H:%M:%S} UTC"
        return text


@dataclass(frozen=True)
class Composed:
    """A request built from what the member asked, the server's rules and their preferences."""

    request: JobRequest
    private: bool  # the member wants results shown only to them


@dataclass(frozen=True)
class Submitted:
    job_id: str
    reservation: storage.Reservation


def fits(model: Model, purpose: str) -> bool:
    return {"edit": model.can_edit, "combine": model.can_combine, "create": model.can_create}[purpose]


@speaks_for_storage  # storage's facts leave every public method as UserErrors
class JobService:
    def __init__(
        self,
        *,
        catalog: Catalog,
        limits: Limits,
        enabled: Sequence[str],
        db: storage.Database,
        worker: Worker,
        inputs: InputStore,
        accounts: AccountService,
        pillow: Executor | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.catalog = catalog
        self.limits = limits
        self.enabled = tuple(enabled)
        self.db = db
        self.worker = worker
        self.inputs = inputs
        self.accounts = accounts
        self.pillow = pillow
        self._rng = rng or random.Random()
        # Reading and normalising inputs happens under this gate: raw uploads exist for only a
        # few inputs at a time, however many jobs arrive at once.
        self._intake = asyncio.Semaphore(max(1, limits.max_inputs_in_flight))

    # --- building a request ------------------------------------------------------------------

    async def compose(
        self,
        *,
        purpose: str,
        model: str | None,
        prompt: str,
        params: dict[str, Any],
        user_id: int,
        guild_id: int | None,
        channel_id: int | None,
        role_ids: Sequence[int] = (),
        source: str = "slash",
        age_restricted: bool = False,
        image_count: int = 0,
    ) -> Composed:
        """What a member asked, made into a checked request. The rules live here so every face gets
        them: image commands only in the server's allowed channels; the command's model, else the
        member's default model when it fits the command, else the command's default; the member's
        aspect ratio for new jobs whose model takes one (an edit keeps its image's shape, a Re-roll
        its own); adult-flagged results only in age-restricted channels. Raises UserError."""
        if guild_id and not await self.accounts.channel_allowed(guild_id, channel_id):
            raise UserError("Image commands are not enabled in this channel; ask an admin which ones are.")
        prefs = await self.accounts.settings(user_id)
        model_id = model or self._preferred(prefs.default_model, purpose) or DEFAULT_MODEL[purpose]
        if source != "reroll" and params.get("aspect_ratio") is None and prefs.aspect_ratio:
            if purpose != "edit" and "aspect_ratio" in self.catalog.get(model_id).params:
                params = {**params, "aspect_ratio": prefs.aspect_ratio}
        request = JobRequest(
            model=model_id,
            prompt=prompt,
            params=params,
            user_id=user_id,
            guild_id=guild_id,
            channel_id=channel_id,
            role_ids=tuple(role_ids),
            source=source,
            nsfw_allowed=age_restricted,
        )
        self.check(request, image_count=image_count)
        return Composed(request, prefs.private_results)

    def _preferred(self, model_id: str | None, purpose: str) -> str | None:
        if not model_id:
            return None
        try:
            model = self.catalog.get(model_id)
        except UserError:
            return None
        return model.id if fits(model, purpose) else None

    def check(self, req: JobRequest, image_count: int | None = None) -> tuple[ValidatedJob, list[Route]]:
        """Validate a request and find its routes, with no side effect. Raises UserError.
        ``image_count`` lets a face check before it has read the images."""
        count = len(req.images) if image_count is None else image_count
        job = self.catalog.validate(req.model, req.prompt, count, req.params)
        return job, self.catalog.routes_for(job, self.enabled, req.provider)

    # --- queueing and running ----------------------------------------------------------------

    async def submit(
        self, req: JobRequest, *, delivery: Delivery | None = None, pinned: bool = False
    ) -> Submitted:
        """Record, reserve and queue a job; a worker runs it. Raises UserError before anything is
        recorded (a broken rule, a rate limit reached, an unreadable input, a full queue) or
        QuotaExceeded (the refusal is recorded, with its job id). ``pinned``: only this process's
        worker may run it."""
        job, routes = self.check(req)
        # Over a rate limit: refused before an upload is read (enqueue checks again, and holds).
        await storage.ensure_allowed(self.db, req.user_id, req.guild_id, req.role_ids)
        raw: list[bytes | InputLoader | None] = list(req.images)
        if isinstance(req.images, list):
            req.images.clear()  # handed over: the raw uploads are freed once normalised
        prepared = await asyncio.gather(*(self._intake_one(raw, i) for i in range(len(raw))))
        del raw
        params = dict(job.params)
        if "seed" in params and params["seed"] == -1:
            params["seed"] = self._rng.randrange(SEED_RANGE)
        # While it waits, a job keeps only references to its normalised inputs on disk.
        input_refs = await self.inputs.put_data_uris([p.data_uri for p in prepared])
        del prepared
        new = storage.NewJob(
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
            meta={"input_refs": list(input_refs), "source": req.source, "nsfw_allowed": req.nsfw_allowed},
            kind=str(job.model.kind),
            input_count=len(input_refs),
            deadline_s=self.limits.job_deadline,
        )
        try:
            async with self.worker.line_gate.changing():  # the waiting room shows a settled line
                reservation = await queue.enqueue(
                    self.db,
                    new,
                    routes=[queue.RouteChoice(r.provider, r.provider_model, r.price_micros) for r in routes],
                    delivery=None if delivery is None else delivery.to_json(),
                    pinned_to=self.worker.id if pinned else None,
                    lease_s=self.limits.job_lease,
                    max_queue=self.limits.max_queue,
                )
        except queue.QueueFull as exc:
            raise QueueFull(
                f"The queue is full ({exc.waiting} waiting). Please try again in a few minutes."
            ) from None
        if pinned:
            self.worker.hold(reservation.job_id)
        return Submitted(reservation.job_id, reservation)

    async def run(self, req: JobRequest, on_event: EventSink | None = None) -> JobResult:
        """Queue a job for this process's own worker and wait for it (the CLI, tests). Raises
        UserError (nothing recorded), QuotaExceeded, or JobFailed (recorded, refunded). If the
        caller is cancelled, the job is cancelled and refunded too."""
        submitted = await self.submit(req, pinned=True)
        job_id = submitted.job_id
        future = self.worker.local.expect(job_id, on_event)
        if on_event is not None:
            await on_event(JobEvent(job_id, Stage.QUEUED, req.model))
        await self.worker.start()
        try:
            return await future
        except asyncio.CancelledError:
            if not self.worker.stopping:
                await asyncio.shield(self._cancel_quietly(job_id))
            raise
        finally:
            self.worker.local.forget(job_id)

    async def _cancel_quietly(self, job_id: str) -> None:
        try:
            await queue.cancel(self.db, job_id, error=error_text(_Cancelled("cancelled by the user")))
        except Exception:
            log.exception("job %s: could not cancel it", job_id)

    async def _intake_one(self, raw: list[bytes | InputLoader | None], i: int) -> images.PreparedImage:
        """Read (if it is a loader) and normalise input ``i`` inside the intake gate, then let go of
        the raw bytes: only the compact normalised copy outlives this."""
        async with self._intake:
            source, raw[i] = raw[i], None
            assert source is not None
            data = await source() if callable(source) else source
            del source
            return await images.prepare_input(data, self.limits, self.pillow)

    # --- after a job ---------------------------------------------------------------------------

    async def cancel(self, job_id: str, *, user_id: int, is_admin: bool) -> storage.Job:
        """The requester (or an admin) cancels an unfinished job: refunded at once, stopped wherever
        it runs, told. Raises UserError when it is not theirs or no longer running."""
        record = await self.get_owned(job_id, user_id, is_admin, "cancel it")
        cancelled = await queue.cancel(
            self.db, job_id, actor=user_id, error=error_text(_Cancelled("cancelled by the member"))
        )
        if cancelled is None:
            raise UserError(f"Job {job_id} is no longer running, so there is nothing to cancel.")
        self.worker.reap_soon()  # a queued job has no worker to tell its member: the reaper does
        return record

    async def get_owned(self, job_id: str, user_id: int, is_admin: bool, action: str) -> storage.Job:
        """The job, if ``user_id`` asked for it or is an admin; else a UserError naming who may."""
        record = await self.get(job_id)
        if record is None:
            raise UserError(f"Job {job_id} is no longer on record.")
        if record.user_id != user_id and not is_admin:
            raise UserError(f"Only the member who asked for this job, or an admin, can {action}.")
        return record

    async def refund_undelivered(self, job_id: str, reason: str) -> storage.Refund:
        """The job ran but nobody received its images (the CLI could not write them): give back
        what it was charged."""
        return await storage.refund_job(self.db, job_id, reason=reason)

    async def providers(self) -> list[ProviderStatus]:
        """Each enabled provider's learned limit and pause, shared by every process (issue 16)."""
        learned = {c.provider: c for c in await capacity_store.capacities(self.db)}
        now = datetime.now(UTC)
        out = []
        for name, ceiling in self.worker.ceilings.items():
            if name == SANDBOX:
                continue
            c = learned.get(name)
            if c is None:
                out.append(ProviderStatus(name, ceiling, ceiling, False, None, 0))
            else:
                paused = c.paused_until if c.paused(now) else None
                out.append(ProviderStatus(name, min(c.limit, ceiling), ceiling, True, paused, c.busy_total))
        return out

    async def get(self, job_id: str) -> storage.Job | None:
        return await storage.get_job(self.db, job_id)

    async def history(self, user_id: int, guild_id: int | None, limit: int = 10) -> list[storage.Job]:
        return await storage.list_jobs(self.db, user_id=user_id, guild_id=guild_id, limit=limit)

    async def stored_inputs(self, record: storage.Job) -> list[bytes]:
        """A recorded job's input images, for a Re-roll. Raises UserError when they are gone."""
        data = await self.inputs.get_many(record.meta.get("input_refs", []))
        if data is None:
            raise UserError("This job's input images are no longer stored, so it cannot be re-rolled.")
        return data


class _Cancelled(UserError):
    code = "cancelled"
