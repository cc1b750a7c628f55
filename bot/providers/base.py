"""What every provider adapter speaks: the request it receives, what it hands back, its errors.

Adapters are translations only (LiteLLM's BaseImageEditConfig is the model): they turn a
``GenerationRequest`` into an ``HttpCall`` and an HTTP answer into a ``Pending`` / ``Finished``
state or a typed ``ProviderError``. ``bot.providers.http.ProviderClient`` owns HTTP, retries,
polling and downloads. Adapters read no environment and keep no state beyond their constructor.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from bot.errors import UserError

PROVIDER_LABELS = {
    "modelverse": "UModelverse",
    "vtrix": "Vtrix",
    "wavespeed": "WaveSpeedAI",
    "sandbox": "the sandbox",
}


def label_of(provider: str) -> str:
    """The provider's name as people write it, for messages."""
    return PROVIDER_LABELS.get(provider, provider)


@dataclass(frozen=True)
class GenerationRequest:
    """One job as a route sees it. ``params`` use the catalog's canonical names:
    n, aspect_ratio, seed, steps, guidance, negative_prompt, strength, size."""

    provider_model: str
    prompt: str
    images: tuple[str, ...] = ()  # data URIs (or public URLs), in order
    params: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class HttpCall:
    method: str
    path: str  # joined to the adapter's base URL, or an absolute URL (a provider's polling URL)
    json: Any = None
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class OutputRef:
    """One result image as the provider gave it: a URL to fetch, or base64 text (prefix or not)."""

    url: str | None = None
    b64: str | None = None
    nsfw: bool = False


@dataclass(frozen=True)
class Pending:
    """The task exists and is not finished. ``task_id`` is kept so a restart can resume it."""

    task_id: str
    progress: float | None = None  # 0..1 when the provider says
    status: str = "running"


@dataclass(frozen=True)
class Finished:
    outputs: tuple[OutputRef, ...]
    task_id: str | None = None
    cost_usd: str | None = None  # the provider's reported charge, as its decimal text
    seed: int | None = None


@dataclass(frozen=True)
class OutputImage:
    """A downloaded, verified result image."""

    data: bytes
    mime: str  # image/png, image/jpeg, image/webp
    width: int
    height: int
    nsfw: bool = False


@dataclass(frozen=True)
class ProviderOutput:
    images: tuple[OutputImage, ...]
    task_id: str | None
    cost_usd: str | None
    seed: int | None
    provider: str


class Adapter(Protocol):
    """One provider API. Pure translation; see module docstring."""

    name: str  # "modelverse", "vtrix", "wavespeed"
    base_url: str
    poll_interval: float  # seconds between polls at first; the client backs off from here
    connect_timeout: float  # seconds; the client builds each call's httpx.Timeout from these two
    read_timeout: float

    def auth_headers(self) -> dict[str, str]: ...

    def build_submit(self, req: GenerationRequest) -> HttpCall: ...

    def parse_submit(self, status: int, body: Any) -> Pending | Finished: ...

    def build_poll(self, task_id: str) -> HttpCall: ...

    def parse_poll(self, status: int, body: Any) -> Pending | Finished: ...

    def map_error(self, status: int, body: Any, retry_after: float | None) -> ProviderError: ...


# --- the error family -------------------------------------------------------------------------


class ProviderError(UserError):
    """A provider failed the job. ``retryable``: the same call may succeed if tried again soon.
    ``failover``: another provider could serve it. Messages never carry keys or raw bodies.

    ``resend_safe``: for a submit, the answer proves that no task runs and nothing is charged (a
    429, a 503 before processing, a connection never made, a task that ended as failed). Only such
    a submit is ever sent again: these APIs take no idempotency key (see ``bot.providers.http``)."""

    code = "provider_error"
    retryable = False
    failover = False
    resend_safe = False

    def __init__(
        self,
        message: str,
        *,
        provider: str = "",
        status: int | None = None,
        request_id: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.provider = provider
        self.status = status
        self.request_id = request_id
        self.retry_after = retry_after


class AuthError(ProviderError):
    code = "auth"
    failover = True


class OutOfBalance(ProviderError):
    code = "out_of_balance"
    failover = True


class RateLimited(ProviderError):
    """429: the account is busy or over its rate. Every provider here answers it before any work."""

    code = "rate_limited"
    retryable = True
    failover = True
    resend_safe = True


class ContentRefused(ProviderError):
    code = "content_refused"


class InvalidRequest(ProviderError):
    code = "invalid_request"


class Unavailable(ProviderError):
    code = "unavailable"
    retryable = True
    failover = True


class ProviderTimeout(ProviderError):
    """No answer in time. Retryable for a submit; a task past its overall deadline is final."""

    code = "timeout"
    retryable = True
    failover = True


class TaskFailed(ProviderError):
    """The provider accepted the task and then reported it failed (not a refusal)."""

    code = "task_failed"
    failover = True


class TaskCancelled(ProviderError):
    """The provider reports the task cancelled or deleted. The bot never does either, so someone
    with the account (or the provider) stopped this job on purpose: it is not sent elsewhere."""

    code = "task_cancelled"


class OutcomeUnknown(ProviderError):
    """The submit was sent and no answer says what became of it (a read timeout, a dropped
    connection, a 5xx that may come after processing began). The task may exist and be charged,
    so it is never sent to the same provider again; another provider may serve the job."""

    code = "outcome_unknown"
    failover = True


class BadResponse(ProviderError):
    """The answer could not be understood: malformed JSON, wrong shape, output not an image."""

    code = "bad_response"
    failover = True


class OutputExpired(ProviderError):
    """A result link answered 403/404/410: it expired or never existed."""

    code = "output_expired"
    failover = True
