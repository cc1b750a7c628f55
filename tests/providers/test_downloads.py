"""Result downloads: fetched at once, size-capped while streaming, verified to be images."""

from __future__ import annotations

import base64

import pytest

from bot.providers.base import BadResponse, OutputExpired, OutputRef, Unavailable
from tests.emulator import make_png
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
