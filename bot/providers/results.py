"""A finished task's images: result links fetched under ``bot.downloads``' policy (the same address
rule as members' links: a link that is, or redirects to, a private, loopback or link-local address
is refused unless ``Limits.allow_private_results`` is set), base64 results decoded, and every
result checked to be a real image, the slow parts off the event loop.

Failures are ``ProviderError``s: an expired link (403/404/410) or a refused one fails over to the
next route, a 429 or 5xx is retried with the HTTP core's backoff (Retry-After honoured).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import httpx

from bot import downloads
from bot.config import Limits
from bot.downloads import FetchPolicy
from bot.errors import InputImageError
from bot.images.codec import identify
from bot.providers.base import (
    BadResponse,
    OutputExpired,
    OutputImage,
    OutputRef,
    ProviderError,
    RateLimited,
    Unavailable,
    label_of,
)

log = logging.getLogger(__name__)

RetryDelay = Callable[[ProviderError, int, float], float | None]
TransportErrorMap = Callable[[httpx.HTTPError, str, str], ProviderError]
_URLSAFE = str.maketrans("-_", "+/")


class ResultDownloader:
    """Downloads for ``ProviderClient``, which lends it its retry policy and transport-error mapping."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        limits: Limits,
        *,
        read_timeout: float,
        retry_delay: RetryDelay,
        transport_error: TransportErrorMap,
        sleep: Callable[[float], Awaitable[Any]],
    ) -> None:
        self._http = http
        self._limits = limits
        self._policy = FetchPolicy.result_link(
            limits.max_output_bytes, read_timeout, allow_private=limits.allow_private_results
        )
        self._retry_delay = retry_delay
        self._transport_error = transport_error
        self._sleep = sleep

    async def download(
        self, refs: Sequence[OutputRef], *, provider: str, deadline: float | None = None
    ) -> tuple[OutputImage, ...]:
        """Fetch (or decode) every output at once and check each is a real image."""
        if not refs:
            raise BadResponse(f"{label_of(provider)} finished without any image.", provider=provider)
        tasks = [asyncio.create_task(self._fetch_image(ref, provider, deadline)) for ref in refs]
        try:
            return tuple(await asyncio.gather(*tasks))
        except BaseException:
            # One bad output fails the job: stop the other downloads rather than orphan them.
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise

    async def _fetch_image(self, ref: OutputRef, provider: str, deadline: float | None) -> OutputImage:
        cap = self._limits.max_output_bytes
        max_pixels = self._limits.max_input_pixels
        if ref.b64:
            return await asyncio.to_thread(_decode_and_identify, ref, provider, cap, max_pixels)
        if not ref.url:
            raise BadResponse(f"{label_of(provider)} returned an empty result.", provider=provider)
        data = await self._fetch_url(ref.url, provider, deadline)
        return await asyncio.to_thread(_identify, data, ref.nsfw, provider, max_pixels)

    async def _fetch_url(self, url: str, provider: str, deadline: float | None) -> bytes:
        attempt = 0
        while True:
            try:
                return await self._get(url, provider)
            except ProviderError as exc:
                delay = self._retry_delay(exc, attempt, deadline if deadline is not None else float("inf"))
                if delay is None:
                    raise
                attempt += 1
                log.warning(
                    "%s: result download failed (%s); retry %d in %.1f s", provider, exc.code, attempt, delay
                )
                await self._sleep(delay)

    async def _get(self, url: str, provider: str) -> bytes:
        # No auth headers: result links are public, and the key must not travel to a CDN.
        try:
            return await downloads.fetch(self._http, url, self._policy)
        except downloads.DownloadError as exc:
            raise self._provider_error(exc, provider) from None

    def _provider_error(self, exc: downloads.DownloadError, provider: str) -> ProviderError:
        label = label_of(provider)
        match exc:
            case downloads.NotALink() | downloads.WrongScheme() | downloads.NoHost():
                return BadResponse(f"{label} returned a result link the bot cannot fetch.", provider=provider)
            case downloads.PrivateAddress():
                log.warning("%s: result link to a private address (%s) refused", provider, exc.where)
                return BadResponse(
                    f"{label} returned a result link to a private or local network address "
                    f"({exc.where}); the bot does not fetch those.",
                    provider=provider,
                )
            case downloads.RedirectNowhere() | downloads.TooManyRedirects():
                return BadResponse(
                    f"{label}'s result link redirects nowhere or more than {downloads.MAX_REDIRECTS} times.",
                    provider=provider,
                )
            case downloads.BadStatus(status=status) if status in (403, 404, 410):
                return OutputExpired(
                    f"The result link from {label} has expired (HTTP {status}).",
                    provider=provider,
                    status=status,
                )
            case downloads.BadStatus(status=429, retry_after=retry_after):
                return RateLimited(
                    f"{label} is rate limiting result downloads.",
                    provider=provider,
                    status=429,
                    retry_after=retry_after,
                )
            case downloads.BadStatus(status=status) if status >= 500:
                return Unavailable(
                    f"{label} could not serve the result (HTTP {status}).", provider=provider, status=status
                )
            case downloads.BadStatus(status=status):
                return BadResponse(
                    f"{label} answered HTTP {status} for the result.", provider=provider, status=status
                )
            case downloads.TooLarge():
                return _too_large(provider, self._limits.max_output_bytes)
            case downloads.UnknownHost():
                # What httpx itself raises when the name does not resolve: the road, not the result.
                return self._transport_error(httpx.ConnectError("name not resolved"), provider, provider)
            case downloads.TransportError(error=error):
                return self._transport_error(error, provider, provider)
        return BadResponse(f"{label}'s result could not be downloaded.", provider=provider)


def _too_large(provider: str, cap: int) -> BadResponse:
    return BadResponse(
        f"The result from {label_of(provider)} is too large (over {cap // (1024 * 1024)} MB).",
        provider=provider,
    )


def _decode_and_identify(ref: OutputRef, provider: str, cap: int, max_pixels: int) -> OutputImage:
    """Runs in a worker thread: base64 of a large image is slow enough to stall the event loop."""
    text = ref.b64 or ""
    if text.startswith("data:"):
        header, _, text = text.partition(",")
        if ";base64" not in header:
            raise BadResponse(
                f"{label_of(provider)} returned a result that is not base64.", provider=provider
            )
    text = "".join(text.split())
    if len(text) * 3 // 4 > cap:
        raise _too_large(provider, cap)
    # Some providers drop the padding or use the URL-safe alphabet; both decode to the same bytes.
    text = text.translate(_URLSAFE) + "=" * (-len(text) % 4)
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise BadResponse(
            f"{label_of(provider)} returned a result that is not valid base64.", provider=provider
        ) from None
    if not data:
        raise BadResponse(f"{label_of(provider)} returned an empty result.", provider=provider)
    return _identify(data, ref.nsfw, provider, max_pixels)


def _identify(data: bytes, nsfw: bool, provider: str, max_pixels: int) -> OutputImage:
    try:
        info = identify(data, max_pixels=max_pixels)
    except (InputImageError, OSError, ValueError, SyntaxError):
        # Pillow signals some corrupt files with these instead; either way it is not an image.
        raise BadResponse(
            "The provider returned something that is not an image.", provider=provider
        ) from None
    return OutputImage(data=data, mime=info.mime, width=info.width, height=info.height, nsfw=nsfw)
