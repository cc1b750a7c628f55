"""One local server that speaks the UModelverse, Vtrix and WaveSpeedAI image APIs, for tests and benches.

The three APIs use different paths, so a single base URL (``ProviderEmulator.url``) serves them all:

    POST /v1/images/generations                  UModelverse, synchronous (OpenAI-compatible)
    POST /model/v1/generation                    Vtrix create;  GET /model/v1/generation/task/{id}
    POST /api/v3/wavespeed-ai/<model-path>       WaveSpeed submit;  GET /api/v3/predictions/{id}[/result]
    GET  /files/<id>.png | <id>.jpg              result images; no auth needed, like a provider's CDN
    POST /_emulator/fault | /_emulator/reset | /_emulator/config,  GET /_emulator/requests | generations
                                                 control, for ``python -m tests.emulator`` subprocesses

Requests are checked the way /work/shared/reference/providers.md and the seeds describe (auth header,
model id, which parameters each model takes and their ranges, ``image`` vs ``images``, data URIs that
must decode to a real image). Unknown parameters are refused even where the real service might ignore
them: an adapter that sends a name the provider does not document is a bug we want to see.

Error bodies (adapters should key on HTTP status first, then code):
    modelverse  {"error": {"message", "type", "param": <request id>, "code"}}; type is
                "invalid_request_error" on 400 and "" otherwise (as in the seed's example).
                400 param_error | model_error (unknown model) | sensitive_check_error, 401 auth_error,
                402 insufficient_balance, 408 timeout, 429 rate_limit_error,
                500 internal_error | model_server_error, 502/503 internal_error, 504 gateway_timeout_error
    vtrix       {"error": {"code": str, "message": str}}: 400 invalid_parameter, 401 unauthorized,
                403 insufficient_balance, 404 task_not_found, 429 rate_limit_exceeded, 5xx server_error
    wavespeed   {"code": int, "message": str, "data": null | <prediction>}: HTTP errors carry the HTTP
                status as code (401, 403, 404, 429, 504); validation is HTTP 400 with 1400 (missing) or
                1401 (invalid); server errors 5000 (500/502), 5003 (503), 5004 (504)

Task life (vtrix, wavespeed): the create/submit answer is never finished (except the faults below and
WaveSpeed's sync mode). The k-th poll finishes it when k >= ``polls_until_done`` (0 counts as 1) and
``latency`` seconds have passed since creation. Vtrix tasks alternate between two status vocabularies
(``pending`` then ``processing``, or ``in_progress``); WaveSpeed goes ``created`` then ``processing``.
Vtrix ``error`` is an object ``{"code", "message"}`` or a plain string (``vtrix_error_style``).

Faults: ``fault(provider, kind, times=1, **options)`` arms a fault for the next ``times`` matching calls
(-1 = forever); provider "*" matches any provider the kind applies to. Gateway faults answer before the
request is even authenticated and hit submit calls unless ``on="poll"`` or ``on="any"``; outcome faults
hit the next *valid* submit; file faults hit downloads of that provider's result files. The first armed
matching fault wins; one fault per call.

Gateway faults (all providers):
    rate_limit          429 with the provider's rate-limit body; retry_after=S adds ``Retry-After: S``
    server_error        status=500|502|503|504 (default 500; 408 too for modelverse); code= overrides
                        modelverse's 500 code (e.g. "model_server_error")
    connection_reset    the connection is aborted without any response
    hang                seconds=S (default 30) of silence, then the normal answer (stop() cuts it short)
    malformed_json      200, application/json, a truncated JSON document
    wrong_content_type  200 with an HTML page as text/html
    bad_key             401 even with the right key
    out_of_balance      modelverse 402 insufficient_balance; vtrix 403; wavespeed 403
Outcome faults:
    content_refused     modelverse 400 sensitive_check_error; vtrix task fails with a moderation error
                        (code "content_moderated"); wavespeed task fails, data.code 1200 + moderation text
    task_failed         modelverse 500 model_server_error; vtrix task fails ("generation_failed");
                        wavespeed task fails with data.code 1403 (code=/message= override, e.g. 1402)
                        wavespeed, both kinds, wrapped=True: no task; the submit answers HTTP 200
                        ``{"code": 1200|1403, "message", "data": null}``
    never_finish        tasks never leave the running state; modelverse (and wavespeed sync mode) stay
                        silent for seconds=S (default 3600) then answer 504
    completed_on_create vtrix: the create call already answers ``completed`` with output and usage
    sync_504            wavespeed, only submits with enable_sync_mode: after ``latency`` the answer is
                        HTTP 504 whose wrapped body still has data.id (status processing); the task
                        completes and the first poll finds it done
    nsfw                wavespeed: has_nsfw_contents is all true
    b64_output          modelverse answers b64_json even if url was asked; prefix=bool picks the
                        ``data:image/png;base64,`` prefix (default: the ``b64_prefix`` knob)
    invalid_base64      modelverse answers b64_json entries that are not base64
File faults:
    expired_output      the result URL answers status= (default 404) with an S3-style XML error
    not_image           200, Content-Type image/png, body an HTML page
    huge_output         size_mb=M (default 60) bytes of image/png (PNG signature then zeros);
                        declare_length=False streams it chunked without Content-Length

Every provider and file call is appended to ``requests`` (headers lower-cased, ``status`` filled in once
answered, None when aborted; set ``record = False`` for long benches). ``peak_in_flight`` holds the most
concurrent calls seen per provider. Every generation is appended to ``generations`` with the seed used (a
random one from a per-instance RNG when the request had none or -1); the result image's colour follows
the seed, so the same seed gives the same bytes.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import contextlib
import io
import json
import logging
import random
import re
import signal
import socket
import time
import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any, Literal

from aiohttp import web
from PIL import Image, UnidentifiedImageError

log = logging.getLogger(__name__)

PROVIDERS = ("modelverse", "vtrix", "wavespeed")
SEED_MAX = 9_999_999_999
ASPECT_RATIOS = ("21:9", "16:9", "4:3", "3:2", "1:1", "2:3", "3:4", "9:16", "9:21")
B64_PREFIX = "data:image/png;base64,"

_ALL = frozenset(PROVIDERS)
_GATEWAY = frozenset(
    "rate_limit server_error connection_reset hang malformed_json wrong_content_type bad_key".split()
) | {"out_of_balance"}
_FILE = frozenset({"expired_output", "not_image", "huge_output"})
_OUTCOME_PROVIDERS = MappingProxyType(
    {
        "content_refused": _ALL,
        "task_failed": _ALL,
        "never_finish": _ALL,
        "completed_on_create": frozenset({"vtrix"}),
        "sync_504": frozenset({"wavespeed"}),
        "nsfw": frozenset({"wavespeed"}),
        "b64_output": frozenset({"modelverse"}),
        "invalid_base64": frozenset({"modelverse"}),
    }
)
_OUTCOME = frozenset(_OUTCOME_PROVIDERS)
_ON = frozenset({"on"})
_OPTIONS = MappingProxyType(
    {
        "rate_limit": _ON | {"retry_after"},
        "server_error": _ON | {"status", "code"},
        "connection_reset": _ON,
        "hang": _ON | {"seconds"},
        "malformed_json": _ON,
        "wrong_content_type": _ON,
        "bad_key": _ON,
        "out_of_balance": _ON,
        "content_refused": frozenset({"message", "wrapped"}),
        "task_failed": frozenset({"code", "message", "wrapped"}),
        "never_finish": frozenset({"seconds"}),
        "completed_on_create": frozenset(),
        "sync_504": frozenset(),
        "nsfw": frozenset(),
        "b64_output": frozenset({"prefix"}),
        "invalid_base64": frozenset(),
        "expired_output": frozenset({"status"}),
        "not_image": frozenset(),
        "huge_output": frozenset({"size_mb", "declare_length"}),
    }
)
FAULT_KINDS = frozenset(_OPTIONS)


@dataclass(frozen=True)
class _MvModel:
    image: Literal["required", "optional", "none"]
    multi: bool  # takes `images` (array) instead of `image`
    params: frozenset[str]
    guidance_max: float = 10.0


# Seed 002's "Supported Models" column, widened by the per-model pages (seed 000: kontext-max/multi,
# seed 001: kontext-pro). response_format is accepted everywhere: both per-model pages list it.
_MV_BASE = frozenset({"seed", "guidance_scale", "response_format"})
_MODELVERSE = MappingProxyType(
    {
        "black-forest-labs/flux.1-dev": _MvModel(
            "optional", False, _MV_BASE | {"n", "size", "strength", "steps"}
        ),
        "black-forest-labs/flux-kontext-pro": _MvModel(
            "required", False, _MV_BASE | {"n", "strength", "steps", "negative_prompt"}, 20.0
        ),
        "black-forest-labs/flux-kontext-pro/multi": _MvModel("required", True, _MV_BASE),
        "black-forest-labs/flux-kontext-pro/text-to-image": _MvModel(
            "none", False, _MV_BASE | {"n", "aspect_ratio"}
        ),
        "stepfun-ai/step1x-edit": _MvModel("required", False, _MV_BASE | {"steps", "negative_prompt"}),
        "black-forest-labs/flux-kontext-max": _MvModel("required", False, _MV_BASE),
        "black-forest-labs/flux-kontext-max/multi": _MvModel(
            "required", True, _MV_BASE | {"n", "aspect_ratio", "steps", "negative_prompt"}
        ),
        "black-forest-labs/flux-kontext-max/text-to-image": _MvModel(
            "none", False, _MV_BASE | {"n", "aspect_ratio"}
        ),
    }
)
# model -> (cost per image in USD, lowest safety_tolerance): the pro page allows 1-6, max 0-6.
_VTRIX = MappingProxyType({"flux_kontext_max": ("0.08", 0), "flux_kontext_pro": ("0.04", 1)})
_VTRIX_IMAGES = ("input_image", "input_image_2", "input_image_3", "input_image_4")
_VTRIX_PARAMS = frozenset(
    "prompt seed aspect_ratio steps guidance_scale negative_prompt output_format prompt_upsampling".split()
) | {"safety_tolerance", *_VTRIX_IMAGES}
_WAVESPEED = MappingProxyType(
    {
        f"flux-kontext-{tier}{suffix}": kind
        for tier in ("pro", "max")
        for suffix, kind in (("", "image"), ("/multi", "images"), ("/text-to-image", "num_images"))
    }
)
_WS_PARAMS = frozenset(
    "prompt guidance_scale aspect_ratio seed safety_tolerance enable_sync_mode enable_base64_output".split()
)
_IMAGE_FORMATS = frozenset({"PNG", "JPEG", "WEBP", "BMP"})
_DATA_URI = re.compile(r"data:image/[\w.+-]+;base64,(.*)", re.DOTALL)
_SIZE = re.compile(r"(\d+)x(\d+)")
_PALETTE = (  # result colours: the seed picks one, so a repeated seed repeats the bytes
    (230, 57, 70), (42, 157, 143), (233, 196, 106), (38, 70, 83),
    (244, 162, 97), (69, 123, 157), (168, 218, 220), (106, 76, 147),
)  # fmt: skip
_HTML = b"<!DOCTYPE html><html><head><title>Just a moment...</title></head><body>Checking</body></html>"
_TRUNCATED = MappingProxyType(
    {
        "modelverse": b'{"created": 1750667997, "data": [{"url": "http',
        "vtrix": b'{"id": "task_x", "status": "compl',
        "wavespeed": b'{"code": 200, "message": "success", "data": {"id": ',
    }
)
_JSON_KEY = web.RequestKey("emulator_json", object)
_BAD_JSON = object()  # marker: the body was present but not JSON


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


@dataclass
class _Fault:
    provider: str
    kind: str
    remaining: int  # -1 = forever
    options: dict[str, Any]


@dataclass(frozen=True)
class _File:
    provider: str
    fmt: Literal["png", "jpeg"]
    color: int
    size: tuple[int, int]


@dataclass
class _Task:
    provider: str
    id: str
    model: str
    created: float  # monotonic
    created_at: str  # ISO 8601, UTC
    outputs: list[str]
    fate: Literal["ok", "refused", "failed", "never"] = "ok"
    error_code: Any = None
    error_message: str = ""
    error_as_text: bool = False
    vocab: int = 0  # vtrix: 0 = pending/processing, 1 = in_progress
    cost: str = ""
    nsfw: bool = False
    polls: int = 0
    done: bool = False  # finished without waiting for polls (sync mode, completed_on_create, sync_504)
    finished: float | None = None


class _Reject(Exception):
    """A request that fails validation; each provider words it in its own error shape."""

    def __init__(self, message: str, *, missing: bool = False, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.missing = missing
        self.code = code


# --- helpers shared by tests -----------------------------------------------------------------


def make_png(width: int = 32, height: int = 32, color: tuple[int, int, int] = (200, 30, 30)) -> bytes:
    """A small real PNG, for inputs in tests."""
    buf = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buf, "PNG")
    return buf.getvalue()


def data_uri(data: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def _render(size: tuple[int, int], fmt: str, color: tuple[int, int, int], noise: bool) -> bytes:
    if noise:  # incompressible pixels, so size-limit code meets realistic byte counts
        pixels = random.Random(size[0] * 7919 + size[1]).randbytes(size[0] * size[1] * 3)
        image = Image.frombytes("RGB", size, pixels)
    else:
        image = Image.new("RGB", size, color)
        image.paste((255, 255, 255), (0, 0, max(1, size[0] // 4), max(1, size[1] // 4)))
    buf = io.BytesIO()
    image.save(buf, "PNG" if fmt == "png" else "JPEG", **({"quality": 90} if fmt == "jpeg" else {}))
    return buf.getvalue()


def _check_image(raw: bytes, name: str, max_bytes: int, strict: bool) -> None:
    if len(raw) > max_bytes:
        raise _Reject(f"{name} is larger than {max_bytes // (1024 * 1024)} MB")
    try:
        with Image.open(io.BytesIO(raw)) as image:
            fmt, (width, height) = image.format, image.size
            image.verify()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        raise _Reject(f"{name} is not a readable image") from None
    if fmt not in _IMAGE_FORMATS:
        raise _Reject(f"{name}: format {fmt} is not supported (PNG, JPEG, WEBP, BMP)")
    if strict and (min(width, height) < 128 or max(width, height) > 4 * min(width, height)):
        raise _Reject(f"{name}: sides must be at least 128 px and the aspect ratio at most 4:1")


def _decode_ref(value: Any, name: str, bare_ok: bool) -> bytes | None:
    """The image bytes of a data URI (or bare base64 where allowed); None for an http(s) URL."""
    if not isinstance(value, str) or not value:
        raise _Reject(f"{name} must be a non-empty string")
    if value.startswith(("http://", "https://")):
        return None
    match = _DATA_URI.fullmatch(value)
    if match is None and not bare_ok:
        raise _Reject(f"{name} must be an http(s) URL or a data:image/<fmt>;base64,... URI")
    try:
        return base64.b64decode(match.group(1) if match else value, validate=True)
    except (binascii.Error, ValueError):
        raise _Reject(f"{name} is not valid base64") from None


def _verify_refs(refs: list[tuple[str, Any]], bare_ok: bool, max_bytes: int, strict: bool) -> None:
    for name, value in refs:
        raw = _decode_ref(value, name, bare_ok)
        if raw is not None:
            _check_image(raw, name, max_bytes, strict)


# Parameter checks: present-but-null counts as invalid, since no provider documents null.


def _unknown(body: dict[str, Any], allowed: frozenset[str], where: str) -> None:
    extra = sorted(set(body) - allowed)
    if extra:
        raise _Reject(f"unsupported parameter(s) for {where}: {', '.join(extra)}")


def _int(body: dict[str, Any], name: str, lo: int, hi: int) -> int | None:
    if name not in body:
        return None
    value = body[name]
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise _Reject(f"{name} must be an integer in [{lo}, {hi}]")
    return value


def _num(body: dict[str, Any], name: str, lo: float, hi: float) -> None:
    value = body.get(name, lo)
    if isinstance(value, bool) or not isinstance(value, int | float) or not lo <= value <= hi:
        raise _Reject(f"{name} must be a number in [{lo:g}, {hi:g}]")


def _choice(body: dict[str, Any], name: str, choices: tuple[str, ...]) -> None:
    if name in body and body[name] not in choices:
        raise _Reject(f"{name} must be one of {', '.join(choices)}")


def _text(body: dict[str, Any], name: str, required: bool = False) -> None:
    if name not in body:
        if required:
            raise _Reject(f"{name} is required", missing=True)
        return
    if not isinstance(body[name], str) or (required and not body[name].strip()):
        raise _Reject(f"{name} must be a non-empty string")


def _flag(body: dict[str, Any], name: str) -> bool:
    value = body.get(name, False)
    if not isinstance(value, bool):
        raise _Reject(f"{name} must be a boolean")
    return value


def _seconds(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def _iso_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _provider_of(path: str) -> str | None:
    for prefix, provider in (
        ("/v1/", "modelverse"),
        ("/model/v1/", "vtrix"),
        ("/api/v3/", "wavespeed"),
        ("/files/", "files"),
    ):
        if path.startswith(prefix):
            return provider
    return None


# --- the emulator ------------------------------------------------------------------------------


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
        vtrix_error_style: Literal["alternate", "object", "string"] = "alternate",
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
        self._in_flight: dict[str, int] = dict.fromkeys((*PROVIDERS, "files"), 0)
        self._faults: list[_Fault] = []
        self._tasks: dict[str, _Task] = {}
        self._files: dict[str, _File] = {}
        self._renders: dict[tuple[Any, ...], bytes] = {}
        self._rng = random.Random(0)  # deterministic "random" seeds from one emulator to the next
        self._counters = {"b64": 0, "vtrix_vocab": 0, "vtrix_error": 0}
        self._closing = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self._url: str | None = None

    # -- lifecycle

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        app = web.Application(client_max_size=128 * 1024 * 1024, middlewares=[self._middleware()])
        app.add_routes(
            [
                web.post("/v1/images/generations", self._mv_generate),
                web.post("/model/v1/generation", self._vt_create),
                web.get("/model/v1/generation/task/{id}", self._vt_poll),
                web.post("/api/v3/wavespeed-ai/{path:.+}", self._ws_submit),
                web.get("/api/v3/predictions/{id}/result", self._ws_poll),
                web.get("/api/v3/predictions/{id}", self._ws_poll),
                web.get("/files/{name}", self._file),
                web.post("/_emulator/fault", self._ctl_fault),
                web.post("/_emulator/reset", self._ctl_reset),
                web.post("/_emulator/config", self._ctl_config),
                web.get("/_emulator/requests", self._ctl_requests),
                web.get("/_emulator/generations", self._ctl_generations),
            ]
        )
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

    def env(self) -> dict[str, str]:
        """Environment for a subprocess running the bot against this emulator."""
        out: dict[str, str] = {}
        for provider in PROVIDERS:
            out[f"{provider.upper()}_API_KEY"] = self.keys[provider]
            out[f"{provider.upper()}_BASE_URL"] = self.url
        return out

    # -- faults

    def fault(self, provider: str, kind: str, *, times: int = 1, **options: Any) -> None:
        """Arm a fault; see the module docstring. Raises ValueError for a kind that cannot apply."""
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
        if not isinstance(times, int) or times == 0 or times < -1:
            raise ValueError("times must be a positive count or -1 (forever)")
        self._faults.append(_Fault(provider, kind, times, dict(options)))

    def clear_faults(self) -> None:
        self._faults.clear()

    def _take(
        self,
        provider: str,
        kinds: frozenset[str],
        phase: str | None = None,
        skip: frozenset[str] = frozenset(),
    ) -> _Fault | None:
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

    # -- plumbing

    def _middleware(self) -> Any:
        @web.middleware
        async def record(request: web.Request, handler: Any) -> web.StreamResponse:
            provider = _provider_of(request.path)
            if provider is None:
                return await handler(request)
            body: Any = None
            if request.body_exists:
                raw = await request.read()
                try:
                    body = json.loads(raw)
                except ValueError:
                    body = _BAD_JSON
            request[_JSON_KEY] = body
            rec = RecordedRequest(
                provider,
                request.method,
                request.path_qs,
                None if body is _BAD_JSON else body,
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

    async def _sleep(self, seconds: float) -> bool:
        """Sleep, cut short by stop(). True when the emulator is stopping (answer nothing then)."""
        if seconds > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closing.wait(), seconds)
        return self._closing.is_set()

    @staticmethod
    def _abort(request: web.Request) -> web.Response:
        if request.transport is not None:
            request.transport.abort()
        return web.Response(status=499)  # never sent: the transport is gone

    def _authorized(self, request: web.Request, provider: str) -> bool:
        return request.headers.get("Authorization") == f"Bearer {self.keys[provider]}"

    @staticmethod
    def _body(request: web.Request) -> dict[str, Any]:
        body = request[_JSON_KEY]
        if not isinstance(body, dict):
            raise _Reject("the request body must be a JSON object")
        return body

    def _error(
        self,
        provider: str,
        status: int,
        code: Any,
        message: str,
        rid: str = "",
        headers: dict[str, str] | None = None,
        data: Any = None,
    ) -> web.Response:
        if provider == "modelverse":
            kind = "invalid_request_error" if status == 400 else ""
            body: dict[str, Any] = {"error": {"message": message, "type": kind, "param": rid, "code": code}}
        elif provider == "vtrix":
            body = {"error": {"code": code, "message": message}}
        else:
            body = {"code": code, "message": message, "data": data}
        return web.json_response(body, status=status, headers=headers)

    async def _gateway(
        self, request: web.Request, provider: str, phase: str, rid: str = ""
    ) -> web.StreamResponse | None:
        """Apply an armed gateway fault; None means: go on and answer normally."""
        fault = self._take(provider, _GATEWAY, phase)
        if fault is None:
            return None
        kind, opts = fault.kind, fault.options
        if kind == "connection_reset":
            return self._abort(request)
        if kind == "hang":
            return self._abort(request) if await self._sleep(float(opts.get("seconds", 30.0))) else None
        if kind == "malformed_json":
            return web.Response(body=_TRUNCATED[provider], content_type="application/json")
        if kind == "wrong_content_type":
            return web.Response(body=_HTML, content_type="text/html")
        if kind == "rate_limit":
            retry_after = opts.get("retry_after")
            headers = {} if retry_after is None else {"Retry-After": _seconds(retry_after)}
            code = {"modelverse": "rate_limit_error", "vtrix": "rate_limit_exceeded"}.get(provider, 429)
            return self._error(provider, 429, code, "Rate limit exceeded, slow down", rid, headers)
        if kind == "bad_key":
            code = {"modelverse": "auth_error", "vtrix": "unauthorized"}.get(provider, 401)
            return self._error(provider, 401, code, "Invalid or inactive API key", rid)
        if kind == "out_of_balance":
            status = 402 if provider == "modelverse" else 403
            code = 403 if provider == "wavespeed" else "insufficient_balance"
            return self._error(provider, status, code, "Insufficient account balance", rid)
        status = int(opts.get("status", 500))
        if provider == "modelverse":
            code = {408: "timeout", 504: "gateway_timeout_error"}.get(
                status, opts.get("code", "internal_error")
            )
        elif provider == "vtrix":
            code = "server_error"
        else:
            code = {503: 5003, 504: 5004}.get(status, 5000)
        return self._error(provider, status, code, f"Upstream error ({status})", rid)

    def _seed(self, requested: int | None) -> int:
        if requested is None or requested == -1:
            return self._rng.randint(0, 2**32 - 1)
        return requested

    def _new_file(self, provider: str, fmt: Literal["png", "jpeg"], color: int) -> str:
        file_id = uuid.uuid4().hex
        width, height = self.output_size
        self._files[file_id] = _File(provider, fmt, color, (width, height))
        return f"{self.url}/files/{file_id}.{'png' if fmt == 'png' else 'jpg'}"

    async def _image_bytes(self, fmt: str, color: int, size: tuple[int, int] | None = None) -> bytes:
        size = size or (self.output_size[0], self.output_size[1])
        key = (fmt, size, self.output_noise, 0 if self.output_noise else color)
        data = self._renders.get(key)
        if data is None:  # rendered once per key, off the loop: benches fetch thousands of outputs
            data = await asyncio.to_thread(_render, size, fmt, _PALETTE[color], self.output_noise)
            self._renders[key] = data
        return data

    async def _verify(self, refs: list[tuple[str, Any]], bare_ok: bool, max_mb: int) -> None:
        args = (refs, bare_ok, max_mb * 1024 * 1024, self.strict_input_limits)
        if sum(len(v) for _, v in refs if isinstance(v, str)) > 256 * 1024:
            await asyncio.to_thread(_verify_refs, *args)  # big base64: keep the loop free
        else:
            _verify_refs(*args)

    def _next(self, counter: str) -> int:
        value = self._counters[counter]
        self._counters[counter] = value + 1
        return value

    def _fate(
        self, task: _Task, fault: _Fault | None, refused: tuple[Any, str], failed: tuple[Any, str]
    ) -> None:
        if fault is None:
            return
        opts = fault.options
        if fault.kind == "content_refused":
            task.fate, task.error_code = "refused", refused[0]
            task.error_message = opts.get("message", refused[1])
        elif fault.kind == "task_failed":
            task.fate, task.error_code = "failed", opts.get("code", failed[0])
            task.error_message = opts.get("message", failed[1])
        elif fault.kind == "never_finish":
            task.fate = "never"

    def _state(self, task: _Task) -> Literal["running", "completed", "failed"]:
        if task.finished is None and task.fate != "never":
            waited = time.monotonic() - task.created >= self.latency
            if task.done or (task.polls >= max(1, self.polls_until_done) and waited):
                task.finished = time.monotonic()
        if task.finished is None:
            return "running"
        return "completed" if task.fate == "ok" else "failed"

    # -- UModelverse

    async def _mv_generate(self, request: web.Request) -> web.StreamResponse:
        rid = str(uuid.uuid4())
        early = await self._gateway(request, "modelverse", "submit", rid)
        if early is not None:
            return early
        if not self._authorized(request, "modelverse"):
            return self._error("modelverse", 401, "auth_error", "Invalid API key", rid)
        try:
            body = self._body(request)
            await self._mv_validate(body)
        except _Reject as exc:
            return self._error("modelverse", 400, exc.code or "param_error", exc.message, rid)
        fault = self._take("modelverse", _OUTCOME)
        kind, opts = (fault.kind, fault.options) if fault else (None, {})
        if kind == "content_refused":
            msg = opts.get("message", "The input or output was flagged by content review")
            return self._error("modelverse", 400, "sensitive_check_error", msg, rid)
        if kind == "task_failed":
            return self._error("modelverse", 500, "model_server_error", "Model inference failed", rid)
        if kind == "never_finish":
            if await self._sleep(float(opts.get("seconds", 3600))):
                return self._abort(request)
            return self._error("modelverse", 504, "gateway_timeout_error", "Gateway timeout", rid)
        if await self._sleep(self.latency):
            return self._abort(request)

        seed = self._seed(body.get("seed"))
        as_b64 = body.get("response_format") == "b64_json" or kind == "b64_output"
        items: list[dict[str, str]] = []
        for i in range(body.get("n", 1)):
            color = (seed + i) % len(_PALETTE)
            if kind == "invalid_base64":
                items.append({"b64_json": "this is %% not base64 !!"})
            elif as_b64:
                text = base64.b64encode(await self._image_bytes("png", color)).decode("ascii")
                prefix = opts.get("prefix")
                if prefix is None:
                    prefix = self.b64_prefix if self.b64_prefix != "alternate" else self._next("b64") % 2 == 0
                items.append({"b64_json": (B64_PREFIX if prefix else "") + text})
            else:
                items.append({"url": self._new_file("modelverse", "png", color)})
        outputs = [next(iter(item.values())) for item in items]
        self.generations.append(Generation("modelverse", body["model"], seed, None, outputs))
        return web.json_response(
            {"created": int(time.time()), "data": items, "usage": {"input_tokens_details": {}}}
        )

    async def _mv_validate(self, body: dict[str, Any]) -> None:
        model = body.get("model")
        spec = _MODELVERSE.get(model) if isinstance(model, str) else None
        if spec is None:
            raise _Reject(f"model {model!r} does not exist", code="model_error")
        allowed = spec.params | {"model", "prompt"}
        if spec.multi:
            allowed |= {"images"}
        elif spec.image != "none":
            allowed |= {"image"}
        _unknown(body, allowed, model)
        _text(body, "prompt", required=True)
        refs: list[tuple[str, Any]] = []
        if spec.multi:
            images = body.get("images")
            if not isinstance(images, list) or not 1 <= len(images) <= 4:
                raise _Reject("images must be an array of 1 to 4 images", missing="images" not in body)
            refs = [(f"images[{i}]", v) for i, v in enumerate(images)]
        elif spec.image == "required" and "image" not in body:
            raise _Reject(f"image is required for {model}", missing=True)
        elif "image" in body:
            refs = [("image", body["image"])]
        _int(body, "n", 1, 4)
        _int(body, "seed", -1, SEED_MAX)
        _int(body, "steps", 1, 50)
        _num(body, "guidance_scale", 1, spec.guidance_max)
        _num(body, "strength", 0, 1)
        _choice(body, "aspect_ratio", ASPECT_RATIOS)
        _choice(body, "response_format", ("url", "b64_json"))
        _text(body, "negative_prompt")
        if "size" in body:
            m = _SIZE.fullmatch(body["size"]) if isinstance(body["size"], str) else None
            if m is None or not all(256 <= int(side) <= 1536 for side in m.groups()):
                raise _Reject("size must be WIDTHxHEIGHT between 256x256 and 1536x1536")
        await self._verify(refs, bare_ok=False, max_mb=10)

    # -- Vtrix

    async def _vt_create(self, request: web.Request) -> web.StreamResponse:
        early = await self._gateway(request, "vtrix", "submit")
        if early is not None:
            return early
        if not self._authorized(request, "vtrix"):
            return self._error("vtrix", 401, "unauthorized", "Invalid API key")
        try:
            body = self._body(request)
            model, params = await self._vt_validate(body)
        except _Reject as exc:
            return self._error("vtrix", 400, "invalid_parameter", exc.message)
        fault = self._take("vtrix", _OUTCOME)
        seed = self._seed(params.get("seed"))
        fmt: Literal["png", "jpeg"] = "png" if params.get("output_format") == "png" else "jpeg"
        url = self._new_file("vtrix", fmt, seed % len(_PALETTE))
        task = _Task(
            "vtrix",
            f"task_{uuid.uuid4().hex[:24]}",
            model,
            time.monotonic(),
            _iso_now(),
            [url],
            vocab=self._next("vtrix_vocab") % 2,
            cost=_VTRIX[model][0],
        )
        self._fate(
            task,
            fault,
            ("content_moderated", "Request rejected by content moderation (safety_tolerance)"),
            ("generation_failed", "Image generation failed: worker error"),
        )
        if task.fate in ("refused", "failed"):
            style = self.vtrix_error_style
            task.error_as_text = style == "string" or (
                style == "alternate" and self._next("vtrix_error") % 2 == 1
            )
        if fault is not None and fault.kind == "completed_on_create":
            task.done = True
        self._tasks[task.id] = task
        self.generations.append(Generation("vtrix", model, seed, task.id, [url]))
        return web.json_response(self._vt_json(task))

    async def _vt_validate(self, body: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        _unknown(body, frozenset({"model", "input"}), "a generation")
        model = body.get("model")
        if not isinstance(model, str) or model not in _VTRIX:
            raise _Reject(f"model must be one of {', '.join(_VTRIX)}")
        items = body.get("input")
        if not isinstance(items, list) or len(items) != 1 or not isinstance(items[0], dict):
            raise _Reject('input must be a list holding one {"params": {...}} object')
        params = items[0].get("params")
        if set(items[0]) != {"params"} or not isinstance(params, dict):
            raise _Reject('input[0] must be {"params": {...}}')
        _unknown(params, _VTRIX_PARAMS, model)
        _text(params, "prompt", required=True)
        given = [name in params for name in _VTRIX_IMAGES]
        if given != sorted(given, reverse=True):  # input_image_3 without input_image_2 is a gap
            raise _Reject("input images must be filled in order: input_image, input_image_2, ...")
        _int(params, "seed", -1, SEED_MAX)
        _choice(params, "aspect_ratio", ASPECT_RATIOS)
        _int(params, "steps", 1, 50)
        _num(params, "guidance_scale", 1, 10)
        _text(params, "negative_prompt")
        _choice(params, "output_format", ("jpeg", "png"))
        _flag(params, "prompt_upsampling")
        _int(params, "safety_tolerance", _VTRIX[model][1], 6)
        refs = [(name, params[name]) for name in _VTRIX_IMAGES if name in params]
        await self._verify(refs, bare_ok=True, max_mb=20)
        return model, params

    async def _vt_poll(self, request: web.Request) -> web.StreamResponse:
        early = await self._gateway(request, "vtrix", "poll")
        if early is not None:
            return early
        if not self._authorized(request, "vtrix"):
            return self._error("vtrix", 401, "unauthorized", "Invalid API key")
        task = self._tasks.get(request.match_info["id"])
        if task is None or task.provider != "vtrix":
            return self._error("vtrix", 404, "task_not_found", "Task not found")
        task.polls += 1
        return web.json_response(self._vt_json(task))

    def _vt_json(self, task: _Task) -> dict[str, Any]:
        state = self._state(task)
        status: str = state
        if state == "running":
            status = "in_progress" if task.vocab else "pending" if task.polls == 0 else "processing"
        obj: dict[str, Any] = {
            "id": task.id,
            "status": status,
            "model": task.model,
            "created_at": task.created_at,
        }
        if state == "running":
            obj["progress"] = round(min(0.9, task.polls / (max(1, self.polls_until_done) + 1)), 2)
        elif state == "completed":
            obj["progress"] = 1.0
            obj["output"] = [{"content": [{"type": "image", "url": url} for url in task.outputs]}]
            obj["usage"] = {"cost": task.cost, "discount": 0}
        else:
            if task.error_as_text:
                obj["error"] = task.error_message
            else:
                obj["error"] = {"code": task.error_code, "message": task.error_message}
        obj["metadata"] = {}
        return obj

    # -- WaveSpeedAI

    async def _ws_submit(self, request: web.Request) -> web.StreamResponse:
        early = await self._gateway(request, "wavespeed", "submit")
        if early is not None:
            return early
        if not self._authorized(request, "wavespeed"):
            return self._error("wavespeed", 401, 401, "Unauthorized: invalid API key")
        path = request.match_info["path"]
        takes = _WAVESPEED.get(path)
        if takes is None:
            return self._error("wavespeed", 404, 404, f"model wavespeed-ai/{path} not found")
        try:
            body = self._body(request)
            await self._ws_validate(body, takes, path)
        except _Reject as exc:
            return self._error("wavespeed", 400, 1400 if exc.missing else 1401, exc.message)
        sync, as_b64 = body.get("enable_sync_mode", False), body.get("enable_base64_output", False)
        fault = self._take("wavespeed", _OUTCOME, skip=frozenset() if sync else frozenset({"sync_504"}))
        kind, opts = (fault.kind, fault.options) if fault else (None, {})
        if kind in ("content_refused", "task_failed") and opts.get("wrapped"):
            # Some failures come back at once: HTTP 200, the task code in the wrapper, no task.
            refused = kind == "content_refused"
            code = 1200 if refused else opts.get("code", 1403)
            default = "Content moderation: sensitive content" if refused else "Task execution failed"
            return self._error("wavespeed", 200, code, opts.get("message", default))
        seed = self._seed(body.get("seed"))
        outputs = []
        for i in range(body.get("num_images", 1)):
            color = (seed + i) % len(_PALETTE)
            if as_b64:  # bare base64, no data: prefix (providers.md)
                outputs.append(base64.b64encode(await self._image_bytes("png", color)).decode("ascii"))
            else:
                outputs.append(self._new_file("wavespeed", "png", color))
        task = _Task(
            "wavespeed", uuid.uuid4().hex, f"wavespeed-ai/{path}", time.monotonic(), _iso_now(), outputs
        )
        task.nsfw = kind == "nsfw"
        self._fate(
            task,
            fault,
            (1200, "Content moderation: the input or output contains sensitive content"),
            (1403, "Task execution failed"),
        )
        self._tasks[task.id] = task
        self.generations.append(Generation("wavespeed", task.model, seed, task.id, outputs))
        if not sync:
            return self._ws_response(task)
        if task.fate == "never":
            if await self._sleep(float(opts.get("seconds", 3600))):
                return self._abort(request)
            return self._ws_response(task, status=504, message="Gateway Timeout")
        if await self._sleep(self.latency):
            return self._abort(request)
        if kind == "sync_504":
            response = self._ws_response(task, status=504, message="Gateway Timeout", running=True)
            task.done = True  # the gateway gave up; the task itself finished
            return response
        task.done = True
        return self._ws_response(task)

    async def _ws_validate(self, body: dict[str, Any], takes: str, path: str) -> None:
        _unknown(body, _WS_PARAMS | {takes}, f"wavespeed-ai/{path}")
        _text(body, "prompt", required=True)
        if takes == "image":
            if "image" not in body:
                raise _Reject("image is required", missing=True)
            refs = [("image", body["image"])]
        elif takes == "images":
            images = body.get("images")
            if not isinstance(images, list) or not 1 <= len(images) <= 5:
                raise _Reject("images must be an array of 1 to 5 images", missing="images" not in body)
            refs = [(f"images[{i}]", v) for i, v in enumerate(images)]
        else:
            refs = []
            _int(body, "num_images", 1, 4)
        _num(body, "guidance_scale", 1, 20)
        _choice(body, "aspect_ratio", ASPECT_RATIOS)
        _int(body, "seed", -1, SEED_MAX)
        tolerance = body.get("safety_tolerance", "2")
        if str(tolerance) not in {"1", "2", "3", "4", "5", "6"} or isinstance(tolerance, bool):
            raise _Reject("safety_tolerance must be 1 to 6")
        _flag(body, "enable_sync_mode")
        _flag(body, "enable_base64_output")
        await self._verify(refs, bare_ok=False, max_mb=30)

    async def _ws_poll(self, request: web.Request) -> web.StreamResponse:
        early = await self._gateway(request, "wavespeed", "poll")
        if early is not None:
            return early
        if not self._authorized(request, "wavespeed"):
            return self._error("wavespeed", 401, 401, "Unauthorized: invalid API key")
        task = self._tasks.get(request.match_info["id"])
        if task is None or task.provider != "wavespeed":
            return self._error("wavespeed", 404, 404, "prediction not found")
        task.polls += 1
        return self._ws_response(task)

    def _ws_response(
        self, task: _Task, *, status: int = 200, message: str = "success", running: bool = False
    ) -> web.Response:
        state = "running" if running else self._state(task)
        shown = (
            state if state != "running" else "created" if task.polls == 0 and not running else "processing"
        )
        data: dict[str, Any] = {
            "id": task.id,
            "model": task.model,
            "outputs": [],
            "urls": {"get": f"{self.url}/api/v3/predictions/{task.id}/result"},
            "has_nsfw_contents": [],
            "status": shown,
            "created_at": task.created_at,
            "error": "",
            "timings": {},
        }
        if state == "completed":
            data["outputs"] = list(task.outputs)
            data["has_nsfw_contents"] = [task.nsfw] * len(task.outputs)
            data["timings"] = {"inference": int(((task.finished or task.created) - task.created) * 1000)}
        elif state == "failed":
            data["error"], data["code"] = task.error_message, task.error_code
        return web.json_response({"code": status, "message": message, "data": data}, status=status)

    # -- result files

    async def _file(self, request: web.Request) -> web.StreamResponse:
        file_id, _, ext = request.match_info["name"].partition(".")
        info = self._files.get(file_id)
        if info is None or ext != ("png" if info.fmt == "png" else "jpg"):
            return web.Response(status=404, text="Not Found")
        fault = self._take(info.provider, _FILE)
        kind, opts = (fault.kind, fault.options) if fault else (None, {})
        if kind == "expired_output":
            xml = "<?xml version='1.0'?><Error><Code>NoSuchKey</Code><Message>expired</Message></Error>"
            return web.Response(status=int(opts.get("status", 404)), text=xml, content_type="application/xml")
        if kind == "not_image":
            return web.Response(body=_HTML, content_type="image/png")
        if kind == "huge_output":
            return await self._stream_huge(request, opts)
        data = await self._image_bytes(info.fmt, info.color, info.size)
        return web.Response(body=data, content_type=f"image/{info.fmt}")

    async def _stream_huge(self, request: web.Request, opts: dict[str, Any]) -> web.StreamResponse:
        total = int(float(opts.get("size_mb", 60)) * 1024 * 1024)
        response = web.StreamResponse(headers={"Content-Type": "image/png"})
        if opts.get("declare_length", True):
            response.content_length = total
        else:
            response.enable_chunked_encoding()
        await response.prepare(request)
        zeros = bytes(1024 * 1024)
        piece = b"\x89PNG\r\n\x1a\n" + zeros[8:]  # looks like a PNG to a sniffer, then is just big
        sent = 0
        try:
            while sent < total and not self._closing.is_set():
                piece = piece[: total - sent]
                await response.write(piece)
                sent += len(piece)
                piece = zeros
            await response.write_eof()
        except ConnectionError:  # the client stopped reading once it saw enough: that is the point
            pass
        return response

    # -- control endpoints (for subprocess tests)

    async def _ctl_fault(self, request: web.Request) -> web.Response:
        try:
            spec = dict(await request.json())
            self.fault(spec.pop("provider"), spec.pop("kind"), times=int(spec.pop("times", 1)), **spec)
        except (ValueError, KeyError, TypeError) as exc:
            return web.json_response({"error": str(exc)}, status=400)
        return web.json_response({"ok": True})

    async def _ctl_reset(self, request: web.Request) -> web.Response:
        self.clear_faults()
        self.requests.clear()
        self.generations.clear()
        return web.json_response({"ok": True})

    async def _ctl_config(self, request: web.Request) -> web.Response:
        spec = await request.json()
        if "latency" in spec:
            self.latency = float(spec["latency"])
        if "polls_until_done" in spec:
            self.polls_until_done = int(spec["polls_until_done"])
        if "output_size" in spec:
            self.output_size = (int(spec["output_size"][0]), int(spec["output_size"][1]))
        return web.json_response({"ok": True})

    async def _ctl_requests(self, request: web.Request) -> web.Response:
        return web.json_response([asdict(r) for r in self.requests])

    async def _ctl_generations(self, request: web.Request) -> web.Response:
        return web.json_response([asdict(g) for g in self.generations])


# --- standalone -------------------------------------------------------------------------------


def _size_arg(text: str) -> tuple[int, int]:
    match = _SIZE.fullmatch(text)
    if match is None:
        raise argparse.ArgumentTypeError("expected WIDTHxHEIGHT, e.g. 64x64")
    return int(match.group(1)), int(match.group(2))


async def _serve(args: argparse.Namespace) -> None:
    emulator = ProviderEmulator(
        latency=args.latency, polls_until_done=args.polls, output_size=args.output_size
    )
    await emulator.start(port=args.port)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    print(f"EMULATOR_URL={emulator.url}", flush=True)  # the one line a parent process reads
    try:
        await stopping.wait()
    finally:
        await emulator.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.emulator", description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--latency", type=float, default=0.0, help="seconds per generation")
    parser.add_argument("--polls", type=int, default=1, help="polls until a task is done")
    parser.add_argument("--output-size", type=_size_arg, default=(64, 64), help="WIDTHxHEIGHT")
    asyncio.run(_serve(parser.parse_args(argv)))


if __name__ == "__main__":
    main()
