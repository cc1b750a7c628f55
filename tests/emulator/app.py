"""``ProviderEmulator``: the knobs, the shared state, the server's lifecycle and the call records.

The provider APIs (``modelverse``, ``vtrix``, ``wavespeed``), the result files (``outputs``) and the
control API (``control``) are each their own module; this one starts them on one base URL and keeps
what they share: armed faults, tasks, the seed RNG, and the records of every call.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import socket
import time
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any, Literal

from aiohttp import web

from tests.emulator.accounts import Account, Accounts
from tests.emulator.base import BAD_JSON, JSON_KEY, PROVIDERS, Api, Generation, RecordedRequest
from tests.emulator.control import control_routes
from tests.emulator.faults import FaultBook
from tests.emulator.modelverse import Modelverse
from tests.emulator.outputs import Outputs
from tests.emulator.tasks import Task
from tests.emulator.vtrix import Vtrix
from tests.emulator.wavespeed import WaveSpeed

log = logging.getLogger(__name__)


class ProviderEmulator:
    KEYS = MappingProxyType({"modelverse": "mv-test-key", "vtrix": "vt-test-key", "wavespeed": "ws-test-key"})

    def __init__(
        self,
        *,
        latency: float = 0.0,
        polls_until_done: int = 1,
        output_size: tuple[int, int] = (64, 64),
        keys: dict[str, str] | None = None,
        b64_prefix: bool | Literal["alternate"] = "alternate",
        vtrix_error_style: Literal["alternate", "object", "string", "error_message"] = "alternate",
        output_noise: bool = False,
        strict_input_limits: bool = False,
    ) -> None:
        """Knobs may be changed on a running emulator; they are read at each call.

        b64_prefix: whether modelverse b64_json carries ``data:image/png;base64,`` ("alternate": every
        other image does). output_noise: render random pixels (large, incompressible files).
        strict_input_limits: also enforce the older modelverse limits (sides >= 128 px, ratio <= 4:1).
        """
        self.latency = latency
        self.polls_until_done = polls_until_done
        self.output_size = output_size
        self.keys = {**self.KEYS, **(keys or {})}
        self.b64_prefix = b64_prefix
        self.vtrix_error_style = vtrix_error_style
        self.output_noise = output_noise
        self.strict_input_limits = strict_input_limits
        self.record = True
        self.requests: list[RecordedRequest] = []
        self.generations: list[Generation] = []
        self.peak_in_flight: dict[str, int] = dict.fromkeys((*PROVIDERS, "files"), 0)
        self.faults = FaultBook()
        self.accounts = Accounts()
        self.cut_short = 0  # waits (latency, hang, never_finish) that stop() ended early
        self.tasks: dict[str, Task] = {}
        self.outputs = Outputs(self)
        self._apis: tuple[Api, ...] = (Modelverse(self), Vtrix(self), WaveSpeed(self), self.outputs)
        self._in_flight: dict[str, int] = dict.fromkeys((*PROVIDERS, "files"), 0)
        self._rng = random.Random(0)  # deterministic "random" seeds from one emulator to the next
        self._counters = {"b64": 0, "vtrix_vocab": 0, "vtrix_error": 0}
        self._closing = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self._url: str | None = None

    # -- lifecycle

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        app = web.Application(client_max_size=128 * 1024 * 1024, middlewares=[self._middleware()])
        for api in self._apis:
            app.add_routes(api.routes())
        app.add_routes(control_routes(self))
        self._closing = asyncio.Event()
        # A short shutdown_timeout: stop() must not wait on a client that holds a hung request open.
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=0.5)
        await self._runner.setup()
        # Binding the socket ourselves is the public way to learn the port that port=0 picked.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        await web.SockSite(self._runner, sock).start()
        self._url = f"http://{host}:{sock.getsockname()[1]}"
        log.debug("provider emulator on %s", self._url)

    async def stop(self) -> None:
        self._closing.set()  # wakes hung handlers so cleanup is quick
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @property
    def url(self) -> str:
        if self._url is None:
            raise RuntimeError("ProviderEmulator.start() has not been awaited")
        return self._url

    @property
    def stopping(self) -> bool:
        return self._closing.is_set()

    def env(self) -> dict[str, str]:
        """Environment for a subprocess running the bot against this emulator."""
        out: dict[str, str] = {}
        for provider in PROVIDERS:
            out[f"{provider.upper()}_API_KEY"] = self.keys[provider]
            out[f"{provider.upper()}_BASE_URL"] = self.url
        return out

    # -- faults

    def fault(self, provider: str, kind: str, *, times: int = 1, **options: Any) -> None:
        """Arm a fault; see the package docstring. Raises ValueError for a kind that cannot apply."""
        self.faults.arm(provider, kind, times=times, **options)

    def clear_faults(self) -> None:
        self.faults.clear()

    def reset(self) -> None:
        """Faults, records, generations and account counters cleared (tasks and files stay
        fetchable; account knobs stay set)."""
        self.clear_faults()
        self.requests.clear()
        self.generations.clear()
        self.accounts.reset_counters()

    # -- accounts

    def account(self, provider: str, **knobs: Any) -> Account:
        """Set a provider account's ``concurrency`` (tasks open at once; None = unlimited),
        ``latency`` (task duration in seconds; None = the emulator's ``latency``) and
        ``retry_after`` (Retry-After on its busy answers; None = none). Returns the Account,
        whose ``busy``, ``peak_open`` and ``submits`` count what happened since the last reset."""
        return self.accounts.configure(provider, **knobs)

    def open_tasks(self, provider: str) -> int:
        """This provider's tasks open right now (what its account limit counts)."""
        return self.accounts[provider].open_now(self.latency)

    def latency_of(self, provider: str) -> float:
        """How long one of this provider's tasks takes."""
        return self.accounts[provider].duration(self.latency)

    # -- what the APIs share

    async def pause(self, seconds: float) -> bool:
        """Sleep, cut short by stop(). True when the emulator is stopping (answer nothing then)."""
        if seconds > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closing.wait(), seconds)
                self.cut_short += 1
        return self._closing.is_set()

    def seed(self, requested: int | None) -> int:
        if requested is None or requested == -1:
            return self._rng.randint(0, 2**32 - 1)
        return requested

    def next(self, counter: str) -> int:
        value = self._counters[counter]
        self._counters[counter] = value + 1
        return value

    @staticmethod
    def iso_now() -> str:
        return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")

    @staticmethod
    def unix_now() -> int:
        return int(time.time())

    # -- recording

    def _provider_of(self, path: str) -> str | None:
        for api in self._apis:
            if path.startswith(api.prefix):
                return api.provider
        return None

    def _middleware(self) -> Any:
        @web.middleware
        async def record(request: web.Request, handler: Any) -> web.StreamResponse:
            provider = self._provider_of(request.path)
            if provider is None:
                return await handler(request)
            body: Any = None
            if request.body_exists:
                raw = await request.read()
                try:
                    body = json.loads(raw)
                except ValueError:
                    body = BAD_JSON
            request[JSON_KEY] = body
            rec = RecordedRequest(
                provider,
                request.method,
                request.path_qs,
                None if body is BAD_JSON else body,
                {k.lower(): v for k, v in request.headers.items()},
                at=time.monotonic(),
            )
            if self.record:
                self.requests.append(rec)
            self._in_flight[provider] += 1
            self.peak_in_flight[provider] = max(self.peak_in_flight[provider], self._in_flight[provider])
            try:
                response = await handler(request)
                if request.transport is not None and not request.transport.is_closing():
                    rec.status = response.status
                return response
            finally:
                self._in_flight[provider] -= 1

        return record
