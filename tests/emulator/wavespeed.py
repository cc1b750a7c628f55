"""WaveSpeedAI: ``POST /api/v3/wavespeed-ai/<model-path>`` submits, ``GET /api/v3/predictions/{id}``
or ``.../{id}/result`` polls (seed 004, and WaveSpeed's Python and Go SDKs).

Every answer is ``{"code": int, "message": str, "data": <prediction>}``; an error answer has no
``data`` (the SDKs read a submit only from HTTP 200 with ``data.id``). HTTP errors carry the HTTP
status as code (401, 403, 404, 429 also for a busy account, 504); validation is HTTP 400 with 1400
(missing) or 1401 (invalid); server errors 5000 (500/502), 5003 (503), 5004 (504).

Predictions go ``created`` then ``processing``, and end ``completed``, ``failed`` (``data.code``
and ``data.error`` say why), ``cancelled``, ``timeout`` or ``deleted`` (the end_state fault).
``enable_sync_mode`` answers once the task ends (the task's latency later), unless the wait gives
up first: sync_504 (HTTP 504 naming the prediction) or sync_timeout (HTTP 200, ``processing``
with ``data.code`` 5004 and "Sync mode timed out ...", or with variant="text" the words alone).
"""

from __future__ import annotations

import time
import uuid
from types import MappingProxyType
from typing import Any

from aiohttp import web

from tests.emulator import checks
from tests.emulator.base import Api, Generation
from tests.emulator.checks import SEED_MAX, Reject
from tests.emulator.faults import OUTCOME, gateway_answer
from tests.emulator.outputs import PALETTE
from tests.emulator.tasks import Task, apply_fate, state_of

MODELS = MappingProxyType(
    {
        f"flux-kontext-{tier}{suffix}": kind
        for tier in ("pro", "max")
        for suffix, kind in (("", "image"), ("/multi", "images"), ("/text-to-image", "num_images"))
    }
)
_PARAMS = frozenset(
    "prompt guidance_scale aspect_ratio seed safety_tolerance enable_sync_mode enable_base64_output".split()
)
_REFUSED = (1200, "Content moderation: the input or output contains sensitive content")
_FAILED = (1403, "Task execution failed")
_SYNC_ONLY = frozenset({"sync_504", "sync_timeout"})
_SYNC_TIMED_OUT = "Sync mode timed out after 90 seconds. The prediction is still processing asynchronously."


class WaveSpeed(Api):
    provider = "wavespeed"
    prefix = "/api/v3/"

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post("/api/v3/wavespeed-ai/{path:.+}", self._submit),
            web.get("/api/v3/predictions/{id}/result", self._poll),
            web.get("/api/v3/predictions/{id}", self._poll),
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
        return {503: 5003, 504: 5004}.get(status, 5000)

    async def _submit(self, request: web.Request) -> web.StreamResponse:
        early = await gateway_answer(self, request, "submit")
        if early is not None:
            return early
        if not self.authorized(request):
            return self.error(401, 401, "Unauthorized: invalid API key")
        path = request.match_info["path"]
        takes = MODELS.get(path)
        if takes is None:
            return self.error(404, 404, f"model wavespeed-ai/{path} not found")
        try:
            body = self.body(request)
            await self._validate(body, takes, path)
        except Reject as exc:
            return self.error(400, 1400 if exc.missing else 1401, exc.message)
        busy = self.admit()
        if busy is not None:
            return busy
        emu = self.emu
        sync, as_b64 = body.get("enable_sync_mode", False), body.get("enable_base64_output", False)
        skip = frozenset() if sync else _SYNC_ONLY
        fault = emu.faults.take(self.provider, OUTCOME, skip=skip)
        kind, opts = (fault.kind, fault.options) if fault else (None, {})
        if kind in ("content_refused", "task_failed") and opts.get("wrapped"):
            # Refused at once: an HTTP error with the task code in the wrapper, no task made.
            refused = kind == "content_refused"
            code = 1200 if refused else opts.get("code", 1403)
            default = "Content moderation: sensitive content" if refused else "Task execution failed"
            return self.error(400, code, opts.get("message", default))
        seed = emu.seed(body.get("seed"))
        outputs = []
        for i in range(body.get("num_images", 1)):
            color = (seed + i) % len(PALETTE)
            if as_b64:  # bare base64, no data: prefix (providers.md)
                outputs.append(await emu.outputs.b64_image(color))
            else:
                outputs.append(emu.outputs.new_file(self.provider, "png", color))
        task = Task(
            self.provider, uuid.uuid4().hex, f"wavespeed-ai/{path}", time.monotonic(), emu.iso_now(), outputs
        )
        task.nsfw = kind == "nsfw"
        apply_fate(task, fault, _REFUSED, _FAILED)
        emu.tasks[task.id] = task
        emu.accounts.opened(task, emu.latency_of(self.provider))
        emu.generations.append(Generation(self.provider, task.model, seed, task.id, outputs))
        if not sync:
            return self._response(task)
        if task.fate == "never":
            if await self.sleep(float(opts.get("seconds", 3600))):
                return self.abort(request)
            return self._response(task, status=504, message="Gateway Timeout")
        if await self.sleep(emu.latency_of(self.provider)):
            return self.abort(request)
        if kind == "sync_timeout":
            response = self._response(task, running=True, sync_timeout=opts.get("variant", "code"))
            task.done = True  # the wait gave up; the task itself finished
            return response
        if kind == "sync_504":
            response = self._response(task, status=504, message="Gateway Timeout", running=True)
            task.done = True  # the gateway gave up; the task itself finished
            return response
        task.done = True
        return self._response(task)

    async def _validate(self, body: dict[str, Any], takes: str, path: str) -> None:
        checks.unknown(body, _PARAMS | {takes}, f"wavespeed-ai/{path}")
        checks.text(body, "prompt", required=True)
        if takes == "image":
            if "image" not in body:
                raise Reject("image is required", missing=True)
            refs = [("image", body["image"])]
        elif takes == "images":
            images = body.get("images")
            if not isinstance(images, list) or not 1 <= len(images) <= 5:
                raise Reject("images must be an array of 1 to 5 images", missing="images" not in body)
            refs = [(f"images[{i}]", v) for i, v in enumerate(images)]
        else:
            refs = []
            checks.integer(body, "num_images", 1, 4)
        checks.number(body, "guidance_scale", 1, 20)
        checks.choice(body, "aspect_ratio", checks.ASPECT_RATIOS)
        checks.integer(body, "seed", -1, SEED_MAX)
        tolerance = body.get("safety_tolerance", "2")
        if str(tolerance) not in {"1", "2", "3", "4", "5", "6"} or isinstance(tolerance, bool):
            raise Reject("safety_tolerance must be 1 to 6")
        checks.flag(body, "enable_sync_mode")
        checks.flag(body, "enable_base64_output")
        await checks.verify_images(refs, bare_ok=False, max_mb=30, strict=self.emu.strict_input_limits)

    async def _poll(self, request: web.Request) -> web.StreamResponse:
        early = await gateway_answer(self, request, "poll")
        if early is not None:
            return early
        if not self.authorized(request):
            return self.error(401, 401, "Unauthorized: invalid API key")
        task = self.emu.tasks.get(request.match_info["id"])
        if task is None or task.provider != self.provider:
            return self.error(404, 404, "prediction not found")
        task.polls += 1
        return self._response(task)

    def _response(
        self,
        task: Task,
        *,
        status: int = 200,
        message: str = "success",
        running: bool = False,
        sync_timeout: str | None = None,
    ) -> web.Response:
        emu = self.emu
        state = "running" if running else state_of(task, emu.latency_of(self.provider), emu.polls_until_done)
        shown = (
            state if state != "running" else "created" if task.polls == 0 and not running else "processing"
        )
        data: dict[str, Any] = {
            "id": task.id,
            "model": task.model,
            "outputs": [],
            "urls": {"get": f"{emu.url}/api/v3/predictions/{task.id}/result"},
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
        elif state != "running":  # cancelled, timeout, deleted
            data["error"] = task.error_message
        elif sync_timeout is not None:
            data["error"] = _SYNC_TIMED_OUT
            if sync_timeout == "code":
                data["code"] = 5004
        return web.json_response({"code": status, "message": message, "data": data}, status=status)
