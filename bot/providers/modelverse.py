"""UModelverse: an OpenAI-compatible images API that answers synchronously (seeds 000-002).

One POST returns the finished images, so there is never a task to poll or resume. The seeds list
``error`` among the fields of every answer: one whose code and message are both empty, beside
``data``, reports nothing. The generation happens inside the request, so a 500 ``internal_error``,
a 502, a 504 or a 408 may come after the work began (the client never sends that submit again);
only a 429 and a 503 say nothing was done. A 500 ``model_server_error`` says the model failed.
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
from bot.providers.parsing import BearerKeyAdapter, error_parts, safe_text

NAME = "modelverse"
# Canonical name -> the API's name. Which model accepts which is the catalog's business.
_PARAMS = {
    "n": "n",
    "aspect_ratio": "aspect_ratio",
    "steps": "steps",
    "guidance": "guidance_scale",
    "negative_prompt": "negative_prompt",
    "strength": "strength",
    "size": "size",
}


class ModelverseAdapter(BearerKeyAdapter):
    name = NAME
    label = "UModelverse"
    synchronous = True  # one request makes the images: there is no task to ask about again

    def build_submit(self, req: GenerationRequest) -> HttpCall:
        body: dict[str, Any] = {"model": req.provider_model, "prompt": req.prompt}
        if req.images:
            # The "/multi" models take an array; every other model takes a single image.
            if req.provider_model.endswith("/multi"):
                body["images"] = list(req.images)
            else:
                body["image"] = req.images[0]
        for canonical, api_name in _PARAMS.items():
            value = req.params.get(canonical)
            if value is not None:
                body[api_name] = value
        seed = req.params.get("seed")
        if seed is not None and seed >= 0:  # -1 means "random", which is also the default
            body["seed"] = seed
        return HttpCall("POST", "/v1/images/generations", json=body)

    def parse_submit(self, status: int, body: Any) -> Pending | Finished:
        if not 200 <= status < 300 or _reports_error(body):
            raise self.map_error(status, body, None)
        data = body.get("data") if isinstance(body, dict) else None
        if not isinstance(data, list):
            raise BadResponse("UModelverse sent an answer without images.", provider=NAME, status=status)
        outputs = []
        for item in data:
            if not isinstance(item, dict):
                continue
            url, b64 = item.get("url"), item.get("b64_json")
            ref = OutputRef(
                url=url if isinstance(url, str) and url else None,
                b64=b64 if isinstance(b64, str) and b64 else None,
            )
            if ref.url or ref.b64:
                outputs.append(ref)
        return Finished(tuple(outputs))

    def build_poll(self, task_id: str) -> HttpCall:
        # Synchronous API: a job either finished inside its request or is lost with it.
        raise TaskFailed("UModelverse has no tasks to resume.", provider=NAME)

    def parse_poll(self, status: int, body: Any) -> Pending | Finished:
        raise TaskFailed("UModelverse has no tasks to resume.", provider=NAME)

    def map_error(self, status: int, body: Any, retry_after: float | None) -> ProviderError:
        code, message = error_parts(body)
        err = body.get("error") if isinstance(body, dict) else None
        request_id = err.get("param") if isinstance(err, dict) else None
        code_text = str(code or "").lower()
        etype = str(err.get("type") or "").lower() if isinstance(err, dict) else ""
        detail = safe_text(message, [self._api_key])
        kw: dict[str, Any] = {
            "provider": NAME,
            "status": status,
            "request_id": safe_text(request_id, [self._api_key], 80) or None,
            "retry_after": retry_after,
        }
        suffix = f": {detail}" if detail else "."
        if "sensitive" in code_text or "sensitive" in etype:
            return ContentRefused(
                "UModelverse's safety check refused this prompt or image. Try different wording or "
                "another image.",
                **kw,
            )
        if status == 402 or "balance" in code_text or "quota" in code_text:
            return OutOfBalance("The UModelverse account is out of balance.", **kw)
        if status == 401 or "auth" in code_text:
            return AuthError("UModelverse rejected the API key.", **kw)
        if status == 403:
            return AuthError(f"UModelverse refused access (HTTP 403){suffix}", **kw)
        if status in (408, 504) or code_text in ("timeout", "gateway_timeout_error"):
            return ProviderTimeout(f"UModelverse timed out (HTTP {status}).", **kw)
        if status == 429 or "rate_limit" in code_text:
            return RateLimited("UModelverse is rate limiting requests.", **kw)
        if code_text == "model_server_error":
            return TaskFailed(f"UModelverse could not generate the image{suffix}", **kw)
        if status >= 500:
            err = Unavailable(f"UModelverse is unavailable (HTTP {status}).", **kw)
            err.resend_safe = status == 503  # refused before the model ran
            return err
        if 400 <= status < 500 or code_text in ("param_error", "model_error"):
            return InvalidRequest(f"UModelverse rejected the request{suffix}", **kw)
        return BadResponse(f"UModelverse reported an error{suffix}", **kw)


def _reports_error(body: Any) -> bool:
    """An ``error`` that says something: a string, or an object with a code or a message."""
    err = body.get("error") if isinstance(body, dict) else None
    if isinstance(err, dict):
        return any(err.get(key) not in (None, "") for key in ("code", "message"))
    return bool(err)
