"""UModelverse: ``POST /v1/images/generations``, synchronous and OpenAI-compatible (seeds 000-002).

Which parameters each model takes follows seed 002's "Supported Models" column, widened by the
per-model pages (seed 000: kontext-max/multi, seed 001: kontext-pro); response_format is accepted
everywhere, since both per-model pages list it.

Errors: ``{"error": {"message", "type", "param": <request id>, "code"}}``; type is
"invalid_request_error" on 400 and "" otherwise (as in the seed's example). 400 param_error |
model_error (unknown model) | sensitive_check_error, 401 auth_error, 402 insufficient_balance,
408 timeout, 429 rate_limit_error, 500 internal_error | model_server_error, 502/503 internal_error,
504 gateway_timeout_error. A busy account (``ProviderEmulator.account``) answers 429
rate_limit_error. The fault empty_error adds ``"error": {"code": "", "message": "", ...}`` beside
``data`` in a successful answer: the seeds list ``error`` among every answer's fields.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Literal

from aiohttp import web

from tests.emulator import checks
from tests.emulator.base import Api, Generation
from tests.emulator.checks import SEED_MAX, Reject
from tests.emulator.faults import OUTCOME, gateway_answer
from tests.emulator.outputs import B64_PREFIX, PALETTE


@dataclass(frozen=True)
class _Model:
    image: Literal["required", "optional", "none"]
    multi: bool  # takes `images` (array) instead of `image`
    params: frozenset[str]
    guidance_max: float = 10.0


_BASE = frozenset({"seed", "guidance_scale", "response_format"})
MODELS = MappingProxyType(
    {
        "black-forest-labs/flux.1-dev": _Model("optional", False, _BASE | {"n", "size", "strength", "steps"}),
        "black-forest-labs/flux-kontext-pro": _Model(
            "required", False, _BASE | {"n", "strength", "steps", "negative_prompt"}, 20.0
        ),
        "black-forest-labs/flux-kontext-pro/multi": _Model("required", True, _BASE),
        "black-forest-labs/flux-kontext-pro/text-to-image": _Model(
            "none", False, _BASE | {"n", "aspect_ratio"}
        ),
        "stepfun-ai/step1x-edit": _Model("required", False, _BASE | {"steps", "negative_prompt"}),
        "black-forest-labs/flux-kontext-max": _Model("required", False, _BASE),
        "black-forest-labs/flux-kontext-max/multi": _Model(
            "required", True, _BASE | {"n", "aspect_ratio", "steps", "negative_prompt"}
        ),
        "black-forest-labs/flux-kontext-max/text-to-image": _Model(
            "none", False, _BASE | {"n", "aspect_ratio"}
        ),
    }
)


class Modelverse(Api):
    provider = "modelverse"
    prefix = "/v1/"
    rate_limit_code = "rate_limit_error"
    auth_code = "auth_error"
    balance = (402, "insufficient_balance")
    busy_message = "Too many concurrent requests for this account"

    def routes(self) -> list[web.RouteDef]:
        return [web.post("/v1/images/generations", self._generate)]

    def error(
        self,
        status: int,
        code: Any,
        message: str,
        rid: str = "",
        headers: dict[str, str] | None = None,
    ) -> web.Response:
        kind = "invalid_request_error" if status == 400 else ""
        body = {"error": {"message": message, "type": kind, "param": rid, "code": code}}
        return web.json_response(body, status=status, headers=headers)

    def server_code(self, status: int, options: dict[str, Any]) -> Any:
        return {408: "timeout", 504: "gateway_timeout_error"}.get(
            status, options.get("code", "internal_error")
        )

    async def _generate(self, request: web.Request) -> web.StreamResponse:
        rid = str(uuid.uuid4())
        early = await gateway_answer(self, request, "submit", rid)
        if early is not None:
            return early
        if not self.authorized(request):
            return self.error(401, "auth_error", "Invalid API key", rid)
        try:
            body = self.body(request)
            await self._validate(body)
        except Reject as exc:
            return self.error(400, exc.code or "param_error", exc.message, rid)
        busy = self.admit(rid)
        if busy is not None:
            return busy
        self.emu.accounts.request_started(self.provider, self.emu.latency_of(self.provider))
        try:
            return await self._answer(request, body, rid)
        finally:
            self.emu.accounts.request_ended(self.provider)

    async def _answer(self, request: web.Request, body: dict[str, Any], rid: str) -> web.StreamResponse:
        emu = self.emu
        fault = emu.faults.take(self.provider, OUTCOME)
        kind, opts = (fault.kind, fault.options) if fault else (None, {})
        if kind == "content_refused":
            msg = opts.get("message", "The input or output was flagged by content review")
            return self.error(400, "sensitive_check_error", msg, rid)
        if kind == "task_failed":
            return self.error(500, "model_server_error", "Model inference failed", rid)
        if kind == "never_finish":
            if await self.sleep(float(opts.get("seconds", 3600))):
                return self.abort(request)
            return self.error(504, "gateway_timeout_error", "Gateway timeout", rid)
        if await self.sleep(emu.latency_of(self.provider)):
            return self.abort(request)

        seed = emu.seed(body.get("seed"))
        as_b64 = body.get("response_format") == "b64_json" or kind == "b64_output"
        items: list[dict[str, str]] = []
        for i in range(body.get("n", 1)):
            color = (seed + i) % len(PALETTE)
            if kind == "invalid_base64":
                items.append({"b64_json": "this is %% not base64 !!"})
            elif as_b64:
                text = await emu.outputs.b64_image(color)
                prefix = opts.get("prefix")
                if prefix is None:
                    style = emu.b64_prefix
                    prefix = style if style != "alternate" else emu.next("b64") % 2 == 0
                items.append({"b64_json": (B64_PREFIX if prefix else "") + text})
            else:
                items.append({"url": emu.outputs.new_file(self.provider, "png", color)})
        outputs = [next(iter(item.values())) for item in items]
        emu.generations.append(Generation(self.provider, body["model"], seed, None, outputs))
        answer: dict[str, Any] = {
            "created": int(time.time()),
            "data": items,
            "usage": {"input_tokens_details": {}},
        }
        if kind == "empty_error":
            answer["error"] = {"message": "", "type": "", "param": rid, "code": ""}
        return web.json_response(answer)

    async def _validate(self, body: dict[str, Any]) -> None:
        model = body.get("model")
        spec = MODELS.get(model) if isinstance(model, str) else None
        if spec is None:
            raise Reject(f"model {model!r} does not exist", code="model_error")
        allowed = spec.params | {"model", "prompt"}
        if spec.multi:
            allowed |= {"images"}
        elif spec.image != "none":
            allowed |= {"image"}
        checks.unknown(body, allowed, model)
        checks.text(body, "prompt", required=True)
        refs: list[tuple[str, Any]] = []
        if spec.multi:
            images = body.get("images")
            if not isinstance(images, list) or not 1 <= len(images) <= 4:
                raise Reject("images must be an array of 1 to 4 images", missing="images" not in body)
            refs = [(f"images[{i}]", v) for i, v in enumerate(images)]
        elif spec.image == "required" and "image" not in body:
            raise Reject(f"image is required for {model}", missing=True)
        elif "image" in body:
            refs = [("image", body["image"])]
        checks.integer(body, "n", 1, 4)
        checks.integer(body, "seed", -1, SEED_MAX)
        checks.integer(body, "steps", 1, 50)
        checks.number(body, "guidance_scale", 1, spec.guidance_max)
        checks.number(body, "strength", 0, 1)
        checks.choice(body, "aspect_ratio", checks.ASPECT_RATIOS)
        checks.choice(body, "response_format", ("url", "b64_json"))
        checks.text(body, "negative_prompt")
        if "size" in body:
            m = checks.SIZE.fullmatch(body["size"]) if isinstance(body["size"], str) else None
            if m is None or not all(256 <= int(side) <= 1536 for side in m.groups()):
                raise Reject("size must be WIDTHxHEIGHT between 256x256 and 1536x1536")
        await checks.verify_images(refs, bare_ok=False, max_mb=10, strict=self.emu.strict_input_limits)
