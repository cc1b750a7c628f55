"""What a job is made of before it runs, and what happens to it on the way: the request, its
delivery target, and the events a face shows while the member waits. Nothing here knows Discord."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

# Reads one input image when called (a Discord attachment's ``read``, a CLI source), its size
# already checked. Failures should be UserErrors: submit() raises them before anything is recorded.
InputLoader = Callable[[], Awaitable[bytes]]

DEFAULT_MODEL = {
    "edit": "black-forest-labs/flux-kontext-pro",
    "combine": "black-forest-labs/flux-kontext-pro/multi",
    "create": "black-forest-labs/flux-kontext-pro/text-to-image",
}
PURPOSES = tuple(DEFAULT_MODEL)


def purpose_of(image_count: int) -> str:
    """What a job with this many input images is for: create from text, edit one, combine several."""
    return "create" if image_count == 0 else "edit" if image_count == 1 else "combine"


@dataclass(frozen=True)
class JobRequest:
    model: str
    prompt: str
    # The inputs: raw bytes already in hand, or loaders that submit() calls only inside its intake
    # gate, so a burst of uploads never holds more than a few raw camera files at once. A list is
    # handed over: submit() empties it, so a queued job holds compact normalised copies only.
    images: Sequence[bytes | InputLoader] = ()
    params: Mapping[str, Any] = field(default_factory=dict)  # canonical names; None = not set
    provider: str | None = None  # force one route
    user_id: int | None = None  # None: the local operator (CLI without --user)
    guild_id: int | None = None
    channel_id: int | None = None
    role_ids: Sequence[int] = ()
    source: str = "cli"  # where it came from: cli, slash, reroll, edit-again, context-menu
    # False where flagged results must not be shown (a Discord channel that is not age-restricted):
    # such a result is then refused and refunded rather than delivered.
    nsfw_allowed: bool = True


@dataclass(frozen=True)
class Delivery:
    """Where a Discord job's progress and result go. Stored with the job, so any worker process can
    deliver it through Discord's REST API: the interaction webhook while its token lives, a channel
    message after."""

    application_id: int
    token: str = field(repr=False)  # the interaction token: a bearer secret for 15 minutes
    token_expires_at: datetime
    channel_id: int | None
    guild_id: int | None
    user_id: int
    message_id: int | None = None  # the deferred ("thinking") response, edited as the job goes
    ephemeral: bool = False
    upload_limit: int = 10 * 1024 * 1024

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["token_expires_at"] = self.token_expires_at.isoformat()
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Delivery:
        values = dict(data)
        values["token_expires_at"] = datetime.fromisoformat(values["token_expires_at"])
        return cls(**values)


class Stage(StrEnum):
    QUEUED = "queued"  # waiting for a slot, at ``position``
    WAITING = "waiting"  # a provider said it was busy: back in line, place kept
    RUNNING = "running"  # with a provider
    FAILOVER = "failover"  # that provider failed; trying the next


@dataclass(frozen=True)
class JobEvent:
    job_id: str
    stage: Stage
    model: str
    provider: str | None = None
    position: int = 0
    progress: float | None = None
    waited: float = 0.0  # seconds in the queue before this attempt
    started: float | None = None  # time.monotonic() when this attempt began (for elapsed time)
