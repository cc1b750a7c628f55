"""How a job ended, as both faces show it: a result with its images and bill, or a failure.

``result_of`` is the one place a JobResult is built, whether the images come straight from the
provider or back from the result store after a restart.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import storage
from bot.catalog import SANDBOX
from bot.errors import UserError
from bot.providers.base import OutputImage, label_of

_CODE = re.compile(r"[a-z_]{2,40}")


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
    elapsed: float  # seconds the model took (the attempt that succeeded)
    waited: float  # seconds the job waited in the queue before that
    prompt: str
    params: Mapping[str, Any]
    user_id: int | None = None

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
        self.status = status  # as the job was recorded: "failed", "refused" or "cancelled"


def refunded_by_admin(job: storage.Job) -> bool:
    """The job was cancelled because an admin refunded it before it finished."""
    return job.status == "cancelled" and (job.error or "").startswith(storage.ADMIN_REFUND)


def busy_text(provider: str) -> str:
    return f"{label_of(provider)} was still busy when this job's time ran out; please try again later."


def timings(job: storage.Job) -> tuple[float, float]:
    """(seconds generating, seconds waiting before it) for a finished job, from its record."""
    run = job.run_started_at or job.started_at or job.created_at
    end = job.finished_at or run
    return max((end - run).total_seconds(), 0.0), max((run - job.created_at).total_seconds(), 0.0)


def result_of(
    job: storage.Job, images: Sequence[OutputImage], settlement: storage.Settlement | None = None
) -> JobResult:
    """The result of a succeeded job. ``settlement`` is what settling it returned (None when the
    job was settled earlier, e.g. delivered after a restart: the record has the same figures)."""
    elapsed, waited = timings(job)
    free_left = job.meta.get("free_remaining")
    returned = (
        settlement.returned_images if settlement else max(job.images_requested - job.images_delivered, 0)
    )
    if free_left is not None and job.charged_to == "free":
        free_left += returned  # fewer images delivered than reserved: those come back
    cost = settlement.cost_micros if settlement else job.actual_micros or 0
    charged = settlement.charged_micros if settlement else (0 if job.charged_to == "free" else cost)
    return JobResult(
        job_id=job.id,
        status="succeeded",
        model=job.model,
        provider=job.provider or "",
        images=tuple(images),
        seed=job.params.get("seed"),
        cost_micros=cost,
        charged_micros=charged,
        charged_to=job.charged_to or "",
        free_remaining=free_left,
        elapsed=elapsed,
        waited=waited,
        prompt=job.prompt,
        params=job.params,
        user_id=job.user_id,
    )


def _sentence(text: str) -> str:
    """Storage keeps facts in lower case ("the bot restarted while ..."); members read sentences."""
    text = text[:1].upper() + text[1:]
    return text if text.endswith((".", "!", "?", ")")) else text + "."


def failure_of(job: storage.Job) -> JobFailed:
    """The failure of a job that ended without images, from what its record says."""
    text = job.error or "The job did not finish."
    code, _, message = text.partition(": ")
    if code == "provider_busy":  # storage names the provider; people read its name
        message = busy_text(message)
    if message and _CODE.fullmatch(code):  # stored as "<code>: <message>" (see bot/execution.py)
        cause = UserError(_sentence(message))
        cause.code = code
    else:
        cause = UserError(text)
    return JobFailed(job.id, cause, job.status if job.status in ("refused", "cancelled") else "failed")
