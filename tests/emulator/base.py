"""What every emulated API shares: the records the emulator keeps, and the request plumbing.

``Api`` is the base of each provider module's handler class (and of the result-file server): it
holds the emulator whose state and knobs it reads, checks the bearer key, reads the JSON body the
recording middleware parsed, and aborts connections. Each subclass words errors its own way.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from aiohttp import web

from tests.emulator.checks import Reject

if TYPE_CHECKING:
    from tests.emulator.app import ProviderEmulator

PROVIDERS = ("modelverse", "vtrix", "wavespeed")
JSON_KEY = web.RequestKey("emulator_json", object)
BAD_JSON = object()  # marker: the body was present but not JSON


@dataclass
class RecordedRequest:
    provider: str  # "modelverse" | "vtrix" | "wavespeed" | "files"
    method: str
    path: str  # with query string
    json: Any  # parsed body, None when there was none or it was not JSON
    headers: dict[str, str]  # names lower-cased
    status: int | None = None  # None until answered, or when the connection was aborted
    at: float = 0.0  # time.monotonic() on arrival, for pacing/concurrency assertions


@dataclass
class Generation:
    """One accepted generation: what it made and the seed it used."""

    provider: str
    model: str
    seed: int
    task_id: str | None
    outputs: list[str]  # file URLs, or the base64 text when the answer carried base64


class Api:
    """One emulated API (or the file server). Subclasses set ``provider`` and ``prefix`` (the path
    prefix the recording middleware files calls under) and add their routes."""

    provider: ClassVar[str] = ""
    prefix: ClassVar[str] = ""
    # Codes a gateway fault answers with, in this API's own vocabulary.
    rate_limit_code: ClassVar[Any] = 429
    auth_code: ClassVar[Any] = 401
    balance: ClassVar[tuple[int, Any]] = (403, 403)
    busy_message: ClassVar[str] = "Too many tasks at once for this account"

    def __init__(self, emu: ProviderEmulator) -> None:
        self.emu = emu

    def routes(self) -> list[web.RouteDef]:
        raise NotImplementedError

    def error(
        self,
        status: int,
        code: Any,
        message: str,
        rid: str = "",
        headers: dict[str, str] | None = None,
    ) -> web.Response:
        raise NotImplementedError

    def server_code(self, status: int, options: dict[str, Any]) -> Any:
        """The code of a 5xx (or 408) answer from the gateway."""
        raise NotImplementedError

    # -- plumbing

    def authorized(self, request: web.Request) -> bool:
        return request.headers.get("Authorization") == f"Bearer {self.emu.keys[self.provider]}"

    @staticmethod
    def body(request: web.Request) -> dict[str, Any]:
        body = request[JSON_KEY]
        if not isinstance(body, dict):
            raise Reject("the request body must be a JSON object")
        return body

    @staticmethod
    def abort(request: web.Request) -> web.Response:
        if request.transport is not None:
            request.transport.abort()
        return web.Response(status=499)  # never sent: the transport is gone

    async def sleep(self, seconds: float) -> bool:
        """Sleep, cut short by stop(). True when the emulator is stopping (answer nothing then)."""
        return await self.emu.pause(seconds)

    def admit(self, rid: str = "") -> web.Response | None:
        """None when the account has room for one more task, else its busy answer (counted)."""
        emu = self.emu
        if emu.accounts.admit(self.provider, emu.latency_of(self.provider)):
            return None
        retry_after = emu.accounts[self.provider].retry_after
        headers = None if retry_after is None else {"Retry-After": seconds_text(retry_after)}
        return self.error(429, self.rate_limit_code, self.busy_message, rid, headers)


def seconds_text(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"
