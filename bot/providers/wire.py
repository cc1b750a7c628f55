"""Pure helpers of one HTTP exchange with a provider (bot.providers.http): where a call goes, whether
the key may go with it, and the request id an answer names."""

from __future__ import annotations

from urllib.parse import urlsplit

import httpx

REQUEST_ID_HEADERS = ("x-request-id", "request-id", "x-trace-id")


def request_id_of(headers: httpx.Headers) -> str | None:
    for name in REQUEST_ID_HEADERS:
        value = headers.get(name)
        if value:
            return value[:80]
    return None


def join_url(base_url: str, path: str) -> str:
    if path.startswith(("http://", "https://")):
        return path
    return base_url.rstrip("/") + "/" + path.lstrip("/")


def same_origin(url: str, base_url: str) -> bool:
    a, b = urlsplit(url), urlsplit(base_url)
    return (a.scheme, a.netloc) == (b.scheme, b.netloc)
