"""WaveSpeedAI: submit a prediction, then poll its result (seed 004, and WaveSpeed's own SDKs).

Every answer is wrapped as ``{"code", "message", "data": {...}}``. A prediction is ``created`` or
``processing`` until it ends in one of five states, each ending the task at once:

    completed   the outputs
    failed      by data.code: 1200 (or moderation words) ContentRefused, not failed over;
                1400/1401 InvalidRequest, not failed over; 5000/5003/5004 a passing fault: the task
                ended, so sending the job again is safe (retried, then failed over); anything else
                TaskFailed, failed over
    timeout     the provider's own time limit: TaskFailed, failed over (another provider may be
                quicker; the task ended, and nothing came of it)
    cancelled   TaskCancelled, not failed over, and never a content refusal: the bot never cancels
    deleted     or deletes a task, so someone with the account stopped this job on purpose, and
                sending it to another account would undo that decision

Sync mode (``enable_sync_mode``) blocks until the output exists, but may give up first while the
task goes on: as HTTP 504 naming the prediction, or as HTTP 200 with ``data.code`` 5004 (or
``processing`` and "Sync mode timed out"). Either way the job polls that same prediction; a 504
without an id is an unknown outcome (never a second submit). 429 and 503 say nothing was started.
"""

from __future__ import annotations

import re
from typing import Any

from bot.config import ProviderSettings
from bot.providers.base import (
    AuthError,
    BadResponse,
    ContentRefused,
    Finished,
    GenerationRequest,
    HttpCall,
    InvalidRequest,
    OutOfBalance,
    Pending,
    ProviderError,
    ProviderTimeout,
    RateLimited,
    TaskCancelled,
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
    ref_from_text,
    require_dict,
    safe_text,
)

NAME = "wavespeed"
_PARAMS = {"guidance": "guidance_scale", "aspect_ratio": "aspect_ratio"}
_LEADING_CODE = re.compile(r"^\s*\[?(\d{4})\b")
_CANCELLED = ("cancelled", "canceled", "deleted")
_SYNC_TIMEOUT = "sync mode timed out"


class WaveSpeedAdapter(BearerKeyAdapter):
    name = NAME
    label = "WaveSpeedAI"

    def __init__(
        self,
        api_key: str,
        base_url: str,
        *,
        sync_mode: bool = False,
        base64_output: bool = False,
        **timeouts: float,
    ) -> None:
        super().__init__(api_key, base_url, **timeouts)
        self.sync_mode = sync_mode
        self.base64_output = base64_output

    @classmethod
    def from_settings(cls, s: ProviderSettings) -> WaveSpeedAdapter:
        adapter = super().from_settings(s)
        adapter.sync_mode = s.sync_mode
        return adapter

    def __repr__(self) -> str:
        return f"WaveSpeedAdapter(base_url={self.base_url!r}, sync_mode={self.sync_mode})"

    def build_submit(self, req: GenerationRequest) -> HttpCall:
        model = req.provider_model.strip("/")
        body: dict[str, Any] = {"prompt": req.prompt}
        # The endpoint decides the input shape: ".../multi" takes an array, ".../text-to-image"
        # takes none, the plain edit endpoint takes one image.
        text_to_image = model.endswith("/text-to-image")
        if req.images and not text_to_image:
            if model.endswith("/multi"):
                body["images"] = list(req.images)
            else:
                body["image"] = req.images[0]
        for canonical, api_name in _PARAMS.items():
            value = req.params.get(canonical)
            if value is not None:
                body[api_name] = value
        n = req.params.get("n")
        if text_to_image and n is not None:
            body["num_images"] = n
        seed = req.params.get("seed")
        if seed is not None and seed >= 0:
            body["seed"] = seed
        if self.sync_mode:
            body["enable_sync_mode"] = True
        if self.base64_output:
            body["enable_base64_output"] = True
        return HttpCall("POST", f"/api/v3/{model}", json=body)

    def parse_submit(self, status: int, body: Any) -> Pending | Finished:
        # Sync mode gave up waiting but the task lives on: poll it when the answer names it.
        data = body.get("data") if isinstance(body, dict) else None
        task_id = data.get("id") if isinstance(data, dict) else None
        if isinstance(task_id, str) and task_id and (status == 504 or _sync_timed_out(status, data)):
            return Pending(task_id, status="processing")
        return self._parse(status, body)

    def build_poll(self, task_id: str) -> HttpCall:
        return HttpCall("GET", f"/api/v3/predictions/{task_id}/result")

    def parse_poll(self, status: int, body: Any) -> Pending | Finished:
        return self._parse(status, body)

    def _parse(self, status: int, body: Any) -> Pending | Finished:
        if not 200 <= status < 300:
            raise self.map_error(status, body, None)
        wrapper = require_dict(NAME, body, "answer")
        code = wrapper.get("code")
        if isinstance(code, int) and not isinstance(code, bool) and code != 200 and code >= 400:
            raise self.map_error(status, wrapper, None)
        data = wrapper.get("data") if isinstance(wrapper.get("data"), dict) else None
        if data is None and "id" in wrapper:  # tolerate an unwrapped prediction
            data = wrapper
        prediction = require_dict(NAME, data, "answer")
        task_id = prediction.get("id")
        if not isinstance(task_id, str) or not task_id:
            raise BadResponse("WaveSpeedAI sent a prediction without an id.", provider=NAME, status=status)
        state = str(prediction.get("status") or "").lower()
        if state == "failed":
            raise self._task_error(prediction, task_id)
        if state in _CANCELLED:
            raise TaskCancelled(
                f"The WaveSpeedAI task was {'deleted' if state == 'deleted' else 'cancelled'} at the "
                "provider (not by the bot).",
                provider=NAME,
                request_id=task_id,
            )
        if state == "timeout":
            raise TaskFailed(
                "The WaveSpeedAI task ran out of time at the provider.", provider=NAME, request_id=task_id
            )
        if state != "completed":
            return Pending(task_id, progress_fraction(prediction.get("progress")), state or "running")
        outputs = prediction.get("outputs")
        flags = prediction.get("has_nsfw_contents")
        flags = flags if isinstance(flags, list) else []
        refs = tuple(
            ref_from_text(text, nsfw=bool(flags[i]) if i < len(flags) else False)
            for i, text in enumerate(outputs if isinstance(outputs, list) else ())
            if isinstance(text, str) and text.strip()
        )
        return Finished(
            refs,
            task_id=task_id,
            cost_usd=cost_text(prediction.get("cost")),
            seed=optional_int(prediction.get("seed")),
        )

    def _task_error(self, prediction: dict[str, Any], task_id: str) -> ProviderError:
        # The text is in data.error (a string, sometimes an object); the number in data.code.
        error = prediction.get("error")
        code, message = error_parts({"error": error}) if error else (None, "")
        code = _task_code(prediction.get("code") if code is None else code, message)
        err = self._code_error(code, message, {"provider": NAME, "request_id": task_id}, task=True)
        # The task has ended: a passing fault (5xxx) may be sent again without paying twice.
        err.resend_safe = err.retryable
        return err

    def _code_error(self, code: int | None, message: str, kw: dict[str, Any], *, task: bool) -> ProviderError:
        detail = safe_text(message, [self._api_key])
        suffix = f": {detail}" if detail else "."
        if code == 1200 or looks_like_moderation(message):
            return ContentRefused(
                "WaveSpeedAI's moderation refused this prompt or image. Try different wording or "
                "another image.",
                **kw,
            )
        if code in (1400, 1401):
            return InvalidRequest(f"WaveSpeedAI rejected the request{suffix}", **kw)
        if code in (1402, 1403, 1405):
            return TaskFailed(f"The WaveSpeedAI task failed{suffix}", **kw)
        if code in (5000, 5003, 5004):
            return Unavailable(f"WaveSpeedAI had an internal failure (code {code}).", **kw)
        if task:
            return TaskFailed(f"The WaveSpeedAI task failed{suffix}", **kw)
        return InvalidRequest(f"WaveSpeedAI rejected the request{suffix}", **kw)

    def map_error(self, status: int, body: Any, retry_after: float | None) -> ProviderError:
        code, message = error_parts(body)
        data = body.get("data") if isinstance(body, dict) else None
        request_id = data.get("id") if isinstance(data, dict) else None
        kw: dict[str, Any] = {
            "provider": NAME,
            "status": status,
            "request_id": safe_text(request_id, [self._api_key], 80) or None,
            "retry_after": retry_after,
        }
        # A 200 answer may still carry an HTTP-like error code in its wrapper.
        wrapped = code if isinstance(code, int) and not isinstance(code, bool) else None
        effective = wrapped if status < 400 and wrapped and wrapped < 1000 else status
        if effective == 401:
            return AuthError("WaveSpeedAI rejected the API key (wrong or not yet activated).", **kw)
        if effective in (402, 403):
            return OutOfBalance("The WaveSpeedAI account is suspended or out of balance.", **kw)
        if effective == 429:
            return RateLimited("WaveSpeedAI is rate limiting this account.", **kw)
        if effective == 408:
            return ProviderTimeout("WaveSpeedAI timed out (HTTP 408).", **kw)
        if effective >= 500:
            err = Unavailable(f"WaveSpeedAI is unavailable (HTTP {effective}).", **kw)
            err.resend_safe = status == 503  # refused before any task was made
            return err
        if effective == 404:
            return TaskFailed("WaveSpeedAI no longer knows this prediction.", **kw)
        return self._code_error(_task_code(code, message), message, kw, task=False)


def _task_code(code: Any, message: str) -> int | None:
    """WaveSpeed's four-digit task code, from a code field or the start of the error text."""
    number = optional_int(code)
    if number is not None and 1000 <= number <= 9999:
        return number
    match = _LEADING_CODE.match(message or "")
    return int(match.group(1)) if match else None


def _sync_timed_out(status: int, data: dict[str, Any]) -> bool:
    """The SDKs' test for a sync-mode wait that ended before the task did (HTTP 200)."""
    if not 200 <= status < 300:
        return False
    error = data.get("error")
    text = error if isinstance(error, str) else ""
    return optional_int(data.get("code")) == 5004 or (
        str(data.get("status") or "").lower() == "processing" and _SYNC_TIMEOUT in text.lower()
    )
