"""Whether a failed submit may be sent again. These APIs take no idempotency key: a submit that may
have created a task is never re-sent, or the operator could pay twice (WaveSpeed's SDK holds to the
same rule). The table of which answers say "nothing was done" is in ``bot.providers.http``.
``request_outcome`` names how a failed call ended, for kontext_provider_requests_total.
"""

from __future__ import annotations

import aiohttp
import httpx

from bot.providers.base import OutcomeUnknown, ProviderError, ProviderTimeout, RateLimited


def never_sent(exc: httpx.HTTPError) -> bool:
    """True when the request cannot have reached the provider: no connection was ever made.
    Anything later (a write or read that failed or timed out, a dropped connection) may have."""
    cause = exc.__cause__
    if isinstance(cause, aiohttp.ClientError):
        # httpx-aiohttp reports most aiohttp errors as ConnectTimeout; aiohttp's own says where.
        return isinstance(cause, (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError))
    return isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout))


def outcome_unknown(exc: ProviderError, label: str, provider: str) -> OutcomeUnknown:
    """The error a submit ends with when its task may exist: what happened, and that it was not
    sent again. ``exc`` is the retryable error the answer (or its absence) came out as."""
    if exc.status is not None:
        what = f"{label} failed (HTTP {exc.status}) after the job was sent"
    elif isinstance(exc, ProviderTimeout):
        what = f"{label} did not answer in time after the job was sent"
    else:
        what = f"The connection to {label} broke after the job was sent"
    return OutcomeUnknown(
        f"{what}; it may have started, so it was not sent again.",
        provider=exc.provider or provider,
        status=exc.status,
        request_id=exc.request_id,
    )


def request_outcome(exc: ProviderError) -> str:
    """A failed call's outcome for kontext_provider_requests_total: rate_limited (429, or a busy
    answer), timeout, network_error (no answer), server_error (5xx), client_error (4xx), or error
    (an answer that read as a failure: a failed task, a refusal, an unreadable body)."""
    if isinstance(exc, RateLimited):
        return "rate_limited"
    if isinstance(exc, ProviderTimeout):
        return "timeout"
    if exc.status is None:
        return "network_error"
    if exc.status >= 500:
        return "server_error"
    if exc.status >= 400:
        return "client_error"
    return "error"
