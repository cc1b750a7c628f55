"""Vtrix: create a generation task, then poll it (seed 003, and Vtrix's own client, vtrix-cli).

Sources disagree on status names (``in_progress`` vs ``pending``/``processing``), so anything but
completed/failed means "running". A failed task's ``error`` is a plain string, ``{"code",
"message"}`` (the seed) or ``{"code": <int>, "error_message"}`` (the client): all three are read,
and a moderation refusal in any of them is a ContentRefused, never failed over.

The create answer's status is the submission's, not the generation's (the client always polls):
``completed`` with its output is taken as it is, ``completed`` without any output means "poll".
A create answer without an id but with an ``error`` says why no task was made.
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
_REFUSED = "Vtrix's moderation refused this prompt or image. Try different wording or another image."


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
        state = self._parse_task(status, body, creating=True)
        if isinstance(state, Finished) and not state.outputs:
            return Pending(state.task_id or "", status="completed")  # the task's own answer is the poll's
        return state

    def build_poll(self, task_id: str) -> HttpCall:
        return HttpCall("GET", f"/model/v1/generation/task/{task_id}")

    def parse_poll(self, status: int, body: Any) -> Pending | Finished:
        return self._parse_task(status, body)

    def _parse_task(self, status: int, body: Any, *, creating: bool = False) -> Pending | Finished:
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
            if task.get("error"):
                raise self._no_task_error(task, creating)
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
            return ContentRefused(_REFUSED, **kw)
        return TaskFailed(f"The Vtrix task failed{': ' + detail if detail else '.'}", **kw)

    def _no_task_error(self, body: dict[str, Any], creating: bool) -> ProviderError:
        """An answer without a task but with an ``error``: what the client prints as the reason."""
        code, message = error_parts(body)
        detail = safe_text(message, [self._api_key])
        if looks_like_moderation(str(code or ""), message):
            return ContentRefused(_REFUSED, provider=NAME)
        what = "did not create the task" if creating else "answered without the task"
        return TaskFailed(f"Vtrix {what}{': ' + detail if detail else '.'}", provider=NAME)

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
            err = Unavailable(f"Vtrix is unavailable (HTTP {status}).", **kw)
            err.resend_safe = status == 503  # refused before any task was made
            return err
        if looks_like_moderation(str(code or ""), message):
            return ContentRefused(_REFUSED, **kw)
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
