"""Result downloads: fetched at once under the one fetch policy (public addresses only, redirects
re-checked), size-capped while streaming, verified to be images off the event loop."""

from __future__ import annotations

import base64
import threading
from collections.abc import Callable
from dataclasses import replace

import httpx
import pytest

from bot.images import ImageInfo
from bot.providers import results
from bot.providers.base import BadResponse, OutputExpired, OutputRef, Unavailable
from tests.emulator import make_png
from tests.links import PRIVATE_LINKS, PUBLIC, recording_client
from tests.providers.conftest import Rig, edit_request


@pytest.mark.parametrize("status", [403, 404, 410])
async def test_expired_result_link(rig: Rig, status: int) -> None:
    rig.emu.fault("vtrix", "expired_output", status=status)
    with pytest.raises(OutputExpired) as info:
        await rig.client().run(rig.vtrix(), edit_request("vtrix"), deadline=rig.deadline())
    assert info.value.status == status and info.value.provider == "vtrix"
    assert len(rig.calls("files")) == 1  # not retried: an expired link stays expired


async def test_result_that_is_not_an_image(rig: Rig) -> None:
    rig.emu.fault("modelverse", "not_image")
    with pytest.raises(BadResponse) as info:
        await rig.client().run(rig.modelverse(), edit_request("modelverse"), deadline=rig.deadline())
    assert "not an image" in info.value.user_message


@pytest.mark.parametrize("declare_length", [True, False])
async def test_huge_result_is_refused_while_streaming(rig: Rig, declare_length: bool) -> None:
    rig.emu.fault("wavespeed", "huge_output", size_mb=3, declare_length=declare_length)
    with pytest.raises(BadResponse) as info:
        await rig.client(max_output_bytes=1024 * 1024).run(
            rig.wavespeed(), edit_request("wavespeed"), deadline=rig.deadline()
        )
    assert "too large" in info.value.user_message


async def test_invalid_base64_result(rig: Rig) -> None:
    rig.emu.fault("modelverse", "invalid_base64")
    with pytest.raises(BadResponse) as info:
        await rig.client().run(rig.modelverse(), edit_request("modelverse"), deadline=rig.deadline())
    assert "base64" in info.value.user_message


async def test_base64_larger_than_the_cap_is_refused_before_decoding(rig: Rig) -> None:
    big = base64.b64encode(bytes(2 * 1024 * 1024)).decode()
    with pytest.raises(BadResponse) as info:
        await rig.client(max_output_bytes=1024 * 1024).download([OutputRef(b64=big)], provider="wavespeed")
    assert "too large" in info.value.user_message


async def test_download_decodes_every_base64_form(rig: Rig) -> None:
    png = make_png(10, 6)
    text = base64.b64encode(png).decode()
    refs = [
        OutputRef(b64=text),
        OutputRef(b64="data:image/png;base64," + text),
        OutputRef(b64=text.rstrip("=")),  # unpadded
        OutputRef(b64=base64.urlsafe_b64encode(png).decode(), nsfw=True),
    ]
    images = await rig.client().download(refs, provider="wavespeed")
    assert [(i.width, i.height, i.nsfw) for i in images] == [(10, 6, False)] * 3 + [(10, 6, True)]
    assert all(i.data == png for i in images)


async def test_download_without_outputs_is_a_bad_response(rig: Rig) -> None:
    with pytest.raises(BadResponse):
        await rig.client().download([], provider="vtrix")


async def test_download_of_a_non_http_link_is_refused(rig: Rig) -> None:
    with pytest.raises(BadResponse):
        await rig.client().download([OutputRef(url="file:///etc/passwd")], provider="vtrix")


async def test_transient_download_errors_are_retried(rig: Rig) -> None:
    out = await rig.client().run(rig.modelverse(), edit_request("modelverse"), deadline=rig.deadline())
    assert out.images
    url = rig.emu.generations[0].outputs[0]
    await rig.emu.stop()  # connection refused: retried, then Unavailable
    with pytest.raises(Unavailable):
        await rig.client(max_retries=2).download([OutputRef(url=url)], provider="modelverse")
    assert len(rig.time.sleeps) == 2


# --- the fetch policy on result links -------------------------------------------------------------


def mocked(
    rig: Rig, handler: Callable[[httpx.Request], httpx.Response]
) -> tuple[Rig, httpx.AsyncClient, list[str]]:
    """The rig over a mock transport that answers for a public host (no real server can be one)."""
    http, seen = recording_client(handler)
    return replace(rig, http=http), http, seen


PNG = make_png(12, 8)


def _png(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, content=PNG, headers={"content-type": "image/png"})


@pytest.mark.parametrize("url", PRIVATE_LINKS)
async def test_result_link_to_a_private_address_is_refused(rig: Rig, url: str) -> None:
    public_rig, http, seen = mocked(rig, _png)
    async with http:
        client = public_rig.client(allow_private_results=False)
        with pytest.raises(BadResponse) as info:
            await client.download([OutputRef(url=url)], provider="vtrix")
    assert "private or local network address" in info.value.user_message
    assert info.value.failover and not info.value.retryable  # the next route, as for an expired link
    assert seen == []  # refused before any request


@pytest.mark.parametrize("location", PRIVATE_LINKS)
async def test_result_link_redirecting_to_a_private_address_is_refused(rig: Rig, location: str) -> None:
    public_rig, http, seen = mocked(rig, lambda r: httpx.Response(302, headers={"Location": location}))
    async with http:
        with pytest.raises(BadResponse, match="private or local"):
            await public_rig.client(allow_private_results=False).download(
                [OutputRef(url=f"{PUBLIC}/r.png")], provider="wavespeed"
            )
    assert seen == [f"{PUBLIC}/r.png"]  # the first hop was asked, the private one never


async def test_the_emulators_loopback_results_are_refused_by_default(rig: Rig) -> None:
    with pytest.raises(BadResponse) as info:
        await rig.client(allow_private_results=False).run(
            rig.vtrix(), edit_request("vtrix"), deadline=rig.deadline()
        )
    assert "private or local network address (127.0.0.1)" in info.value.user_message
    assert info.value.failover and rig.calls("files") == []


async def test_result_redirects_between_public_hosts_are_followed(rig: Rig) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/final.png":
            return _png(request)
        return httpx.Response(307, headers={"Location": "/final.png"})

    public_rig, http, seen = mocked(rig, handler)
    async with http:
        [image] = await public_rig.client().download([OutputRef(url=f"{PUBLIC}/r.png")], provider="vtrix")
    assert image.data == PNG and len(seen) == 2

    looping, http, seen = mocked(rig, lambda r: httpx.Response(302, headers={"Location": "/again"}))
    async with http:
        with pytest.raises(BadResponse, match="more than 3 times"):
            await looping.client().download([OutputRef(url=f"{PUBLIC}/again")], provider="vtrix")
    assert len(seen) == 4


async def test_result_rate_limit_waits_for_retry_after_then_succeeds(rig: Rig) -> None:
    answers = iter([httpx.Response(429, headers={"Retry-After": "7"})])

    public_rig, http, seen = mocked(rig, lambda r: next(answers, None) or _png(r))
    async with http:
        [image] = await public_rig.client().download([OutputRef(url=f"{PUBLIC}/r.png")], provider="vtrix")
    assert image.data == PNG and len(seen) == 2 and rig.time.sleeps == [7.0]


async def test_result_server_errors_are_retried_then_unavailable(rig: Rig) -> None:
    public_rig, http, seen = mocked(rig, lambda r: httpx.Response(503))
    async with http:
        with pytest.raises(Unavailable, match="HTTP 503"):
            await public_rig.client(max_retries=2).download(
                [OutputRef(url=f"{PUBLIC}/r.png")], provider="vtrix"
            )
    assert len(seen) == 3

    refused, http, seen = mocked(rig, lambda r: httpx.Response(400))
    async with http:
        with pytest.raises(BadResponse, match="answered HTTP 400"):
            await refused.client().download([OutputRef(url=f"{PUBLIC}/r.png")], provider="vtrix")
    assert len(seen) == 1  # not retried


async def test_results_are_decoded_and_checked_off_the_event_loop(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    threads: list[threading.Thread] = []
    real = results.identify

    def identify(data: bytes, *, max_pixels: int) -> ImageInfo:
        threads.append(threading.current_thread())
        return real(data, max_pixels=max_pixels)

    monkeypatch.setattr(results, "identify", identify)
    public_rig, http, _ = mocked(rig, _png)
    refs = [OutputRef(url=f"{PUBLIC}/r.png"), OutputRef(b64=base64.b64encode(PNG).decode())]
    async with http:
        assert len(await public_rig.client().download(refs, provider="wavespeed")) == 2
    assert len(threads) == 2 and threading.main_thread() not in threads
