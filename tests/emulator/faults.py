"""Faults: which kinds exist, where each applies, arming and taking them, and gateway answers.

``FaultBook.arm(provider, kind, times=1, **options)`` arms a fault for the next ``times`` matching
calls (-1 = forever); provider "*" matches any provider the kind applies to. The first armed
matching fault wins; one fault per call. The kinds are listed in the package docstring.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from aiohttp import web

from tests.emulator.base import PROVIDERS, seconds_text

if TYPE_CHECKING:
    from tests.emulator.base import Api

_ALL = frozenset(PROVIDERS)
GATEWAY = frozenset(
    "rate_limit server_error connection_reset hang malformed_json wrong_content_type bad_key".split()
) | {"out_of_balance"}
FILE = frozenset({"expired_output", "not_image", "huge_output"})
_OUTCOME_PROVIDERS = MappingProxyType(
    {
        "content_refused": _ALL,
        "task_failed": _ALL,
        "never_finish": _ALL,
        "completed_on_create": frozenset({"vtrix"}),
        "no_task": frozenset({"vtrix"}),
        "reported_cost": frozenset({"vtrix"}),
        "sync_504": frozenset({"wavespeed"}),
        "sync_timeout": frozenset({"wavespeed"}),
        "end_state": frozenset({"wavespeed"}),
        "empty_error": frozenset({"modelverse"}),
        "nsfw": frozenset({"wavespeed"}),
        "b64_output": frozenset({"modelverse"}),
        "invalid_base64": frozenset({"modelverse"}),
    }
)
OUTCOME = frozenset(_OUTCOME_PROVIDERS)
_ON = frozenset({"on"})
_OPTIONS = MappingProxyType(
    {
        "rate_limit": _ON | {"retry_after"},
        "server_error": _ON | {"status", "code", "retry_after"},
        "connection_reset": _ON,
        "hang": _ON | {"seconds"},
        "malformed_json": _ON,
        "wrong_content_type": _ON,
        "bad_key": _ON,
        "out_of_balance": _ON,
        "content_refused": frozenset({"message", "wrapped"}),
        "task_failed": frozenset({"code", "message", "wrapped"}),
        "never_finish": frozenset({"seconds"}),
        "completed_on_create": frozenset({"output"}),
        "no_task": frozenset({"message"}),
        "reported_cost": frozenset({"cost"}),
        "sync_504": frozenset(),
        "sync_timeout": frozenset({"variant"}),
        "end_state": frozenset({"status", "message"}),
        "empty_error": frozenset(),
        "nsfw": frozenset(),
        "b64_output": frozenset({"prefix"}),
        "invalid_base64": frozenset(),
        "expired_output": frozenset({"status"}),
        "not_image": frozenset(),
        "huge_output": frozenset({"size_mb", "declare_length"}),
    }
)
FAULT_KINDS = frozenset(_OPTIONS)

HTML = b"<!DOCTYPE html><html><head><title>Just a moment...</title></head><body>Checking</body></html>"
_TRUNCATED = MappingProxyType(
    {
        "modelverse": b'{"created": 1750667997, "data": [{"url": "http',
        "vtrix": b'{"id": "task_x", "status": "compl',
        "wavespeed": b'{"code": 200, "message": "success", "data": {"id": ',
    }
)


@dataclass
class Fault:
    provider: str
    kind: str
    remaining: int  # -1 = forever
    options: dict[str, Any]


class FaultBook:
    """The armed faults of one emulator."""

    def __init__(self) -> None:
        self._faults: list[Fault] = []

    def arm(self, provider: str, kind: str, *, times: int = 1, **options: Any) -> None:
        """Raises ValueError for a kind, option or provider that cannot apply."""
        if provider != "*" and provider not in PROVIDERS:
            raise ValueError(f"unknown provider {provider!r}")
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; known: {', '.join(sorted(FAULT_KINDS))}")
        applies = _OUTCOME_PROVIDERS.get(kind, _ALL)
        if provider != "*" and provider not in applies:
            raise ValueError(f"fault {kind!r} does not apply to {provider} (only {', '.join(applies)})")
        unknown = set(options) - _OPTIONS[kind]
        if unknown:
            raise ValueError(f"fault {kind!r} takes no option(s) {', '.join(sorted(unknown))}")
        if options.get("on", "submit") not in ("submit", "poll", "any"):
            raise ValueError("on must be 'submit', 'poll' or 'any'")
        if options.get("on", "submit") != "submit" and provider == "modelverse":
            raise ValueError("modelverse has no polls")
        if kind == "server_error" and options.get("status", 500) not in (408, 500, 502, 503, 504):
            raise ValueError("server_error status must be one of 408, 500, 502, 503, 504")
        if kind == "end_state" and options.get("status") not in ("cancelled", "timeout", "deleted"):
            raise ValueError("end_state status must be 'cancelled', 'timeout' or 'deleted'")
        if kind == "sync_timeout" and options.get("variant", "code") not in ("code", "text"):
            raise ValueError("sync_timeout variant must be 'code' or 'text'")
        if not isinstance(times, int) or times == 0 or times < -1:
            raise ValueError("times must be a positive count or -1 (forever)")
        self._faults.append(Fault(provider, kind, times, dict(options)))

    def clear(self) -> None:
        self._faults.clear()

    def take(
        self,
        provider: str,
        kinds: frozenset[str],
        phase: str | None = None,
        skip: frozenset[str] = frozenset(),
    ) -> Fault | None:
        """The first armed fault for this call (spending one of its ``times``), or None."""
        for fault in self._faults:
            if fault.provider not in ("*", provider) or fault.kind not in kinds or fault.kind in skip:
                continue
            if provider not in _OUTCOME_PROVIDERS.get(fault.kind, _ALL):
                continue
            if phase is not None and fault.options.get("on", "submit") not in (phase, "any"):
                continue
            if fault.remaining > 0:
                fault.remaining -= 1
                if fault.remaining == 0:
                    self._faults.remove(fault)
            return fault
        return None


async def gateway_answer(
    api: Api, request: web.Request, phase: str, rid: str = ""
) -> web.StreamResponse | None:
    """Apply an armed gateway fault for ``api``; None means: go on and answer normally."""
    fault = api.emu.faults.take(api.provider, GATEWAY, phase)
    if fault is None:
        return None
    kind, opts = fault.kind, fault.options
    if kind == "connection_reset":
        return api.abort(request)
    if kind == "hang":
        return api.abort(request) if await api.sleep(float(opts.get("seconds", 30.0))) else None
    if kind == "malformed_json":
        return web.Response(body=_TRUNCATED[api.provider], content_type="application/json")
    if kind == "wrong_content_type":
        return web.Response(body=HTML, content_type="text/html")
    if kind == "rate_limit":
        retry_after = opts.get("retry_after")
        headers = {} if retry_after is None else {"Retry-After": seconds_text(retry_after)}
        return api.error(429, api.rate_limit_code, "Rate limit exceeded, slow down", rid, headers)
    if kind == "bad_key":
        return api.error(401, api.auth_code, "Invalid or inactive API key", rid)
    if kind == "out_of_balance":
        status, code = api.balance
        return api.error(status, code, "Insufficient account balance", rid)
    status = int(opts.get("status", 500))
    retry_after = opts.get("retry_after")  # a 503 may say when to come back too
    headers = {} if retry_after is None else {"Retry-After": seconds_text(retry_after)}
    return api.error(status, api.server_code(status, opts), f"Upstream error ({status})", rid, headers)
