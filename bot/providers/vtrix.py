"""Vtrix: create a generation task, then poll it (seed 003).

Sources disagree on status names (``in_progress`` vs ``pending``/``processing``) and on the error's
type (``{"code", "message"}`` vs a plain string), so anything but completed/failed means "running"
and both error shapes are read. A fast task may already be ``completed`` in the create answer.
"""

from __future__ import annotations

from typing import Any

from bot.providers.base import (
    AuthError,
    BadResponse,
    ContentRefused,
    Finished,
    GenerationRequest,
    HttpCall,
    InvalidRequest,
    OutOfBalance,
    OutputRef,
    Pending,
    ProviderError,
    ProviderTimeout,
    RateLimited,
    TaskFailed,
    Unavailable,
)
from bot.providers.parsing import (
    BearerKeyAdapter,
    cost_text,
    error_parts,
    looks_like_moderation,
    optional_int,
    progress_fraction,
    require_dict,
    safe_text,
)

NAME = "vtrix"
_PARAMS = {
    "aspect_ratio": "aspect_ratio",
    "steps": "steps",
    "guidance": "guidance_scale",
    "negative_prompt": "negative_prompt",
}
_IMAGE_FIELDS = ("input_image", "input_image_2", "input_image_3", "input_image_4")


class VtrixAdapter(BearerKeyAdapter):
    name = NAME
    label = "Vtrix"

    def build_submit(self, req: GenerationRequest) -> HttpCall:
        if len(req.images) > len(_IMAGE_FIELDS):
            raise InvalidRequest(f"Vtrix takes at most {len(_IMAGE_FIELDS)} input images.", provider=NAME)
        params: dict[str, Any] = {"prompt": req.prompt}
        params.update(zip(_IMAGE_FIELDS, req.images, strict=False))
        for canonical, api_name in _PARAMS.items():
            value = req.params.get(canonical)
            if value is not None:
                params[api_name] = value
        seed = req.params.get("seed")
        if seed is not None and seed >= 0:
            params["seed"] = seed
        return HttpCall(
            "POST", "/model/v1/generation", json={"model": req.provider_model, "input": [{"params": params}]}
        )

    def parse_submit(self, status: int, body: Any) -> Pending | Finished:
        return self._parse_task(status, body)

    def build_poll(self, task_id: str) -> HttpCall:
        return HttpCall("GET", f"/model/v1/generation/task/{task_id}")

    def parse_poll(self, status: int, body: Any) -> Pending | Finished:
        return self._parse_task(status, body)

    def _parse_task(self, status: int, body: Any) -> Pending | Finished:
        if not 200 <= status < 300:
            raise self.map_error(status, body, None)
        task = require_dict(NAME, body, "answer")
        # Some gateways wrap the task as {"code", "message", "data": {...}}, and report errors
        # inside a 200 answer as {"code": 4xx, "message"}.
        if "id" not in task and isinstance(task.get("data"), dict):
            task = task["data"]
        elif "id" not in task and isinstance(task.get("code"), int) and task["code"] >= 400:
            raise self.map_error(task["code"], task, None)
        task_id = task.get("id")
        if not isinstance(task_id, (str, int)) or isinstance(task_id, bool) or task_id == "":
            raise BadResponse("Vtrix sent a task without an id.", provider=NAME, status=status)
        task_id = str(task_id)
        state = str(task.get("status") or "").lower()
        if state == "failed":
            raise self._task_error(task, task_id)
        if state != "completed":
            return Pending(task_id, progress_fraction(task.get("progress")), state or "running")
        usage = task.get("usage") if isinstance(task.get("usage"), dict) else {}
        metadata = task.get("metadata") if isinstance(task.get("metadata"), dict) else {}
        return Finished(
            _outputs(task.get("output")),
            task_id=task_id,
            cost_usd=cost_text(usage.get("cost")),
            seed=optional_int(metadata.get("seed")),
        )

    def _task_error(self, task: dict[str, Any], task_id: str) -> ProviderError:
        code, message = error_parts({"error": task.get("error")})
        detail = safe_text(message, [self._api_key])
        kw: dict[str, Any] = {"provider": NAME, "request_id": task_id}
        if looks_like_moderation(str(code or ""), message):
            return ContentRefused(
                "Vtrix's moderation refused this prompt or image. Try different wording or another image.",
                **kw,
            )
        return TaskFailed(f"The Vtrix task failed{': ' + detail if detail else '.'}", **kw)

    def map_error(self, status: int, body: Any, retry_after: float | None) -> ProviderError:
        code, message = error_parts(body)
        detail = safe_text(message, [self._api_key])
        suffix = f": {detail}" if detail else "."
        request_id = body.get("request_id") if isinstance(body, dict) else None
        kw: dict[str, Any] = {
            "provider": NAME,
            "status": status,
            "request_id": safe_text(request_id, [self._api_key], 80) or None,
            "retry_after": retry_after,
        }
        if status == 401:
            return AuthError("Vtrix rejected the API key.", **kw)
        if status in (402, 403):
            return OutOfBalance(f"The Vtrix account has no balance or no permission (HTTP {status}).", **kw)
        if status == 404:
            return TaskFailed("Vtrix no longer knows this task.", **kw)
        if status in (408, 504):
            return ProviderTimeout(f"Vtrix timed out (HTTP {status}).", **kw)
        if status == 429:
            return RateLimited("Vtrix is rate limiting requests.", **kw)
        if status >= 500:
            return Unavailable(f"Vtrix is unavailable (HTTP {status}).", **kw)
        if looks_like_moderation(str(code or ""), message):
            return ContentRefused("Vtrix's moderation refused this prompt or image.", **kw)
        return InvalidRequest(f"Vtrix rejected the request{suffix}", **kw)


def _outputs(output: Any) -> tuple[OutputRef, ...]:
    """Image links from ``output: [{"content": [{"type": "image", "url"}]}]``."""
    refs = []
    for block in output if isinstance(output, list) else ():
        content = block.get("content") if isinstance(block, dict) else None
        for item in content if isinstance(content, list) else ():
            if not isinstance(item, dict) or item.get("type", "image") != "image":
                continue
            url = item.get("url")
            if isinstance(url, str) and url:
                refs.append(OutputRef(url=url))
    return tuple(refs)
