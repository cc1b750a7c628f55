"""Vtrix: ``POST /model/v1/generation`` creates a task, ``GET /model/v1/generation/task/{id}`` polls it
(seed 003, /work/shared/reference/providers.md, and Vtrix's own client, VtrixAI/vtrix-cli).

A task is ``{"id", "status", "model", "created_at": <unix seconds, an integer>, "progress",
"output" | "error", "usage", "metadata"}``. Tasks alternate between two status vocabularies
(``pending`` then ``processing``, or ``in_progress``). A failed task's ``error`` takes the three
shapes the sources give (the ``vtrix_error_style`` knob): ``{"code": str, "message"}`` (the seed),
a plain string, or ``{"code": <int>, "error_message"}`` (the client; the numbers are illustrative).

HTTP errors are ``{"code": str, "message": str}`` (the client prints ``message``): 400
invalid_parameter, 401 unauthorized, 403 insufficient_balance, 404 task_not_found,
429 rate_limit_exceeded (also a busy account), 5xx server_error.
"""

from __future__ import annotations

import time
import uuid
from types import MappingProxyType
from typing import Any, Literal

from aiohttp import web

from tests.emulator import checks
from tests.emulator.base import Api, Generation
from tests.emulator.checks import SEED_MAX, Reject
from tests.emulator.faults import OUTCOME, gateway_answer
from tests.emulator.outputs import PALETTE
from tests.emulator.tasks import Task, apply_fate, state_of

# model -> (cost per image in USD, lowest safety_tolerance): the pro page allows 1-6, max 0-6.
MODELS = MappingProxyType({"flux_kontext_max": ("0.08", 0), "flux_kontext_pro": ("0.04", 1)})
_IMAGES = ("input_image", "input_image_2", "input_image_3", "input_image_4")
_PARAMS = frozenset(
    "prompt seed aspect_ratio steps guidance_scale negative_prompt output_format prompt_upsampling".split()
) | {"safety_tolerance", *_IMAGES}
_REFUSED = ("content_moderated", "Request rejected by content moderation (safety_tolerance)")
_FAILED = ("generation_failed", "Image generation failed: worker error")
_INT_CODES = {"refused": 400, "failed": 500}  # the client's {"code": <int>, "error_message"} shape
_STYLES = ("object", "string", "error_message")


class Vtrix(Api):
    provider = "vtrix"
    prefix = "/model/v1/"
    rate_limit_code = "rate_limit_exceeded"
    auth_code = "unauthorized"
    balance = (403, "insufficient_balance")
    busy_message = "Too many concurrent tasks for this account"

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post("/model/v1/generation", self._create),
            web.get("/model/v1/generation/task/{id}", self._poll),
        ]

    def error(
        self,
        status: int,
        code: Any,
        message: str,
        rid: str = "",
        headers: dict[str, str] | None = None,
    ) -> web.Response:
        return web.json_response({"code": code, "message": message}, status=status, headers=headers)

    def server_code(self, status: int, options: dict[str, Any]) -> Any:
        return "server_error"

    async def _create(self, request: web.Request) -> web.StreamResponse:
        early = await gateway_answer(self, request, "submit")
        if early is not None:
            return early
        if not self.authorized(request):
            return self.error(401, "unauthorized", "Invalid API key")
        try:
            body = self.body(request)
            model, params = await self._validate(body)
        except Reject as exc:
            return self.error(400, "invalid_parameter", exc.message)
        busy = self.admit()
        if busy is not None:
            return busy
        emu = self.emu
        fault = emu.faults.take(self.provider, OUTCOME)
        if fault is not None and fault.kind == "no_task":
            # No task made; the client then prints this error as the reason (HTTP 200).
            return web.json_response({"error": fault.options.get("message", "Insufficient balance")})
        seed = emu.seed(params.get("seed"))
        fmt: Literal["png", "jpeg"] = "png" if params.get("output_format") == "png" else "jpeg"
        url = emu.outputs.new_file(self.provider, fmt, seed % len(PALETTE))
        task = Task(
            self.provider,
            f"task_{uuid.uuid4().hex[:24]}",
            model,
            time.monotonic(),
            emu.unix_now(),
            [url],
            vocab=emu.next("vtrix_vocab") % 2,
            cost=MODELS[model][0],
        )
        if fault is not None and fault.kind == "reported_cost":
            task.cost = str(fault.options.get("cost", task.cost))
        apply_fate(task, fault, _REFUSED, _FAILED)
        if task.fate in ("refused", "failed"):
            style = emu.vtrix_error_style
            task.error_style = (
                style if style != "alternate" else _STYLES[emu.next("vtrix_error") % len(_STYLES)]
            )
        emu.tasks[task.id] = task
        emu.accounts.opened(task, emu.latency_of(self.provider))
        emu.generations.append(Generation(self.provider, model, seed, task.id, [url]))
        if fault is not None and fault.kind == "completed_on_create":
            if fault.options.get("output", True):
                task.done = True
            else:  # the submission is complete; the generation is not (the client always polls)
                return web.json_response({**self._task_json(task), "status": "completed", "progress": 0})
        return web.json_response(self._task_json(task))

    async def _validate(self, body: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        checks.unknown(body, frozenset({"model", "input"}), "a generation")
        model = body.get("model")
        if not isinstance(model, str) or model not in MODELS:
            raise Reject(f"model must be one of {', '.join(MODELS)}")
        items = body.get("input")
        if not isinstance(items, list) or len(items) != 1 or not isinstance(items[0], dict):
            raise Reject('input must be a list holding one {"params": {...}} object')
        params = items[0].get("params")
        if set(items[0]) != {"params"} or not isinstance(params, dict):
            raise Reject('input[0] must be {"params": {...}}')
        checks.unknown(params, _PARAMS, model)
        checks.text(params, "prompt", required=True)
        given = [name in params for name in _IMAGES]
        if given != sorted(given, reverse=True):  # input_image_3 without input_image_2 is a gap
            raise Reject("input images must be filled in order: input_image, input_image_2, ...")
        checks.integer(params, "seed", -1, SEED_MAX)
        checks.choice(params, "aspect_ratio", checks.ASPECT_RATIOS)
        checks.integer(params, "steps", 1, 50)
        checks.number(params, "guidance_scale", 1, 10)
        checks.text(params, "negative_prompt")
        checks.choice(params, "output_format", ("jpeg", "png"))
        checks.flag(params, "prompt_upsampling")
        checks.integer(params, "safety_tolerance", MODELS[model][1], 6)
        refs = [(name, params[name]) for name in _IMAGES if name in params]
        await checks.verify_images(refs, bare_ok=True, max_mb=20, strict=self.emu.strict_input_limits)
        return model, params

    async def _poll(self, request: web.Request) -> web.StreamResponse:
        early = await gateway_answer(self, request, "poll")
        if early is not None:
            return early
        if not self.authorized(request):
            return self.error(401, "unauthorized", "Invalid API key")
        task = self.emu.tasks.get(request.match_info["id"])
        if task is None or task.provider != self.provider:
            return self.error(404, "task_not_found", "Task not found")
        task.polls += 1
        return web.json_response(self._task_json(task))

    def _task_json(self, task: Task) -> dict[str, Any]:
        emu = self.emu
        state = state_of(task, emu.latency_of(self.provider), emu.polls_until_done)
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
            obj["progress"] = round(min(0.9, task.polls / (max(1, emu.polls_until_done) + 1)), 2)
        elif state == "completed":
            obj["progress"] = 1.0
            obj["output"] = [{"content": [{"type": "image", "url": url} for url in task.outputs]}]
            obj["usage"] = {"cost": task.cost, "discount": 0}
        elif task.error_style == "string":
            obj["error"] = task.error_message
        elif task.error_style == "error_message":
            obj["error"] = {"code": _INT_CODES[task.fate], "error_message": task.error_message}
        else:
            obj["error"] = {"code": task.error_code, "message": task.error_message}
        obj["metadata"] = {}
        return obj
