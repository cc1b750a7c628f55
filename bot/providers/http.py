"""The one place that talks HTTP to providers' APIs: timeouts, retries with backoff, polling.

Adapters only translate (see ``bot.providers.base``); this client sends what they build, hands the
answers back to them, and turns transport failures into the same ``ProviderError`` family.
The policy follows openai-python: named defaults, retry only what may succeed if tried again,
jittered exponential backoff, Retry-After honoured.

A submit is sent again only when an answer says nothing was done (``ProviderError.resend_safe``;
``bot.providers.submits``). The same for UModelverse, Vtrix and WaveSpeed:

    429 rate limited / account busy            nothing was done     sent again (Retry-After)
    503 unavailable (before processing)        nothing was done     sent again
    connect refused, connect or pool timeout   nothing was sent     sent again
    a task that ended failed for a passing     the task ended       sent again
      reason (WaveSpeed 5000/5003/5004)
    read or write timeout, dropped connection  unknown              OutcomeUnknown
    500, 502, 504 without a task id, 408       unknown              OutcomeUnknown
    WaveSpeed 504 or 200 sync timeout with id  the task is running  that task is polled

OutcomeUnknown ends the route and may fail over: the member is charged once, at the route that
delivered, and another provider's account is not the one that may hold the task. Polls are GETs:
a poll that fails for a passing reason is asked again until the job's deadline.
Result images are fetched by ``bot.providers.results`` under the same retry policy.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import aiohttp
import httpx

from bot.config import Limits
from bot.downloads import RESULT_READ_TIMEOUT, TooLarge, parse_retry_after, read_capped, safe_path
from bot.providers.base import (
    Adapter,
    BadResponse,
    Finished,
    GenerationRequest,
    HttpCall,
    OutputImage,
    OutputRef,
    Pending,
    ProviderError,
    ProviderOutput,
    ProviderTimeout,
    RateLimited,
    Unavailable,
)
from bot.providers.parsing import scrub
from bot.providers.results import ResultDownloader
from bot.providers.submits import never_sent, outcome_unknown, request_outcome
from bot.providers.wire import join_url, request_id_of, same_origin

log = logging.getLogger(__name__)

INITIAL_BACKOFF = 0.5  # seconds before the first retry; doubles each time
MAX_BACKOFF = 8.0
MAX_RETRY_AFTER = 60.0  # a longer Retry-After is cut to this (and never past the job's deadline)
POLL_BACKOFF = 1.5  # polls slow down gently: a task that is not done soon is usually a long one
MAX_POLL_INTERVAL = 10.0
# JSON bodies are read into memory; a synchronous answer may carry up to four base64 images.
_JSON_OVERHEAD = 4 * 4 // 3 + 1
_THREAD_JSON_BYTES = 1 << 20  # parse larger JSON bodies off the event loop

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[Any]]
OnTask = Callable[[str], Awaitable[None]]
OnProgress = Callable[[float | None], Awaitable[None]]
OnRequest = Callable[[str, str], None]  # (provider, outcome): bot.metrics counts API calls
Parse = Callable[[int, Any], Pending | Finished]


class ProviderClient:
    """Runs adapters over one shared ``httpx.AsyncClient`` (owned by the app, not by this class).

    ``deadline`` arguments are ``clock()`` values (``time.monotonic`` unless a test injects one).
    ``secrets`` are scrubbed from every error message as a last line of defence.
    """

    def __init__(
        self,
        http: httpx.AsyncClient,
        limits: Limits,
        *,
        secrets: Sequence[str] = (),
        sleep: Sleep = asyncio.sleep,
        rng: random.Random | None = None,
        clock: Clock = time.monotonic,
        download_timeout: float = RESULT_READ_TIMEOUT,
        on_request: OnRequest | None = None,
    ) -> None:
        self._http = http
        self._on_request = on_request or (lambda provider, outcome: None)
        self._limits = limits
        self._secrets = tuple(s for s in secrets if s)
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._clock = clock
        self._results = ResultDownloader(
            http,
            limits,
            read_timeout=download_timeout,
            retry_delay=self._retry_delay,
            transport_error=self._transport_error,
            sleep=sleep,
        )

    def __repr__(self) -> str:
        return f"ProviderClient(max_retries={self._limits.max_retries})"

    # --- public -------------------------------------------------------------------------------

    async def run(
        self,
        adapter: Adapter,
        req: GenerationRequest,
        *,
        deadline: float,
        on_task: OnTask | None = None,
        on_progress: OnProgress | None = None,
    ) -> ProviderOutput:
        """Submit, poll to the end, download and verify the images. Raises ProviderError."""
        started = self._clock()
        attempt = 0
        while True:
            try:
                finished = await self._submit_and_wait(adapter, req, deadline, started, on_task, on_progress)
                break
            except ProviderError as exc:
                if isinstance(exc, RateLimited):
                    # The account is busy: not this request's problem to wait out. The queue puts
                    # the job back in line and holds the provider back for everyone (execution.py).
                    raise
                # Submits that did nothing, and tasks that ended failed for a passing reason
                # (WaveSpeed 5xxx): sending the job again is the only way on, and pays once.
                delay = self._retry_delay(exc, attempt, deadline) if exc.resend_safe else None
                if delay is None:
                    raise
                attempt += 1
                log.warning(
                    "%s: %s (HTTP %s); retry %d/%d in %.1f s",
                    adapter.name,
                    exc.code,
                    exc.status,
                    attempt,
                    self._limits.max_retries,
                    delay,
                )
                await self._sleep(delay)
        return await self._deliver(adapter, finished, deadline)

    async def resume(
        self,
        adapter: Adapter,
        task_id: str,
        *,
        deadline: float,
        on_progress: OnProgress | None = None,
    ) -> ProviderOutput:
        """After a restart: poll an existing task to its end and download the result."""
        started = self._clock()
        finished = await self._poll(adapter, task_id, deadline, started, on_progress, first_delay=0.0)
        return await self._deliver(adapter, finished, deadline)

    async def download(
        self, refs: Sequence[OutputRef], *, provider: str, deadline: float | None = None
    ) -> tuple[OutputImage, ...]:
        """Fetch (or decode) every output at once and check each is a real image."""
        return await self._results.download(refs, provider=provider, deadline=deadline)

    # --- submit and poll ----------------------------------------------------------------------

    async def _submit_and_wait(
        self,
        adapter: Adapter,
        req: GenerationRequest,
        deadline: float,
        started: float,
        on_task: OnTask | None,
        on_progress: OnProgress | None,
    ) -> Finished:
        call = adapter.build_submit(req)
        try:
            state = await self._ask(adapter, call, adapter.parse_submit, deadline, started, submit=True)
        except ProviderError as exc:
            raise self._submit_error(adapter, exc, deadline, started) from None
        task_id = state.task_id
        if task_id and on_task is not None:
            # Recorded before any polling, so a restart can pick the task up again.
            await on_task(task_id)
        if isinstance(state, Finished) and (state.outputs or not task_id):
            return state
        if on_progress is not None:
            await on_progress(state.progress)
        return await self._poll(adapter, state.task_id, deadline, started, on_progress)

    async def _poll(
        self,
        adapter: Adapter,
        task_id: str,
        deadline: float,
        started: float,
        on_progress: OnProgress | None,
        first_delay: float | None = None,
    ) -> Finished:
        interval = adapter.poll_interval  # the wait before the next poll that finds it running
        if first_delay is None:
            delay, interval = interval, _slower(interval)
        else:
            delay = first_delay
        failures = 0
        while True:
            if delay > 0:
                remaining = deadline - self._clock()
                if remaining <= 0:
                    raise self._deadline_error(adapter, deadline, started)
                await self._sleep(min(delay, remaining))
            call = adapter.build_poll(task_id)
            try:
                state = await self._ask(adapter, call, adapter.parse_poll, deadline, started)
            except ProviderError as exc:
                # A task that ended failed is the task's verdict: asking again won't change it.
                # Anything else retryable (429, 5xx, a dropped connection, even a 200 wrapping a
                # gateway error) is the road, not the task: keep polling the same task until the
                # deadline; the job is sent again only after a verdict that says it may be.
                verdict = exc.status is not None and 200 <= exc.status < 300 and exc.resend_safe
                if not exc.retryable or verdict:
                    raise
                failures += 1
                delay = max(interval, self._backoff(failures - 1, exc.retry_after))
                log.warning(
                    "%s: polling task %s failed (%s, HTTP %s); trying again in %.1f s",
                    adapter.name,
                    task_id,
                    exc.code,
                    exc.status,
                    delay,
                )
                continue
            failures = 0
            if isinstance(state, Finished):
                return state if state.task_id else _with_task_id(state, task_id)
            if on_progress is not None:
                await on_progress(state.progress)
            delay, interval = interval, _slower(interval)

    async def _ask(
        self,
        adapter: Adapter,
        call: HttpCall,
        parse: Parse,
        deadline: float,
        started: float,
        submit: bool = False,
    ) -> Pending | Finished:
        """One API call and its reading; its outcome goes to ``on_request`` (bot.metrics)."""
        try:
            status, body, meta = await self._exchange(adapter, call, deadline, started)
            state = self._parse(adapter, parse, status, body, meta, submit=submit)
        except ProviderError as exc:
            self._on_request(adapter.name, request_outcome(exc))
            raise
        self._on_request(adapter.name, "ok")
        return state

    def _parse(
        self,
        adapter: Adapter,
        parse: Callable[[int, Any], Pending | Finished],
        status: int,
        body: Any,
        meta: _Meta,
        *,
        submit: bool = False,
    ) -> Pending | Finished:
        try:
            state = parse(status, body)
        except ProviderError as exc:
            raise self._finish_error(exc, adapter.name, status, meta) from None
        except (KeyError, IndexError, TypeError, ValueError, AttributeError) as exc:
            # An adapter tripping over an odd shape is the provider's answer being wrong.
            log.warning("%s: unreadable answer (HTTP %s, %s)", adapter.name, status, type(exc).__name__)
            raise self._finish_error(
                BadResponse(f"{_label(adapter)} sent an answer the bot could not read."),
                adapter.name,
                status,
                meta,
            ) from None
        if isinstance(state, Finished) and not state.outputs and not (submit and state.task_id):
            # A submit's answer reports the submission: with a task to ask, "done, no images" means poll.
            raise self._finish_error(
                BadResponse(f"{_label(adapter)} finished without any image."), adapter.name, status, meta
            )
        return state

    # --- one HTTP exchange --------------------------------------------------------------------

    async def _exchange(
        self, adapter: Adapter, call: HttpCall, deadline: float, started: float
    ) -> tuple[int, Any, _Meta]:
        """Send one call; return (status, parsed JSON body, meta). Unreadable answers and
        transport failures come out as ProviderError."""
        remaining = deadline - self._clock()
        if remaining <= 0:
            raise self._deadline_error(adapter, deadline, started)
        url = join_url(adapter.base_url, call.path)
        headers = dict(call.headers)
        if same_origin(url, adapter.base_url):  # never hand the key to a host the adapter didn't name
            headers.update(adapter.auth_headers())
        timeout = httpx.Timeout(
            connect=min(adapter.connect_timeout, remaining),
            read=min(adapter.read_timeout, remaining),
            write=min(adapter.read_timeout, remaining),
            pool=min(adapter.connect_timeout, remaining),
        )
        begun = time.monotonic()
        cap = self._limits.max_output_bytes * _JSON_OVERHEAD
        try:
            async with self._http.stream(
                call.method, url, json=call.json, headers=headers, timeout=timeout
            ) as resp:
                raw = await read_capped(resp, cap)
                status, resp_headers = resp.status_code, resp.headers
        except httpx.HTTPError as exc:
            raise self._transport_error(exc, adapter.name, _label(adapter)) from None
        except TooLarge:
            raise BadResponse(
                f"{_label(adapter)} sent an answer larger than the bot accepts.", provider=adapter.name
            ) from None
        log.debug(
            "%s %s %s -> %s in %.2f s",
            adapter.name,
            call.method,
            safe_path(url),
            status,
            time.monotonic() - begun,
        )
        meta = _Meta(parse_retry_after(resp_headers.get("retry-after")), request_id_of(resp_headers))
        ctype = resp_headers.get("content-type", "").lower()
        body = await _parse_json(raw) if "json" in ctype else _NOT_JSON
        if body is _NOT_JSON:
            if 200 <= status < 300:
                what = "malformed JSON" if "json" in ctype else f"{ctype or 'no content type'}"
                log.warning("%s: HTTP %s answer was %s", adapter.name, status, what)
                raise self._finish_error(
                    BadResponse(f"{_label(adapter)} sent an unreadable answer ({what})."),
                    adapter.name,
                    status,
                    meta,
                )
            # An error page from a proxy or load balancer: the status alone says what happened.
            text = raw[:2000].decode("utf-8", "replace")
            err = adapter.map_error(status, text, meta.retry_after)
            raise self._finish_error(err, adapter.name, status, meta)
        return status, body, meta

    def _transport_error(self, exc: httpx.HTTPError, provider: str, label: str) -> ProviderError:
        # httpx's own text can include the URL; only the exception type is used.
        kind = type(exc).__name__
        log.warning("%s: %s", provider, kind)
        # httpx-aiohttp reports every aiohttp connection error as ConnectTimeout; the aiohttp error
        # it wraps says whether time really ran out or the connection broke.
        cause = exc.__cause__
        broke = isinstance(cause, aiohttp.ClientConnectionError) and not isinstance(cause, TimeoutError)
        err: ProviderError
        if isinstance(exc, httpx.TimeoutException) and not broke:
            err = ProviderTimeout(f"{label} did not answer in time.", provider=provider)
        elif isinstance(
            exc, (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError, httpx.ProxyError)
        ):
            err = Unavailable(f"The connection to {label} failed.", provider=provider)
        else:
            err = Unavailable(f"{label} could not be reached ({kind}).", provider=provider)
            err.retryable = False  # a bad URL or protocol will not fix itself
        err.resend_safe = never_sent(exc)
        return err

    def _submit_error(
        self, adapter: Adapter, exc: ProviderError, deadline: float, started: float
    ) -> ProviderError:
        """A failed submit: as it is when the answer says nothing was done (or is final anyway);
        OutcomeUnknown when the task may exist. Either way the job's deadline comes first."""
        if exc.retryable and self._clock() >= deadline:
            # A call cut short by the deadline: say so, rather than "did not answer".
            return self._deadline_error(adapter, deadline, started)
        if not exc.retryable or exc.resend_safe:
            return exc
        log.warning(
            "%s: submit outcome unknown (%s, HTTP %s); not sent again", adapter.name, exc.code, exc.status
        )
        unknown = outcome_unknown(exc, _label(adapter), adapter.name)
        return self._finish_error(unknown, adapter.name, exc.status, _Meta(None, exc.request_id))

    def _finish_error(
        self, exc: ProviderError, provider: str, status: int | None, meta: _Meta
    ) -> ProviderError:
        """Fill in what the adapter could not know, and scrub every secret from the message."""
        exc.provider = exc.provider or provider
        if exc.status is None:
            exc.status = status
        if exc.retry_after is None:
            exc.retry_after = meta.retry_after
        if exc.request_id is None:
            exc.request_id = meta.request_id
        if exc.request_id:
            exc.request_id = scrub(exc.request_id, self._secrets)
        message = scrub(exc.user_message, self._secrets)
        exc.user_message = message
        exc.args = (message,)
        return exc

    # --- retries ------------------------------------------------------------------------------

    def _retry_delay(self, exc: ProviderError, attempt: int, deadline: float) -> float | None:
        """Seconds to wait before trying again, or None when the error must be raised now."""
        if not exc.retryable or attempt >= self._limits.max_retries:
            return None
        delay = self._backoff(attempt, exc.retry_after)
        if self._clock() + delay >= deadline:
            return None
        return delay

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(max(retry_after, 0.0), MAX_RETRY_AFTER)
        base = min(INITIAL_BACKOFF * 2**attempt, MAX_BACKOFF)
        # Jitter spreads out clients that failed together so they don't return together.
        return base * (1 - 0.25 * self._rng.random())

    def _deadline_error(self, adapter: Adapter, deadline: float, started: float) -> ProviderTimeout:
        seconds = max(round(deadline - started), 0)
        err = ProviderTimeout(f"{_label(adapter)} took longer than {seconds} s.", provider=adapter.name)
        # The job's time is up: trying again (here or elsewhere) cannot help this job.
        err.retryable = False
        return err

    # --- downloads ----------------------------------------------------------------------------

    async def _deliver(self, adapter: Adapter, finished: Finished, deadline: float) -> ProviderOutput:
        images = await self.download(finished.outputs, provider=adapter.name, deadline=deadline)
        return ProviderOutput(
            images=images,
            task_id=finished.task_id,
            cost_usd=finished.cost_usd,
            seed=finished.seed,
            provider=adapter.name,
        )


# --- helpers (pure, module-level functions; no state) -------------------------------------------


class _Meta:
    """What the client read from an answer's headers."""

    __slots__ = ("request_id", "retry_after")

    def __init__(self, retry_after: float | None, request_id: str | None) -> None:
        self.retry_after = retry_after
        self.request_id = request_id


_NOT_JSON = object()


async def _parse_json(raw: bytes | bytearray) -> Any:
    try:
        if len(raw) > _THREAD_JSON_BYTES:
            return await asyncio.to_thread(json.loads, bytes(raw))
        return json.loads(bytes(raw))
    except (ValueError, UnicodeDecodeError):
        return _NOT_JSON


def _label(adapter: Adapter) -> str:
    return getattr(adapter, "label", adapter.name)


def _slower(interval: float) -> float:
    return min(interval * POLL_BACKOFF, MAX_POLL_INTERVAL)


def _with_task_id(state: Finished, task_id: str) -> Finished:
    return Finished(state.outputs, task_id=task_id, cost_usd=state.cost_usd, seed=state.seed)
