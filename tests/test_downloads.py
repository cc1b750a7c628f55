"""bot.downloads, the one fetch policy, as members meet it: image links (``fetch_url``, the CLI's
``--image``) and local files (``load_source``). Provider result links: tests/providers/test_downloads.py.
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import AsyncIterator
from dataclasses import replace

import httpx
import pytest
from aiohttp import web

from bot import downloads
from bot.config import Limits
from bot.errors import InputImageError
from bot.images import fetch_url, load_source
from tests.emulator import make_png
from tests.links import PUBLIC, recording_client

LIMITS = Limits()
MIB = 1024 * 1024


# --- members' image links (fetch_url) -------------------------------------------------------------


PNG_BYTES = make_png(64, 64)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/cat.png",
        "http://10.0.0.1/cat.png",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]/cat.png",
        "http://[::ffff:127.0.0.1]/cat.png",
        "http://0.0.0.0/cat.png",
        "http://localhost/cat.png",
        "http://2130706433/cat.png",  # 127.0.0.1 as one decimal number
    ],
)
async def test_private_addresses_are_refused_before_any_request(url: str) -> None:
    await _refused_before_any_request(url, "private or local")


@pytest.mark.parametrize("url", ["ftp://example.com/cat.png", "file:///etc/passwd", "gopher://x/"])
async def test_only_http_and_https_are_accepted(url: str) -> None:
    await _refused_before_any_request(url, "Only http")


async def _refused_before_any_request(url: str, message: str) -> None:
    client, seen = recording_client(lambda r: httpx.Response(200, content=PNG_BYTES))
    async with client:
        with pytest.raises(InputImageError, match=message):
            await fetch_url(client, url, max_bytes=MIB)
    assert seen == []


async def test_credentials_never_appear_in_messages() -> None:
    client, _ = recording_client(lambda r: httpx.Response(200, content=PNG_BYTES))
    async with client:
        with pytest.raises(InputImageError) as err:
            await fetch_url(client, "http://admin:hunter2@10.0.0.1/x.png?token=s3cret", max_bytes=MIB)
    assert "hunter2" not in err.value.user_message and "s3cret" not in err.value.user_message


@pytest.mark.parametrize(
    "location", ["http://169.254.169.254/latest/meta-data/", "http://localhost:8080/", "http://[::1]/"]
)
async def test_redirect_to_a_private_address_is_refused(location: str) -> None:
    client, seen = recording_client(lambda r: httpx.Response(302, headers={"Location": location}))
    async with client:
        with pytest.raises(InputImageError, match="private or local"):
            await fetch_url(client, f"{PUBLIC}/cat.png", max_bytes=MIB)
    assert seen == [f"{PUBLIC}/cat.png"]  # the first hop was fetched, the private one never


async def test_redirects_are_followed_and_capped() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/final.png":
            return httpx.Response(200, content=PNG_BYTES)
        return httpx.Response(302, headers={"Location": "/final.png"})

    client, seen = recording_client(handler)
    async with client:
        assert await fetch_url(client, f"{PUBLIC}/start", max_bytes=MIB) == PNG_BYTES
    assert len(seen) == 2

    loop_client, seen = recording_client(lambda r: httpx.Response(302, headers={"Location": "/again"}))
    async with loop_client:
        with pytest.raises(InputImageError, match="redirected more than 3"):
            await fetch_url(loop_client, f"{PUBLIC}/again", max_bytes=MIB)
    assert len(seen) == 4


async def test_http_errors_are_reported_plainly() -> None:
    client, _ = recording_client(lambda r: httpx.Response(404))
    async with client:
        with pytest.raises(InputImageError, match="answered HTTP 404"):
            await fetch_url(client, f"{PUBLIC}/gone.png", max_bytes=MIB)


@pytest.fixture
async def local_server() -> AsyncIterator[tuple[str, list[str]]]:
    """A real HTTP server on 127.0.0.1: only reachable with allow_private=True."""
    hits: list[str] = []

    async def image(request: web.Request) -> web.Response:
        hits.append(request.path)
        return web.Response(body=PNG_BYTES, content_type="image/png")

    async def endless(request: web.Request) -> web.StreamResponse:
        hits.append(request.path)
        resp = web.StreamResponse()  # chunked: no Content-Length to refuse early on
        await resp.prepare(request)
        try:
            for _ in range(256):
                await resp.write(b"\0" * 4096)
        except ConnectionError:
            pass  # the client hung up once it had enough: that is the point
        return resp

    async def hop(request: web.Request) -> web.Response:
        hits.append(request.path)
        left = int(request.match_info["left"])
        raise web.HTTPFound(f"/hop/{left - 1}" if left > 0 else "/cat.png")

    app = web.Application()
    app.router.add_get("/cat.png", image)
    app.router.add_get("/endless", endless)
    app.router.add_get("/hop/{left}", hop)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}", hits
    finally:
        await runner.cleanup()


async def test_local_server_is_refused_without_allow_private(local_server: tuple[str, list[str]]) -> None:
    base, hits = local_server
    async with httpx.AsyncClient(trust_env=False) as http:
        with pytest.raises(InputImageError, match="private or local"):
            await fetch_url(http, f"{base}/cat.png", max_bytes=MIB)
    assert hits == []


async def test_local_server_with_allow_private(local_server: tuple[str, list[str]]) -> None:
    base, hits = local_server
    async with httpx.AsyncClient(trust_env=False) as http:
        assert await fetch_url(http, f"{base}/cat.png", max_bytes=MIB, allow_private=True) == PNG_BYTES
        # Content-Length over the cap: refused before the body is read.
        with pytest.raises(InputImageError, match="larger than"):
            await fetch_url(http, f"{base}/cat.png", max_bytes=len(PNG_BYTES) - 1, allow_private=True)
        # No Content-Length: the stream is cut once it passes the cap.
        with pytest.raises(InputImageError, match="larger than"):
            await fetch_url(http, f"{base}/endless", max_bytes=64 * 1024, allow_private=True)
        # Three redirects are fine, a fourth is not.
        assert await fetch_url(http, f"{base}/hop/2", max_bytes=MIB, allow_private=True) == PNG_BYTES
        with pytest.raises(InputImageError, match="redirected more than 3"):
            await fetch_url(http, f"{base}/hop/3", max_bytes=MIB, allow_private=True)
    assert hits.count("/cat.png") == 3


# --- load_source --------------------------------------------------------------------------------


async def test_load_source_reads_files_with_a_cap(tmp_path) -> None:
    path = tmp_path / "in.png"
    path.write_bytes(PNG_BYTES)
    async with httpx.AsyncClient(trust_env=False) as http:
        assert await load_source(str(path), http, LIMITS) == PNG_BYTES
        with pytest.raises(InputImageError, match="larger than"):
            await load_source(str(path), http, replace(LIMITS, max_input_bytes=10))
        with pytest.raises(InputImageError, match="No such file"):
            await load_source(str(tmp_path / "missing.png"), http, LIMITS)
        with pytest.raises(InputImageError, match="Only http"):
            await load_source("ftp://example.com/x.png", http, LIMITS)


# --- the policy itself ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "forbidden"),
    [
        ("93.184.216.34", False),
        ("2606:2800:220:1:248:1893:25c8:1946", False),
        ("127.0.0.1", True),
        ("10.1.2.3", True),
        ("169.254.169.254", True),
        ("100.64.0.1", True),  # carrier-grade NAT
        ("224.0.0.1", True),  # multicast
        ("2002:a9fe:a9fe::1", True),  # 6to4 wrapping 169.254.169.254
        ("2001:0:4136:e378:8000:63bf:56fe:5656", True),  # Teredo: its client is 169.1.169.169 (XORed)
        ("64:ff9b::a00:1", True),  # NAT64 of 10.0.0.1
    ],
)
def test_the_address_rule(address: str, forbidden: bool) -> None:
    assert downloads.is_forbidden(ipaddress.ip_address(address)) is forbidden


def test_what_a_link_shows_never_carries_credentials_or_the_query() -> None:
    link = "https://user:hunter2@cdn.example.com:8443/r/abc.png?X-Amz-Signature=s3cret"
    assert downloads.shown_host(link) == "cdn.example.com"
    assert downloads.safe_path(link) == "cdn.example.com:8443/r/abc.png"
    assert downloads.shown_host("http://[::1]/x") == "[::1]"
    assert downloads.shown_host("not a url at all") == "that link"


async def test_the_whole_download_has_one_deadline() -> None:
    async def slow(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(30)
        return httpx.Response(200, content=PNG_BYTES)

    async with httpx.AsyncClient(transport=httpx.MockTransport(slow), trust_env=False) as client:
        with pytest.raises(InputImageError, match="took too long"):
            await fetch_url(client, f"{PUBLIC}/slow.png", max_bytes=MIB, timeout=0.05)


async def test_answers_are_asked_uncompressed_and_as_images() -> None:
    client, _ = recording_client(lambda r: httpx.Response(200, content=PNG_BYTES))
    headers: list[httpx.Headers] = []
    client.event_hooks["request"] = [lambda r: _keep(headers, r)]
    async with client:
        await fetch_url(client, f"{PUBLIC}/cat.png", max_bytes=MIB)
    assert headers[0]["accept-encoding"] == "identity" and headers[0]["accept"] == "image/*"


async def _keep(into: list[httpx.Headers], request: httpx.Request) -> None:
    into.append(request.headers)
