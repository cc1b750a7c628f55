"""Downloads of links the bot did not choose: members' image URLs and providers' result links.

One fetch policy for both, kept here and nowhere else: only http(s); every hop's host resolved and
refused unless it is plainly on the public internet (explicit configuration may allow private
networks: tests, or a provider inside the operator's own network); redirects followed by hand, at
most ``MAX_REDIRECTS``, each hop checked again; no compression; a byte cap enforced while the body
streams; explicit timeouts. Failures come out as ``DownloadError`` subclasses carrying only the host
(``where``), never credentials or a signed query; each caller words them for its own audience.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
import time
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from types import MappingProxyType
from urllib.parse import urlsplit

import httpx

log = logging.getLogger(__name__)

MAX_REDIRECTS = 3
USER_LINK_TIMEOUT = 20.0  # seconds for a member's link: DNS, every redirect and the body together
RESULT_READ_TIMEOUT = 60.0  # seconds per read of a provider's result link (it may be a large file)
CONNECT_TIMEOUT = 10.0  # at most, for any connect (and the address check's name lookup)
_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
# identity: a gzip-encoded "image" could inflate far past max_bytes inside a single chunk.
_HEADERS = MappingProxyType({"Accept": "image/*", "Accept-Encoding": "identity"})
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


@dataclass(frozen=True)
class FetchPolicy:
    """How one kind of link is fetched. ``deadline``: seconds for the whole download, or None."""

    max_bytes: int
    timeout: httpx.Timeout
    deadline: float | None = None
    allow_private: bool = False

    @classmethod
    def user_link(
        cls, max_bytes: int, seconds: float = USER_LINK_TIMEOUT, *, allow_private: bool = False
    ) -> FetchPolicy:
        return cls(max_bytes, httpx.Timeout(seconds), seconds, allow_private)

    @classmethod
    def result_link(
        cls, max_bytes: int, read_timeout: float = RESULT_READ_TIMEOUT, *, allow_private: bool = False
    ) -> FetchPolicy:
        timeout = httpx.Timeout(read_timeout, connect=min(read_timeout, CONNECT_TIMEOUT))
        return cls(max_bytes, timeout, None, allow_private)


# --- why a link was not fetched ------------------------------------------------------------------


class DownloadError(Exception):
    """``where`` is the host alone, safe to show."""

    def __init__(self, where: str = "that link") -> None:
        super().__init__(where)
        self.where = where


class NotALink(DownloadError):
    """Not a URL at all."""


class WrongScheme(DownloadError):
    """Not http:// or https://."""


class NoHost(DownloadError):
    pass


class UnknownHost(DownloadError):
    """The name does not resolve."""


class PrivateAddress(DownloadError):
    """The host (or a redirect's) is private, loopback, link-local or otherwise not public."""


class RedirectNowhere(DownloadError):
    pass


class TooManyRedirects(DownloadError):
    pass


class BadStatus(DownloadError):
    """The final answer was not 2xx. ``retry_after`` in seconds when the answer said."""

    def __init__(self, where: str, status: int, retry_after: float | None) -> None:
        super().__init__(where)
        self.status = status
        self.retry_after = retry_after


class TooLarge(DownloadError):
    def __init__(self, where: str, max_bytes: int) -> None:
        super().__init__(where)
        self.max_bytes = max_bytes


class TransportError(DownloadError):
    """The connection failed; ``error`` is httpx's exception (its text may quote the URL: use its type)."""

    def __init__(self, where: str, error: httpx.HTTPError) -> None:
        super().__init__(where)
        self.error = error


class TimedOut(TransportError):
    pass


# --- the download ----------------------------------------------------------------------------------


async def fetch(http: httpx.AsyncClient, url: str, policy: FetchPolicy) -> bytes:
    """GET ``url`` under ``policy``; the body of its 2xx answer. Raises DownloadError.

    ``http`` must carry no default credentials (headers, cookies): whatever it sends by default
    goes to the link's host too."""
    try:
        async with asyncio.timeout(policy.deadline):
            return await _follow(http, url, policy)
    except TimeoutError:
        raise TimedOut(shown_host(url), httpx.TimeoutException("download deadline passed")) from None


async def _follow(http: httpx.AsyncClient, url: str, policy: FetchPolicy) -> bytes:
    current: httpx.URL | str = url
    for _hop in range(MAX_REDIRECTS + 1):
        target = _parse(current)
        where = shown_host(target)
        await _check_host(target, where, policy)
        try:
            async with http.stream(
                "GET", target, headers=dict(_HEADERS), follow_redirects=False, timeout=policy.timeout
            ) as resp:
                status = resp.status_code
                if status in _REDIRECT_STATUSES:
                    location = resp.headers.get("location")
                    if not location:
                        raise RedirectNowhere(where)
                    current = target.join(location)
                    continue
                if not 200 <= status < 300:
                    raise BadStatus(where, status, parse_retry_after(resp.headers.get("retry-after")))
                data = await read_capped(resp, policy.max_bytes, where)
        except httpx.InvalidURL:
            raise NotALink(where) from None
        except httpx.TimeoutException as exc:
            raise TimedOut(where, exc) from None
        except httpx.HTTPError as exc:
            raise TransportError(where, exc) from None
        log.debug("downloaded %s (%d bytes)", safe_path(str(target)), len(data))
        return data
    raise TooManyRedirects(shown_host(url))


async def read_capped(resp: httpx.Response, max_bytes: int, where: str = "that link") -> bytes:
    """The body of a streamed answer, refused (TooLarge) once it passes ``max_bytes``: by its
    Content-Length before reading, or while streaming when it has none or lied."""
    declared = resp.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise TooLarge(where, max_bytes)
    chunks: list[bytes] = []
    size = 0
    async for chunk in resp.aiter_bytes():
        size += len(chunk)
        if size > max_bytes:
            raise TooLarge(where, max_bytes)
        chunks.append(chunk)
    return b"".join(chunks)


# --- the address rule -------------------------------------------------------------------------------


def _parse(url: httpx.URL | str) -> httpx.URL:
    try:
        parsed = httpx.URL(url) if isinstance(url, str) else url
    except Exception:
        raise NotALink() from None
    if parsed.scheme not in ("http", "https"):
        raise WrongScheme(shown_host(parsed))
    if not parsed.host:
        raise NoHost()
    return parsed


async def _check_host(url: httpx.URL, where: str, policy: FetchPolicy) -> None:
    # Known limit: the check resolves the name and httpx resolves it again when connecting, so a
    # DNS server that answers differently the second time (DNS rebinding) can slip past. Closing
    # that needs connecting to the checked IP itself (Host header + SNI), which a shared client
    # with optional proxies cannot promise; the redirect re-checks and the size cap still apply.
    host = url.raw_host.decode("ascii")  # punycode for IDN; bare (no brackets) for IPv6
    port = url.port or (443 if url.scheme == "https" else 80)
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(policy.timeout.connect):
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except TimeoutError:
        raise TimedOut(where, httpx.ConnectTimeout("name lookup timed out")) from None
    except (OSError, UnicodeError):
        raise UnknownHost(where) from None
    if policy.allow_private:
        return
    for *_, sockaddr in infos:
        try:
            ip = ipaddress.ip_address(str(sockaddr[0]))
        except ValueError:
            raise UnknownHost(where) from None
        if is_forbidden(ip):
            raise PrivateAddress(where)


def is_forbidden(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """True for any address that is not plainly on the public internet."""
    if isinstance(ip, ipaddress.IPv6Address):
        # IPv6 forms that carry an IPv4 address reach that address: judge the embedded one.
        embedded = ip.ipv4_mapped or ip.sixtofour or (ip.teredo[1] if ip.teredo else None)
        if embedded is None and ip in _NAT64:
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if embedded is not None and is_forbidden(embedded):
            return True
    return (
        not ip.is_global
        or ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
    )


# --- what may be shown of a link, and what an answer's headers say --------------------------------


def shown_host(url: httpx.URL | str) -> str:
    """The host alone: never userinfo (credentials) or the query (signed tokens)."""
    try:
        host = httpx.URL(url).host if isinstance(url, str) else url.host
    except Exception:
        return "that link"
    if not host:
        return "that link"
    return f"[{host}]" if ":" in host else host


def safe_path(url: str) -> str:
    """Host and path only, for logs: result links often carry signed query strings."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "that link"
    return f"{parts.netloc.rpartition('@')[2]}{parts.path}"


def parse_retry_after(value: str | None) -> float | None:
    """Retry-After as seconds: a number, or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        seconds = when.timestamp() - time.time()
    if seconds != seconds:  # NaN
        return None
    return max(seconds, 0.0)
